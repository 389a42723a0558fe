import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import {
  MemoryBackend,
  MemoryLocker,
  OperationNotSupportedException,
  SessionLimitReachedException,
  SessionNotAuthenticatedException,
  SessionNotFoundException,
  type SessionModuleOptions,
  type SessionEvent,
} from 'nest-session';
import { createRedisSessionStores } from '../../lib/redis/redis-session.factory.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { SessionManager } from '../../lib/manager/session.manager.js';
import { SessionContext } from '../../lib/session/session.context.js';
import { Session, type SessionOrigin } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { userTag } from '../../lib/session/user-tag.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { connectTestRedis, uniquePrefix, type TestRedisClient } from '../support/redis.js';

/**
 * The user-session features below the HTTP layer (issue 12): absolute lifetime, the per-user
 * cap, device facts, "my devices" on SessionManager and the authentication age, on the memory
 * stores and on Redis. Only `Date` is faked: Redis keeps real time, so what is checked there
 * is the lifetime each entry is given (PTTL), and expiry as the store sees it.
 */
const T0 = new Date('2032-01-02T03:04:05.000Z').getTime();
const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0';

let redis: TestRedisClient;
beforeAll(async () => {
  Logger.overrideLogger(['error', 'warn']);
  redis = await connectTestRedis();
});
afterAll(async () => {
  await redis?.close();
});

