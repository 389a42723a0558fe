import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { PostgresBackend } from '../../lib/postgres/postgres.backend.js';
import { createPostgresSessionStores, type PostgresSessionStores } from '../../lib/postgres/postgres-session.factory.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { unlockedCommitContract } from '../contract/unlocked-commit.contract.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { created, resumed } from '../support/session-requests.js';

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

  it('a storage flushed by a login or a destroy takes its free lock row with it (schema version 6; a row per login stayed for fenceTtl)', async () => {
    const locks = async (): Promise<string[]> =>
      (await db.pool.query<{ name: string }>('SELECT name FROM nest_session_locks ORDER BY name')).rows.map((row) => row.name);
    const storageIdOf = async (id: string): Promise<string> => (await store.loadMetadata(metadataKeyOf(id)))!.storageId;
    const before = new Set(await locks());
    let id = await created(store, { a: 1 });
    for (let i = 0; i < 5; i++) {
      const write = await resumed(store, id);
      await write.putData('n', i); // an unlocked commit: draws a fence, creating the lock row
      await write.commit();
      const login = await resumed(store, id);
      login.bindToUser(`user${i}`); // moves the storage, flushing the old one
      await login.commit();
      id = login.getId();
    }
    const locked = await resumed(store, id);
    await locked.open(); // takes the lock (acquire: the row holds a fence)
    await locked.putData('n', 'locked');
    await locked.commit();
    await locked.dispose();
    const live = await storageIdOf(id);
    expect((await locks()).filter((name) => !before.has(name))).toEqual([stores.locker.lockNameOf(live)]);
    const doomed = await resumed(store, id);
    await doomed.destroy();
    expect((await locks()).filter((name) => !before.has(name))).toEqual([]);
  });

  it('an unlocked commit that arrives after its session was destroyed leaves no lock row (schema version 7)', async () => {
    const locks = async (): Promise<string[]> =>
      (await db.pool.query<{ name: string }>('SELECT name FROM nest_session_locks ORDER BY name')).rows.map((row) => row.name);
    const before = new Set(await locks());
    const id = await created(store, { a: 1 });
    const late = await resumed(store, id); // a request in flight while the user logs out
    await (await resumed(store, id)).destroy();
    expect((await locks()).filter((name) => !before.has(name))).toEqual([]);
    await late.putData('a', 2);
    await expect(late.commit()).rejects.toThrow(); // the session is gone: nothing written
    // Before version 7 its fence draw created the row and left it there for fenceTtl.
    expect((await locks()).filter((name) => !before.has(name))).toEqual([]);
  });

  unlockedCommitContract(
    'Postgres',
    () => stores,
    () => store,
    () => new PostgresBackend({ pool: db.pool, namespace: 'bare' }),
    true,
    true,
  );
});
