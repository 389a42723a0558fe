import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { Browser } from '../support/http.js';
import { createPostgresTestStores, createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * The locking and logout-racing cases of locking.e2e-spec.ts with sessions and locks in
 * PostgreSQL: every lock hand-over is a NOTIFY to the next waiter, every commit one call of
 * the schema's write function.
 */
let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe.each<HttpAdapterName>(['express', 'fastify'])('locking through real HTTP on %s, sessions in PostgreSQL', (adapter) => {
  let app: INestApplication;
  /** The same app with a short lock wait, for the 423 cases. */
  let impatient: INestApplication;
  let stores: Awaited<ReturnType<typeof createPostgresTestStores>>;
  // 100 requests queue on one lock, each hand-over a commit that waits for the WAL flush.
  const QUEUE_WAIT = 15_000;
  const WAIT_TIMEOUT = 1000;

  beforeAll(async () => {
    stores = await createPostgresTestStores(db);
    const { metadataBackend, storageBackend, locker } = stores;
    app = await createSampleApp(adapter, {
      session: { metadataBackend, storageBackend, locker, lock: { waitTimeout: QUEUE_WAIT, ttl: 5000 } },
    });
    await app.listen(0, '127.0.0.1');
    const short = await createPostgresTestStores(db);
    impatient = await createSampleApp(adapter, {
      session: {
        metadataBackend: short.metadataBackend,
        storageBackend: short.storageBackend,
        locker: short.locker,
        lock: { waitTimeout: WAIT_TIMEOUT, ttl: 5000 },
      },
    });
    await impatient.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
    await impatient?.close();
  });

  async function newSession(): Promise<Browser> {
    const browser = new Browser(app);
    await browser.put('/session/data/seed', { value: true });
    expect(browser.cookie).toBeDefined();
    return browser;
  }

  const post = (browser: Browser, path: string) =>
    request(app.getHttpServer()).post(path).set('Cookie', `sid=${browser.cookie!}`);

  it.each(['/counter/n/increment?lock=1', '/counter/n/increment-locked'])(
    '100 concurrent increments of one key through %s end at exactly 100',
    async (path) => {
      const browser = await newSession();
      const results = await Promise.all(Array.from({ length: 100 }, () => post(browser, path)));
      expect(results.filter((r) => r.status !== 200).map((r) => [r.status, r.body])).toEqual([]);
      expect(results.map((r) => r.body.value as number).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 100 }, (_, i) => i + 1),
      );
      expect((await browser.get('/session')).body.data.n).toBe(100);
    },
  );

  it('without the lock, concurrent increments of one key do lose updates (what the lock prevents)', async () => {
    const browser = await newSession();
    await Promise.all(Array.from({ length: 20 }, () => post(browser, '/counter/u/increment?delay=20')));
    expect((await browser.get('/session')).body.data.u).toBeLessThan(20);
  });

  it('100 concurrent requests each incrementing its own key without a lock lose none of the keys', async () => {
    const browser = await newSession();
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => post(browser, `/counter/k${i}/increment?delay=20`)));
    expect(results.every((r) => r.status === 200)).toBe(true);
    const data = (await browser.get('/session')).body.data as Record<string, number>;
    for (let i = 0; i < 100; i++) expect(data[`k${i}`]).toBe(1);
  });

  it('a logout issued while a slow request of the same session runs leaves the session destroyed', async () => {
    const storageBefore = await stores.storageEntries();
    const browser = await newSession();
    const id = browser.cookie!;
    const slow = request(app.getHttpServer())
      .put('/session/data/late?delay=400')
      .set('Cookie', `sid=${id}`)
      .send({ value: 'written after logout' })
      .then((r) => r);
    await new Promise((r) => setTimeout(r, 100));
    const logout = await post(browser, '/auth/logout');
    expect(logout.status).toBe(200);
    const slowRes = await slow;
    expect(slowRes.status).toBe(409); // its writes were discarded, and it says so
    expect(slowRes.body.message).toMatch(/destroyed/);
    const after = await request(app.getHttpServer()).get('/session').set('Cookie', `sid=${id}`);
    expect(after.body.started).toBe(false);
    expect(await stores.metadataBackend.has(metadataKeyOf(id))).toBe(false);
    // Nothing of the old session's storage was written back.
    expect(await stores.storageEntries()).toBe(storageBefore);
  });

  it('logouts racing many concurrent writes of the same session leave nothing behind', async () => {
    const storageBefore = await stores.storageEntries();
    for (let round = 0; round < 5; round++) {
      const browser = await newSession();
      const id = browser.cookie!;
      const writes = Array.from({ length: 10 }, (_, i) =>
        request(app.getHttpServer())
          .put(`/session/data/w${i}?delay=${i * 10}`)
          .set('Cookie', `sid=${id}`)
          .send({ value: i })
          .then((r) => r.status),
      );
      await new Promise((r) => setTimeout(r, 30));
      expect((await post(browser, '/auth/logout')).status).toBe(200);
      const statuses = await Promise.all(writes);
      // Before the logout (200) or discarded after it (409); never a store error.
      expect(statuses.filter((s) => s !== 200 && s !== 409)).toEqual([]);
      expect((await request(app.getHttpServer()).get('/session').set('Cookie', `sid=${id}`)).body.started).toBe(false);
    }
    expect(await stores.storageEntries()).toBe(storageBefore);
  });

  it.each(['/counter/n/increment?lock=1', '/counter/n/increment-locked'])(
    'a lock held past the wait time answers 423 within the wait time plus a margin (%s)',
    async (path) => {
      const browser = new Browser(impatient);
      await browser.put('/session/data/seed', { value: true });
      const send = (p: string) => request(impatient.getHttpServer()).post(p).set('Cookie', `sid=${browser.cookie!}`);
      const holder = send(`${path}${path.includes('?') ? '&' : '?'}delay=${WAIT_TIMEOUT + 1200}`).then((r) => r);
      await new Promise((r) => setTimeout(r, 100));
      const started = Date.now();
      const waiter = await send(path);
      const waited = Date.now() - started;
      expect(waiter.status).toBe(423);
      expect(waiter.body.message).toMatch(/locked by another request/);
      expect(waited).toBeGreaterThanOrEqual(WAIT_TIMEOUT - 20);
      expect(waited).toBeLessThan(WAIT_TIMEOUT + 700);
      expect((await holder).status).toBe(200);
    },
  );

  it.each(['/counter/f/increment?lock=1&fail=1', '/counter/f/increment-locked?fail=1'])(
    'no lock remains held after a handler throws (%s)',
    async (path) => {
      const browser = await newSession();
      const failed = await post(browser, path);
      expect(failed.status).toBe(400);
      const started = Date.now();
      const next = await post(browser, '/counter/f/increment?lock=1');
      expect(next.status).toBe(200);
      // Far less than the lock's ttl: it was released, not left to expire.
      expect(Date.now() - started).toBeLessThan(2000);
    },
  );
});
