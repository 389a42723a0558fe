import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import type { HttpAdapterName } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { createTestSessionStores, onEveryBackend } from '../support/session-backends.js';

/**
 * The sample app's `SESSION_FRESH_AGE` with a value other than the default (300 s): the
 * re-authentication age of `GET /account/sensitive` (`@RequireFreshSession`) follows it. The
 * account controller reads the variable when it is loaded (the decorator takes its argument at
 * decoration time), so it is set before this file loads the sample app, which no other import
 * of this file does (Jest gives every test file modules of its own).
 */
const FRESH_AGE = 30;
const previous = process.env.SESSION_FRESH_AGE;
process.env.SESSION_FRESH_AGE = String(FRESH_AGE);
let createSampleApp: (typeof import('../../sample-app/app.factory.js'))['createSampleApp'];
try {
  ({ createSampleApp } = await import('../../sample-app/app.factory.js'));
} finally {
  if (previous === undefined) delete process.env.SESSION_FRESH_AGE;
  else process.env.SESSION_FRESH_AGE = previous;
}

const T0 = new Date('2034-02-03T04:05:06.000Z').getTime();
const at = (seconds: number): void => {
  jest.setSystemTime(T0 + seconds * 1000);
};

describe.each(onEveryBackend<HttpAdapterName>(['express', 'fastify']))(
  `SESSION_FRESH_AGE=${FRESH_AGE} on %s with %s`,
  (adapter, backend) => {
    let app: INestApplication;
    beforeAll(async () => {
      const { metadataBackend, storageBackend, locker } = await createTestSessionStores(backend);
      app = await createSampleApp(adapter, {
        session: {
          metadataBackend,
          storageBackend,
          ...(locker === undefined ? {} : { locker }),
          garbageCollection: { probability: 0, cron: false },
        },
      });
    });
    afterEach(() => {
      jest.useRealTimers();
    });
    afterAll(async () => {
      await app.close();
    });

    it(`GET /account/sensitive answers 401 {reauthenticate: true} after ${FRESH_AGE} s, not after the default 300 s`, async () => {
      fakeOnlyDate(T0);
      const browser = new Browser(app);
      expect((await browser.put('/session/data/cart', { value: ['book'] })).status).toBe(200);
      expect((await browser.post('/auth/login', { user: `fresh-${adapter}-${backend}` })).status).toBe(200);
      expect((await browser.get('/account/sensitive')).body).toEqual({ ok: true });
      at(FRESH_AGE - 1);
      expect((await browser.get('/account/sensitive')).status).toBe(200);
      at(FRESH_AGE + 1); // well within the default 300 s
      const stale = await browser.get('/account/sensitive');
      expect(stale.status).toBe(401);
      expect(stale.body).toMatchObject({ statusCode: 401, reauthenticate: true });
      expect((await browser.get('/session')).body.user).toBe(`fresh-${adapter}-${backend}`); // still logged in

      // Re-authenticating restarts the same, shorter clock.
      expect((await browser.post('/auth/reauth')).status).toBe(200);
      expect((await browser.get('/account/sensitive')).status).toBe(200);
      at(2 * FRESH_AGE);
      expect((await browser.get('/account/sensitive')).status).toBe(200);
      at(2 * FRESH_AGE + 2);
      expect((await browser.get('/account/sensitive')).body).toMatchObject({ statusCode: 401, reauthenticate: true });
    });
  },
);
