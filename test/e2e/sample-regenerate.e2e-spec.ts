import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { createTestSessionStores, type TestSessionStores } from '../support/session-backends.js';
import { Browser } from '../support/http.js';

/** `POST /session/regenerate?destroy=1` of the sample app (DESIGN.md section 7). */
describe.each<[HttpAdapterName, 'memory' | 'redis']>([
  ['express', 'memory'],
  ['fastify', 'memory'],
  ['express', 'redis'],
  ['fastify', 'redis'],
])('POST /session/regenerate on %s, sessions in %s', (adapter, backend) => {
  let app: INestApplication;
  let stores: TestSessionStores;

  beforeAll(async () => {
    stores = await createTestSessionStores(backend);
    const { metadataBackend, storageBackend, locker } = stores;
    app = await createSampleApp(adapter, { session: { metadataBackend, storageBackend, locker } });
    await app.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app.close(); // SessionModule closes the stores
  });

  it.each([
    ['regenerate(false)', '/session/regenerate'],
    ['regenerate(true)', '/session/regenerate?destroy=1'],
  ])('%s gives a new id, keeps data and flash messages, and the old id is dead', async (_name, path) => {
    const browser = new Browser(app);
    expect((await browser.put('/session/data/color', { value: 'blue' })).status).toBe(200);
    expect((await browser.post('/flash', { type: 'info', message: 'kept' })).status).toBeLessThan(300);
    const before = browser.cookie!;
    const regenerated = await browser.post(path);
    expect(regenerated.status).toBe(200);
    expect(regenerated.body).toMatchObject({ started: true, data: { color: 'blue' } });
    expect(browser.cookie).toBeDefined();
    expect(browser.cookie).not.toBe(before);
    const old = await request(app.getHttpServer()).get('/session').set('Cookie', `sid=${before}`);
    expect(old.body).toMatchObject({ started: false });
    expect((await browser.get('/session')).body).toMatchObject({ started: true, data: { color: 'blue' } });
    expect((await browser.get('/flash')).body).toMatchObject({ info: ['kept'] });
  });
});
