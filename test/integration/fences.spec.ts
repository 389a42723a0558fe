import { describe, expect, it } from '@jest/globals';
import { MemoryBackend } from '../../lib/cache/memory.backend.js';
import { MemoryLocker } from '../../lib/locking/memory.locker.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { redisSessionStoreFixture } from '../support/redis-session-store.fixture.js';
import { created as createdIn, resumed } from '../support/session-requests.js';

/*
 * Issue 11, item 1: the storage guard never expires and refuses a smaller fence, so every fence
 * a locker hands out must exceed every fence handed out before, for any key, whatever expired.
 * Before the fix, RedisLocker counted per lock key (counter starting at 1 for a new key, or
 * again after its 7-day TTL), so these sequences answered LockException ("fenced", HTTP 409).
 */
describe('Fences across storage ids and counter lifetimes (RedisLocker + RedisBackend)', () => {
  const redis = redisSessionStoreFixture('fences', { waitTimeout: 2000, ttl: 5000 });
  const request = (id: string): Promise<Session> => resumed(redis.store, id);
  const created = (data: Record<string, unknown>): Promise<string> => createdIn(redis.store, data);

  /** The fence counters RedisLocker keeps under this suite's prefix (one per storage id locked). */
  const fenceCounters = async (): Promise<string[]> => {
    const keys: string[] = [];
    for await (const batch of redis.stores.client.scanIterator({ MATCH: `${redis.prefix}l:lock:*:fence`, COUNT: 1000 })) {
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
    await redis.stores.client.del(counters);

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
