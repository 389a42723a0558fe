import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { SessionLocker, TaggableBackend } from 'nest-session';
import { createPostgresSessionStores, type PostgresSessionStoresOptions } from 'nest-session/postgres';

/** The PostgreSQL server the tests use: `POSTGRES_URL`, default the local one (trust, user postgres). */
export const TEST_POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A database of its own for one test file, dropped by `drop()`. */
export interface TestDatabase {
  /** Connection URL of the new database. */
  readonly url: string;
  readonly name: string;
  /** A pool on it (ended by `drop()`); its `'error'` events are swallowed. */
  readonly pool: pg.Pool;
  /** Ends the pool and drops the database (also with connections still open to it). */
  drop(): Promise<void>;
}

const HOW_TO_START =
  'Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start ' +
  '(or apt-get install postgresql on a machine that lacks it)';

/** A pool that never crashes the process when a connection breaks (the tests see the failing query instead). */
export function testPool(connectionString: string, extra: pg.PoolConfig = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString, connectionTimeoutMillis: 3000, max: 10, ...extra });
  pool.on('error', () => undefined);
  return pool;
}

/**
 * Creates a database `ns_test_<random>` on the test server and a pool on it. Tests that need
 * PostgreSQL fail (never skip) when it is missing, locally and in CI: the message says how to
 * start it. Call `drop()` in `afterAll`.
 */
export async function createTestDatabase(serverUrl: string = TEST_POSTGRES_URL): Promise<TestDatabase> {
  const admin = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 3000 });
  admin.on('error', () => undefined);
  const name = `ns_test_${randomBytes(6).toString('hex')}`;
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (error) {
    await admin.end().catch(() => undefined);
    throw new Error(
      `These tests need PostgreSQL at ${serverUrl} and it does not answer (${(error as Error).message}). ${HOW_TO_START}`,
    );
  }
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const pool = testPool(url.toString());
  let dropped: Promise<void> | undefined;
  return {
    url: url.toString(),
    name,
    pool,
    drop: () =>
      (dropped ??= (async () => {
        await pool.end().catch(() => undefined);
        const dropper = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 3000 });
        dropper.on('error', () => undefined);
        await dropper.connect();
        try {
          await dropper.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        } finally {
          await dropper.end();
        }
      })()),
  };
}

/** A namespace or lock prefix no other test shares. */
export function uniqueNamespace(name: string): string {
  return `${name}-${randomBytes(4).toString('hex')}`;
}

/**
 * Session stores on a test database for `SessionModule` options (SessionModule closes them,
 * and their own pool, on app.close()), with the schema migrated, and a count of the storage
 * namespace's rows (data entries and write guards).
 */
export async function createPostgresTestStores(
  db: TestDatabase,
  options: Omit<PostgresSessionStoresOptions, 'pool' | 'connectionString'> = {},
): Promise<{
  readonly metadataBackend: TaggableBackend;
  readonly storageBackend: TaggableBackend;
  readonly locker: SessionLocker;
  storageEntries(): Promise<number>;
}> {
  const stores = await createPostgresSessionStores({
    prefix: `${uniqueNamespace('e2e')}:`,
    ...options,
    connectionString: db.url,
  });
  await stores.migrate();
  const { metadataBackend, storageBackend, locker } = stores;
  return {
    metadataBackend,
    storageBackend,
    locker,
    storageEntries: async () => {
      const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM nest_session_entries WHERE namespace = $1', [
        storageBackend.namespace,
      ]);
      return Number(rows[0]!.n);
    },
  };
}
