import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { PostgresBackend } from '../../lib/postgres/postgres.backend.js';
import { PostgresLocker } from '../../lib/postgres/postgres.locker.js';
import { migratePostgresSchema } from '../../lib/postgres/postgres.migration.js';
import { PostgresWriteBatcher } from '../../lib/postgres/postgres-write.batcher.js';
import { LockTimeoutException } from '../../lib/errors/lock-timeout.exception.js';
import { PostgresServer } from '../support/postgres-server.js';
import { testPool } from '../support/postgres.js';

/**
 * How many WAL flushes (fsyncs, `pg_stat_wal.wal_sync`) the engine's commits cost, on a private
 * cluster where nothing else runs: the WAL writer's timer and autovacuum are turned off, so every
 * flush counted is one a committing statement waited for. PostgreSQL flushes at commit only when
 * the transaction wrote WAL: UNLOGGED tables (the locks) and UNLOGGED sequences write none.
 */
let server: PostgresServer;

beforeAll(async () => {
  server = await PostgresServer.start();
  const admin = testPool(server.url, { max: 1 });
  await admin.query(`ALTER SYSTEM SET wal_writer_delay = '10s'`);
  await admin.query(`ALTER SYSTEM SET autovacuum = off`);
  await admin.query('SELECT pg_reload_conf()');
  await migratePostgresSchema(admin);
  await admin.end();
}, 60_000);

afterAll(async () => {
  await server?.destroy();
});

/**
 * The WAL flushes `work` causes, on a pool of its own whose connections have ended (a backend
 * reports its WAL statistics when it exits) before the count is read.
 */
async function walFlushes(work: (pool: pg.Pool) => Promise<void>): Promise<number> {
  const read = async () => {
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: string }>('SELECT wal_sync AS n FROM pg_stat_wal');
      return Number(rows[0]!.n);
    } finally {
      await client.end();
    }
  };
  const before = await read();
  const pool = testPool(server.url, { max: 4 });
  try {
    await work(pool);
  } finally {
    await pool.end();
  }
  // Exiting backends flush their statistics asynchronously: wait until the count settles.
  let after = await read();
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const again = await read();
    if (again === after && i >= 3) break;
    after = again;
  }
  return after - before;
}

const N = 60;

describe('WAL flushes per commit (private cluster)', () => {
  it('control: every data write waits for one', async () => {
    const flushes = await walFlushes(async (pool) => {
      const backend = new PostgresBackend({ pool, namespace: 'control' });
      for (let i = 0; i < N; i++) await backend.set(`k${i}`, 'v');
    });
    expect(flushes).toBeGreaterThanOrEqual(N - 2);
  });

  it('lock traffic (acquire, extend, release, queueing and giving up) waits for none', async () => {
    const flushes = await walFlushes(async (pool) => {
      const locker = new PostgresLocker({ pool });
      for (let i = 0; i < N; i++) {
        const lock = await locker.acquire(`key${i % 5}`, { waitTimeout: 0, ttl: 5000 });
        await lock.extend(5000);
        await lock.release();
      }
      // Queueing draws tickets from the sequence (PostgreSQL logs a logged sequence every 32).
      const held = await locker.acquire('held', { waitTimeout: 0, ttl: 10_000 });
      for (let i = 0; i < 40; i++) {
        await expect(locker.acquire('held', { waitTimeout: 1, ttl: 1000 })).rejects.toBeInstanceOf(LockTimeoutException);
      }
      await held.release();
      await locker.close();
    });
    console.log(`WAL flushes for ${N} acquire/extend/release cycles and 40 queued acquires that gave up: ${flushes}`);
    expect(flushes).toBeLessThanOrEqual(2);
  });

  it("a new session's metadata and storage writes in one tick: one flush with the shared batcher, two without", async () => {
    const create = async (metadata: PostgresBackend, storage: PostgresBackend, i: number) => {
      expect(
        await Promise.all([
          metadata.write({ sets: [{ id: `m${i}`, data: 'meta', tags: ['session'], lifetime: 600 }] }),
          storage.write(
            { sets: [{ id: `s${i}.n`, data: '1', tags: [`s${i}`] }] },
            { id: `s${i}.~guard`, fence: 0, create: true, tags: [`s${i}`], lifetime: 600 },
          ),
        ]),
      ).toEqual(['ok', 'ok']);
    };
    const batched = await walFlushes(async (pool) => {
      const batcher = new PostgresWriteBatcher({ pool });
      const metadata = new PostgresBackend({ pool, namespace: 'b:m', batcher });
      const storage = new PostgresBackend({ pool, namespace: 'b:s', batcher });
      for (let i = 0; i < N; i++) await create(metadata, storage, i);
    });
    const alone = await walFlushes(async (pool) => {
      const metadata = new PostgresBackend({ pool, namespace: 'a:m' });
      const storage = new PostgresBackend({ pool, namespace: 'a:s' });
      for (let i = 0; i < N; i++) await create(metadata, storage, i);
    });
    console.log(`WAL flushes for ${N} new sessions: ${batched} batched, ${alone} alone`);
    expect(batched).toBeLessThanOrEqual(N + 2);
    // Two concurrent commits can share one flush (group commit), so alone is somewhat under 2N.
    expect(alone).toBeGreaterThanOrEqual(1.5 * N);
  });
});