describe.each(['memory', 'redis'] as const)('user sessions on %s', (backend) => {
  let store: SessionStore;
  let manager: SessionManager;
  let context: SessionContext;
  let prefix: string;
  let cleanup: () => Promise<void>;

  async function setUp(options: SessionModuleOptions): Promise<void> {
    if (backend === 'memory') {
      const locker = new MemoryLocker();
      store = new SessionStore(
        resolveSessionOptions({ metadataBackend: new MemoryBackend(), storageBackend: new MemoryBackend(), locker, ...options }),
      );
      cleanup = () => locker.close();
    } else {
      prefix = uniquePrefix('user-sessions');
      const stores = await createRedisSessionStores({ client: redis, prefix });
      const { metadataBackend, storageBackend, locker } = stores;
      store = new SessionStore(resolveSessionOptions({ metadataBackend, storageBackend, locker, ...options }));
      cleanup = async () => {
        await stores.close();
        const keys: string[] = [];
        for await (const batch of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
        if (keys.length > 0) await redis.del(keys);
      };
    }
    context = new SessionContext();
    manager = new SessionManager(store, context);
  }

  beforeEach(() => {
    fakeOnlyDate(T0);
  });
  afterEach(async () => {
    jest.useRealTimers();
    await cleanup();
  });

  const NO_GC = { probability: 0, cron: false } as const;
  const at = (seconds: number): void => {
    jest.setSystemTime(T0 + seconds * 1000);
  };

  /** A request of the client holding cookie `id` (or a new client), as the HTTP layer makes it. */
  function request(id?: string, origin: Partial<SessionOrigin> = {}): Session {
    return new Session(store, { cookieIds: id === undefined ? [] : [id], cookieName: 'sid', ...origin });
  }
  /** A new client that stores some data, then logs in as `user` in a second request; answers its id. */
  async function loginFresh(user: string, origin: Partial<SessionOrigin> = {}): Promise<string> {
    const first = request(undefined, origin);
    first.start();
    await first.putData('cart', ['book']);
    await first.commit();
    const second = request(first.getId(), origin);
    await second.resume();
    second.bindToUser(user);
    await second.commit();
    return second.getId();
  }
  async function alive(id: string): Promise<boolean> {
    const session = request(id);
    await session.resume();
    return session.isStarted();
  }
  /** Redis: when the backend expires the session's metadata entry (its expiry index, redis-backend.keys.ts). */
  async function storedExpiry(id: string): Promise<number | null> {
    const session = request(id);
    await session.resume();
    return redis.zScore(`${prefix}m:{}#expiry`, session.getStoredKey()!);
  }

  /**
   * Redis: the keys of the session caches (metadata `m:`, data `s:`) naming this session's
   * storage id or metadata key. (The locker's fence counter, `l:`, outlives sessions by design.)
   */
  async function sessionKeys(storageId: string, metadataKey: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const batch of redis.scanIterator({ MATCH: `${prefix}[ms]:*`, COUNT: 1000 })) keys.push(...batch);
    return keys.filter((key) => key.includes(storageId) || key.includes(metadataKey));
  }

  describe('absoluteTimeout', () => {
    it('ends even an active session, counted from creation; never resumed, listed or found by handle', async () => {
      await setUp({ absoluteTimeout: 100, inactivityTimeout: 3600, updateGracePeriod: 10, garbageCollection: NO_GC });
      const s = request();
      s.start();
      await s.putData('k', 1);
      await s.commit();
      const id = s.getId();
      const handle = s.getHandle();
      for (let t = 20; t < 100; t += 20) {
        at(t);
        const active = request(id);
        await active.resume();
        expect(active.isStarted()).toBe(true);
        await active.touch();
        await active.commit();
      }
      at(99.999);
      expect(await alive(id)).toBe(true);
      expect((await manager.getSessionByHandle(handle))?.getHandle()).toBe(handle);
      at(100);
      expect(await alive(id)).toBe(false);
      expect(await manager.getSession(id)).toBeUndefined();
      expect(await manager.getSessionByHandle(handle)).toBeUndefined();
      const listed: string[] = [];
      for await (const info of manager.listSessions()) listed.push(info.handle);
      expect(listed).toEqual([]);
    });

    it('restarts at login: a session first seen anonymously lives absoluteTimeout after the login', async () => {
      await setUp({ absoluteTimeout: 100, inactivityTimeout: 3600, updateGracePeriod: 10, garbageCollection: NO_GC });
      const anonymous = request();
      anonymous.start();
      await anonymous.putData('cart', ['book']);
      await anonymous.commit();
      at(90); // the user browses anonymously for 90 s, then logs in
      const login = request(anonymous.getId());
      await login.resume();
      login.bindToUser('alice');
      await login.commit();
      const id = login.getId();
      at(101.5); // the trap: a clock that started at the anonymous visit would end it here
      expect(await alive(id)).toBe(true);
      const [info] = await context.run(request(id), () => manager.listUserSessions());
      expect(info!.expiresAt).toBe(T0 + 190_000);
      at(189.9);
      expect(await alive(id)).toBe(true);
      at(190);
      expect(await alive(id)).toBe(false);
    });

    it('gives the store entries the sooner of the inactivity and the absolute remaining lifetime', async () => {
      await setUp({ absoluteTimeout: 100, inactivityTimeout: 60, updateGracePeriod: 10, garbageCollection: NO_GC });
      const id = await loginFresh('alice');
      const infos = async () => context.run(request(id), () => manager.listUserSessions());
      // At first the inactivity timeout is the sooner end.
      expect((await infos())[0]!.expiresAt).toBe(T0 + 60_000);
      if (backend === 'redis') expect(await storedExpiry(id)).toBe(T0 + 60_000);
      at(50);
      const used = request(id);
      await used.resume();
      await used.touch();
      await used.commit();
      // Now 50 s of the absolute lifetime are left, less than the 60 s of inactivity.
      expect((await infos())[0]!.expiresAt).toBe(T0 + 100_000);
      if (backend === 'redis') expect(await storedExpiry(id)).toBe(T0 + 100_000);
    });

    it('GC collects absolutely expired sessions like inactive ones', async () => {
      await setUp({ absoluteTimeout: 100, inactivityTimeout: 3600, updateGracePeriod: 10, garbageCollection: NO_GC });
      const events: SessionEvent[] = [];
      manager.events$.subscribe((e) => events.push(e));
      const id = await loginFresh('alice');
      at(50);
      const active = request(id);
      await active.resume();
      await active.touch();
      await active.commit();
      const metadataKey = active.getStoredKey()!;
      const { storageId } = (await store.loadMetadata(metadataKey))!;
      const aliceTag = SessionStore.customTag(userTag('alice'));
      expect((await store.options.storageBackend.getByTag(storageId)).length).toBeGreaterThan(0);
      expect(await store.options.metadataBackend.findIdentifiersByTag(aliceTag)).toEqual([metadataKey]);
      if (backend === 'redis') expect((await sessionKeys(storageId, metadataKey)).length).toBeGreaterThan(1);
      at(99);
      expect(await manager.collectGarbage()).toBe(0);
      at(100);
      expect(await manager.collectGarbage()).toBe(1);
      expect(events.filter((e) => e.type === 'expired')).toHaveLength(1);
      expect(await alive(id)).toBe(false);
      // Gone from the stores, not only unreadable: metadata, data, the user's tag membership.
      expect(await store.options.metadataBackend.get(metadataKey)).toBeUndefined();
      expect(await store.options.storageBackend.getByTag(storageId)).toEqual([]);
      expect(await store.options.metadataBackend.findIdentifiersByTag(aliceTag)).toEqual([]);
      if (backend === 'redis') {
        // Redis would keep these keys for an hour of real time (their TTLs): GC itself deleted them.
        expect(await sessionKeys(storageId, metadataKey)).toEqual([]);
        expect(await redis.zScore(`${prefix}m:{}#expiry`, metadataKey)).toBeNull();
      }
      expect(await manager.collectGarbage()).toBe(0);
    });
  });

  describe('maxSessionsPerUser', () => {
    it("'evict-oldest': 10 parallel logins of one user with a cap of 3 leave exactly 3, the newest", async () => {
      await setUp({ maxSessionsPerUser: 3, garbageCollection: NO_GC });
      const events: SessionEvent[] = [];
      manager.events$.subscribe((e) => events.push(e));
      const ids = await Promise.all(Array.from({ length: 10 }, () => loginFresh('alice')));
      const sessions = await manager.getSessionsForUser('alice');
      expect(sessions).toHaveLength(3);
      const living: string[] = [];
      for (const id of ids) if (await alive(id)) living.push(id);
      expect(living).toHaveLength(3);
      expect(events.filter((e) => e.type === 'destroyed' && e.reason === 'evicted')).toHaveLength(7);
      // A later login evicts the oldest of the three (by login time).
      at(10);
      const newest = await loginFresh('alice');
      const after = await Promise.all(living.map(alive));
      expect(after.filter((a) => !a)).toHaveLength(1);
      expect(await alive(newest)).toBe(true);
      expect(await manager.getSessionsForUser('alice')).toHaveLength(3);
      // Other users are not affected.
      await loginFresh('bob');
      expect(await manager.getSessionsForUser('alice')).toHaveLength(3);
      expect(await manager.getSessionsForUser('bob')).toHaveLength(1);
    });

    it("'reject': of 10 parallel logins 3 succeed, 7 fail with SessionLimitReachedException and keep their anonymous session", async () => {
      await setUp({ maxSessionsPerUser: 3, maxSessionsPolicy: 'reject', garbageCollection: NO_GC });
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, async () => {
          const first = request();
          first.start();
          await first.putData('cart', ['book']);
          await first.commit();
          const login = request(first.getId());
          await login.resume();
          login.bindToUser('alice');
          try {
            await login.commit();
          } catch (error) {
            // The rejected login wrote nothing: the anonymous session is as it was.
            const again = request(first.getId());
            await again.resume();
            expect(again.isAnonymous()).toBe(true);
            expect(await again.getData('cart')).toEqual(['book']);
            throw error;
          }
        }),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(failures).toHaveLength(7);
      for (const failure of failures) {
        expect(failure.reason).toBeInstanceOf(SessionLimitReachedException);
        expect((failure.reason as SessionLimitReachedException).getStatus()).toBe(409);
      }
      expect(await manager.getSessionsForUser('alice')).toHaveLength(3);
    });

    it('does not count the session that logs in again, nor expired sessions', async () => {
      await setUp({
        maxSessionsPerUser: 2,
        maxSessionsPolicy: 'reject',
        inactivityTimeout: 100,
        updateGracePeriod: 10,
        garbageCollection: NO_GC,
      });
      const a = await loginFresh('alice');
      const b = await loginFresh('alice');
      const again = request(a);
      await again.resume();
      again.bindToUser('alice');
      await again.commit();
      expect(await alive(again.getId())).toBe(true);
      expect(await alive(b)).toBe(true);
      at(100); // both expired (not yet collected): a new login is admitted
      await expect(loginFresh('alice')).resolves.toEqual(expect.any(String));
    });
  });

  describe('device facts and "my devices"', () => {
    it("listUserSessions(): the user's sessions with device facts, handles only, current: true on the caller's own", async () => {
      await setUp({ garbageCollection: NO_GC });
      const laptop = await loginFresh('alice', { userAgent: `${FIREFOX}${'x'.repeat(300)}`, clientIp: '203.0.113.7' });
      at(5);
      const phone = await loginFresh('alice', { userAgent: 'Phone/1.0', clientIp: '2001:db8:1:2:3:4:5:6' });
      await loginFresh('bob', { userAgent: 'Bob/1.0', clientIp: '198.51.100.1' });
      at(6);
      const list = await context.run(request(laptop, { userAgent: FIREFOX }), () => manager.listUserSessions());
      expect(list).toHaveLength(2);
      const [mine, other] = [list.find((s) => s.current)!, list.find((s) => !s.current)!];
      expect(mine.userAgent).toHaveLength(200);
      expect(mine.userAgent!.startsWith(FIREFOX)).toBe(true);
      expect(mine.clientAddress).toBe('203.0.113.7');
      expect(mine.authenticatedAt).toBe(T0);
      expect(mine.createdAt).toBe(T0);
      expect(other).toMatchObject({ userAgent: 'Phone/1.0', clientAddress: '2001:db8:1:2::/64', authenticatedAt: T0 + 5000 });
      expect(list.map((s) => s.current)).toEqual([false, true]); // most recently active first
      const json = JSON.stringify(list);
      expect(json).not.toContain(laptop);
      expect(json).not.toContain(phone);
    });

    it('refreshes the facts when the metadata is written anyway, and costs no write of its own', async () => {
      await setUp({ updateGracePeriod: 60, garbageCollection: NO_GC });
      const id = await loginFresh('alice', { userAgent: 'Old/1.0', clientIp: '203.0.113.7' });
      const list = async () => (await context.run(request(id), () => manager.listUserSessions()))[0]!;
      at(30); // within the grace period: a read-only request writes nothing
      const quiet = request(id, { userAgent: 'New/2.0', clientIp: '203.0.113.8' });
      await quiet.resume();
      expect(quiet.isIdle()).toBe(true);
      await quiet.commit();
      expect((await list()).userAgent).toBe('Old/1.0');
      at(61); // the grace period is over: last activity is rewritten, and the facts with it
      const later = request(id, { userAgent: 'New/2.0', clientIp: '203.0.113.8' });
      await later.resume();
      await later.commit();
      expect(await list()).toMatchObject({ userAgent: 'New/2.0', clientAddress: '203.0.113.8', lastActivity: T0 + 61_000 });
    });

    it("destroyUserSession(handle): ends one of the user's own sessions; another user's handle is not found and stays", async () => {
      await setUp({ garbageCollection: NO_GC });
      const a1 = await loginFresh('alice');
      const a2 = await loginFresh('alice');
      const bob = await loginFresh('bob');
      const handleOfId = async (id: string) => {
        const s = request(id);
        await s.resume();
        return s.getHandle();
      };
      const bobHandle = await handleOfId(bob);
      await expect(context.run(request(a1), () => manager.destroyUserSession(bobHandle))).rejects.toBeInstanceOf(
        SessionNotFoundException,
      );
      await expect(context.run(request(a1), () => manager.destroyUserSession('not-a-handle'))).rejects.toBeInstanceOf(
        SessionNotFoundException,
      );
      expect(await alive(bob)).toBe(true);
      const a2Handle = await handleOfId(a2);
      await context.run(request(a1), () => manager.destroyUserSession(a2Handle));
      expect(await alive(a2)).toBe(false);
      expect(await alive(a1)).toBe(true);
      // An ended session's handle is not found any more.
      await expect(context.run(request(a1), () => manager.destroyUserSession(a2Handle))).rejects.toBeInstanceOf(
        SessionNotFoundException,
      );
      // The caller's own session by its handle: ended too.
      const a1Handle = await handleOfId(a1);
      await context.run(request(a1), () => manager.destroyUserSession(a1Handle));
      expect(await alive(a1)).toBe(false);
    });

    it("destroyOtherSessions(): ends all of the user's sessions but the current one", async () => {
      await setUp({ garbageCollection: NO_GC });
      const ids = await Promise.all([loginFresh('alice'), loginFresh('alice'), loginFresh('alice')]);
      const bob = await loginFresh('bob');
      const current = request(ids[1]);
      expect(await context.run(current, () => manager.destroyOtherSessions())).toBe(2);
      expect(await Promise.all(ids.map(alive))).toEqual([false, true, false]);
      expect(await alive(bob)).toBe(true);
      expect(await context.run(request(ids[1]), () => manager.destroyOtherSessions())).toBe(0);
    });

    it('need a logged-in request: anonymous or without a session, SessionNotAuthenticatedException', async () => {
      await setUp({ garbageCollection: NO_GC });
      const anonymous = request();
      anonymous.start();
      await anonymous.putData('k', 1);
      await anonymous.commit();
      for (const session of [request(), request(anonymous.getId())]) {
        await expect(context.run(session, () => manager.listUserSessions())).rejects.toBeInstanceOf(
          SessionNotAuthenticatedException,
        );
        await expect(context.run(session, () => manager.destroyOtherSessions())).rejects.toBeInstanceOf(
          SessionNotAuthenticatedException,
        );
        await expect(context.run(session, () => manager.destroyUserSession('x'))).rejects.toBeInstanceOf(
          SessionNotAuthenticatedException,
        );
      }
    });

    it("listSessions({ userId }) lists one user's sessions (admin)", async () => {
      await setUp({ garbageCollection: NO_GC });
      await loginFresh('alice');
      await loginFresh('alice');
      await loginFresh('bob');
      const users: Array<string | undefined> = [];
      for await (const info of manager.listSessions({ userId: 'alice' })) users.push(info.userId);
      expect(users).toEqual(['alice', 'alice']);
    });
  });

  describe('authentication age', () => {
    it('login marks the session authenticated; markAuthenticated() renews it, is stored, and does not extend the absolute lifetime', async () => {
      await setUp({ absoluteTimeout: 1000, garbageCollection: NO_GC });
      const anonymous = request();
      anonymous.start();
      expect(anonymous.getAuthenticatedAt()).toBeUndefined();
      const id = await loginFresh('alice');
      const s = request(id);
      await s.resume();
      expect(s.getAuthenticatedAt()).toBe(T0);
      at(400);
      s.markAuthenticated();
      expect(s.getAuthenticatedAt()).toBe(T0 + 400_000);
      await s.commit();
      const again = request(id);
      await again.resume();
      expect(again.getAuthenticatedAt()).toBe(T0 + 400_000);
      at(1000);
      expect(await alive(id)).toBe(false);
    });

    it('markAuthenticated() is refused on remote sessions', async () => {
      await setUp({ garbageCollection: NO_GC });
      const id = await loginFresh('alice');
      const remote = await manager.getSession(id);
      expect(() => (remote as Session).markAuthenticated()).toThrow(OperationNotSupportedException);
    });
  });
});
