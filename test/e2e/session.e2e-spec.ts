import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { MemoryBackend } from 'nest-session';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { Browser, setCookies } from '../support/http.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';

describe.each<HttpAdapterName>(['express', 'fastify'])('sample app sessions on %s', (adapter) => {
  let app: INestApplication;
  const metadataBackend = new MemoryBackend();
  const storageBackend = new MemoryBackend();

  beforeAll(async () => {
    app = await createSampleApp(adapter, { session: { metadataBackend, storageBackend } });
  });
  afterAll(async () => {
    await app.close();
  });

  it('answers health without a cookie or a store write', async () => {
    const before = metadataBackend.stats().entries;
    const res = await request(app.getHttpServer()).get('/health');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ ok: true });
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(metadataBackend.stats().entries).toBe(before);
  });

  it('gives a visitor who only reads no cookie and stores nothing', async () => {
    const before = metadataBackend.stats().entries;
    const res = await request(app.getHttpServer()).get('/session');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ started: false, data: {}, tags: [], user: null });
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(metadataBackend.stats().entries).toBe(before);
  });

  it('sets an HttpOnly, SameSite=Lax, Path=/ cookie with >= 128 bits once data is written, and keeps the data', async () => {
    const browser = new Browser(app);
    const put = await browser.put('/session/data/color', { value: 'blue' });
    expect(put.status).toBe(200);
    const cookie = setCookies(put).get('sid')!;
    expect(cookie).toBeDefined();
    expect(cookie.attributes).toMatchObject({ httponly: true, samesite: 'Lax', path: '/' });
    expect(cookie.attributes.secure).toBeUndefined(); // plain HTTP, secure: 'auto'
    expect(cookie.attributes['max-age']).toBeUndefined(); // browser-session cookie by default
    expect(Buffer.from(cookie.value, 'base64url').length * 8).toBeGreaterThanOrEqual(128);

    const get = await browser.get('/session');
    expect(get.body).toEqual({ started: true, data: { color: 'blue' }, tags: [], user: null });
    expect(get.headers['set-cookie']).toBeUndefined(); // nothing changed: no cookie again
  });

  it('writes only changed keys and nothing for an unchanged session within the grace period', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/a', { value: 1 });
    await browser.put('/session/data/b', { value: 2 });
    const calls: string[] = [];
    const spy = (backend: MemoryBackend, label: string) => {
      const write = backend.write.bind(backend);
      const set = backend.set.bind(backend);
      backend.write = (batch, guard) => {
        calls.push(`${label}.write:${(batch.sets ?? []).map((s) => s.id.split('.')[1]).join(',')}`);
        return write(batch, guard);
      };
      backend.set = (...args) => {
        calls.push(`${label}.set`);
        return set(...args);
      };
      return () => {
        backend.write = write;
        backend.set = set;
      };
    };
    const undo = [spy(storageBackend, 'storage'), spy(metadataBackend, 'metadata')];
    try {
      await browser.get('/session');
      expect(calls).toEqual([]);
      await browser.put('/session/data/b', { value: 3 });
      expect(calls).toEqual(['storage.write:b']);
    } finally {
      undo.forEach((u) => u());
    }
  });

  it('removes a key', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/x', { value: 'y' });
    const del = await browser.delete('/session/data/x');
    expect(del.body).toEqual({ key: 'x', removed: true });
    expect((await browser.get('/session')).body.data).toEqual({});
  });

  it('login renews the id, keeps the data, and kills the old id; logout expires the cookie', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/cart', { value: ['book'] });
    const oldId = browser.cookie!;
    const login = await browser.post('/auth/login', { user: 'alice' });
    expect(login.status).toBe(200);
    const newId = setCookies(login).get('sid')!.value;
    expect(newId).not.toBe(oldId);
    expect((await browser.get('/session')).body).toMatchObject({ started: true, data: { cart: ['book'] }, user: 'alice' });

    const stale = await request(app.getHttpServer()).get('/session').set('Cookie', `sid=${oldId}`);
    expect(stale.body.started).toBe(false);

    const logout = await browser.post('/auth/logout');
    expect(logout.status).toBe(200);
    const cleared = setCookies(logout).get('sid')!;
    expect(cleared.value).toBe('');
    expect(cleared.attributes['max-age']).toBe('0');
    const dead = await request(app.getHttpServer()).get('/session').set('Cookie', `sid=${newId}`);
    expect(dead.body.started).toBe(false);
  });

  it('never adopts an unknown id: the client gets a new one', async () => {
    const unknown = 'A'.repeat(32);
    const res = await request(app.getHttpServer()).put('/session/data/k').set('Cookie', `sid=${unknown}`).send({ value: 1 });
    expect(res.status).toBe(200);
    const cookie = setCookies(res).get('sid')!;
    expect(cookie.value).not.toBe(unknown);
    expect(await metadataBackend.has(metadataKeyOf(unknown))).toBe(false);
  });

  describe('bad input', () => {
    const bad: Array<[string, string]> = [
      ['malformed', 'sid'],
      ['malformed pairs', ';;=;sid;=x; sid==; %%%'],
      ['wrong characters', 'sid=' + '!'.repeat(32)],
      ['wrong length', 'sid=abc'],
      ['too long', 'sid=' + 'a'.repeat(300)],
      ['huge header (15 KB)', 'x=' + 'y'.repeat(15 * 1024) + '; sid=' + 'z'.repeat(40)],
      ['quoted', 'sid="' + 'Q'.repeat(32) + '"'],
    ];
    it.each(bad)('%s cookie: no 500, no adoption, the write still works', async (_name, header) => {
      const read = await request(app.getHttpServer()).get('/session').set('Cookie', header);
      expect(read.status).toBe(200);
      expect(read.body.started).toBe(false);
      const write = await request(app.getHttpServer()).put('/session/data/k').set('Cookie', header).send({ value: 'v' });
      expect(write.status).toBe(200);
      expect(setCookies(write).get('sid')!.value).toMatch(/^[A-Za-z0-9_-]{32}$/);
    });

    it('a repeated cookie: the live session wins over stale values', async () => {
      const browser = new Browser(app);
      await browser.put('/session/data/k', { value: 'live' });
      const res = await request(app.getHttpServer())
        .get('/session')
        .set('Cookie', `sid=${'B'.repeat(32)}; sid=${browser.cookie!}; sid=junk`);
      expect(res.body).toMatchObject({ started: true, data: { k: 'live' } });
    });

    it('a 17 KB header is refused by the HTTP server, not by a crash', async () => {
      const res = await request(app.getHttpServer())
        .get('/health')
        .set('Cookie', 'sid=' + 'a'.repeat(17 * 1024))
        .catch((e: unknown) => e as Error);
      if (res instanceof Error) expect(res.message).toMatch(/socket hang up|ECONNRESET|Parse Error/);
      else expect(res.status).toBe(431);
      expect((await request(app.getHttpServer()).get('/health')).status).toBe(200);
    });

    it('a destroyed id is not brought back', async () => {
      const browser = new Browser(app);
      await browser.put('/session/data/k', { value: 1 });
      const id = browser.cookie!;
      await browser.post('/auth/logout');
      const res = await request(app.getHttpServer()).put('/session/data/k').set('Cookie', `sid=${id}`).send({ value: 2 });
      expect(setCookies(res).get('sid')!.value).not.toBe(id);
      expect(await metadataBackend.has(metadataKeyOf(id))).toBe(false);
    });

    it.each(['function', 'symbol', 'instance', 'cyclic'])(
      'an unserializable %s gives 400 DataNotSerializableException and stores nothing',
      async (kind) => {
        const res = await request(app.getHttpServer()).post(`/session/unserializable?kind=${kind}`);
        expect(res.status).toBe(400);
        expect(res.body.message).toMatch(/Cannot store session key "bad"/);
        expect(res.headers['set-cookie']).toBeUndefined();
      },
    );

    it('a __proto__ key in the payload is refused and pollutes nothing', async () => {
      const res = await request(app.getHttpServer())
        .put('/session/data/p')
        .set('Content-Type', 'application/json')
        .send('{"value": {"__proto__": {"polluted": true}, "a": 1}}');
      expect([400, 200]).toContain(res.status);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
      if (res.status === 200) {
        // A body parser that already dropped __proto__ leaves a plain {a: 1}.
        expect(res.body.value.polluted).toBeUndefined();
      }
    });

    it('an invalid key gives 400 InvalidArgumentException', async () => {
      const res = await request(app.getHttpServer()).put('/session/data/bad%20key').send({ value: 1 });
      expect(res.status).toBe(400);
      expect(res.body.message).toMatch(/Invalid session key/);
    });
  });
});
