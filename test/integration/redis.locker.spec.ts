import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { LockTimeoutException } from '../../lib/errors/lock-timeout.exception.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import { LOCK_SCRIPTS } from '../../lib/redis/redis-lock.scripts.js';
import { createRedisSessionStores } from '../../lib/redis/redis-session.factory.js';
import { RedisLocker } from '../../lib/redis/redis.locker.js';
import { lockerContract } from '../contract/locker.contract.js';
import { RedisServer } from '../support/redis-server.js';
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
  return {
    locker,
    cleanup: () => locker.close(),
    forgetFences: async (key) => {
      await client.del(`${prefix}lock:{${key}}:fence`);
    },
  };
});

describe('RedisLocker', () => {
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  let n = 0;
  const freshKey = () => `rk${++n}`;
  /** Waits (up to 2 s) until `count` waiters queue for `key`. */
  const queued = async (key: string, count: number): Promise<void> => {
    const until = Date.now() + 2000;
    while ((await client.zCard(`${prefix}lock:{${key}}:queue`)) !== count) {
      if (Date.now() > until) throw new Error(`expected ${count} waiters queued for ${key}`);
      await sleep(5);
    }
  };
  /** Redis time in ms, the clock of the waiters' tickets. */
  const redisNow = async (): Promise<number> => {
    const [seconds, micros] = await client.sendCommand<[string, string]>(['TIME']);
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  };
  /** A view of `client` that counts the Lua scripts run through it (EVALSHA and EVAL). */
  const countingClient = () => {
    const counter = { scripts: 0 };
    const counting = new Proxy(client, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== 'function') return value;
        if (property === 'evalSha' || property === 'eval') {
          return (...args: unknown[]) => {
            counter.scripts++;
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return value.bind(target);
      },
    });
    return { client: counting, counter };
  };

  it('keeps lock, fence and queue of a key in one hash slot and under the prefix', async () => {
    const locker = new RedisLocker({ client, prefix });
    const key = freshKey();
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
    const waiter = locker.acquire(key, { waitTimeout: 2000, ttl: 1000 });
    await queued(key, 1);
    const keys: string[] = [];
    for await (const batch of client.scanIterator({ MATCH: `${prefix}lock:{${key}}*` })) {
      keys.push(...batch);
    }
    expect(keys.sort()).toEqual(['', ':fence', ':lease', ':queue'].map((suffix) => `${prefix}lock:{${key}}${suffix}`).sort());
    await holder.release();
    await (await waiter).release();
    await locker.close();
  });

  it('leaves only the fence counter behind, with a TTL of about 7 days', async () => {
    const locker = new RedisLocker({ client, prefix });
    const key = freshKey();
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
    const quitter = locker.acquire(key, { waitTimeout: 40, ttl: 1000 }).catch((e: unknown) => e);
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
    const now = await redisNow();
    await client.zAdd(`${base}:queue`, { score: 1, value: 'dead-waiter' });
    await client.zAdd(`${base}:lease`, { score: now + 150, value: 'dead-waiter' });
    await expect(locker.acquire(key, { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(LockTimeoutException);
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

  // A release wakes only the first in line. Here the waiters' timers are 10 s away (waiterTtl
  // 30 s, lock ttl 20 s), so every handoff within the 5 s waitTimeout came from a message: a
  // lost wake-up fails the test.
  it('8-way contention across two lockers: about 3 scripts per handoff, none lost', async () => {
    const { client: counting, counter } = countingClient();
    const lockers = [
      new RedisLocker({ client: counting, prefix, waiterTtl: 30_000 }),
      new RedisLocker({ client: counting, prefix, waiterTtl: 30_000 }),
    ];
    const key = freshKey();
    const rounds = 20;
    let inside = 0;
    let acquisitions = 0;
    const workers = Array.from({ length: 8 }, async (_, i) => {
      const locker = lockers[i % 2]!;
      for (let round = 0; round < rounds; round++) {
        const lock = await locker.acquire(key, { waitTimeout: 5000, ttl: 20_000 });
        expect(++inside).toBe(1);
        acquisitions++;
        await new Promise<void>((resolve) => setImmediate(resolve));
        inside--;
        expect(await lock.release()).toBe(true);
      }
    });
    await Promise.all(workers);
    expect(acquisitions).toBe(8 * rounds);
    // Per acquisition: the look that queues, the look after the wake-up that takes the lock,
    // the release; a little more while a locker first subscribes. Waking every waiter on each
    // release cost about 9 here (one look per waiter).
    const perAcquisition = counter.scripts / acquisitions;
    expect(perAcquisition).toBeGreaterThanOrEqual(2);
    expect(perAcquisition).toBeLessThan(3.5);
    await Promise.all(lockers.map((locker) => locker.close()));
  });

  it('a release costs the queue one look: only the first in line wakes', async () => {
    const { client: counting, counter } = countingClient();
    const a = new RedisLocker({ client: counting, prefix, waiterTtl: 30_000 });
    const b = new RedisLocker({ client: counting, prefix, waiterTtl: 30_000 });
    const key = freshKey();
    const holder = await a.acquire(key, { waitTimeout: 0, ttl: 20_000 });
    const served: number[] = [];
    const waiters = [a, b, a, b].map((locker, i) =>
      locker.acquire(key, { waitTimeout: 5000, ttl: 20_000 }).then((lock) => {
        served.push(i);
        return lock;
      }),
    );
    await queued(key, 4);
    // The waiters' looks after subscribing: wait until no script has run for 100 ms (a fixed
    // sleep was too short on a loaded machine, and counted late looks as wake-ups).
    for (let last = -1; last !== counter.scripts;) {
      last = counter.scripts;
      await sleep(100);
    }
    const before = counter.scripts;
    await holder.release();
    const first = await waiters[0]!;
    await sleep(50); // time for any other waiter to look, if it had been woken
    expect(counter.scripts - before).toBe(2); // the release, the first waiter's look
    expect(served).toEqual([0]);
    // The next handoff goes to the other locker (another process), again by message only.
    const released = Date.now();
    await first.release();
    const second = await waiters[1]!;
    expect(Date.now() - released).toBeLessThan(100);
    await sleep(50);
    expect(served).toEqual([0, 1]);
    await second.release();
    await (await waiters[2]!).release();
    await (await waiters[3]!).release();
    expect(served).toEqual([0, 1, 2, 3]);
    await a.close();
    await b.close();
  });

  it('a release skips a dead waiter whose ticket expired and wakes the next one', async () => {
    const locker = new RedisLocker({ client, prefix, waiterTtl: 30_000 });
    const key = freshKey();
    const base = `${prefix}lock:{${key}}`;
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 20_000 });
    // A ticket first in line whose owner died: it expires in 50 ms.
    await client.zAdd(`${base}:queue`, { score: 0, value: 'dead-waiter' });
    await client.zAdd(`${base}:lease`, { score: (await redisNow()) + 50, value: 'dead-waiter' });
    const waiter = locker.acquire(key, { waitTimeout: 5000, ttl: 1000 });
    await queued(key, 2);
    await sleep(100);
    const released = Date.now();
    await holder.release();
    // Its timers are 10 s away: the release had to name this waiter, not the dead one.
    await (await waiter).release();
    expect(Date.now() - released).toBeLessThan(100);
    expect(await client.exists([`${base}:queue`, `${base}:lease`])).toBe(0);
    await locker.close();
  });

  it('a look that drops a dead first waiter from a free lock wakes the next one', async () => {
    const locker = new RedisLocker({ client, prefix, waiterTtl: 30_000 });
    const key = freshKey();
    const base = `${prefix}lock:{${key}}`;
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 20_000 });
    // Dead, first in line, ticket valid for 100 ms more: the release wakes nobody.
    await client.zAdd(`${base}:queue`, { score: 0, value: 'dead-waiter' });
    await client.zAdd(`${base}:lease`, { score: (await redisNow()) + 100, value: 'dead-waiter' });
    let served = false;
    const waiter = locker.acquire(key, { waitTimeout: 5000, ttl: 1000 }).then((lock) => {
      served = true;
      return lock;
    });
    await queued(key, 2);
    await sleep(30); // its look after subscribing, still while the lock is held
    await holder.release();
    await sleep(150);
    expect(served).toBe(false); // asleep: its timers are 10 s away
    // Somebody else's look drops the expired ticket and, the lock being free, wakes the waiter.
    const probe = new RedisLocker({ client, prefix });
    await expect(probe.acquire(key, { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(LockTimeoutException);
    const looked = Date.now();
    await (await waiter).release();
    expect(Date.now() - looked).toBeLessThan(100);
    await probe.close();
    await locker.close();
  });

  it('a dead first waiter with a valid ticket delays the next by at most waiterTtl', async () => {
    const locker = new RedisLocker({ client, prefix, waiterTtl: 150 });
    const key = freshKey();
    const base = `${prefix}lock:{${key}}`;
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 20_000 });
    const waiters = [1, 2].map(() => locker.acquire(key, { waitTimeout: 3000, ttl: 1000 }));
    await queued(key, 2);
    // The first waiter "dies": its ticket stays, unrefreshed, for the full waiterTtl.
    const [first] = await client.zRange(`${base}:queue`, 0, 0);
    await client.zAdd(`${base}:queue`, { score: 0, value: 'dead-waiter' });
    await client.zAdd(`${base}:lease`, { score: (await redisNow()) + 150, value: 'dead-waiter' });
    expect(first).toBeDefined();
    const released = Date.now();
    await holder.release(); // names the dead waiter: nobody wakes
    const lock = await waiters[0]!;
    expect(Date.now() - released).toBeLessThan(150 + 150);
    await lock.release();
    await (await waiters[1]!).release();
    await locker.close();
  });

  it('close() takes pending waiters out of the Redis queue', async () => {
    const locker = new RedisLocker({ client, prefix });
    const key = freshKey();
    const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
    const pending = [1, 2, 3].map(() => locker.acquire(key, { waitTimeout: 5000, ttl: 1000 }).catch((e: unknown) => e));
    await sleep(30);
    expect(await client.zCard(`${prefix}lock:{${key}}:queue`)).toBe(3);
    await locker.close();
    for (const error of await Promise.all(pending)) {
      expect(error).toBeInstanceOf(StoreUnavailableException);
    }
    expect(await client.exists(`${prefix}lock:{${key}}:queue`)).toBe(0);
    await expect(locker.acquire(key, { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(StoreUnavailableException);
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
    const error = await locker.acquire(freshKey(), { waitTimeout: 0, ttl: 1000 }).catch((e: unknown) => e);
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

  it('fences are Redis time in microseconds (or the counter + 1), exact, written back to the counter', async () => {
    const locker = new RedisLocker({ client, prefix });
    const key = freshKey();
    const before = (await redisNow()) * 1000;
    const lock = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
    expect(lock.fence).toBeGreaterThanOrEqual(before);
    expect(lock.fence).toBeLessThan(before + 60_000_000);
    expect(Number.isSafeInteger(lock.fence)).toBe(true);
    // Written in full digits (Lua's tostring would give 1.796e+15).
    expect(await client.get(`${prefix}lock:{${key}}:fence`)).toBe(String(lock.fence));
    await lock.release();
    // A counter ahead of the clock (the clock stepped back): counter + 1.
    const ahead = lock.fence + 3_600_000_000;
    await client.set(`${prefix}lock:{${key}}:fence`, String(ahead));
    const next = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
    expect(next.fence).toBe(ahead + 1);
    await next.release();
    await locker.close();
  });

  describe('an acquisition whose outcome is unknown is cancelled for real (issue 11, item 7)', () => {
    let server: RedisServer;
    let control: TestRedisClient;

    beforeAll(async () => {
      server = await RedisServer.start();
      control = await connectTestRedis(server.url);
    });

    afterAll(async () => {
      await control.close();
      await server.stop();
    });

    /** Lockers and stores a test opened, closed even when it fails. */
    const opened: { close(): Promise<void> }[] = [];
    afterEach(async () => {
      await Promise.allSettled(opened.splice(0).map((o) => o.close()));
    });

    /**
     * Holds back every script for `ms` (CLIENT PAUSE WRITE: scripts count as writes), so an
     * ACQUIRE sent now times out on the client and runs when the pause ends.
     */
    const pauseScripts = async (ms: number): Promise<number> => {
      await control.sendCommand(['CLIENT', 'PAUSE', String(ms), 'WRITE']);
      return Date.now() + ms;
    };
    /** Waits (up to 3 s: far below the 20 s lock ttl) until `test` holds. */
    const eventually = async (what: string, test: () => Promise<boolean>): Promise<void> => {
      const until = Date.now() + 3000;
      while (!(await test())) {
        if (Date.now() > until) throw new Error(`not within 3 s: ${what}`);
        await sleep(10);
      }
    };
    /** Whether the abandon script has run for some token of the lock `base`. */
    const tombstoned = async (base: string): Promise<boolean> => {
      for await (const batch of control.scanIterator({ MATCH: `${base}:abandoned:*` })) if (batch.length > 0) return true;
      return false;
    };

    it.each([
      ['tries once (waitTimeout 0, as the GC lock)', 0],
      ['waits (waitTimeout > 0)', 5000],
    ])('a late ACQUIRE after a client timeout leaves no lock: %s', async (_name, waitTimeout) => {
      const own = uniquePrefix('abandon');
      // The helper's deadline (commandTimeout) is the client-side timeout of real deployments.
      const stores = await createRedisSessionStores({ url: server.url, prefix: own, commandTimeout: 150 });
      opened.push(stores);
      const key = freshKey();
      const base = `${own}l:lock:{${key}}`;
      await (await stores.locker.acquire(freshKey(), { waitTimeout: 0, ttl: 1000 })).release(); // scripts loaded
      const resumes = await pauseScripts(700);
      const error = await stores.locker.acquire(key, { waitTimeout, ttl: 20_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StoreUnavailableException);
      expect(Date.now()).toBeLessThan(resumes); // it did time out while Redis held it back
      // Once the pause ends, Redis runs the ACQUIRE (the lock is taken: 20 s ttl), then the
      // abandon queued behind it frees it: well before the ttl, not after.
      await sleep(Math.max(0, resumes - Date.now()));
      // The fence counter proves the late ACQUIRE took the lock; then it must be freed.
      await eventually('the late ACQUIRE ran', async () => (await control.exists(`${base}:fence`)) === 1);
      await eventually('the lock is free', async () => (await control.exists(base)) === 0);
      expect(await tombstoned(base)).toBe(true);
      expect(await control.exists([`${base}:queue`, `${base}:lease`])).toBe(0);
      const next = await stores.locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      await expect(next.release()).resolves.toBe(true);
      await stores.close();
    });

    it('an abandoned waiter leaves the queue, and the next waiter gets the lock at release', async () => {
      const own = uniquePrefix('abandon');
      const stores = await createRedisSessionStores({ url: server.url, prefix: own, commandTimeout: 150 });
      opened.push(stores);
      const other = new RedisLocker({ client: control, prefix: `${own}l:`, waiterTtl: 30_000 });
      opened.unshift(other);
      const key = freshKey();
      const base = `${own}l:lock:{${key}}`;
      const holder = await other.acquire(key, { waitTimeout: 0, ttl: 20_000 });
      await (await stores.locker.acquire(freshKey(), { waitTimeout: 0, ttl: 1000 })).release(); // scripts loaded
      const resumes = await pauseScripts(600);
      const error = await stores.locker.acquire(key, { waitTimeout: 5000, ttl: 20_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StoreUnavailableException);
      await sleep(Math.max(0, resumes - Date.now()));
      // Its late look queued it; the abandon behind it took the ticket out again.
      await eventually('the abandon ran', () => tombstoned(base));
      expect(await control.exists([`${base}:queue`, `${base}:lease`])).toBe(0);
      const waiter = other.acquire(key, { waitTimeout: 5000, ttl: 1000 });
      await sleep(50);
      const released = Date.now();
      await holder.release();
      await (await waiter).release();
      // Its timers are 10 s away: the release woke it, not a dead ticket's expiry.
      expect(Date.now() - released).toBeLessThan(300);
      await other.close();
      await stores.close();
    });
  });

  it('an ACQUIRE that reaches Redis after the abandon takes nothing (tombstone)', async () => {
    // The client gives up before sending (a timeout), but the command goes out later anyway
    // (e.g. after a reconnect): the abandon runs first.
    let late: Promise<unknown> | undefined;
    const delaying = new Proxy(client, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== 'function') return value;
        if (property === 'evalSha') {
          return (sha: string, options: unknown) => {
            const send = () => (value as (s: string, o: unknown) => Promise<unknown>).call(target, sha, options);
            if (sha !== LOCK_SCRIPTS.acquire.sha || late !== undefined) return send();
            late = sleep(150).then(send);
            return Promise.reject(new Error('Redis did not answer within 100 ms (commandTimeout)'));
          };
        }
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
    // Scripts loaded (a NOSCRIPT fallback would go through `eval`, not delayed).
    await (await new RedisLocker({ client, prefix }).acquire(freshKey(), { waitTimeout: 0, ttl: 1000 })).release();
    const locker = new RedisLocker({ client: delaying, prefix });
    const key = freshKey();
    const base = `${prefix}lock:{${key}}`;
    await expect(locker.acquire(key, { waitTimeout: 0, ttl: 20_000 })).rejects.toBeInstanceOf(StoreUnavailableException);
    expect(late).toBeDefined();
    expect(await late).toEqual([0, 0]); // the late ACQUIRE found the tombstone
    expect(await client.exists(base)).toBe(0);
    const tombstones: string[] = [];
    for await (const batch of client.scanIterator({ MATCH: `${base}:abandoned:*` })) tombstones.push(...batch);
    expect(tombstones).toHaveLength(1);
    const pttl = await client.pTTL(tombstones[0]!);
    expect(pttl).toBeGreaterThan(20_000); // outlives the lock ttl it guards against
    expect(pttl).toBeLessThanOrEqual(40_000);
    const next = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
    await expect(next.release()).resolves.toBe(true);
    await locker.close();
  });

  it('close() stops abandon retries against a Redis that is gone', async () => {
    const broken = await connectTestRedis();
    await broken.close();
    const locker = new RedisLocker({ client: broken, prefix });
    await expect(locker.acquire(freshKey(), { waitTimeout: 0, ttl: 60_000 })).rejects.toBeInstanceOf(StoreUnavailableException);
    await sleep(100); // a few retries, all failing
    const started = Date.now();
    await locker.close();
    expect(Date.now() - started).toBeLessThan(200);
  });

  it('validates its options', () => {
    expect(() => new RedisLocker({ client: undefined as never })).toThrow(InvalidArgumentException);
    expect(() => new RedisLocker({ client, waiterTtl: 0 })).toThrow(InvalidArgumentException);
    expect(() => new RedisLocker({ client, fenceTtl: -1 })).toThrow(InvalidArgumentException);
  });
});
