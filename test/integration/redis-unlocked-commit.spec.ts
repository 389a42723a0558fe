import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { LockException } from '../../lib/errors/lock.exception.js';
import { SessionLimitExceededException } from '../../lib/errors/session-limit-exceeded.exception.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { RedisBackend } from '../../lib/redis/redis.backend.js';
import { createRedisSessionStores, type RedisSessionStores } from '../../lib/redis/redis-session.factory.js';
import type { RedisLockerClient } from '../../lib/redis/redis.locker.js';
import { Session } from '../../lib/session/session.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { TEST_REDIS_URL, uniquePrefix } from '../support/redis.js';
import { created, resumed } from '../support/session-requests.js';

/*
 * Issue 11, "a commit is one atomic, conditional write per storage id": a commit that holds no
 * lock is one WRITE script that checks the lock is free and draws a fresh fence from it. These
 * are the properties the shortcut must keep from "acquire, write, release".
 */
describe('Unlocked commits on Redis (WriteGuard.unlocked, checked in the write script)', () => {
  const prefix = uniquePrefix('unlocked');
  let stores: RedisSessionStores<RedisLockerClient>;
  let store: SessionStore;

  beforeAll(async () => {
    stores = await createRedisSessionStores({ url: TEST_REDIS_URL, prefix });
    const { metadataBackend, storageBackend, locker } = stores;
    store = new SessionStore(
      resolveSessionOptions({ metadataBackend, storageBackend, locker, lock: { waitTimeout: 5000, ttl: 5000 } }),
    );
  });

  afterAll(async () => {
    const keys: string[] = [];
    for await (const batch of stores.client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
    if (keys.length > 0) await stores.client.del(keys);
    await stores.close();
  });

  const storageIdOf = async (id: string): Promise<string> => (await store.loadMetadata(metadataKeyOf(id)))!.storageId;
  const guardFence = async (storageId: string): Promise<number> => Number(await stores.storageBackend.get(`${storageId}.~guard`));

  it('the storage backend from createRedisSessionStores checks the locks of its locker', () => {
    expect(stores.storageBackend.checksLocksOf).toBe(stores.locker);
    expect(stores.metadataBackend.checksLocksOf).toBeUndefined();
    expect(store.writesUnlocked).toBe(true);
  });

  it('while another request holds the lock, an unlocked write writes nothing and answers "locked"', async () => {
    const id = await created(store, { a: 1 });
    const storageId = await storageIdOf(id);
    const lock = await stores.locker.acquire(storageId, { ttl: 5000, waitTimeout: 0 });
    try {
      const result = await stores.storageBackend.write(
        { sets: [{ id: `${storageId}.a`, data: '2', tags: [storageId] }] },
        { id: `${storageId}.~guard`, fence: 0, unlocked: true },
      );
      expect(result).toBe('locked');
      expect(await (await resumed(store, id)).getAllData()).toEqual({ a: 1 });
    } finally {
      await lock.release();
    }
  });

  it('draws a fence above every fence the lock handed out, and below the next holder’s', async () => {
    const id = await created(store, { a: 1 });
    const storageId = await storageIdOf(id);
    const first = await stores.locker.acquire(storageId, { ttl: 5000, waitTimeout: 0 });
    await first.release();
    const session = await resumed(store, id);
    await session.putData('a', 2);
    await session.commit();
    const drawn = await guardFence(storageId);
    expect(drawn).toBeGreaterThan(first.fence);
    const next = await stores.locker.acquire(storageId, { ttl: 5000, waitTimeout: 0 });
    expect(next.fence).toBeGreaterThan(drawn);
    await next.release();
  });

  it('fences off an older holder whose lock expired: its later commit answers LockException and loses nothing', async () => {
    const id = await created(store, { a: 1 });
    const slow = await resumed(store, id);
    await slow.open({ ttl: 300 }); // the lock expires while this request still works
    await slow.putData('a', 'stale');
    await new Promise((resolve) => setTimeout(resolve, 400));
    const quick = await resumed(store, id);
    await quick.putData('b', 'fresh');
    await quick.commit(); // unlocked: the lock expired, so it is free
    await expect(slow.save()).rejects.toBeInstanceOf(LockException);
    expect(await (await resumed(store, id)).getAllData()).toEqual({ a: 1, b: 'fresh' });
  });

  it('a plain commit while another request holds the lock waits for it (FIFO), then writes: no lost update', async () => {
    const id = await created(store, { n: 0 });
    const holder = await resumed(store, id);
    await holder.open();
    const other = await resumed(store, id);
    await other.putData('other', true);
    let committed = false;
    const pending = other.commit().then(() => (committed = true));
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(committed).toBe(false); // queued behind the holder
    await holder.putData('n', 1);
    await holder.save();
    await pending;
    expect(await (await resumed(store, id)).getAllData()).toEqual({ n: 1, other: true });
  });

  it('a destroyed session’s unlocked commit writes nothing back', async () => {
    const id = await created(store, { a: 1 });
    const storageId = await storageIdOf(id);
    const late = await resumed(store, id);
    await late.putData('a', 2);
    const killer = await resumed(store, id);
    await killer.destroy();
    await expect(late.commit()).rejects.toThrow();
    expect(await stores.storageBackend.findIdentifiersByTag(storageId)).toEqual([]);
  });

  it('maxKeysPerSession is enforced inside the write script (no read first): 413, nothing written, bags not counted against it', async () => {
    const { metadataBackend, storageBackend, locker } = stores;
    const capped = new SessionStore(resolveSessionOptions({ metadataBackend, storageBackend, locker, maxKeysPerSession: 2 }));
    expect(capped.capsKeysInWrite).toBe(true);
    const id = await created(capped, { a: 1 });
    const second = await resumed(capped, id);
    await second.putData('b', 2); // no read of the keys: the script counts them
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

  it('a RedisBackend without a locker refuses unlocked writes, and a store with another locker never asks for them', async () => {
    const bare = new RedisBackend({ client: stores.client, prefix: `${prefix}bare:` });
    await expect(bare.write({}, { id: 'x.~guard', fence: 0, unlocked: true })).rejects.toBeInstanceOf(InvalidArgumentException);
    const { metadataBackend, storageBackend } = stores;
    const mixed = new SessionStore(resolveSessionOptions({ metadataBackend, storageBackend }));
    expect(mixed.writesUnlocked).toBe(false); // the default MemoryLocker's locks are not in Redis
    expect(new Session(mixed, { cookieIds: [], cookieName: 'sid' }).isStarted()).toBe(false);
  });
});
