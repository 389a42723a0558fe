import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { TaggableBackend } from '../../lib/cache/taggable-backend.interface.js';
import { OperationNotSupportedException } from '../../lib/errors/operation-not-supported.exception.js';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { MemoryLocker } from '../../lib/locking/memory.locker.js';
import type { SessionLocker } from '../../lib/locking/session-locker.interface.js';
import type { SessionEvent } from '../../lib/session/session-events.js';
import { SessionManager } from '../../lib/manager/session.manager.js';
import { SessionContext } from '../../lib/session/session.context.js';
import type { SessionInterface } from '../../lib/session/session.interface.js';
import type { SessionMetadata } from '../../lib/session/session-metadata.interface.js';
import type { SessionModuleOptions } from '../../lib/session/session-module.options.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { handleOf, metadataKeyOf } from '../../lib/session/session-key.js';
import { fakeOnlyDate } from '../support/fake-date.js';

/** What a factory answers: fresh, empty stores (no entry of any other test visible) and their disposal. */
export interface ManagerStoresUnderTest {
  metadataBackend: TaggableBackend;
  storageBackend: TaggableBackend;
  /** Shared by every manager of a test (two "app instances"). @default new MemoryLocker() */
  locker?: SessionLocker;
  cleanup: () => Promise<void>;
  /**
   * How many distinct cache tags the metadata backend still stores, expired entries included
   * (memory: `stats().tags`). Lets the suite check that GC removes tag memberships; optional
   * because not every backend can tell.
   */
  storedTagCount?: () => Promise<number>;
}

export interface SessionManagerContractOptions {
  /**
   * The backend keeps time outside this process (Redis): expiry cases then use a real
   * 1-second inactivity timeout and wait for it. Otherwise only `Date` is faked and moved.
   */
  realTime?: boolean;
}

/**
 * SessionManager behaviour over real stores: remote sessions, tags, users, expiry, GC, the GC
 * lock, events and the IP lock. Run it for every backend:
 * `sessionManagerContract('redis', async () => ({ metadataBackend, storageBackend, locker, cleanup }), { realTime: true })`.
 */
