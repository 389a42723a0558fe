import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { createTestSessionStores, onEveryBackend, type TestSessionStores } from '../support/session-backends.js';

describe.each(onEveryBackend<HttpAdapterName>(['express', 'fastify']))(
  'locking through real HTTP on %s, sessions in %s',
  (adapter, backend) => {
    let app: INestApplication;
    let stores: TestSessionStores;
    // Redis: 100 requests queue on one lock through a real round trip each (3.5 s: room for a loaded CI machine; the 423 test's holder sleeps it + 1.2 s, the sample's cap is 5 s).
    const WAIT_TIMEOUT = backend === 'redis' ? 3500 : 300;

    beforeAll(async () => {
      stores = await createTestSessionStores(backend);
      const { metadataBackend, storageBackend, locker } = stores;
      app = await createSampleApp(adapter, {
        session: { metadataBackend, storageBackend, locker, lock: { waitTimeout: WAIT_TIMEOUT, ttl: 5000 } },
      });
      await app.listen(0, '127.0.0.1');
    });
    afterAll(async () => {
      await app.close();
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
        // 100 requests queue on one lock (WAIT_TIMEOUT leaves room for all of them).
        const results = await Promise.all(Array.from({ length: 100 }, () => post(browser, path)));
        const statuses = results.map((r) => r.status);
        expect(statuses.filter((s) => s !== 200)).toEqual([]);
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
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) => post(browser, `/counter/k${i}/increment?delay=20`)),
      );
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
        .send({ value: 'written after logout' });
      const slowDone = slow.then((r) => r);
      await new Promise((r) => setTimeout(r, 100));
      const logout = await post(browser, '/auth/logout');
      expect(logout.status).toBe(200);
      const slowRes = await slowDone;
      expect(slowRes.status).toBe(409); // its writes were discarded, and it says so
      expect(slowRes.body.message).toMatch(/destroyed/);
      const after = await request(app.getHttpServer()).get('/session').set('Cookie', `sid=${id}`);
      expect(after.body.started).toBe(false);
      expect(await stores.metadataBackend.has(metadataKeyOf(id))).toBe(false);
      // Nothing of the old session's storage was written back.
      expect(await stores.storageEntries()).toBe(storageBefore);
    });

    it.each(['/counter/n/increment?lock=1', '/counter/n/increment-locked'])(
      'a lock held past the wait time answers 423 within the wait time plus a margin (%s)',
      async (path) => {
        const browser = await newSession();
        const holder = post(browser, `${path}${path.includes('?') ? '&' : '?'}delay=${WAIT_TIMEOUT + 1200}`).then((r) => r);
        await new Promise((r) => setTimeout(r, 100));
        const started = Date.now();
        const waiter = await post(browser, path);
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
        expect(Date.now() - started).toBeLessThan(WAIT_TIMEOUT);
      },
    );
  },
);
