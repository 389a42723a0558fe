import { afterAll, beforeAll, describe } from '@jest/globals';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { PostgresBackend } from '../../lib/postgres/postgres.backend.js';
import { createPostgresSessionStores, type PostgresSessionStores } from '../../lib/postgres/postgres-session.factory.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { unlockedCommitContract } from '../contract/unlocked-commit.contract.js';

/*
 * The unlocked commit on PostgreSQL: one call of the schema's write function that checks the
 * session's lock row is free and draws a fresh fence from it (as redis-unlocked-commit.spec.ts
 * checks for the Redis write script). The properties the shortcut must keep from "acquire,
 * write, release".
 */
describe('Unlocked commits on PostgreSQL (WriteGuard.unlocked, checked in the write function)', () => {
  let db: TestDatabase;
  let stores: PostgresSessionStores;
  let store: SessionStore;

  beforeAll(async () => {
    db = await createTestDatabase();
    stores = await createPostgresSessionStores({ connectionString: db.url });
    await stores.migrate();
    const { metadataBackend, storageBackend, locker } = stores;
    store = new SessionStore(
      resolveSessionOptions({ metadataBackend, storageBackend, locker, lock: { waitTimeout: 5000, ttl: 5000 } }),
    );
  });

  afterAll(async () => {
    await stores?.close();
    await db?.drop();
  });

  unlockedCommitContract(
    'Postgres',
    () => stores,
    () => store,
    () => new PostgresBackend({ pool: db.pool, namespace: 'bare' }),
  );
});
