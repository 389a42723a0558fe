import { beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Test } from '@nestjs/testing';
import {
  DataNotSerializableException,
  InvalidArgumentException,
  InvalidOptionException,
  LockException,
  LockTimeoutException,
  MemoryBackend,
  OperationNotSupportedException,
  SessionInterface,
  SessionModule,
  SessionNotStartedException,
  SessionOutsideRequestException,
  StoreUnavailableException,
  type SessionModuleOptions,
} from 'nest-session';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { SessionContext } from '../../lib/session/session.context.js';
import { SessionManager } from '../../lib/manager/session.manager.js';
import { handleOf, metadataKeyOf } from '../../lib/session/session-key.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { created, resumed } from '../support/session-requests.js';

function makeStore(options: SessionModuleOptions = {}): SessionStore {
  return new SessionStore(resolveSessionOptions({ lock: { waitTimeout: 200, ttl: 2000 }, ...options }));
}

describe('Session', () => {
  let store: SessionStore;
  beforeEach(() => {
    store = makeStore();
  });

  it('round-trips Date, Map, Set and BigInt', async () => {
    const value = { when: new Date(5), map: new Map([['a', 1]]), set: new Set([1, 2]), big: 10n ** 20n };
    const id = await created(store, { value });
    const session = await resumed(store, id);
    expect(await session.getData('value')).toEqual(value);
  });

  it.each<[string, unknown]>([
    ['a function', () => 1],
    ['a symbol', Symbol('x')],
    [
      'a class instance',
      new (class Cart {
        readonly items: string[] = [];
      })(),
    ],
    [
      'a cyclic object',
      (() => {
        const o: Record<string, unknown> = {};
        o.o = o;
        return o;
      })(),
    ],
    ['an object with __proto__', JSON.parse('{"__proto__": {"polluted": true}}')],
  ])('putData rejects %s with DataNotSerializableException at once', async (_name, value) => {
    const session = new Session(store, { cookieIds: [], cookieName: 'sid' });
    session.start();
    await expect(session.putData('k', value)).rejects.toBeInstanceOf(DataNotSerializableException);
    expect(await session.hasKey('k')).toBe(false);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('validates keys and tags, and needs a started session', async () => {
    const session = new Session(store, { cookieIds: [], cookieName: 'sid' });
    await expect(session.getData('k')).rejects.toBeInstanceOf(SessionNotStartedException);
    expect(() => session.getId()).toThrow(SessionNotStartedException);
    session.start();
    await expect(session.putData('bad key', 1)).rejects.toBeInstanceOf(InvalidArgumentException);
    await expect(session.addTag('no spaces')).rejects.toBeInstanceOf(InvalidArgumentException);
    await expect(session.putData('~internal', 1)).rejects.toBeInstanceOf(InvalidArgumentException);
  });

  it('tags: add, remove, and concurrent tag changes merge at commit', async () => {
    const id = await created(store, { a: 1 });
    const one = await resumed(store, id);
    const two = await resumed(store, id);
    await one.addTag('t1');
    await two.addTag('t2');
    await one.commit();
    await two.commit();
    expect((await resumed(store, id)).getTags().sort()).toEqual(['t1', 't2']);
  });

  it('an expired session cannot be resumed', async () => {
    fakeOnlyDate();
    try {
      const short = makeStore({ inactivityTimeout: 10, updateGracePeriod: 1 });
      const id = await created(short, { a: 1 });
      jest.setSystemTime(Date.now() + 9_000);
      await resumed(short, id); // still alive; touching it extends it (grace period passed)
      const s = await resumed(short, id);
      await s.commit();
      jest.setSystemTime(Date.now() + 10_001);
      const late = new Session(short, { cookieIds: [id], cookieName: 'sid' });
      expect(await late.resume()).toBeUndefined();
      expect(late.isStarted()).toBe(false);
    } finally {
      jest.useRealTimers();
    }
  });

  it('ids are hashed at rest: the store knows a session by a digest, its handle is no cookie (issue 11 item 10)', async () => {
    const metadataBackend = new MemoryBackend();
    const hashed = makeStore({ metadataBackend });
    const id = await created(hashed, { a: 1 });
    const key = metadataKeyOf(id);
    expect(await metadataBackend.has(id)).toBe(false);
    expect(await metadataBackend.has(key)).toBe(true);
    expect(key).not.toContain(id);
    expect(JSON.stringify(await metadataBackend.get(key))).not.toContain(id);
    const session = await resumed(hashed, id);
    const handle = session.getHandle();
    expect(handle).toBe(handleOf(key));
    expect(handle).toHaveLength(16);
    expect(key).toContain(handle); // the key's group: the O(1) handle index
    expect(key.split('.')[1]).not.toContain(handle);

    // Neither the handle nor the key (nor its digest part) works as a cookie.
    for (const cookie of [handle, key, key.split('.')[1]!, 'h:' + handle]) {
      const stranger = new Session(hashed, { cookieIds: [cookie], cookieName: 'sid' });
      expect(await stranger.canBeResumed()).toBe(false);
      expect(await stranger.resume()).toBeUndefined();
      expect(stranger.isStarted()).toBe(false);
    }

    // A session known by its key only (as listings find it) has no id to tell, and works.
    const meta = (await hashed.loadMetadata(key))!;
    const byKey = Session.fromMetadata(hashed, { key }, meta, { cookieIds: [], cookieName: 'sid', remote: true });
    expect(() => byKey.getId()).toThrow(OperationNotSupportedException);
    expect(byKey.getHandle()).toBe(handle);
    expect(await byKey.getData('a')).toBe(1);
    await byKey.putData('b', 2);
    expect(await (await resumed(hashed, id)).getData('b')).toBe(2);
    await byKey.destroy();
    expect(await metadataBackend.has(key)).toBe(false);
    expect(await new Session(hashed, { cookieIds: [id], cookieName: 'sid' }).canBeResumed()).toBe(false);
  });

  it('the handle follows renewals; the old handle finds nothing', async () => {
    const renewStore = makeStore();
    const manager = new SessionManager(renewStore, new SessionContext());
    const id = await created(renewStore, { a: 1 });
    const session = await resumed(renewStore, id);
    const before = session.getHandle();
    const newId = session.renewId();
    expect(session.getHandle()).toBe(handleOf(metadataKeyOf(newId)));
    await session.commit();
    expect(await manager.getSessionByHandle(before)).toBeUndefined();
    expect(await (await manager.getSessionByHandle(session.getHandle()))!.getData('a')).toBe(1);
  });

  it('renewId on a remote session throws OperationNotSupportedException', async () => {
    const id = await created(store, { a: 1 });
    const meta = (await store.loadMetadata(metadataKeyOf(id)))!;
    const remote = Session.fromMetadata(store, id, meta, { cookieIds: [], cookieName: 'sid', remote: true });
    expect(remote.isRemote()).toBe(true);
    expect(() => remote.renewId()).toThrow(OperationNotSupportedException);
    await remote.putData('b', 2); // writes through
    expect(await (await resumed(store, id)).getData('b')).toBe(2);
  });

  it('a renewal whose removal of the old id fails publishes no new id (issue 11 item 6); the old id keeps the data', async () => {
    fakeOnlyDate();
    try {
      const metadataBackend = new MemoryBackend();
      const renewing = makeStore({ metadataBackend, inactivityTimeout: 100, updateGracePeriod: 10 });
      const manager = new SessionManager(renewing, new SessionContext());
      const oldId = await created(renewing, { cart: ['book'] });
      jest.setSystemTime(Date.now() + 50_000);
      const session = await resumed(renewing, oldId);
      const newId = session.renewId();
      const remove = metadataBackend.remove.bind(metadataBackend);
      metadataBackend.remove = () => Promise.reject(new Error('connection reset'));
      await expect(session.commit()).rejects.toBeInstanceOf(StoreUnavailableException);
      metadataBackend.remove = remove;
      // The old id is killed first: its removal failed, so the new id was never written.
      expect(await renewing.loadMetadata(metadataKeyOf(newId))).toBeUndefined();
      expect(await (await resumed(renewing, oldId)).getData('cart')).toEqual(['book']);
      jest.setSystemTime(Date.now() + 60_000);
      expect(await manager.collectGarbage()).toBe(1);
    } finally {
      jest.useRealTimers();
    }
  });

  describe('Aerys locking', () => {
    it('open() takes the lock, then reads fresh data; save() writes and unlocks', async () => {
      const id = await created(store, { n: 1 });
      const session = await resumed(store, id);
      expect(await session.getData('n')).toBe(1);
      const other = await resumed(store, id);
      await other.putData('n', 5);
      await other.commit();
      await session.open();
      expect(session.getLockState()).toBe('locked');
      expect(await session.getData('n')).toBe(5); // read after the lock, not before
      await session.putData('n', 6);
      await session.save();
      expect(session.getLockState()).toBe('unlocked');
      expect(await (await resumed(store, id)).getData('n')).toBe(6);
    });

    it('is pending while waiting; every operation but unlock() throws LockException then', async () => {
      const id = await created(store, { n: 1 });
      const holder = await resumed(store, id);
      await holder.open();
      const waiter = await resumed(store, id);
      const opening = waiter.open();
      expect(waiter.getLockState()).toBe('pending');
      await expect(waiter.getData('n')).rejects.toBeInstanceOf(LockException);
      await expect(waiter.putData('n', 2)).rejects.toBeInstanceOf(LockException);
      expect(() => waiter.renewId()).toThrow(LockException);
      await expect(waiter.save()).rejects.toBeInstanceOf(LockException);
      await holder.save();
      await opening;
      expect(waiter.getLockState()).toBe('locked');
      await waiter.unlock();
      expect(waiter.getLockState()).toBe('unlocked');
    });

    it('open() that cannot get the lock in time throws LockTimeoutException and is unlocked after', async () => {
      const id = await created(store, { n: 1 });
      const holder = await resumed(store, id);
      await holder.open();
      const waiter = await resumed(store, id);
      await expect(waiter.open()).rejects.toBeInstanceOf(LockTimeoutException);
      expect(waiter.getLockState()).toBe('unlocked');
      await holder.unlock();
    });

    it('unlock() discards changes and re-reads', async () => {
      const id = await created(store, { n: 1 });
      const session = await resumed(store, id);
      await session.open();
      await session.putData('n', 99);
      await session.unlock();
      expect(await session.getData('n')).toBe(1);
      await session.commit();
      expect(await (await resumed(store, id)).getData('n')).toBe(1);
    });

    it('a failed save reloads the old contents and the error reaches the caller', async () => {
      const storageBackend = new MemoryBackend();
      const failing = makeStore({ storageBackend });
      const id = await created(failing, { n: 1 });
      const session = await resumed(failing, id);
      await session.open();
      await session.putData('n', 2);
      const write = storageBackend.write.bind(storageBackend);
      storageBackend.write = () => Promise.reject(new Error('connection lost'));
      await expect(session.save()).rejects.toBeInstanceOf(StoreUnavailableException);
      storageBackend.write = write;
      expect(session.getLockState()).toBe('unlocked');
      expect(await session.getData('n')).toBe(1);
      // And the lock was released: another client can lock at once.
      const other = await resumed(failing, id);
      await other.open();
      await other.unlock();
    });

    it('a holder whose lock expired cannot overwrite newer data (fencing)', async () => {
      const fenced = makeStore({ lock: { waitTimeout: 1000, ttl: 50 } });
      const id = await created(fenced, { n: 1 });
      const slow = await resumed(fenced, id);
      await slow.open();
      await slow.putData('n', 'stale');
      await new Promise((r) => setTimeout(r, 80)); // its lock expires
      const fast = await resumed(fenced, id);
      await fast.open();
      await fast.putData('n', 'fresh');
      await fast.save();
      await expect(slow.save()).rejects.toBeInstanceOf(LockException);
      expect(await (await resumed(fenced, id)).getData('n')).toBe('fresh');
    });
  });
});

describe('SessionModule', () => {
  it('fails at boot with a message that names a bad option', async () => {
    expect(() => resolveSessionOptions({ inactivityTimeout: -1 })).toThrow(/"inactivityTimeout"/);
    expect(() => resolveSessionOptions({ cookie: { name: 'bad name' } })).toThrow(InvalidOptionException);
    expect(() => resolveSessionOptions({ cookie: { sameSite: 'none', secure: false } })).toThrow(/cookie.sameSite/);
    expect(() => resolveSessionOptions({ updateGracePeriod: 4000 })).toThrow(/updateGracePeriod/);
    await expect(
      Test.createTestingModule({ imports: [SessionModule.forRoot({ lock: { waitTimeout: 0 } })] }).compile(),
    ).rejects.toThrow(/"lock.waitTimeout"/);
  });

  it('forRootAsync builds the options with a factory', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [SessionModule.forRootAsync({ useFactory: () => ({ cookie: { name: 'app_sid' } }) })],
    }).compile();
    expect(moduleRef.get(SessionStore).options.cookie.name).toBe('app_sid');
    await moduleRef.close();
  });

  it('the injected SessionInterface outside a request throws SessionOutsideRequestException', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [SessionModule.forRoot({})] }).compile();
    const session = moduleRef.get<SessionInterface>(SessionInterface);
    expect(() => session.isStarted()).toThrow(SessionOutsideRequestException);
    expect(() => session.isStarted()).toThrow(/no current HTTP request.*SessionManager/);
    await moduleRef.close();
  });
});
