import { afterAll, beforeAll } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { createPostgresSessionStores } from '../../lib/postgres/postgres-session.factory.js';
import { sessionManagerContract } from '../contract/session-manager.contract.js';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '../support/postgres.js';

/** The SessionManager suite (remote sessions, tags, users, expiry, GC and its lock, events) on PostgreSQL. */
let db: TestDatabase;

beforeAll(async () => {
  Logger.overrideLogger(['error', 'warn']);
  db = await createTestDatabase();
  await (await createPostgresSessionStores({ pool: db.pool })).migrate();
});
afterAll(async () => {
  await db?.drop();
});

/** Distinct tags the metadata namespace still stores (expired entries included). */
async function tagCount(namespace: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(
    'SELECT count(DISTINCT tag) AS n FROM nest_session_tags WHERE namespace = $1',
    [namespace],
  );
  return Number(rows[0]!.n);
}

async function factory() {
  // A fresh prefix per test: no entry of any other test is visible.
  const prefix = `${uniqueNamespace('manager')}:`;
  const stores = await createPostgresSessionStores({ pool: db.pool, prefix });
  return {
    metadataBackend: stores.metadataBackend,
    storageBackend: stores.storageBackend,
    locker: stores.locker,
    cleanup: async () => {
      await stores.close();
      await stores.metadataBackend.flush();
      await stores.storageBackend.flush();
    },
    storedTagCount: () => tagCount(stores.metadataBackend.namespace),
  };
}

// Expiry follows this process's clock, so the suite can move a fake Date; and in real time too.
sessionManagerContract('postgres', factory);
sessionManagerContract('postgres (real time)', factory, { realTime: true });
