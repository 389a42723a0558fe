import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { LockException } from '../../lib/errors/lock.exception.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { PostgresBackend } from '../../lib/postgres/postgres.backend.js';
import { createPostgresSessionStores, type PostgresSessionStores } from '../../lib/postgres/postgres-session.factory.js';
import { Session } from '../../lib/session/session.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
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

  const storageIdOf = async (id: string): Promise<string> => (await store.loadMetadata(metadataKeyOf(id)))!.storageId;
  const guardFence = async (storageId: string): Promise<number> => Number(await stores.storageBackend.get(`${storageId}.~guard`));

  it('the storage backend from createPostgresSessionStores checks the locks of its locker', () => {
    expect(stores.storageBackend.checksLocksOf).toBe(stores.locker);
    expect(stores.metadataBackend.checksLocksOf).toBeUndefined();
    expect(store.writesUnlocked).toBe(true);
  });

  it('while another request holds the lock, an unlocked write writes nothing and answers "locked"', async () => {
    const id = await created(store, { a: 1 });
    const storageId = await storageIdOf(id);
    const lock = await stores.locker.acquire(storageId, { ttl: 5000, waitTimeout: 0 });
    try {
      const result = await stores.storageBackend.write(
        { sets: [{ id: `${storageId}.a`, data: '2', tags: [storageId] }] },
        { id: `${storageId}.~guard`, fence: 0, unlocked: true },
      );
      expect(result).toBe('locked');
      expect(await (await resumed(store, id)).getAllData()).toEqual({ a: 1 });
    } finally {
      await lock.release();
    }
  });

  it('draws a fence above every fence the lock handed out, and below the next holder’s', async () => {
    const id = await created(store, { a: 1 });
    const storageId = await storageIdOf(id);
    const first = await stores.locker.acquire(storageId, { ttl: 5000, waitTimeout: 0 });
    await first.release();
    const session = await resumed(store, id);
    await session.putData('a', 2);
    await session.commit();
    const drawn = await guardFence(storageId);
    expect(drawn).toBeGreaterThan(first.fence);
    const next = await stores.locker.acquire(storageId, { ttl: 5000, waitTimeout: 0 });
    expect(next.fence).toBeGreaterThan(drawn);
    await next.release();
  });

  it('fences off an older holder whose lock expired: its later commit answers LockException and loses nothing', async () => {
    const id = await created(store, { a: 1 });
    const slow = await resumed(store, id);
    await slow.open({ ttl: 300 }); // the lock expires while this request still works
    await slow.putData('a', 'stale');
    await new Promise((resolve) => setTimeout(resolve, 400));
    const quick = await resumed(store, id);
    await quick.putData('b', 'fresh');
    await quick.commit(); // unlocked: the lock expired, so it is free
    await expect(slow.save()).rejects.toBeInstanceOf(LockException);
    expect(await (await resumed(store, id)).getAllData()).toEqual({ a: 1, b: 'fresh' });
  });

  it('a plain commit while another request holds the lock waits for it (FIFO), then writes: no lost update', async () => {
    const id = await created(store, { n: 0 });
    const holder = await resumed(store, id);
    await holder.open();
    const other = await resumed(store, id);
    await other.putData('other', true);
    let committed = false;
    const pending = other.commit().then(() => (committed = true));
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(committed).toBe(false); // queued behind the holder
    await holder.putData('n', 1);
    await holder.save();
    await pending;
    expect(await (await resumed(store, id)).getAllData()).toEqual({ n: 1, other: true });
  });

  it('a destroyed session’s unlocked commit writes nothing back', async () => {
    const id = await created(store, { a: 1 });
    const storageId = await storageIdOf(id);
    const late = await resumed(store, id);
    await late.putData('a', 2);
    const killer = await resumed(store, id);
    await killer.destroy();
    await expect(late.commit()).rejects.toThrow();
    expect(await stores.storageBackend.findIdentifiersByTag(storageId)).toEqual([]);
  });

  it('a PostgresBackend without a locker refuses unlocked writes, and a store with another locker never asks for them', async () => {
    const bare = new PostgresBackend({ pool: db.pool, namespace: 'bare' });
    await expect(bare.write({}, { id: 'x.~guard', fence: 0, unlocked: true })).rejects.toBeInstanceOf(InvalidArgumentException);
    const { metadataBackend, storageBackend } = stores;
    const mixed = new SessionStore(resolveSessionOptions({ metadataBackend, storageBackend }));
    expect(mixed.writesUnlocked).toBe(false); // the default MemoryLocker's locks are not in PostgreSQL
    expect(new Session(mixed, { cookieIds: [], cookieName: 'sid' }).isStarted()).toBe(false);
  });
});
