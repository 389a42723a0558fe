import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { LockTimeoutException } from '../../lib/errors/lock-timeout.exception.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import { PostgresLocker } from '../../lib/postgres/postgres.locker.js';
import { migratePostgresSchema } from '../../lib/postgres/postgres.migration.js';
import { lockerContract } from '../contract/locker.contract.js';
import { createTestDatabase, testPool, uniqueNamespace, type TestDatabase } from '../support/postgres.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await migratePostgresSchema(db.pool);
});

afterAll(async () => {
  await db?.drop();
});

const prefix = `${uniqueNamespace('locker')}:`;

lockerContract('PostgresLocker', async () => {
  const locker = new PostgresLocker({ pool: db.pool, prefix });
  return {
    locker,
    cleanup: () => locker.close(),
    forgetFences: async (key) => {
      await db.pool.query('DELETE FROM nest_session_locks WHERE name = $1', [prefix + key]);
    },
  };
});

describe('PostgresLocker', () => {
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  let n = 0;
  const freshKey = () => `pk${++n}`;
  const queued = async (key: string): Promise<number> => {
    const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM nest_session_lock_waiters WHERE name = $1', [
      prefix + key,
    ]);
    return Number(rows[0]!.n);
  };

  it('rejects bad options', () => {
    expect(() => new PostgresLocker({ pool: db.pool, waiterTtl: 5 })).toThrow(InvalidArgumentException);
    expect(() => new PostgresLocker({ pool: db.pool, fenceTtl: -1 })).toThrow(InvalidArgumentException);
  });

  it('two lockers (two app instances) on one database exclude each other and hand over in arrival order', async () => {
    const one = new PostgresLocker({ pool: db.pool, prefix });
    const pool2 = testPool(db.url);
    const two = new PostgresLocker({ pool: pool2, prefix });
    try {
      const key = freshKey();
      const holder = await one.acquire(key, { waitTimeout: 0, ttl: 5000 });
      const order: string[] = [];
      const waiters: Promise<void>[] = [];
      for (const [i, locker] of [one, two, one, two].entries()) {
        waiters.push(
          locker.acquire(key, { waitTimeout: 3000, ttl: 5000 }).then(async (lock) => {
            order.push(`w${i}`);
            await lock.release();
          }),
        );
        // Each waiter reaches the queue before the next one asks.
        const until = Date.now() + 2000;
        while ((await queued(key)) !== i + 1 && Date.now() < until) await sleep(5);
      }
      expect(await queued(key)).toBe(4);
      const released = Date.now();
      await holder.release();
      await Promise.all(waiters);
      expect(order).toEqual(['w0', 'w1', 'w2', 'w3']);
      // Woken by NOTIFY, not by a timer: four hand-overs take far less than a refresh period each.
      expect(Date.now() - released).toBeLessThan(300);
      expect(await queued(key)).toBe(0);
    } finally {
      await one.close();
      await two.close();
      await pool2.end();
    }
  });

  it('a waiter whose process died (ticket no longer refreshed) holds up the queue for at most waiterTtl', async () => {
    const locker = new PostgresLocker({ pool: db.pool, prefix, waiterTtl: 300 });
    try {
      const key = freshKey();
      const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
      // A ticket ahead of everybody that nobody refreshes.
      await db.pool.query(
        `INSERT INTO nest_session_lock_waiters (name, token, ticket, lease_until) VALUES ($1, 'dead', 0, clock_timestamp() + interval '300 milliseconds')`,
        [prefix + key],
      );
      const waiting = locker.acquire(key, { waitTimeout: 3000, ttl: 1000 });
      await sleep(30);
      const released = Date.now();
      await holder.release();
      const lock = await waiting;
      expect(Date.now() - released).toBeLessThan(300 + 300);
      await lock.release();
    } finally {
      await locker.close();
    }
  });

  it('an abandoned acquisition (outcome unknown) leaves no lock, even when its acquire arrives later', async () => {
    const locker = new PostgresLocker({ pool: db.pool, prefix });
    try {
      const key = freshKey();
      const token = 'late-token';
      await db.pool.query('SELECT nest_session_lock_abandon($1, $2, $3, $4)', [prefix + key, token, 'unused', 10_000]);
      const { rows } = await db.pool.query<{ fence: string | null }>(
        'SELECT out_fence AS fence FROM nest_session_lock_acquire($1, $2, 1000, false, 1000, $3)',
        [prefix + key, token, 'unused'],
      );
      expect(rows[0]!.fence).toBeNull();
      const lock = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      await lock.release();
    } finally {
      await locker.close();
    }
  });

  it('a statement that fails (database unreachable) is StoreUnavailableException, and abandons in the background', async () => {
    const pool = testPool('postgres://postgres@127.0.0.1:1/none', { connectionTimeoutMillis: 300 });
    const locker = new PostgresLocker({ pool, prefix });
    try {
      await expect(locker.acquire(freshKey(), { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(StoreUnavailableException);
      await expect(locker.acquire(freshKey(), { waitTimeout: 200, ttl: 1000 })).rejects.toBeInstanceOf(StoreUnavailableException);
    } finally {
      const started = Date.now();
      await locker.close();
      expect(Date.now() - started).toBeLessThan(1000);
      await pool.end();
    }
  });

  it('keeps waiting on timers when the listening connection breaks, and listens again', async () => {
    const locker = new PostgresLocker({ pool: db.pool, prefix });
    try {
      const key = freshKey();
      const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
      const waiting = locker.acquire(key, { waitTimeout: 3000, ttl: 1000 });
      await sleep(50);
      // Kill the LISTEN connection from the server side.
      await db.pool.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`,
      );
      await sleep(50);
      await holder.release();
      const lock = await waiting;
      await lock.release();
      // And the next contention is woken by a notification again.
      const again = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
      const next = locker.acquire(key, { waitTimeout: 3000, ttl: 1000 });
      await sleep(50);
      const released = Date.now();
      await again.release();
      await (await next).release();
      expect(Date.now() - released).toBeLessThan(200);
    } finally {
      await locker.close();
    }
  });

  it('waitTimeout 0 never queues', async () => {
    const locker = new PostgresLocker({ pool: db.pool, prefix });
    try {
      const key = freshKey();
      const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
      await expect(locker.acquire(key, { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(LockTimeoutException);
      expect(await queued(key)).toBe(0);
      await holder.release();
    } finally {
      await locker.close();
    }
  });
});
