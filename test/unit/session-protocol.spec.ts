import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import {
  FlashBag,
  MemoryLocker,
  SessionBagRegistry,
  SessionDestroyedException,
  type SessionLocker,
  type SessionModuleOptions,
} from 'nest-session';
import type { SessionLock } from '../../lib/locking/session-locker.interface.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { Session } from '../../lib/session/session.js';
import type { SessionEvent } from '../../lib/session/session-events.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { created, resumed } from '../support/session-requests.js';
import { createTestSessionStores, type SessionBackendName, type TestSessionStores } from '../support/session-backends.js';

/**
 * The write protocol of issue 11 as a Session sees it (items 2, 3, 8, 12 and the robust
 * destroy), on every backend: requests are Session objects built the way the HTTP layer
 * builds them.
 */
describe.each<SessionBackendName>(['memory', 'redis'])('session write protocol on %s', (backend) => {
  let stores: TestSessionStores;
  /** The locker every store of this suite uses (Redis: the suite's own; memory: one per suite). */
  let locker: SessionLocker;

  beforeAll(async () => {
    stores = await createTestSessionStores(backend);
    locker = stores.locker ?? new MemoryLocker();
  });
  afterAll(async () => {
    await Promise.all([stores.metadataBackend.close?.(), stores.storageBackend.close?.(), locker.close?.()]);
  });
  afterEach(() => {
    jest.restoreAllMocks();
    jest.useRealTimers();
  });

  function makeStore(options: SessionModuleOptions = {}): SessionStore {
    const bags = new SessionBagRegistry();
    bags.register(() => new FlashBag());
    const { metadataBackend, storageBackend } = stores;
    return new SessionStore(
      resolveSessionOptions({ metadataBackend, storageBackend, locker, lock: { waitTimeout: 2000, ttl: 5000 }, ...options }),
      bags,
    );
  }

  async function isLive(store: SessionStore, id: string): Promise<boolean> {
    const session = new Session(store, { cookieIds: [id], cookieName: 'sid' });
    await session.resume();
    return session.isStarted();
  }

  describe('item 2: a discarded regenerate(true) undoes the storage move', () => {
    it('open(); regenerate(true); unlock() keeps every value, under the old id and after the next commit', async () => {
      const store = makeStore();
      const oldId = await created(store, { cart: ['book'], n: 1 });
      const session = await resumed(store, oldId);
      await session.open();
      await session.regenerate(true);
      await session.unlock();
      expect(await session.getAllData()).toEqual({ cart: ['book'], n: 1 });
      // Nothing was committed: the old id is valid as before, with its data.
      expect(await (await resumed(store, oldId)).getAllData()).toEqual({ cart: ['book'], n: 1 });
      // The request ends (the HTTP layer commits what is pending: the renewal only).
      await session.commit();
      expect(await (await resumed(store, session.getId(), oldId)).getAllData()).toEqual({ cart: ['book'], n: 1 });
    });

    it('regenerate(true) followed by a failed save() keeps every value', async () => {
      const store = makeStore();
      const oldId = await created(store, { cart: ['book'] });
      const session = await resumed(store, oldId);
      await session.open();
      await session.regenerate(true);
      await session.putData('extra', 1);
      // The store fails at the commit's first write (nothing reached it; a failure after the old
      // id's removal logs the client out by design, issue 11 item 6).
      const { metadataBackend } = stores;
      for (const method of ['set', 'remove', 'write'] as const) {
        jest.spyOn(metadataBackend, method).mockRejectedValueOnce(new Error('connection lost'));
      }
      await expect(session.save()).rejects.toThrow();
      jest.restoreAllMocks();
      expect(await session.getAllData()).toEqual({ cart: ['book'] });
      await session.commit();
      expect(await (await resumed(store, session.getId(), oldId)).getAllData()).toEqual({ cart: ['book'] });
    });

    it('a committed regenerate(true) moves the data: the old id and storage are gone, the new one has everything', async () => {
      const store = makeStore();
      const oldId = await created(store, { cart: ['book'] });
      const before = await stores.storageEntries();
      const session = await resumed(store, oldId);
      await session.regenerate(true);
      await session.putData('n', 2);
      await session.commit();
      expect(session.getId()).not.toBe(oldId);
      expect(await isLive(store, oldId)).toBe(false);
      expect(await (await resumed(store, session.getId())).getAllData()).toEqual({ cart: ['book'], n: 2 });
      // The old storage (entries and guard) was flushed: one entry more (n), not a second copy.
      expect(await stores.storageEntries()).toBe(before + 1);
    });
  });

  describe('item 3: regenerate(true) keeps what mergeable bags hold', () => {
    it("a flash bag keeps the stored messages, this request's and a concurrent request's", async () => {
      const store = makeStore();
      const first = new Session(store, { cookieIds: [], cookieName: 'sid' });
      first.start();
      (await first.getBag<FlashBag>('flashes')).add('info', 'stored');
      await first.commit();
      const id = first.getId();

      const session = await resumed(store, id);
      (await session.getBag<FlashBag>('flashes')).add('info', 'mine');
      const other = await resumed(store, id);
      (await other.getBag<FlashBag>('flashes')).add('info', 'theirs');
      await other.commit();
      await session.regenerate(true);
      await session.commit();

      const next = await resumed(store, session.getId());
      expect((await next.getBag<FlashBag>('flashes')).peek('info')).toEqual(['stored', 'theirs', 'mine']);
    });
  });

  describe('item 8: a lifetime at or below the update grace period', () => {
    it('setTTL(2) with updateGracePeriod 60: a session used every second for 10 s stays alive', async () => {
      fakeOnlyDate();
      const store = makeStore({ updateGracePeriod: 60 });
      const id = await created(store, { a: 1 });
      const setup = await resumed(store, id);
      setup.setTTL(2);
      await setup.commit();
      for (let second = 1; second <= 10; second++) {
        jest.setSystemTime(Date.now() + 1000);
        const request = await resumed(store, id);
        expect(await request.getData('a')).toBe(1);
        await request.commit();
      }
      // Unused for longer than its lifetime, it expires.
      jest.setSystemTime(Date.now() + 2001);
      expect(await isLive(store, id)).toBe(false);
    });

    it('the metadata bag reports the shortened update threshold', async () => {
      const store = makeStore({ updateGracePeriod: 60 });
      const session = await resumed(store, await created(store, { a: 1 }));
      expect(session.getMetadataBag().getUpdateThreshold()).toBe(60);
      session.setTTL(2);
      expect(session.getMetadataBag().getUpdateThreshold()).toBe(1);
    });
  });

  describe('item 12: login moves the session to a fresh storage id', () => {
    it('a request resumed before the login can neither write nor read what the login wrote', async () => {
      const store = makeStore();
      const oldId = await created(store, { cart: ['book'] });
      const inFlight = await resumed(store, oldId);
      const login = await resumed(store, oldId);
      login.bindToUser('alice');
      await login.putData('role', 'admin');
      await login.commit();
      expect(login.getId()).not.toBe(oldId);

      // The request under the pre-login id cannot read the login's data ...
      expect(await inFlight.getData('role')).toBeUndefined();
      // ... and its write is refused (the old storage is gone) or lands nowhere reachable.
      await inFlight.putData('note', 'planted');
      const outcome = await inFlight.commit().then(
        () => 'written',
        (error: unknown) => error,
      );
      if (outcome !== 'written') expect(outcome).toBeInstanceOf(SessionDestroyedException);

      const loggedIn = await resumed(store, login.getId());
      expect(loggedIn.getUserId()).toBe('alice');
      expect(await loggedIn.getAllData()).toEqual({ cart: ['book'], role: 'admin' });
      expect(await isLive(store, oldId)).toBe(false);
    });

    it('a locked request under the pre-login id that commits after the login gets SessionDestroyedException', async () => {
      const store = makeStore();
      const oldId = await created(store, { cart: ['book'] });
      const inFlight = await resumed(store, oldId);
      const login = await resumed(store, oldId);
      login.bindToUser('alice');
      await login.commit();
      await inFlight.putData('cart', ['stolen']);
      await expect(inFlight.commit()).rejects.toBeInstanceOf(SessionDestroyedException);
      expect(await (await resumed(store, login.getId())).getAllData()).toEqual({ cart: ['book'] });
    });

    it('the login copies under the old storage lock: a write of a request holding it is moved along', async () => {
      const store = makeStore();
      const oldId = await created(store, { cart: ['book'] });
      const holder = await resumed(store, oldId);
      await holder.open();
      const login = await resumed(store, oldId);
      login.bindToUser('alice');
      const loggingIn = login.commit(); // waits for the holder's lock
      await holder.putData('cart', ['book', 'pen']);
      await holder.save();
      await loggingIn;
      expect(await (await resumed(store, login.getId())).getAllData()).toEqual({ cart: ['book', 'pen'] });
    });

    it.each(['bindToUser', 'regenerate(true)'])('%s under open(), then save(): the next request can write', async (move) => {
      const store = makeStore();
      const oldId = await created(store, { n: 1 });
      // A few lock generations on the old storage, so its fences are ahead of a fresh key's.
      for (let i = 0; i < 3; i++) {
        const before = await resumed(store, oldId);
        await before.open();
        await before.unlock();
      }
      const session = await resumed(store, oldId);
      await session.open();
      if (move === 'bindToUser') session.bindToUser('alice');
      else await session.regenerate(true);
      await session.putData('n', 2);
      await session.save();
      const next = await resumed(store, session.getId());
      await next.putData('n', 3);
      await next.commit();
      expect(await (await resumed(store, session.getId())).getData('n')).toBe(3);
    });

    it('bindToUser on a brand-new session does no useless work: no renewal, no copy, no flush, no lock', async () => {
      const store = makeStore();
      const session = new Session(store, { cookieIds: [], cookieName: 'sid' });
      session.start();
      const id = session.getId();
      const acquire = jest.spyOn(locker, 'acquire');
      const flush = jest.spyOn(stores.storageBackend, 'flushByTag');
      const loadAll = jest.spyOn(stores.storageBackend, 'getByTag');
      session.bindToUser('bob');
      await session.putData('a', 1);
      await session.commit();
      expect(session.getId()).toBe(id);
      expect(acquire).not.toHaveBeenCalled();
      expect(flush).not.toHaveBeenCalled();
      expect(loadAll).not.toHaveBeenCalled();
      const next = await resumed(store, id);
      expect(next.getUserId()).toBe('bob');
      expect(await next.getAllData()).toEqual({ a: 1 });
    });
  });

  /** Every store write fails until the returned function is called (an outage during a save). */
  function breakWrites(): () => void {
    for (const backend of [stores.metadataBackend, stores.storageBackend]) {
      for (const method of ['set', 'remove', 'write', 'flushByTag'] as const) {
        if (typeof backend[method] === 'function') jest.spyOn(backend, method).mockRejectedValue(new Error('connection lost'));
      }
    }
    return () => jest.restoreAllMocks();
  }

  describe('discarded changes: unlock() and a failed save() undo them alike on new and stored sessions', () => {
    it.each(['unlock()', 'a failed save()'])(
      'a session never stored forgets its tags, user and flashes after %s',
      async (how) => {
        const store = makeStore();
        const session = new Session(store, { cookieIds: [], cookieName: 'sid' });
        session.start();
        await session.addTag('t1');
        session.bindToUser('u0');
        (await session.getBag<FlashBag>('flashes')).add('info', 'discarded');
        if (how === 'unlock()') {
          await session.unlock();
        } else {
          const restore = breakWrites();
          await expect(session.save()).rejects.toThrow();
          restore();
        }
        expect(session.getTags()).toEqual([]);
        expect(session.getUserId()).toBeUndefined();
        expect((await session.getBag<FlashBag>('flashes')).peekAll()).toEqual({});
        await session.addTag('t0');
        await session.commit();
        const next = await resumed(store, session.getId());
        expect(next.getTags()).toEqual(['t0']);
        expect(next.getUserId()).toBeUndefined();
        expect((await next.getBag<FlashBag>('flashes')).peekAll()).toEqual({});
      },
    );

    it('a stored session forgets its flashes after unlock(); a message added afterwards is stored alone', async () => {
      const store = makeStore();
      const id = await created(store, { a: 1 });
      const session = await resumed(store, id);
      await session.open();
      (await session.getBag<FlashBag>('flashes')).add('info', 'discarded');
      await session.unlock();
      const other = await resumed(store, id);
      (await other.getBag<FlashBag>('flashes')).add('info', 'theirs');
      await other.commit();
      (await session.getBag<FlashBag>('flashes')).add('info', 'kept');
      await session.commit();
      expect((await (await resumed(store, id)).getBag<FlashBag>('flashes')).peek('info')).toEqual(['theirs', 'kept']);
    });
  });

  describe('open() keeps what the request put into its bags before it', () => {
    it("a flash added before open() survives the reload, on top of another request's", async () => {
      const store = makeStore();
      const id = await created(store, { a: 1 });
      const session = await resumed(store, id);
      (await session.getBag<FlashBag>('flashes')).add('info', 'mine');
      const other = await resumed(store, id);
      (await other.getBag<FlashBag>('flashes')).add('info', 'theirs');
      await other.commit();
      await session.open();
      expect((await session.getBag<FlashBag>('flashes')).peek('info')).toEqual(['theirs', 'mine']);
      await session.save();
      expect((await (await resumed(store, id)).getBag<FlashBag>('flashes')).peek('info')).toEqual(['theirs', 'mine']);
    });
  });

  describe('a commit acknowledges what it wrote of a mergeable bag', () => {
    it('messages already written are not merged in again by a later commit of the same request', async () => {
      const store = makeStore();
      const id = await created(store, { a: 1 });
      const session = await resumed(store, id);
      (await session.getBag<FlashBag>('flashes')).add('info', 'm1');
      await session.save();
      const other = await resumed(store, id);
      (await other.getBag<FlashBag>('flashes')).add('info', 'm2');
      await other.commit();
      (await session.getBag<FlashBag>('flashes')).add('info', 'm3');
      await session.commit();
      expect((await (await resumed(store, id)).getBag<FlashBag>('flashes')).peek('info')).toEqual(['m1', 'm2', 'm3']);
    });

    it('a message stored and then read by the same request counts as consumed', async () => {
      const store = makeStore();
      const id = await created(store, { a: 1 });
      const session = await resumed(store, id);
      const flashes = await session.getBag<FlashBag>('flashes');
      flashes.add('info', 'm1');
      await session.save();
      expect(flashes.get('info')).toEqual(['m1']);
      const other = await resumed(store, id);
      (await other.getBag<FlashBag>('flashes')).add('info', 'm2');
      await other.commit();
      await session.commit();
      expect((await (await resumed(store, id)).getBag<FlashBag>('flashes')).peek('info')).toEqual(['m2']);
    });
  });

  describe('destroy() forgets the bags', () => {
    it('a flash added before destroy() does not reach the next session of the same request', async () => {
      const store = makeStore();
      const id = await created(store, { a: 1 });
      const session = await resumed(store, id);
      (await session.getBag<FlashBag>('flashes')).add('info', 'from the old session');
      await session.destroy('logout');
      session.bindToUser('u0');
      expect((await session.getBag<FlashBag>('flashes')).peekAll()).toEqual({});
      await session.commit();
      expect((await (await resumed(store, session.getId())).getBag<FlashBag>('flashes')).peekAll()).toEqual({});
    });
  });

  describe('destroy() under an id another request renewed away', () => {
    it('leaves the renewed session and its data alone (the renewal kept the storage id)', async () => {
      const store = makeStore();
      const oldId = await created(store, { cart: ['book'] });
      const stale = await resumed(store, oldId);
      const renewing = await resumed(store, oldId);
      renewing.renewId();
      await renewing.commit();
      await stale.destroy('logout');
      expect(await isLive(store, oldId)).toBe(false);
      const next = await resumed(store, renewing.getId());
      expect(await next.getAllData()).toEqual({ cart: ['book'] });
      // Its storage guard is intact: the next commit is not refused.
      await next.putData('n', 1);
      await next.commit();
      expect(await (await resumed(store, renewing.getId())).getAllData()).toEqual({ cart: ['book'], n: 1 });
    });
  });

  describe('H1: destroy() is robust against a failed lock release', () => {
    /** The suite's locker, but every release fails after releasing (a reply lost on the way back). */
    function failingReleases(): SessionLocker {
      return {
        acquire: async (key, options): Promise<SessionLock> => {
          const lock = await locker.acquire(key, options);
          return {
            key: lock.key,
            token: lock.token,
            fence: lock.fence,
            extend: (ttl: number) => lock.extend(ttl),
            release: async () => {
              await lock.release();
              throw new Error('connection reset');
            },
          };
        },
      };
    }

    it.each([
      ['a short lock', false],
      ['the lock held by open()', true],
    ])('destroy() under %s emits the event and resets the session when the release fails', async (_name, held) => {
      const store = makeStore({ locker: failingReleases() });
      const id = await created(store, { a: 1 });
      const events: SessionEvent[] = [];
      const subscription = store.events.events$.subscribe((event) => events.push(event));
      const session = await resumed(store, id);
      if (held) await session.open();
      await expect(session.destroy('logout')).resolves.toBeUndefined();
      subscription.unsubscribe();
      expect(events.map((event) => event.type)).toEqual(['destroyed']);
      expect(session.isStarted()).toBe(false);
      expect(session.getCookieFacts().destroyed).toBe(true);
      expect(await isLive(store, id)).toBe(false);
    });
  });
});