export function sessionManagerContract(
  name: string,
  factory: () => Promise<ManagerStoresUnderTest>,
  contractOptions: SessionManagerContractOptions = {},
): void {
  const realTime = contractOptions.realTime === true;
  /** Inactivity timeout of the sessions in this suite, in seconds. */
  const TIMEOUT = realTime ? 1 : 600;

  describe(`SessionManager contract: ${name}`, () => {
    let stores: ManagerStoresUnderTest;
    let locker: SessionLocker;
    let ownLocker: MemoryLocker | undefined;

    beforeEach(async () => {
      if (!realTime) {
        fakeOnlyDate(new Date('2031-03-04T05:06:07.000Z'));
      }
      stores = await factory();
      ownLocker = stores.locker === undefined ? new MemoryLocker() : undefined;
      locker = stores.locker ?? ownLocker!;
    });

    afterEach(async () => {
      try {
        await ownLocker?.close();
        await stores.cleanup();
      } finally {
        if (!realTime) jest.useRealTimers();
      }
    });

    /** Lets `seconds` pass for stores and sessions. */
    async function elapse(seconds: number): Promise<void> {
      if (realTime) await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      else jest.setSystemTime(Date.now() + seconds * 1000);
    }
    /** Enough time for a session untouched since now to expire (also in the backend). */
    const expire = () => elapse(TIMEOUT + (realTime ? 0.3 : 1));

    /** One "app instance": a store and a manager over the shared backends and locker. */
    function instance(options: SessionModuleOptions = {}): { store: SessionStore; manager: SessionManager } {
      const resolved = resolveSessionOptions({
        metadataBackend: stores.metadataBackend,
        storageBackend: stores.storageBackend,
        locker,
        inactivityTimeout: TIMEOUT,
        updateGracePeriod: 0,
        garbageCollection: { probability: 0, cron: false },
        ...options,
      });
      const store = new SessionStore(resolved);
      return { store, manager: new SessionManager(store, new SessionContext()) };
    }

    /** A request's session, as the HTTP layer makes it. */
    function request(store: SessionStore, cookie?: string, clientIp = '203.0.113.7'): Session {
      return new Session(store, { cookieIds: cookie === undefined ? [] : [cookie], cookieName: 'sid', clientIp });
    }

    /** Starts and stores a session with `data` and `tags`; answers its id. */
    async function createSession(
      store: SessionStore,
      setup: { data?: Record<string, unknown>; tags?: string[]; user?: string; ttl?: number; ip?: string } = {},
    ): Promise<string> {
      const session = request(store, undefined, setup.ip);
      session.start();
      for (const [key, value] of Object.entries(setup.data ?? { visited: true })) await session.putData(key as never, value);
      for (const tag of setup.tags ?? []) await session.addTag(tag);
      if (setup.user !== undefined) session.bindToUser(setup.user);
      if (setup.ttl !== undefined) session.setTTL(setup.ttl);
      await session.commit();
      return session.getId();
    }

    /** Resumes like a request carrying the cookie; answers whether a live session was found. */
    async function resumes(store: SessionStore, id: string, ip?: string): Promise<boolean> {
      const session = request(store, id, ip);
      await session.resume();
      return session.isStarted();
    }

    /** The stored metadata entry of the session with public id `id` (kept under a digest of it). */
    const rawMetadata = (id: string) => stores.metadataBackend.get(metadataKeyOf(id));

    async function storageIdOf(id: string): Promise<string> {
      const raw = await rawMetadata(id);
      expect(raw).toBeDefined();
      return (JSON.parse(raw!) as SessionMetadata).storageId;
    }

    async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
      const result: T[] = [];
      for await (const item of iterable) result.push(item);
      return result;
    }

    /** Sessions from listings are known by key only (no id, `getId()` throws): compare handles. */
    const ids = (sessions: SessionInterface[]) => sessions.map((s) => s.getHandle()).sort();
    const handleFor = (id: string) => handleOf(metadataKeyOf(id));
    const handles = (...sessionIds: string[]) => sessionIds.map(handleFor).sort();

    describe('remote sessions', () => {
      it('reads, writes through and destroys a stored session', async () => {
        const { store, manager } = instance();
        const id = await createSession(store, { data: { color: 'blue', n: 1 }, tags: ['shop'] });
        const lastActivity = JSON.parse((await rawMetadata(id))!).lastActivity as number;

        const remote = (await manager.getSession(id))!;
        expect(remote).toBeDefined();
        expect(remote.isRemote()).toBe(true);
        expect(remote.getId()).toBe(id);
        expect(remote.getHandle()).toBe(handleFor(id));
        expect(await remote.getData('color')).toBe('blue');
        expect(await remote.hasKey('n')).toBe(true);
        expect(remote.getTags()).toEqual(['shop']);
        expect(remote.getLastActivityTimestamp()).toBe(lastActivity);

        await remote.putData('color', 'red');
        await remote.removeData('n');
        await remote.addTag('vip');
        await remote.removeTag('shop');
        // Written through: the owner's next request sees it.
        const owner = request(store, id);
        await owner.resume();
        expect(await owner.getAllData()).toEqual({ color: 'red' });
        expect(owner.getTags()).toEqual(['vip']);
        expect(ids(await collect(manager.getSessionsByTag('vip')))).toEqual(handles(id));
        expect(await collect(manager.getSessionsByTag('shop'))).toEqual([]);

        expect(() => remote.renewId()).toThrow(OperationNotSupportedException);
        expect(() => remote.bindToUser('mallory')).toThrow(OperationNotSupportedException);
        await expect(remote.regenerate()).rejects.toBeInstanceOf(OperationNotSupportedException);

        const storageId = await storageIdOf(id);
        await remote.destroy('admin');
        expect(await manager.getSession(id)).toBeUndefined();
        expect(await resumes(store, id)).toBe(false);
        expect(await stores.storageBackend.getByTag(storageId)).toEqual([]);
        expect(await stores.metadataBackend.findIdentifiersByTag(SessionStore.customTag('vip'))).toEqual([]);
      });

      it('touch() on a remote session moves its last activity', async () => {
        const { store, manager } = instance();
        const id = await createSession(store);
        await elapse(realTime ? 0.5 : 100);
        const remote = (await manager.getSession(id))!;
        const before = remote.getLastActivityTimestamp();
        await remote.touch();
        const after = (await manager.getSession(id))!.getLastActivityTimestamp();
        expect(after).toBeGreaterThan(before);
      });

      it('answers undefined for unknown and malformed ids', async () => {
        const { manager } = instance();
        expect(await manager.getSession('A'.repeat(32))).toBeUndefined();
        expect(await manager.getSession('not an id')).toBeUndefined();
        expect(await manager.getSession('')).toBeUndefined();
      });

      it('finds, writes through and destroys a session by its handle ("revoke this device")', async () => {
        const { store, manager } = instance();
        const id = await createSession(store, { data: { color: 'blue' }, user: 'ann' });
        const other = await createSession(store, { user: 'ann' });
        const listed = (await collect(manager.listSessions())).map((i) => i.handle).sort();
        expect(listed).toEqual(handles(id, other));

        const remote = (await manager.getSessionByHandle(handleFor(id)))!;
        expect(remote.isRemote()).toBe(true);
        expect(remote.getHandle()).toBe(handleFor(id));
        expect(remote.getUserId()).toBe('ann');
        // The store keeps no id: a session found by handle or listing cannot tell it.
        expect(() => remote.getId()).toThrow(OperationNotSupportedException);
        expect(await remote.getData('color')).toBe('blue');
        await remote.putData('color', 'green');
        const owner = request(store, id);
        await owner.resume();
        expect(await owner.getData('color')).toBe('green');
        const fromListing = (await manager.getSessionsForUser('ann')).find((s) => s.getHandle() === handleFor(id))!;
        expect(() => fromListing.getId()).toThrow(OperationNotSupportedException);

        expect(await manager.destroySessionByHandle(handleFor(id), 'revoked')).toBe(true);
        expect(await resumes(store, id)).toBe(false);
        expect(await resumes(store, other)).toBe(true);
        expect(await manager.getSessionByHandle(handleFor(id))).toBeUndefined();
        expect(await manager.destroySessionByHandle(handleFor(id))).toBe(false);
        expect(await manager.getSessionByHandle('not a handle')).toBeUndefined();
        expect(await manager.getSessionByHandle('A'.repeat(16))).toBeUndefined();
      });

      it('a handle is no cookie: a request carrying it (or the metadata key) resumes nothing', async () => {
        const { store, manager } = instance();
        const id = await createSession(store);
        const handle = handleFor(id);
        expect(handle).toMatch(/^[A-Za-z0-9_-]{16}$/);
        expect(id).not.toContain(handle);
        for (const guess of [handle, metadataKeyOf(id), metadataKeyOf(id).split('.')[1]!]) {
          expect(await resumes(store, guess)).toBe(false);
          expect(await manager.getSession(guess)).toBeUndefined();
        }
        expect(await resumes(store, id)).toBe(true);
      });

      it('a write from a remote session to a session destroyed meanwhile is not written back', async () => {
        const { store, manager } = instance();
        const id = await createSession(store, { data: { a: 1 } });
        const storageId = await storageIdOf(id);
        const remote = (await manager.getSession(id))!;
        const owner = request(store, id);
        await owner.resume();
        await owner.destroy('logout');
        await expect(remote.putData('a', 2)).rejects.toThrow(/destroyed/);
        expect(await resumes(store, id)).toBe(false);
        expect(await stores.storageBackend.getByTag(storageId)).toEqual([]);
      });
    });

    describe('iterating', () => {
      it('getActiveSessions loads metadata in pages of pageSize and skips destroyed ones', async () => {
        const { store, manager } = instance();
        const created: string[] = [];
        for (let i = 0; i < 7; i++) created.push(await createSession(store));
        const gone = created.pop()!;
        await (await manager.getSession(gone))!.destroy();

        const backend = stores.metadataBackend;
        const getMany = backend.getMany.bind(backend);
        const pageSizes: number[] = [];
        backend.getMany = (pageIds) => {
          pageSizes.push(pageIds.length);
          return getMany(pageIds);
        };
        try {
          const sessions = await collect(manager.getActiveSessions(2));
          expect(ids(sessions)).toEqual(handles(...created));
          expect(sessions.every((s) => s.isRemote())).toBe(true);
          expect(Math.max(...pageSizes)).toBeLessThanOrEqual(2);
          expect(pageSizes.length).toBe(3);
        } finally {
          backend.getMany = getMany;
        }
      });

      it('getSessionsByTag answers exactly the live sessions with the tag', async () => {
        const { store, manager } = instance();
        const a = await createSession(store, { tags: ['team-red'] });
        const b = await createSession(store, { tags: ['team-red', 'beta'] });
        await createSession(store, { tags: ['team-blue'] });
        expect(ids(await collect(manager.getSessionsByTag('team-red')))).toEqual(handles(a, b));
        expect(ids(await collect(manager.getSessionsByTag('beta', 1)))).toEqual(handles(b));
        expect(await collect(manager.getSessionsByTag('nobody'))).toEqual([]);
        expect(() => manager.getSessionsByTag('bad tag')).toThrow(InvalidArgumentException);
        expect(() => manager.getActiveSessions(0)).toThrow(InvalidArgumentException);
      });

      it('listSessions answers metadata without data or storage id', async () => {
        const { store, manager } = instance();
        const id = await createSession(store, { tags: ['x'], user: 'alice' });
        const [info, ...rest] = await collect(manager.listSessions({ tag: 'x' }));
        expect(rest).toEqual([]);
        expect(info).toMatchObject({
          handle: handleFor(id),
          tags: expect.arrayContaining(['x']),
          userId: 'alice',
          permanent: false,
        });
        expect(info!.expiresAt).toBe(info!.lastActivity + TIMEOUT * 1000);
        expect(JSON.stringify(info)).not.toContain(await storageIdOf(id));
        // Neither the id (a credential) nor the metadata key.
        expect(JSON.stringify(info)).not.toContain(id);
        expect(JSON.stringify(info)).not.toContain(metadataKeyOf(id).slice(-20));
      });
    });

    describe('destroying by tag and by user', () => {
      it('destroySessionsByTag destroys all and only the tagged sessions and answers how many', async () => {
        const { store, manager } = instance();
        const doomed = [
          await createSession(store, { tags: ['campaign'] }),
          await createSession(store, { tags: ['campaign', 'x'] }),
        ];
        const kept = await createSession(store, { tags: ['x'] });
        const storageIds = await Promise.all(doomed.map(storageIdOf));

        expect(await manager.destroySessionsByTag('campaign', 'campaign over')).toBe(2);
        for (const id of doomed) expect(await resumes(store, id)).toBe(false);
        for (const storageId of storageIds) expect(await stores.storageBackend.getByTag(storageId)).toEqual([]);
        expect(await resumes(store, kept)).toBe(true);
        expect(ids(await collect(manager.getSessionsByTag('x')))).toEqual(handles(kept));
        expect(await manager.destroySessionsByTag('campaign')).toBe(0);
      });

      it('destroySessionsForUser logs a user out everywhere, other users stay', async () => {
        const { store, manager } = instance();
        const phone = await createSession(store, { user: 'alice' });
        const laptop = await createSession(store, { user: 'alice', tags: ['desktop'] });
        const bob = await createSession(store, { user: 'bob' });
        expect(ids(await manager.getSessionsForUser('alice'))).toEqual(handles(phone, laptop));

        expect(await manager.destroySessionsForUser('alice', 'password changed')).toBe(2);
        expect(await resumes(store, phone)).toBe(false);
        expect(await resumes(store, laptop)).toBe(false);
        expect(await manager.getSessionsForUser('alice')).toEqual([]);
        expect(ids(await manager.getSessionsForUser('bob'))).toEqual(handles(bob));
        await expect(manager.destroySessionsForUser('')).rejects.toBeInstanceOf(InvalidArgumentException);
      });

      it('also catches a session that got a new id while being destroyed', async () => {
        const { store, manager } = instance();
        const id = await createSession(store, { user: 'carol' });
        // The first listing sees the old id; before the destroy runs, the owner renews it.
        const backend = stores.metadataBackend;
        const getMany = backend.getMany.bind(backend);
        let renewedId: string | undefined;
        backend.getMany = async (pageIds) => {
          const result = await getMany(pageIds);
          if (renewedId === undefined) {
            const owner = request(store, id);
            await owner.resume();
            renewedId = owner.renewId();
            await owner.commit();
          }
          return result;
        };
        try {
          expect(await manager.destroySessionsForUser('carol')).toBeGreaterThanOrEqual(1);
        } finally {
          backend.getMany = getMany;
        }
        expect(renewedId).toBeDefined();
        expect(await resumes(store, id)).toBe(false);
        expect(await resumes(store, renewedId!)).toBe(false);
      });
    });

    describe('expiry', () => {
      it('an expired session can never be resumed or found, collected or not', async () => {
        const { store, manager } = instance();
        const id = await createSession(store, { tags: ['t'], user: 'dave' });
        await elapse(TIMEOUT / 2);
        expect(await resumes(store, id)).toBe(true);
        await expire();
        expect(await resumes(store, id)).toBe(false);
        expect(await manager.getSession(id)).toBeUndefined();
        expect(await collect(manager.getSessionsByTag('t'))).toEqual([]);
        expect(await collect(manager.getActiveSessions())).toEqual([]);
        expect(await manager.getSessionsForUser('dave')).toEqual([]);
        expect(await manager.destroySessionsByTag('t')).toBe(0);
      });

      it('a per-session lifetime (setTTL) shortens or lengthens the timeout', async () => {
        const { store } = instance();
        const short = await createSession(store, { ttl: TIMEOUT / 2 });
        const long = await createSession(store, { ttl: TIMEOUT * 3 });
        await elapse(TIMEOUT / 2 + (realTime ? 0.3 : 1));
        expect(await resumes(store, short)).toBe(false);
        await expire();
        expect(await resumes(store, long)).toBe(true);
      });
    });

    describe('garbage collection', () => {
      it('removes exactly the expired sessions, their data and their tag memberships', async () => {
        const { store, manager } = instance();
        const expired = [
          await createSession(store, { tags: ['doomed'], data: { a: 1, b: 2 } }),
          await createSession(store, { tags: ['doomed', 'gone-with-them'] }),
          await createSession(store, { user: 'erin' }),
          await createSession(store, { ttl: TIMEOUT / 2 }), // shorter lifetime
        ];
        const expiredStorage = await Promise.all(expired.map(storageIdOf));
        await elapse(TIMEOUT / 2 + (realTime ? 0.3 : 1));
        expect(await resumes(store, expired[3]!)).toBe(false);
        // These are created now, so they outlive the first three (with a lifetime of their own
        // long enough that a slow machine cannot expire them before the checks below).
        const live = [
          await createSession(store, { tags: ['doomed'], data: { keep: 'me' }, ttl: TIMEOUT * 3 }),
          await createSession(store, { ttl: TIMEOUT * 3 }),
        ];
        const liveStorage = await Promise.all(live.map(storageIdOf));
        const tagsBefore = await stores.storedTagCount?.();
        await elapse(TIMEOUT / 2 + (realTime ? 0.3 : 1));

        expect(await manager.collectGarbage()).toBe(expired.length);
        for (const id of expired) expect(await rawMetadata(id)).toBeUndefined();
        for (const storageId of expiredStorage) expect(await stores.storageBackend.getByTag(storageId)).toEqual([]);
        for (const id of live) expect(await resumes(store, id)).toBe(true);
        for (const storageId of liveStorage) expect((await stores.storageBackend.getByTag(storageId)).length).toBeGreaterThan(0);
        const keeper = request(store, live[0]);
        await keeper.resume();
        expect(await keeper.getData('keep')).toBe('me');
        expect(await stores.metadataBackend.findIdentifiersByTag(SessionStore.customTag('doomed'))).toEqual([
          metadataKeyOf(live[0]!),
        ]);
        if (tagsBefore !== undefined) {
          // `tag-gone-with-them` and erin's user tag carried only expired sessions: both are gone,
          // and so are each expired session's own storage-owner and handle tags.
          expect(await stores.storedTagCount!()).toBe(tagsBefore - 2 - 2 * expired.length);
        }
        expect(await manager.collectGarbage()).toBe(0);
      });

      it('collects sessions at their absolute end (absoluteTimeout), however active, with their data and tags', async () => {
        // The absolute lifetime is the shorter one here: inactivity alone would keep the session.
        const absolute = realTime ? 1 : 100;
        const inactivity = realTime ? 60 : TIMEOUT;
        const { store, manager } = instance({ absoluteTimeout: absolute, inactivityTimeout: inactivity });
        const id = await createSession(store, { tags: ['absolute'], user: 'ivy', data: { a: 1 } });
        const storageId = await storageIdOf(id);
        // Stored by an instance without an absolute lifetime: only inactivity ends it.
        const { store: unlimited } = instance({ inactivityTimeout: inactivity });
        const survivor = await createSession(unlimited, { tags: ['absolute'] });
        await elapse(absolute * 0.6);
        const active = request(store, id);
        await active.resume();
        expect(active.isStarted()).toBe(true);
        await active.touch();
        await active.commit();
        await elapse(absolute * 0.4 + (realTime ? 0.3 : 1));
        expect(await resumes(store, id)).toBe(false);
        expect(await manager.collectGarbage()).toBe(1);
        expect(await rawMetadata(id)).toBeUndefined();
        expect(await stores.storageBackend.getByTag(storageId)).toEqual([]);
        expect(await manager.getSessionsForUser('ivy')).toEqual([]);
        expect(await stores.metadataBackend.findIdentifiersByTag(SessionStore.customTag('absolute'))).toEqual([
          metadataKeyOf(survivor),
        ]);
        expect(await resumes(unlimited, survivor)).toBe(true);
        expect(await manager.collectGarbage()).toBe(0);
      });

      it('removes at most maximumPerRun sessions per run', async () => {
        const { store, manager } = instance({ garbageCollection: { probability: 0, cron: false, maximumPerRun: 2 } });
        for (let i = 0; i < 5; i++) await createSession(store);
        await expire();
        expect(await manager.collectGarbage()).toBe(2);
        expect(await manager.collectGarbage()).toBe(2);
        expect(await manager.collectGarbage()).toBe(1);
        expect(await manager.collectGarbage()).toBe(0);
      });

      it('two concurrent runs (two app instances) never overlap: the second skips and answers 0', async () => {
        const first = instance();
        const second = instance();
        for (let i = 0; i < 3; i++) await createSession(first.store);
        await expire();

        const backend = stores.metadataBackend;
        const collectGarbage = backend.collectGarbage.bind(backend);
        let inFlight = 0;
        let maxInFlight = 0;
        let entered!: () => void;
        const enteredGc = new Promise<void>((resolve) => (entered = resolve));
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        backend.collectGarbage = async (limit) => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          entered();
          await gate;
          try {
            return await collectGarbage(limit);
          } finally {
            inFlight--;
          }
        };
        try {
          const run1 = first.manager.collectGarbage();
          await enteredGc;
          // The first run holds the GC lock and is inside the backend: the second skips at once.
          expect(await second.manager.collectGarbage()).toBe(0);
          expect(await first.manager.collectGarbage()).toBe(0); // same instance: also skipped
          release();
          expect(await run1).toBe(3);
          expect(maxInFlight).toBe(1);
          // The lock was released: the next run runs (and finds nothing).
          expect(await second.manager.collectGarbage()).toBe(0);
          expect(inFlight).toBe(0);
        } finally {
          release();
          backend.collectGarbage = collectGarbage;
        }
      });
    });

    describe('events', () => {
      it('emits started, renewed, userBound, destroyed, expired and gc', async () => {
        const { store, manager } = instance();
        const events: SessionEvent[] = [];
        const subscription = manager.events$.subscribe((event) => events.push(event));
        try {
          const session = request(store);
          session.start();
          await session.putData('k', 1);
          await session.commit();
          const firstId = session.getId();
          session.bindToUser('frank');
          await session.commit();
          const boundId = session.getId();
          expect(events.map((e) => e.type)).toEqual(['started', 'renewed', 'userBound']);
          expect(events[0]).toMatchObject({ type: 'started', handle: handleFor(firstId) });
          expect(events[1]).toMatchObject({ type: 'renewed', handle: handleFor(boundId), previousHandles: [handleFor(firstId)] });
          expect(events[2]).toMatchObject({ type: 'userBound', handle: handleFor(boundId), userId: 'frank' });
          expect(session.getHandle()).toBe(handleFor(boundId));

          events.length = 0;
          expect(await manager.destroySessionsForUser('frank', 'password changed')).toBe(1);
          expect(events).toEqual([
            expect.objectContaining({ type: 'destroyed', handle: handleFor(boundId), reason: 'password changed', remote: true }),
          ]);

          events.length = 0;
          const local = request(store);
          local.start();
          await local.putData('k', 2);
          await local.commit();
          await local.destroy('logout');
          expect(events.map((e) => e.type)).toEqual(['started', 'destroyed']);
          expect(events[1]).toMatchObject({ reason: 'logout', remote: false });

          events.length = 0;
          const doomed = await createSession(store, { user: 'gina' });
          await expire();
          expect(await manager.collectGarbage()).toBe(1);
          expect(events.slice(-2)).toEqual([
            expect.objectContaining({ type: 'expired', handle: handleFor(doomed), userId: 'gina' }),
            expect.objectContaining({ type: 'gc', removed: 1 }),
          ]);
        } finally {
          subscription.unsubscribe();
        }
      });
    });

    describe('IP lock', () => {
      it('resumes only from the same address prefix (IPv4 and IPv4-mapped)', async () => {
        const { store, manager } = instance({ ipLock: { ipv4Prefix: 3 } });
        const id = await createSession(store, { ip: '203.0.113.7' });
        expect(JSON.parse((await rawMetadata(id))!).ipLock).toBe('4:203.0.113');
        expect(await resumes(store, id, '203.0.113.200')).toBe(true);
        expect(await resumes(store, id, '::ffff:203.0.113.9')).toBe(true);
        expect(await resumes(store, id, '198.51.100.7')).toBe(false);
        const stranger = request(store, id, '198.51.100.7');
        expect(await stranger.canBeResumed()).toBe(false);
        const unknownAddress = new Session(store, { cookieIds: [id], cookieName: 'sid' });
        await unknownAddress.resume();
        expect(unknownAddress.isStarted()).toBe(false);
        // Remote sessions are not bound to an address.
        expect(await manager.getSession(id)).toBeDefined();
      });

      it('locks IPv6 clients to their /64 by default', async () => {
        const { store } = instance({ ipLock: {} });
        const id = await createSession(store, { ip: '2001:db8:1:2:aaaa::1' });
        expect(await resumes(store, id, '2001:0db8:0001:0002:ffff::5')).toBe(true);
        expect(await resumes(store, id, '2001:db8:1:3::1')).toBe(false);
        expect(await resumes(store, id, '203.0.113.7')).toBe(false);
      });

      it('binding to a user locks a session that was stored before the lock was on', async () => {
        const unlocked = instance();
        const id = await createSession(unlocked.store, { ip: '203.0.113.7' });
        const { store } = instance({ ipLock: { ipv4Prefix: 4 } });
        expect(await resumes(store, id, '198.51.100.1')).toBe(true); // no lock value stored: allowed
        const session = request(store, id, '203.0.113.7');
        await session.resume();
        session.bindToUser('hank');
        await session.commit();
        const bound = session.getId();
        expect(await resumes(store, bound, '203.0.113.7')).toBe(true);
        expect(await resumes(store, bound, '198.51.100.1')).toBe(false);
      });
    });
  });
}
