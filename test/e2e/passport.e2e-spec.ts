import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { SessionManager, userTag } from 'nest-session';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { Browser, setCookies } from '../support/http.js';

/**
 * The sample app's passport routes: the real `passport`, `passport-local` and `@nestjs/passport`
 * (`PassportModule.register({ session: true })`, a `PassportSerializer`, `AuthGuard('local')`
 * with `logIn`) on this library's sessions, no express-session.
 */
describe.each<HttpAdapterName>(['express', 'fastify'])('passport sessions on %s', (adapter) => {
  let app: INestApplication;
  let store: SessionStore;
  const storageIdOf = async (id: string | undefined): Promise<string | undefined> =>
    id === undefined ? undefined : (await store.loadMetadata(metadataKeyOf(id)))?.storageId;

  beforeAll(async () => {
    app = await createSampleApp(adapter);
    store = app.get(SessionStore, { strict: false });
  });
  afterAll(async () => {
    await app.close();
  });

  it('answers a wrong password with 401, starts no session and sets no cookie', async () => {
    const res = await request(app.getHttpServer()).post('/auth/passport/login').send({ username: 'ada', password: 'wrong' });
    expect(res.status).toBe(401);
    expect(res.headers['set-cookie']).toBeUndefined();
    const missing = await request(app.getHttpServer()).post('/auth/passport/login').send({});
    expect(missing.status).toBe(401);
  });

  it('answers GET /auth/me with 401 without a login', async () => {
    expect((await request(app.getHttpServer()).get('/auth/me')).status).toBe(401);
    const browser = new Browser(app);
    await browser.put('/session/data/anonymous', { value: true });
    expect((await browser.get('/auth/me')).status).toBe(401);
  });

  it('logs in: a new id and a new storage id, the data kept, the session bound to the serialized user', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/cart', { value: ['book'] });
    const before = browser.cookie;
    const storageBefore = await storageIdOf(before);
    expect(storageBefore).toBeDefined();

    const login = await browser.post('/auth/passport/login', { username: 'ada', password: 'secret' });
    expect(login.status).toBe(200);
    expect(login.body).toEqual({ user: { username: 'ada' } });
    expect(setCookies(login).get('sid')).toBeDefined();
    expect(browser.cookie).not.toBe(before);
    const storageAfter = await storageIdOf(browser.cookie);
    expect(storageAfter).toBeDefined();
    expect(storageAfter).not.toBe(storageBefore);

    const session = await browser.get('/session');
    expect(session.body).toMatchObject({ started: true, data: { cart: ['book'], passport: { user: 'ada' } }, user: 'ada' });
    expect(session.body.tags).toContain(userTag('ada'));
    // The id before the login is dead.
    const old = await request(app.getHttpServer()).get('/session').set('Cookie', `sid=${before}`);
    expect(old.body.started).toBe(false);
    // Log-out-everywhere and the session cap see the passport login.
    expect((await app.get(SessionManager).getSessionsForUser('ada')).length).toBe(1);
  });

  it('gives req.user from deserializeUser on the next requests, until logout ends the session', async () => {
    const browser = new Browser(app);
    await browser.post('/auth/passport/login', { username: 'grace', password: 'secret' });
    for (let i = 0; i < 2; i++) {
      const me = await browser.get('/auth/me');
      expect(me.status).toBe(200);
      expect(me.body).toEqual({ user: { username: 'grace', via: 'deserializeUser' } });
      expect(me.headers['set-cookie']).toBeUndefined(); // reading writes nothing
    }
    const cookie = browser.cookie;

    const logout = await browser.post('/auth/passport/logout');
    expect(logout.status).toBe(200);
    expect(logout.body).toEqual({ loggedOut: true });
    expect(setCookies(logout).get('sid')?.attributes['max-age']).toBe('0');
    expect(browser.cookie).toBeUndefined();
    expect(await storageIdOf(cookie)).toBeUndefined(); // the session is gone from the store
    const replay = await request(app.getHttpServer()).get('/auth/me').set('Cookie', `sid=${cookie}`);
    expect(replay.status).toBe(401);
    expect((await app.get(SessionManager).getSessionsForUser('grace')).length).toBe(0);
  });

  it('switches users on a second login and keeps one session', async () => {
    const browser = new Browser(app);
    await browser.post('/auth/passport/login', { username: 'u1', password: 'secret' });
    const first = browser.cookie;
    await browser.post('/auth/passport/login', { username: 'u2', password: 'secret' });
    expect(browser.cookie).not.toBe(first);
    expect((await browser.get('/auth/me')).body.user.username).toBe('u2');
    const session = await browser.get('/session');
    expect(session.body.user).toBe('u2');
    expect(session.body.tags).not.toContain(userTag('u1'));
    expect((await app.get(SessionManager).getSessionsForUser('u1')).length).toBe(0);
  });

  it('ends the passport login when the session is destroyed by another way (POST /auth/logout)', async () => {
    const browser = new Browser(app);
    await browser.post('/auth/passport/login', { username: 'linus', password: 'secret' });
    expect((await browser.post('/auth/logout')).body).toEqual({ loggedOut: true });
    expect((await browser.get('/auth/me')).status).toBe(401);
  });
});

/** The per-user cap (`maxSessionsPerUser`) counts passport logins like any other login. */
describe.each<HttpAdapterName>(['express', 'fastify'])('passport logins and the session cap on %s', (adapter) => {
  const apps: INestApplication[] = [];
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
  });
  async function appWith(policy: 'evict-oldest' | 'reject'): Promise<INestApplication> {
    const app = await createSampleApp(adapter, { session: { maxSessionsPerUser: 2, maxSessionsPolicy: policy } });
    apps.push(app);
    return app;
  }

  it("evicts the user's oldest session at the cap", async () => {
    const app = await appWith('evict-oldest');
    const browsers = [new Browser(app), new Browser(app), new Browser(app)];
    for (const browser of browsers) {
      expect((await browser.post('/auth/passport/login', { username: 'ada', password: 'secret' })).status).toBe(200);
    }
    expect((await app.get(SessionManager).getSessionsForUser('ada')).length).toBe(2);
    expect((await browsers[0]!.get('/auth/me')).status).toBe(401);
    expect((await browsers[1]!.get('/auth/me')).status).toBe(200);
    expect((await browsers[2]!.get('/auth/me')).status).toBe(200);
  });

  it('refuses the login over the cap with 409 under the reject policy, and keeps the sessions there are', async () => {
    const app = await appWith('reject');
    const browsers = [new Browser(app), new Browser(app), new Browser(app)];
    const statuses: number[] = [];
    for (const browser of browsers) {
      statuses.push((await browser.post('/auth/passport/login', { username: 'grace', password: 'secret' })).status);
    }
    expect(statuses).toEqual([200, 200, 409]);
    expect((await app.get(SessionManager).getSessionsForUser('grace')).length).toBe(2);
    expect((await browsers[0]!.get('/auth/me')).status).toBe(200);
    expect((await browsers[2]!.get('/auth/me')).status).toBe(401);
  });
});
