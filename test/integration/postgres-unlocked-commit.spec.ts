import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { FlashBag } from '../../lib/bags/flash.bag.js';
import { SessionLimitExceededException } from '../../lib/errors/session-limit-exceeded.exception.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { PostgresBackend } from '../../lib/postgres/postgres.backend.js';
import { createPostgresSessionStores, type PostgresSessionStores } from '../../lib/postgres/postgres-session.factory.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { created, resumed } from '../support/session-requests.js';
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

  it('maxKeysPerSession is enforced inside the write function (no read first): 413, nothing written, bags not counted against it', async () => {
    const { metadataBackend, storageBackend, locker } = stores;
    const capped = new SessionStore(resolveSessionOptions({ metadataBackend, storageBackend, locker, maxKeysPerSession: 2 }));
    expect(capped.capsKeysInWrite).toBe(true);
    const id = await created(capped, { a: 1 });
    const second = await resumed(capped, id);
    await second.putData('b', 2); // no read of the keys: the write function counts them
    second.registerBag(new FlashBag());
    (await second.getBag<FlashBag>('flashes')).add('note', 'bags are not keys');
    await second.commit();
    const third = await resumed(capped, id);
    await third.putData('a', 10); // replacing a held key is always allowed
    await third.putData('c', 3);
    const error = await third.commit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionLimitExceededException);
    expect((error as SessionLimitExceededException).getStatus()).toBe(413);
    expect(await (await resumed(capped, id)).getAllData()).toEqual({ a: 1, b: 2 });
    const fourth = await resumed(capped, id);
    await fourth.removeData('b');
    await fourth.putData('c', 3); // a removal in the same commit makes room
    await fourth.commit();
    expect(await (await resumed(capped, id)).getAllData()).toEqual({ a: 1, c: 3 });
  });
});
