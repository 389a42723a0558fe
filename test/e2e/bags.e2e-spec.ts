import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { MemoryBackend, type TaggableBackend } from 'nest-session';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';

/** Counts every call on a backend, to prove what a request did not do. */
function countCalls(backend: TaggableBackend): { calls: string[]; stop: () => void } {
  const calls: string[] = [];
  const target = backend as unknown as Record<string, unknown>;
  const originals = new Map<string, unknown>();
  for (const name of ['get', 'getMany', 'getByTag', 'has', 'set', 'remove', 'write', 'flushByTag']) {
    const original = target[name] as (...args: unknown[]) => unknown;
    originals.set(name, original);
    target[name] = (...args: unknown[]) => {
      calls.push(name);
      return original.apply(backend, args);
    };
  }
  return { calls, stop: () => originals.forEach((fn, name) => (target[name] = fn)) };
}

describe.each<HttpAdapterName>(['express', 'fastify'])('bags on %s', (adapter) => {
  let app: INestApplication;
  const metadataBackend = new MemoryBackend();
  const storageBackend = new MemoryBackend();

  beforeAll(async () => {
    app = await createSampleApp(adapter, { session: { metadataBackend, storageBackend } });
    await app.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app.close();
  });

  it('a flash message survives a redirect, is shown once and then is gone', async () => {
    const browser = new Browser(app);
    const post = await browser.post('/flash/redirect', { type: 'success', message: 'Saved!' });
    expect(post.status).toBe(302);
    expect(post.headers.location).toBe('/flash');
    expect((await browser.get('/flash')).body).toEqual({ success: ['Saved!'] });
    expect((await browser.get('/flash')).body).toEqual({});
  });

  it('two concurrent requests each adding a flash message lose neither', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/seed', { value: 1 });
    const add = (message: string) =>
      request(app.getHttpServer())
        .post('/flash?delay=50')
        .set('Cookie', `sid=${browser.cookie!}`)
        .send({ type: 'info', message });
    const [a, b] = await Promise.all([add('one'), add('two')]);
    expect([a.status, b.status]).toEqual([201, 201]);
    const shown = (await browser.get('/flash')).body as { info: string[] };
    expect(shown.info.sort()).toEqual(['one', 'two']);
  });

  it('a bag registered by a feature module is available in its controllers', async () => {
    const browser = new Browser(app);
    await browser.post('/cart', { sku: 'BOOK-1', quantity: 2 });
    const res = await browser.post('/cart', { sku: 'BOOK-1', quantity: 1 });
    expect(res.body).toEqual({ 'BOOK-1': 3 });
    expect((await browser.get('/cart')).body).toEqual({ 'BOOK-1': 3 });
    // The cart's entry is separate from the session's own data.
    expect((await browser.get('/session')).body.data).toEqual({});
  });

  it('a bag that is never touched causes no storage read or write', async () => {
    const browser = new Browser(app);
    await browser.post('/flash', { type: 'info', message: 'pending' });
    const counter = countCalls(storageBackend);
    try {
      const res = await browser.get('/health');
      expect(res.status).toBe(200);
      expect(counter.calls).toEqual([]);
    } finally {
      counter.stop();
    }
    expect((await browser.get('/flash')).body).toEqual({ info: ['pending'] });
  });

  it('an empty bag stores nothing: reading flashes as a visitor sets no cookie', async () => {
    const before = storageBackend.stats().entries;
    const res = await request(app.getHttpServer()).get('/flash');
    expect(res.body).toEqual({});
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(storageBackend.stats().entries).toBe(before);
  });

  it('getBag with an unknown name answers 400 naming the registered bags', async () => {
    // Through the public API: the cart controller asks for "cart"; simulate a typo via a direct call.
    const { SessionStore } = await import('../../lib/session/session.store.js');
    const { Session } = await import('../../lib/session/session.js');
    const store = app.get(SessionStore);
    const session = new Session(store, { cookieIds: [], cookieName: 'sid' });
    await expect(session.getBag('cartt')).rejects.toThrow(/no session bag named "cartt".*flashes.*cart/);
  });
});
