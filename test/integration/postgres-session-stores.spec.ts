import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidOptionException } from '../../lib/errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import { createPostgresSessionStores, redactConnectionString } from '../../lib/postgres/postgres-session.factory.js';
import { POSTGRES_SCHEMA_VERSION } from '../../lib/postgres/postgres-schema.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** Connections of this test database, other than the one asking. */
async function connections(): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
  );
  return Number(rows[0]!.n);
}

/**
 * `connections()` once it reaches `expected`, or after 3 s: a server backend leaves
 * pg_stat_activity a moment after its client ended the connection, not at once.
 */
async function connectionsSettlingAt(expected: number): Promise<number> {
  const deadline = Date.now() + 3000;
  let n = await connections();
  while (n !== expected && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    n = await connections();
  }
  return n;
}

describe('createPostgresSessionStores', () => {
  it('needs exactly one of connectionString and pool, and checks the names and durations first', async () => {
    await expect(createPostgresSessionStores({})).rejects.toBeInstanceOf(InvalidOptionException);
    await expect(createPostgresSessionStores({ connectionString: db.url, pool: db.pool })).rejects.toBeInstanceOf(
      InvalidOptionException,
    );
    await expect(createPostgresSessionStores({ pool: db.pool, schema: 'Bad-Schema' })).rejects.toThrow(/postgres\.schema/);
    await expect(createPostgresSessionStores({ pool: db.pool, tablePrefix: 'a;b' })).rejects.toThrow(/postgres\.tablePrefix/);
    await expect(createPostgresSessionStores({ pool: db.pool, prefix: 'white space' })).rejects.toThrow(/postgres\.prefix/);
    await expect(createPostgresSessionStores({ connectionString: db.url, commandTimeout: -1 })).rejects.toThrow(
      /postgres\.commandTimeout/,
    );
    await expect(createPostgresSessionStores({ pool: {} as never })).rejects.toThrow(/postgres\.pool/);
  });

  it('fails at boot with StoreUnavailableException naming the server, never its password', async () => {
    const error = await createPostgresSessionStores({
      connectionString: 'postgres://app:s3cret@127.0.0.1:1/app',
      connectTimeout: 500,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableException);
    expect((error as Error).message).toContain('127.0.0.1:1');
    expect((error as Error).message).not.toContain('s3cret');
    expect(redactConnectionString('postgres://u:pw@h/db?password=pw')).toBe('postgres://u:***@h/db');
  });

  it('from a connection string: owns the pool (statement timeout set), migrate() creates the schema, close() ends it', async () => {
    const before = await connections();
    const stores = await createPostgresSessionStores({ connectionString: db.url, schema: 'owned', commandTimeout: 750 });
    expect(await stores.migrate()).toEqual({ from: 0, to: POSTGRES_SCHEMA_VERSION });
    const { rows } = await stores.pool.query({ text: 'SHOW statement_timeout' });
    expect(rows).toEqual([{ statement_timeout: '750ms' }]);
    // Namespaces and lock names under the prefix.
    expect(stores.metadataBackend.namespace).toBe('sess:m');
    expect(stores.storageBackend.namespace).toBe('sess:s');
    expect(stores.storageBackend.checksLocksOf).toBe(stores.locker);
    await stores.storageBackend.set('x.y', 'z');
    const lock = await stores.locker.acquire('k', { waitTimeout: 0, ttl: 1000 });
    await lock.release();
    await stores.close();
    await stores.close(); // idempotent
    await expect(stores.storageBackend.get('x.y')).rejects.toBeInstanceOf(StoreUnavailableException);
    expect(await connectionsSettlingAt(before)).toBe(before);
  });

  it('with a given pool: never ends it', async () => {
    const stores = await createPostgresSessionStores({ pool: db.pool, prefix: 'given:' });
    await stores.migrate();
    await stores.metadataBackend.set('a', 'b');
    await stores.close();
    expect(await stores.metadataBackend.get('a')).toBe('b');
    expect(stores.metadataBackend.namespace).toBe('given:m');
  });
});
