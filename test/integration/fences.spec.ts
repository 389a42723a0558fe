import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { MemoryBackend } from '../../lib/cache/memory.backend.js';
import { MemoryLocker } from '../../lib/locking/memory.locker.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { createRedisSessionStores, type RedisSessionStores } from '../../lib/redis/redis-session.factory.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from '../support/redis.js';

/*
 * Issue 11, item 1: the storage guard never expires and refuses a smaller fence, so every fence
 * a locker hands out must exceed every fence handed out before, for any key, whatever expired.
 * Before the fix, RedisLocker counted per lock key (counter starting at 1 for a new key, or
 * again after its 7-day TTL), so these sequences answered LockException ("fenced", HTTP 409).
 */
describe('Fences across storage ids and counter lifetimes (RedisLocker + RedisBackend)', () => {
  const prefix = uniquePrefix('fences');
  let stores: RedisSessionStores<TestRedisClient>;
  let store: SessionStore;

  beforeAll(async () => {
    // Created from `url`: a node-redis client, used below for SCAN and DEL.
    stores = (await createRedisSessionStores({ url: TEST_REDIS_URL, prefix })) as RedisSessionStores<TestRedisClient>;
    const { metadataBackend, storageBackend, locker } = stores;
    store = new SessionStore(
      resolveSessionOptions({ metadataBackend, storageBackend, locker, lock: { waitTimeout: 2000, ttl: 5000 } }),
    );
  });

  afterAll(async () => {
    const keys: string[] = [];
    for await (const batch of stores.client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
    if (keys.length > 0) await stores.client.del(keys);
    await stores.close();
  });

  /** A request carrying the cookie `id`. */
  const request = async (id: string): Promise<Session> => {
    const session = new Session(store, { cookieIds: [id], cookieName: 'sid' });
    await session.resume();
    expect(session.isStarted()).toBe(true);
    return session;
  };

  /** A stored session with `data`, as the request that created it left it. */
  const created = async (data: Record<string, unknown>): Promise<string> => {
    const session = new Session(store, { cookieIds: [], cookieName: 'sid' });
    session.start();
    for (const [key, value] of Object.entries(data)) await session.putData(key, value);
    await session.commit();
    return session.getId();
  };

  /** The fence counters RedisLocker keeps under this suite's prefix (one per storage id locked). */
  const fenceCounters = async (): Promise<string[]> => {
    const keys: string[] = [];
    for await (const batch of stores.client.scanIterator({ MATCH: `${prefix}l:lock:*:fence`, COUNT: 1000 })) {
      keys.push(...batch);
    }
    return keys;
  };

  it('regenerate(true) under a held lock, then a commit of the next request succeeds', async () => {
    const id = await created({ cart: ['a'] });
    // A commit under the old storage id's lock first, so its fence counter has moved on.
    const warm = await request(id);
    await warm.putData('cart', ['a', 'b']);
    await warm.commit();

    const login = await request(id);
    await login.open();
    await login.putData('user', 'alice');
    await login.regenerate(true);
    await login.save();
    const newId = login.getId();
    expect(newId).not.toBe(id);

    // The new storage's guard holds the old lock's fence; the new key's lock must go above it.
    const next = await request(newId);
    await next.putData('visits', 1);
    await expect(next.commit()).resolves.toBeUndefined();
    const locked = await request(newId);
    await locked.open();
    await locked.putData('visits', 2);
    await expect(locked.save()).resolves.toBeUndefined();

    const check = await request(newId);
    expect(await check.getAllData()).toEqual({ cart: ['a', 'b'], user: 'alice', visits: 2 });
  });

  it('a commit after the fence counter expired (a session idle for longer than fenceTtl) succeeds', async () => {
    const id = await created({ n: 0 });
    for (let n = 1; n <= 3; n++) {
      const session = await request(id);
      await session.open();
      await session.putData('n', n);
      await session.save();
    }
    const counters = await fenceCounters();
    expect(counters.length).toBeGreaterThan(0);
    // What the counter's TTL does after fenceTtl of idleness.
    await stores.client.del(counters);

    const session = await request(id);
    await session.open();
    await session.putData('n', 4);
    await expect(session.save()).resolves.toBeUndefined();
    const unlocked = await request(id);
    await unlocked.putData('n', 5);
    await expect(unlocked.commit()).resolves.toBeUndefined();
    expect(await (await request(id)).getData('n')).toBe(5);
  });
});

describe('Fences across locker lifetimes (MemoryLocker + a store that outlives it)', () => {
  it('a restarted process (a new MemoryLocker) can still commit to a session written before', async () => {
    // The backends outlive the locker, as a shared cache-manager store outlives a process.
    const metadataBackend = new MemoryBackend();
    const storageBackend = new MemoryBackend();
    const storeOf = (locker: MemoryLocker) =>
      new SessionStore(resolveSessionOptions({ metadataBackend, storageBackend, locker, lock: { waitTimeout: 200, ttl: 2000 } }));

    const before = storeOf(new MemoryLocker());
    const creating = new Session(before, { cookieIds: [], cookieName: 'sid' });
    creating.start();
    await creating.putData('n', 0);
    await creating.commit();
    const id = creating.getId();
    for (let n = 1; n <= 3; n++) {
      const session = new Session(before, { cookieIds: [id], cookieName: 'sid' });
      await session.resume();
      await session.open();
      await session.putData('n', n);
      await session.save();
    }

    const after = storeOf(new MemoryLocker());
    const session = new Session(after, { cookieIds: [id], cookieName: 'sid' });
    await session.resume();
    await session.open();
    await session.putData('n', 4);
    await expect(session.save()).resolves.toBeUndefined();
  });
});
