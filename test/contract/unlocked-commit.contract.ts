import { expect, it, jest } from '@jest/globals';
import { FlashBag } from '../../lib/bags/flash.bag.js';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { LockException } from '../../lib/errors/lock.exception.js';
import { SessionLimitExceededException } from '../../lib/errors/session-limit-exceeded.exception.js';
import type { TaggableBackend } from '../../lib/cache/taggable-backend.interface.js';
import type { SessionLocker } from '../../lib/locking/session-locker.interface.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { Session } from '../../lib/session/session.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { created, resumed } from '../support/session-requests.js';

/** The stores of one engine, as its factory makes them (the storage backend checks the locker's locks). */
export interface UnlockedCommitStores {
  readonly metadataBackend: TaggableBackend;
  readonly storageBackend: TaggableBackend;
  readonly locker: SessionLocker;
}

/**
 * The properties an unlocked commit (`WriteGuard.unlocked`: the lock check and a fresh fence
 * inside the engine's atomic write) must keep from "acquire, write, release". Call inside a
 * `describe` whose `beforeAll` has set up the stores; `name` is the engine as its factory is
 * named (`Redis`, `Postgres`), `bare()` a backend of that engine made without a locker.
 */
export function unlockedCommitContract(
  name: string,
  s: () => UnlockedCommitStores,
  store: () => SessionStore,
  bare: () => TaggableBackend,
  /** Whether the engine also commits metadata and moves storage without the lock (`SessionStore.commitsUnlocked`). */
  lockFree = true,
  /** Whether its storage backend checks a move's source lock inside the copy (`copiesUnlocked`). */
  copies = false,
): void {
  const storageIdOf = async (id: string): Promise<string> => (await store().loadMetadata(metadataKeyOf(id)))!.storageId;
  const guardFence = async (storageId: string): Promise<number> => Number(await s().storageBackend.get(`${storageId}.~guard`));

  it(`the storage backend of the ${name} session stores checks the locks of its locker`, () => {
    expect(s().storageBackend.checksLocksOf).toBe(s().locker);
    expect(s().metadataBackend.checksLocksOf).toBeUndefined();
    expect(store().writesUnlocked).toBe(true);
  });

  it('while another request holds the lock, an unlocked write writes nothing and answers "locked"', async () => {
    const id = await created(store(), { a: 1 });
    const storageId = await storageIdOf(id);
    const lock = await s().locker.acquire(storageId, { ttl: 5000, waitTimeout: 0 });
    try {
      const result = await s().storageBackend.write(
        { sets: [{ id: `${storageId}.a`, data: '2', tags: [storageId] }] },
        { id: `${storageId}.~guard`, fence: 0, unlocked: true },
      );
      expect(result).toBe('locked');
      expect(await (await resumed(store(), id)).getAllData()).toEqual({ a: 1 });
    } finally {
      await lock.release();
    }
  });

  it('draws a fence above every fence the lock handed out, and below the next holder’s', async () => {
    const id = await created(store(), { a: 1 });
    const storageId = await storageIdOf(id);
    const first = await s().locker.acquire(storageId, { ttl: 5000, waitTimeout: 0 });
    await first.release();
    const session = await resumed(store(), id);
    await session.putData('a', 2);
    await session.commit();
    const drawn = await guardFence(storageId);
    expect(drawn).toBeGreaterThan(first.fence);
    const next = await s().locker.acquire(storageId, { ttl: 5000, waitTimeout: 0 });
    expect(next.fence).toBeGreaterThan(drawn);
    await next.release();
  });

  it('fences off an older holder whose lock expired: its later commit answers LockException and loses nothing', async () => {
    const id = await created(store(), { a: 1 });
    const slow = await resumed(store(), id);
    await slow.open({ ttl: 300 }); // the lock expires while this request still works
    await slow.putData('a', 'stale');
    await new Promise((resolve) => setTimeout(resolve, 400));
    const quick = await resumed(store(), id);
    await quick.putData('b', 'fresh');
    await quick.commit(); // unlocked: the lock expired, so it is free
    await expect(slow.save()).rejects.toBeInstanceOf(LockException);
    expect(await (await resumed(store(), id)).getAllData()).toEqual({ a: 1, b: 'fresh' });
  });

  it('a plain commit while another request holds the lock waits for it (FIFO), then writes: no lost update', async () => {
    const id = await created(store(), { n: 0 });
    const holder = await resumed(store(), id);
    await holder.open();
    const other = await resumed(store(), id);
    await other.putData('other', true);
    let committed = false;
    const pending = other.commit().then(() => (committed = true));
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(committed).toBe(false); // queued behind the holder
    await holder.putData('n', 1);
    await holder.save();
    await pending;
    expect(await (await resumed(store(), id)).getAllData()).toEqual({ n: 1, other: true });
  });

  it('a destroyed session’s unlocked commit writes nothing back', async () => {
    const id = await created(store(), { a: 1 });
    const storageId = await storageIdOf(id);
    const late = await resumed(store(), id);
    await late.putData('a', 2);
    const killer = await resumed(store(), id);
    await killer.destroy();
    await expect(late.commit()).rejects.toThrow();
    expect(await s().storageBackend.findIdentifiersByTag(storageId)).toEqual([]);
  });

  it(`a backend without a locker refuses unlocked writes, and a store with another locker never asks for them`, async () => {
    await expect(bare().write({}, { id: 'x.~guard', fence: 0, unlocked: true })).rejects.toBeInstanceOf(InvalidArgumentException);
    const { metadataBackend, storageBackend } = s();
    const mixed = new SessionStore(resolveSessionOptions({ metadataBackend, storageBackend }));
    expect(mixed.writesUnlocked).toBe(false); // the default MemoryLocker's locks are not in the engine's store
    expect(new Session(mixed, { cookieIds: [], cookieName: 'sid' }).isStarted()).toBe(false);
  });

  it(`${name}: maxKeysPerSession is enforced inside the engine's write (no read first): 413, nothing written, bags not counted against it`, async () => {
    const { metadataBackend, storageBackend, locker } = s();
    const capped = new SessionStore(resolveSessionOptions({ metadataBackend, storageBackend, locker, maxKeysPerSession: 2 }));
    expect(capped.capsKeysInWrite).toBe(true);
    const id = await created(capped, { a: 1 });
    const second = await resumed(capped, id);
    await second.putData('b', 2); // no read of the keys: the engine's write counts them
    second.registerBag(new FlashBag());
    (await second.getBag<FlashBag>('flashes')).add('note', 'bags are not keys');
    await second.commit();
    const third = await resumed(capped, id);
    await third.putData('a', 10); // replacing a held key is always allowed
    await third.putData('c', 3);
    const error = await third.commit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionLimitExceededException);
    expect((error as SessionLimitExceededException).getStatus()).toBe(413);
    expect(await (await resumed(capped, id)).getAllData()).toEqual({ a: 1, b: 2 });
    const fourth = await resumed(capped, id);
    await fourth.removeData('b');
    await fourth.putData('c', 3); // a removal in the same commit makes room
    await fourth.commit();
    expect(await (await resumed(capped, id)).getAllData()).toEqual({ a: 1, c: 3 });
  });

  if (!lockFree) {
    it(`${name}: commits that write metadata and logins take the lock (the engine does not commit them without it)`, () => {
      expect(store().commitsUnlocked).toBe(false);
    });
    return;
  }

  it(`${name}: commits that write metadata, renewals and logins take no lock while nobody holds it`, async () => {
    expect(store().commitsUnlocked).toBe(true);
    const acquire = jest.spyOn(s().locker, 'acquire');
    try {
      const id = await created(store(), { a: 1 });
      const tagged = await resumed(store(), id);
      await tagged.addTag('blue');
      await tagged.commit();
      const renewed = await resumed(store(), id);
      renewed.renewId();
      await renewed.commit();
      const login = await resumed(store(), renewed.getId());
      login.bindToUser('ann');
      await login.commit();
      expect(acquire).not.toHaveBeenCalled();
      const after = await resumed(store(), login.getId());
      expect(after.getUserId()).toBe('ann');
      expect(after.getTags()).toContain('blue');
      expect(await after.getAllData()).toEqual({ a: 1 });
      const old = new Session(store(), { cookieIds: [id], cookieName: 'sid' });
      await old.resume();
      expect(old.isStarted()).toBe(false);
    } finally {
      acquire.mockRestore();
    }
  });

  it(`${name}: a login carries over what another request wrote after it resumed (the copy is made in the same atomic step)`, async () => {
    const id = await created(store(), { a: 1 });
    const login = await resumed(store(), id);
    const other = await resumed(store(), id);
    await other.putData('b', 2);
    await other.commit();
    login.bindToUser('bob');
    await login.putData('c', 3);
    await login.commit();
    expect(await (await resumed(store(), login.getId())).getAllData()).toEqual({ a: 1, b: 2, c: 3 });
  });

  it(`${name}: a tag commit and a login whose metadata another request rewrote after they resumed go under the lock and keep that change`, async () => {
    const id = await created(store(), { a: 1 });
    const late = await resumed(store(), id);
    const login = await resumed(store(), id);
    const other = await resumed(store(), id);
    await other.addTag('green');
    await other.commit();
    const acquire = jest.spyOn(s().locker, 'acquire');
    try {
      await late.addTag('blue');
      await late.commit();
      expect(acquire).toHaveBeenCalledTimes(1);
      expect((await resumed(store(), id)).getTags().sort()).toEqual(['blue', 'green']);
      login.bindToUser('cy');
      await login.commit();
      expect(acquire).toHaveBeenCalledTimes(2);
    } finally {
      acquire.mockRestore();
    }
    const after = await resumed(store(), login.getId());
    expect(after.getTags()).toEqual(expect.arrayContaining(['blue', 'green']));
    expect(after.getUserId()).toBe('cy');
    expect(await after.getAllData()).toEqual({ a: 1 });
  });

  it(`${name}: a metadata commit and a login while another request holds the lock wait for it, then merge what the holder wrote`, async () => {
    const id = await created(store(), { a: 1 });
    const waiting = await resumed(store(), id);
    const holder = await resumed(store(), id);
    await holder.open();
    await waiting.addTag('blue');
    let done = false;
    const commit = waiting.commit().then(() => (done = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(done).toBe(false);
    await holder.addTag('green');
    await holder.putData('a', 2);
    await holder.save();
    await commit;
    expect((await resumed(store(), id)).getTags().sort()).toEqual(['blue', 'green']);
    const login = await resumed(store(), id);
    const second = await resumed(store(), id);
    await second.open();
    login.bindToUser('dee');
    const moved = login.commit();
    await second.putData('b', 3);
    await second.save();
    await moved;
    expect(await (await resumed(store(), login.getId())).getAllData()).toEqual({ a: 2, b: 3 });
  });

  it(`${name}: the storage backend ${copies ? 'checks' : 'does not check'} a move's source lock and guard inside the copy (copiesUnlocked)`, async () => {
    const backend = s().storageBackend;
    expect(backend.copiesUnlocked === true).toBe(copies);
    if (!copies) return;
    const id = await created(store(), { a: 1 });
    const from = await storageIdOf(id);
    const fence = await guardFence(from);
    const copy = (to: string) =>
      backend.write(
        { sets: [{ id: `${to}.b`, data: '2', tags: [to] }] },
        { id: `${to}.~guard`, fence: 0, create: true, tags: [to], lifetime: 60, copyFrom: from, copyUnlocked: true },
      );
    const lock = await s().locker.acquire(from, { ttl: 5000, waitTimeout: 0 });
    try {
      expect(await copy(`held-${from}`)).toBe('locked');
      expect(await backend.findIdentifiersByTag(`held-${from}`)).toEqual([]);
    } finally {
      await lock.release();
    }
    expect(await copy(`free-${from}`)).toBe('ok');
    expect(await backend.getMany([`free-${from}.a`, `free-${from}.b`])).toEqual([await backend.get(`${from}.a`), '2']);
    // Nothing was written to the source: its guard keeps its fence (a login flushes it next).
    expect(await guardFence(from)).toBe(fence);
    await backend.flushByTag(from);
    expect(await copy(`gone-${from}`)).toBe('missing');
    expect(await backend.findIdentifiersByTag(`gone-${from}`)).toEqual([]);
  });
}
