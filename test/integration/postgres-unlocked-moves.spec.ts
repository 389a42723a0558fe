import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { createPostgresSessionStores, type PostgresSessionStores } from '../../lib/postgres/postgres-session.factory.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/*
 * Logins and metadata commits without the lock on PostgreSQL (movesGroups): what the session
 * layer relies on when it skips the lock, checked through Session on real stores.
 */
describe('Logins and metadata commits without the lock on PostgreSQL', () => {
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

  async function create(data: Record<string, unknown>): Promise<string> {
    const s = new Session(store, { cookieIds: [], cookieName: 'sid' });
    s.start();
    for (const [key, value] of Object.entries(data)) await s.putData(key, value);
    await s.commit();
    return s.getId();
  }

  async function resume(id: string): Promise<Session> {
    const s = new Session(store, { cookieIds: [id], cookieName: 'sid' });
    await s.resume();
    expect(s.isStarted()).toBe(true);
    return s;
  }

  it('the stores of createPostgresSessionStores commit without the lock', () => {
    expect(store.commitsUnlocked).toBe(true);
  });

  it('a login carries over what another request wrote after this one resumed (copied inside the call)', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    const other = await resume(id);
    await other.putData('b', 2);
    await other.commit();
    s.bindToUser('dave');
    await s.putData('c', 3);
    await s.commit();
    expect(s.getId()).not.toBe(id);
    expect(await (await resume(s.getId())).getAllData()).toEqual({ a: 1, b: 2, c: 3 });
    const gone = new Session(store, { cookieIds: [id], cookieName: 'sid' });
    await gone.resume();
    expect(gone.isStarted()).toBe(false);
  });

  it('a login whose metadata another request rewrote after it resumed moves under the lock instead, and keeps that change', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    const other = await resume(id);
    await other.addTag('green');
    await other.commit();
    s.bindToUser('erin');
    await s.commit();
    const fresh = await resume(s.getId());
    expect(fresh.getTags()).toEqual(expect.arrayContaining(['green']));
    expect(fresh.getUserId()).toBe('erin');
    expect(await fresh.getAllData()).toEqual({ a: 1 });
  });

  it('a tag commit whose metadata another request rewrote meanwhile keeps both tags', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    const other = await resume(id);
    await other.addTag('green');
    await other.commit();
    await s.addTag('blue');
    await s.commit();
    expect((await resume(id)).getTags().sort()).toEqual(['blue', 'green']);
  });

  it('a login while another request holds the lock waits for it and carries over what the holder wrote', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    const holder = await resume(id);
    await holder.open();
    s.bindToUser('fay');
    const login = s.commit();
    await holder.putData('b', 2);
    await holder.addTag('green');
    await holder.save();
    await login;
    const fresh = await resume(s.getId());
    expect(await fresh.getAllData()).toEqual({ a: 1, b: 2 });
    expect(fresh.getTags()).toEqual(expect.arrayContaining(['green']));
    expect(fresh.getUserId()).toBe('fay');
  });
});
