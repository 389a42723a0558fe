import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { LockTimeoutException } from '../../lib/errors/lock-timeout.exception.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import { RedisLocker } from '../../lib/locking/redis.locker.js';
import { lockerContract } from '../contract/locker.contract.js';
import { connectTestRedis, type TestRedisClient, uniquePrefix } from '../support/redis.js';

let client: TestRedisClient;
const prefix = uniquePrefix('redis-locker');

beforeAll(async () => {
  client = await connectTestRedis();
});

afterAll(async () => {
  const keys: string[] = [];
  for await (const batch of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
    keys.push(...batch);
  }
  if (keys.length > 0) await client.del(keys);
  await client.close();
});

lockerContract('RedisLocker', async () => {
  const locker = new RedisLocker({ client, prefix });
  return { locker, cleanup: () => locker.close() };
});

describe('RedisLocker', () => {
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  let n = 0;
  const freshKey = () => `rk${++n}`;

  it('keeps lock, fence and queue of a key in one hash slot and under the prefix', async () => {
    const locker = new RedisLocker({ client, prefix });
    const key = freshKey();
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
    const waiter = locker.acquire(key, { waitTimeout: 2000, ttl: 1000 });
    await sleep(30);
    const keys: string[] = [];
    for await (const batch of client.scanIterator({ MATCH: `${prefix}lock:{${key}}*` })) {
      keys.push(...batch);
    }
    expect(keys.sort()).toEqual(
      ['', ':fence', ':lease', ':queue'].map((suffix) => `${prefix}lock:{${key}}${suffix}`).sort(),
    );
    await holder.release();
    await (await waiter).release();
    await locker.close();
  });

  it('leaves only the fence counter behind, with a TTL of about 7 days', async () => {
    const locker = new RedisLocker({ client, prefix });
    const key = freshKey();
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
    const quitter = locker.acquire(key, { waitTimeout: 40, ttl: 1000 }).catch((e) => e);
    const waiter = locker.acquire(key, { waitTimeout: 2000, ttl: 1000 });
    expect(await quitter).toBeInstanceOf(LockTimeoutException);
    await holder.release();
    await (await waiter).release();
    const base = `${prefix}lock:{${key}}`;
    expect(await client.exists([base, `${base}:queue`, `${base}:lease`])).toBe(0);
    const pttl = await client.pTTL(`${base}:fence`);
    expect(pttl).toBeGreaterThan(7 * 24 * 3600 * 1000 - 60_000);
    expect(pttl).toBeLessThanOrEqual(7 * 24 * 3600 * 1000);
    await locker.close();
  });

  it('fenceTtl 0 keeps the fence counter forever', async () => {
    const locker = new RedisLocker({ client, prefix, fenceTtl: 0 });
    const key = freshKey();
    await (await locker.acquire(key, { waitTimeout: 0, ttl: 1000 })).release();
    expect(await client.pTTL(`${prefix}lock:{${key}}:fence`)).toBe(-1);
    await locker.close();
  });

  it('serves waiters of two lockers (two processes) in arrival order', async () => {
    const a = new RedisLocker({ client, prefix });
    const b = new RedisLocker({ client, prefix });
    const key = freshKey();
    const holder = await a.acquire(key, { waitTimeout: 0, ttl: 5000 });
    const order: string[] = [];
    const all: Promise<void>[] = [];
    for (const [name, locker] of [
      ['a1', a],
      ['b1', b],
      ['a2', a],
      ['b2', b],
    ] as const) {
      all.push(
        locker.acquire(key, { waitTimeout: 3000, ttl: 5000 }).then(async (lock) => {
          order.push(name);
          await lock.release();
        }),
      );
      await sleep(20);
    }
    await holder.release();
    await Promise.all(all);
    expect(order).toEqual(['a1', 'b1', 'a2', 'b2']);
    await a.close();
    await b.close();
  });

  it('a free lock is not taken past a queued waiter; a dead one blocks <= waiterTtl', async () => {
    const locker = new RedisLocker({ client, prefix, waiterTtl: 150 });
    const key = freshKey();
    const base = `${prefix}lock:{${key}}`;
    // A ticket of a waiter whose process died: never refreshed.
    const [seconds, micros] = (await client.sendCommand(['TIME'])) as [string, string];
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    await client.zAdd(`${base}:queue`, { score: 1, value: 'dead-waiter' });
    await client.zAdd(`${base}:lease`, { score: now + 150, value: 'dead-waiter' });
    await expect(locker.acquire(key, { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(
      LockTimeoutException,
    );
    const started = Date.now();
    const lock = await locker.acquire(key, { waitTimeout: 2000, ttl: 1000 });
    expect(Date.now() - started).toBeLessThan(150 + 150);
    await lock.release();
    await locker.close();
  });

  it('wakes a waiter by message, not by polling', async () => {
    const locker = new RedisLocker({ client, prefix, waiterTtl: 30_000 });
    const key = freshKey();
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 20_000 });
    const waiter = locker.acquire(key, { waitTimeout: 5000, ttl: 1000 });
    await sleep(50);
    const released = Date.now();
    await holder.release();
    await (await waiter).release();
    // Its timers are 10 s away: only the release message can have woken it this fast.
    expect(Date.now() - released).toBeLessThan(100);
    await locker.close();
  });

  it('close() takes pending waiters out of the Redis queue', async () => {
    const locker = new RedisLocker({ client, prefix });
    const key = freshKey();
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
    const pending = [1, 2, 3].map(() =>
      locker.acquire(key, { waitTimeout: 5000, ttl: 1000 }).catch((e) => e),
    );
    await sleep(30);
    expect(await client.zCard(`${prefix}lock:{${key}}:queue`)).toBe(3);
    await locker.close();
    for (const error of await Promise.all(pending)) {
      expect(error).toBeInstanceOf(StoreUnavailableException);
    }
    expect(await client.exists(`${prefix}lock:{${key}}:queue`)).toBe(0);
    await expect(locker.acquire(key, { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(
      StoreUnavailableException,
    );
    await expect(holder.release()).resolves.toBe(true);
  });

  it('falls back to EVAL when Redis does not know a script (NOSCRIPT)', async () => {
    // SCRIPT FLUSH would disturb other suites on this Redis: fake the reply instead.
    let noscripts = 0;
    const forgetful = new Proxy(client, {
      get(target, property) {
        if (property === 'evalSha') {
          return async () => {
            noscripts++;
            throw new Error('NOSCRIPT No matching script. Please use EVAL.');
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const locker = new RedisLocker({ client: forgetful, prefix });
    const lock = await locker.acquire(freshKey(), { waitTimeout: 0, ttl: 1000 });
    await expect(lock.extend(1000)).resolves.toBe(true);
    await expect(lock.release()).resolves.toBe(true);
    expect(noscripts).toBe(3);
    await locker.close();
  });

  it('uses a given subscriber and leaves it open', async () => {
    const subscriber = client.duplicate();
    subscriber.on('error', () => undefined);
    await subscriber.connect();
    const locker = new RedisLocker({ client, prefix, subscriber });
    const key = freshKey();
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
    const waiter = locker.acquire(key, { waitTimeout: 2000, ttl: 1000 });
    await sleep(30);
    await holder.release();
    await (await waiter).release();
    await locker.close();
    expect(subscriber.isOpen).toBe(true);
    await subscriber.close();
  });

  it('turns Redis errors into StoreUnavailableException', async () => {
    const broken = await connectTestRedis();
    await broken.close();
    const locker = new RedisLocker({ client: broken, prefix });
    const error = await locker.acquire(freshKey(), { waitTimeout: 0, ttl: 1000 }).catch((e) => e);
    expect(error).toBeInstanceOf(StoreUnavailableException);
    expect((error as Error).message).toContain('acquire lock');
    await locker.close();
  });

  it('release and extend report Redis errors as StoreUnavailableException', async () => {
    const own = await connectTestRedis();
    const locker = new RedisLocker({ client: own, prefix });
    const lock = await locker.acquire(freshKey(), { waitTimeout: 0, ttl: 1000 });
    await own.close();
    await expect(lock.release()).rejects.toBeInstanceOf(StoreUnavailableException);
    await expect(lock.extend(1000)).rejects.toBeInstanceOf(StoreUnavailableException);
    await locker.close();
  });

  it('validates its options', () => {
    expect(() => new RedisLocker({ client: undefined as never })).toThrow(InvalidArgumentException);
    expect(() => new RedisLocker({ client, waiterTtl: 0 })).toThrow(InvalidArgumentException);
    expect(() => new RedisLocker({ client, fenceTtl: -1 })).toThrow(InvalidArgumentException);
  });
});
