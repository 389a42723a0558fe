import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import request from 'supertest';
import { MemoryBackend, SessionManager, userTag, type SessionEvent } from 'nest-session';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { AppModule, type SampleAppConfig } from '../../sample-app/app.module.js';
import { Browser, setCookies } from '../support/http.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { handleOf, metadataKeyOf } from '../../lib/session/session-key.js';

const TOKEN = 'test-admin-token';
/** No GC during the tests unless a test asks for it. */
const NO_GC = { probability: 0, cron: false } as const;

/** The sample app with the framework told to trust X-Forwarded-For from a local proxy. */
async function createProxiedApp(adapter: HttpAdapterName, config: SampleAppConfig): Promise<INestApplication> {
  let app: INestApplication;
  if (adapter === 'fastify') {
    app = await NestFactory.create(AppModule.forRoot(config), new FastifyAdapter({ trustProxy: '127.0.0.1,::1' }), {
      logger: ['error', 'warn'],
    });
  } else {
    const express = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), new ExpressAdapter(), {
      logger: ['error', 'warn'],
    });
    express.set('trust proxy', 'loopback');
    app = express;
  }
  await app.init();
  if (adapter === 'fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<unknown> }).ready();
  return app;
}

describe.each<HttpAdapterName>(['express', 'fastify'])('SessionManager through the sample app on %s', (adapter) => {
  const apps: INestApplication[] = [];
  async function start(config: SampleAppConfig, proxied = false): Promise<INestApplication> {
    const app = proxied ? await createProxiedApp(adapter, config) : await createSampleApp(adapter, config);
    apps.push(app);
    return app;
  }
  afterEach(() => {
    jest.useRealTimers();
  });
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
  });

  describe('admin routes', () => {
    let app: INestApplication;
    beforeAll(async () => {
      app = await start({
        adminToken: TOKEN,
        session: { metadataBackend: new MemoryBackend(), storageBackend: new MemoryBackend(), garbageCollection: NO_GC },
      });
    });
    const admin = () => request(app.getHttpServer());

    async function login(user: string): Promise<Browser> {
      const browser = new Browser(app);
      await browser.put('/session/data/cart', { value: [user] });
      expect((await browser.post('/auth/login', { user })).status).toBe(200);
      return browser;
    }

    it('answer 403 without the token or with a wrong one', async () => {
      expect((await admin().get('/admin/sessions')).status).toBe(403);
      expect((await admin().post('/admin/gc').set('x-admin-token', 'wrong')).status).toBe(403);
      expect((await admin().delete('/admin/sessions?tag=x').set('x-admin-token', TOKEN.slice(0, -1))).status).toBe(403);
    });

    it('list metadata and handles only: no session id', async () => {
      const alice = await login('alice');
      const res = await admin()
        .get(`/admin/sessions?tag=${userTag('alice')}`)
        .set('x-admin-token', TOKEN);
      expect(res.status).toBe(200);
      expect(res.body.truncated).toBe(false);
      expect(res.body.sessions).toContainEqual({
        handle: handleOf(metadataKeyOf(alice.cookie!)),
        createdAt: expect.any(String),
        lastActivity: expect.any(String),
        expiresAt: expect.any(String),
        tags: [userTag('alice')],
        user: 'alice',
        permanent: false,
      });
      expect(res.text).not.toContain(alice.cookie!);
      const limited = await admin().get('/admin/sessions?limit=1').set('x-admin-token', TOKEN);
      expect(limited.body.sessions).toHaveLength(1);
      expect((await admin().get('/admin/sessions?limit=0').set('x-admin-token', TOKEN)).status).toBe(400);
      expect((await admin().get('/admin/sessions?tag=no%20spaces').set('x-admin-token', TOKEN)).status).toBe(400);
    });

    it('DELETE /admin/sessions?tag= ends the sessions of two browsers; others stay', async () => {
      const phone = await login('bert');
      const laptop = await login('bert');
      const other = await login('cleo');
      const res = await admin()
        .delete(`/admin/sessions?tag=${userTag('bert')}`)
        .set('x-admin-token', TOKEN);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ destroyed: 2 });
      for (const browser of [phone, laptop]) {
        const after = await browser.get('/session');
        expect(after.body).toEqual({ started: false, data: {}, tags: [], user: null });
      }
      expect((await other.get('/session')).body).toMatchObject({ started: true, user: 'cleo' });
      expect((await admin().delete('/admin/sessions').set('x-admin-token', TOKEN)).status).toBe(400);
    });

    it('DELETE /admin/sessions/:handle revokes one device by its listed handle; the handle is no cookie', async () => {
      const phone = await login('hugo');
      const laptop = await login('hugo');
      const listed = await admin()
        .get(`/admin/sessions?tag=${userTag('hugo')}`)
        .set('x-admin-token', TOKEN);
      const handles = (listed.body.sessions as Array<{ handle: string }>).map((s) => s.handle);
      const phoneHandle = handleOf(metadataKeyOf(phone.cookie!));
      expect(handles.sort()).toEqual([phoneHandle, handleOf(metadataKeyOf(laptop.cookie!))].sort());
      // A listed handle used as a cookie is just an unknown id.
      const forged = await request(app.getHttpServer()).get('/session').set('Cookie', `sid=${phoneHandle}`);
      expect(forged.body.started).toBe(false);

      const revoke = await admin().delete(`/admin/sessions/${phoneHandle}`).set('x-admin-token', TOKEN);
      expect([revoke.status, revoke.body]).toEqual([200, { destroyed: 1 }]);
      expect((await phone.get('/session')).body.started).toBe(false);
      expect((await laptop.get('/session')).body).toMatchObject({ started: true, user: 'hugo' });
      expect((await admin().delete(`/admin/sessions/${phoneHandle}`).set('x-admin-token', TOKEN)).status).toBe(404);
    });

    it('destroySessionsForUser logs a user out in every browser', async () => {
      const one = await login('dora');
      const two = await login('dora');
      const manager = app.get(SessionManager);
      expect(await manager.getSessionsForUser('dora')).toHaveLength(2);
      expect(await manager.destroySessionsForUser('dora', 'password changed')).toBe(2);
      expect((await one.get('/session')).body.started).toBe(false);
      expect((await two.get('/session')).body.started).toBe(false);
      // A write with the dead cookie starts a fresh anonymous session under a new id.
      const old = one.cookie!;
      await one.put('/session/data/k', { value: 1 });
      expect(one.cookie).not.toBe(old);
      expect((await one.get('/session')).body).toMatchObject({ started: true, user: null });
    });
  });

  it("destroying sessions by tag from a request of one of them expires that request's cookie (issue 11 item 13)", async () => {
    const app = await start({
      adminToken: TOKEN,
      session: { metadataBackend: new MemoryBackend(), storageBackend: new MemoryBackend(), garbageCollection: NO_GC },
    });
    const own = new Browser(app);
    await own.put('/session/data/cart', { value: ['x'] });
    expect((await own.post('/auth/login', { user: 'erin' })).status).toBe(200);
    const other = new Browser(app);
    await other.put('/session/data/cart', { value: ['y'] });
    expect((await other.post('/auth/login', { user: 'erin' })).status).toBe(200);

    const res = await request(app.getHttpServer())
      .delete(`/admin/sessions?tag=${userTag('erin')}`)
      .set('x-admin-token', TOKEN)
      .set('Cookie', `sid=${own.cookie!}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ destroyed: 2 });
    expect(setCookies(res).get('sid')?.attributes['max-age']).toBe('0');
    expect((await other.get('/session')).body.started).toBe(false);
  });

  it('admin routes answer 403 when no admin token is configured', async () => {
    const app = await start({ adminToken: '', session: { garbageCollection: NO_GC } });
    const res = await request(app.getHttpServer()).post('/admin/gc').set('x-admin-token', '');
    expect(res.status).toBe(403);
  });

  it('POST /admin/gc removes the expired sessions and answers how many', async () => {
    fakeOnlyDate();
    const app = await start({ adminToken: TOKEN, session: { inactivityTimeout: 600, garbageCollection: NO_GC } });
    const browsers = [new Browser(app), new Browser(app), new Browser(app)];
    for (const browser of browsers) await browser.put('/session/data/k', { value: 1 });
    jest.setSystemTime(Date.now() + 300_000);
    await browsers[2]!.put('/session/data/k', { value: 2 }); // stays alive
    jest.setSystemTime(Date.now() + 301_000);
    const res = await request(app.getHttpServer()).post('/admin/gc').set('x-admin-token', TOKEN);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ removed: 2 });
    expect((await browsers[0]!.get('/session')).body.started).toBe(false);
    expect((await browsers[2]!.get('/session')).body).toMatchObject({ started: true, data: { k: 2 } });
    expect((await request(app.getHttpServer()).post('/admin/gc').set('x-admin-token', TOKEN)).body).toEqual({ removed: 0 });
  });

  it('probabilistic GC runs after the response, never delaying it', async () => {
    fakeOnlyDate();
    const metadataBackend = new MemoryBackend();
    const app = await start({
      session: { metadataBackend, inactivityTimeout: 600, garbageCollection: { probability: 100, cron: false } },
    });
    const runs: SessionEvent[] = [];
    app.get(SessionManager).events$.subscribe((event) => {
      if (event.type === 'gc') runs.push(event);
    });
    const browser = new Browser(app);
    await browser.put('/session/data/k', { value: 1 }); // itself triggers a run (nothing expired yet)
    await new Promise((resolve) => setImmediate(resolve));
    jest.setSystemTime(Date.now() + 601_000);
    runs.length = 0;

    // Hold the GC inside the backend: the response must still arrive.
    const collect = metadataBackend.collectGarbage.bind(metadataBackend);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered = false;
    metadataBackend.collectGarbage = async (limit) => {
      entered = true;
      await gate;
      return collect(limit);
    };
    try {
      const res = await request(app.getHttpServer()).get('/health');
      expect(res.status).toBe(200);
      await new Promise((resolve) => setImmediate(resolve));
      expect(entered).toBe(true);
      expect(runs).toEqual([]);
      release();
      for (let i = 0; i < 20 && runs.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
      expect(runs).toEqual([expect.objectContaining({ removed: 1 })]);
    } finally {
      release();
      metadataBackend.collectGarbage = collect;
    }
  });

  it('IP lock: the session is not resumed from another client address', async () => {
    const app = await start({ session: { ipLock: { ipv4Prefix: 3 }, garbageCollection: NO_GC } }, true);
    const from = (ip: string) => ({ 'x-forwarded-for': ip });
    const put = await request(app.getHttpServer()).put('/session/data/k').set(from('203.0.113.7')).send({ value: 'mine' });
    const cookie = /sid=([^;]+)/.exec(String(put.headers['set-cookie']))![1];
    const read = (ip: string) => request(app.getHttpServer()).get('/session').set(from(ip)).set('Cookie', `sid=${cookie}`);
    expect((await read('203.0.113.99')).body).toMatchObject({ started: true, data: { k: 'mine' } });
    expect((await read('198.51.100.7')).body).toEqual({ started: false, data: {}, tags: [], user: null });
    // A write from the other address gets a new session; the original one is untouched.
    const stolen = await request(app.getHttpServer())
      .put('/session/data/k')
      .set(from('198.51.100.7'))
      .set('Cookie', `sid=${cookie}`)
      .send({ value: 'theirs' });
    expect(String(stolen.headers['set-cookie'])).not.toContain(cookie);
    expect((await read('203.0.113.7')).body).toMatchObject({ started: true, data: { k: 'mine' } });
  });
});
