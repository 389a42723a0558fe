import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import type { Response } from 'supertest';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import type { SampleAppConfig } from '../../sample-app/app.module.js';
import { setCookies } from '../support/http.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { TEST_REDIS_URL, connectTestRedis, uniquePrefix } from '../support/redis.js';
import { createTestSessionStores, onEveryBackend } from '../support/session-backends.js';

/**
 * The user-session features of issue 12 through the sample app's routes (DESIGN section 7), on
 * both adapters and on memory and Redis: the per-user cap (`SESSION_MAX_PER_USER`), "my devices"
 * (`/account/sessions`), the absolute lifetime (`SESSION_ABSOLUTE_TIMEOUT`) and the
 * re-authentication age (`/account/sensitive`, `POST /auth/reauth`).
 */
const TOKEN = 'user-sessions-admin-token';
const NO_GC = { probability: 0, cron: false } as const;
const T0 = new Date('2033-05-06T07:08:09.000Z').getTime();
/** Seconds; `absoluteTimeout` of the main app. */
const ABSOLUTE = 1000;
/** Seconds; the sample app's default `SESSION_FRESH_AGE`. */
const FRESH_AGE = 300;

/** One browser on one device: keeps its cookie, sends its user agent. */
class Device {
  cookie: string | undefined;
  constructor(
    private readonly app: INestApplication,
    readonly userAgent = 'TestBrowser/1.0',
  ) {}

  async send(method: 'get' | 'put' | 'post' | 'delete', path: string, body?: unknown): Promise<Response> {
    let req = request(this.app.getHttpServer())[method](path).set('User-Agent', this.userAgent);
    if (this.cookie !== undefined) req = req.set('Cookie', `sid=${this.cookie}`);
    const res = await (body === undefined ? req : req.send(body as object));
    const cookie = setCookies(res).get('sid');
    if (cookie !== undefined) this.cookie = cookie.attributes['max-age'] === '0' ? undefined : cookie.value;
    return res;
  }
}

describe.each(onEveryBackend<HttpAdapterName>(['express', 'fastify']))('user sessions on %s with %s', (adapter, backend) => {
  const apps: INestApplication[] = [];
  async function start(session: SampleAppConfig['session']): Promise<INestApplication> {
    const stores = await createTestSessionStores(backend);
    const { metadataBackend, storageBackend, locker } = stores;
    const app = await createSampleApp(adapter, {
      adminToken: TOKEN,
      session: {
        metadataBackend,
        storageBackend,
        ...(locker === undefined ? {} : { locker }),
        garbageCollection: NO_GC,
        ...session,
      },
    });
    apps.push(app);
    return app;
  }
  let app: INestApplication;
  let rejecting: INestApplication;
  beforeAll(async () => {
    [app, rejecting] = await Promise.all([
      start({ maxSessionsPerUser: 3, absoluteTimeout: ABSOLUTE }),
      start({ maxSessionsPerUser: 3, maxSessionsPolicy: 'reject' }),
    ]);
  });
  afterEach(() => {
    jest.useRealTimers();
  });
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
  });

  const admin = (target: INestApplication, method: 'get' | 'delete', path: string) =>
    request(target.getHttpServer())[method](path).set('x-admin-token', TOKEN);

  /** A device that stores something anonymously, then logs in as `user`; answers it with the login's response. */
  async function device(target: INestApplication, user: string, userAgent?: string): Promise<[Device, Response]> {
    const d = new Device(target, userAgent);
    expect((await d.send('put', '/session/data/cart', { value: ['book'] })).status).toBe(200);
    return [d, await d.send('post', '/auth/login', { user })];
  }
  async function loggedIn(target: INestApplication, user: string, userAgent?: string): Promise<Device> {
    const [d, res] = await device(target, user, userAgent);
    expect(res.status).toBe(200);
    return d;
  }
  async function userOf(d: Device): Promise<string | null> {
    const res = await d.send('get', '/session');
    return res.body.started === true ? (res.body.user as string | null) : null;
  }

  /** Moves the (faked) clock to `seconds` after T0. */
  const at = (seconds: number): void => jest.setSystemTime(T0 + seconds * 1000);

  describe('SESSION_MAX_PER_USER (maxSessionsPerUser)', () => {
    it('10 parallel logins of one user with a cap of 3 leave exactly 3 sessions', async () => {
      const user = `cap-${backend}-${adapter}`;
      const results = await Promise.all(Array.from({ length: 10 }, () => device(app, user)));
      expect(results.map(([, res]) => res.status)).toEqual(Array.from({ length: 10 }, () => 200));
      const listed = await admin(app, 'get', `/admin/sessions?user=${user}`);
      expect(listed.status).toBe(200);
      expect(listed.body.sessions).toHaveLength(3);
      const users = await Promise.all(results.map(([d]) => userOf(d)));
      expect(users.filter((u) => u === user)).toHaveLength(3);
      // One more login evicts the oldest of the three.
      await loggedIn(app, user);
      expect((await admin(app, 'get', `/admin/sessions?user=${user}`)).body.sessions).toHaveLength(3);
    });

    it("'reject': of 10 parallel logins 3 answer 200 and 7 answer 409; the rejected keep their anonymous session", async () => {
      const user = `reject-${backend}-${adapter}`;
      const results = await Promise.all(Array.from({ length: 10 }, () => device(rejecting, user)));
      const statuses = results.map(([, res]) => res.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(3);
      expect(statuses.filter((s) => s === 409)).toHaveLength(7);
      for (const [d, res] of results.filter(([, r]) => r.status === 409)) {
        expect(res.body).toMatchObject({ statusCode: 409, error: 'SessionLimitReachedException' });
        expect(res.text).not.toContain(d.cookie!);
        expect(setCookies(res).has('sid')).toBe(false);
        expect((await d.send('get', '/session')).body).toMatchObject({ started: true, user: null, data: { cart: ['book'] } });
      }
      expect((await admin(rejecting, 'get', `/admin/sessions?user=${user}`)).body.sessions).toHaveLength(3);
    });
  });

  describe('my devices: /account/sessions', () => {
    it('401 when not logged in', async () => {
      const anonymous = new Device(app);
      await anonymous.send('put', '/session/data/x', { value: 1 });
      expect((await anonymous.send('get', '/account/sessions')).status).toBe(401);
      expect((await new Device(app).send('get', '/account/sessions')).status).toBe(401);
      expect((await anonymous.send('post', '/account/sessions/revoke-others')).status).toBe(401);
      expect((await anonymous.send('delete', '/account/sessions/AAAAAAAAAAAAAAAA')).status).toBe(401);
    });

    it('lists the user\'s sessions with handles and device facts, "current" on the caller\'s own, never an id', async () => {
      const user = `devices-${backend}-${adapter}`;
      const laptop = await loggedIn(app, user, 'Laptop/1.0 (X11; Linux)');
      const phone = await loggedIn(app, user, 'Phone/2.0');
      await loggedIn(app, `other-${user}`);
      const res = await laptop.send('get', '/account/sessions');
      expect(res.status).toBe(200);
      const sessions = res.body as Array<Record<string, unknown>>;
      expect(sessions).toHaveLength(2);
      const mine = sessions.find((s) => s.current === true)!;
      expect(mine).toEqual({
        handle: expect.stringMatching(/^[A-Za-z0-9_-]{16}$/),
        current: true,
        createdAt: expect.any(String),
        lastActivity: expect.any(String),
        expiresAt: expect.any(String),
        userAgent: 'Laptop/1.0 (X11; Linux)',
        ip: '127.0.0.1',
      });
      expect(sessions.find((s) => s.current === false)).toMatchObject({ userAgent: 'Phone/2.0', ip: '127.0.0.1' });
      expect(res.text).not.toContain(laptop.cookie!);
      expect(res.text).not.toContain(phone.cookie!);
    });

    it("DELETE /account/sessions/:handle ends one of the user's own sessions; another user's handle answers 404 and stays", async () => {
      const user = `revoke-${backend}-${adapter}`;
      const laptop = await loggedIn(app, user, 'Laptop');
      const phone = await loggedIn(app, user, 'Phone');
      const bob = await loggedIn(app, `bob-${user}`);
      const bobHandle = ((await bob.send('get', '/account/sessions')).body as Array<{ handle: string }>)[0]!.handle;
      const notFound = await laptop.send('delete', `/account/sessions/${bobHandle}`);
      expect(notFound.status).toBe(404);
      expect(notFound.body).toMatchObject({ statusCode: 404, error: 'SessionNotFoundException' });
      expect(await userOf(bob)).toBe(`bob-${user}`);
      expect((await laptop.send('delete', '/account/sessions/not-a-handle')).status).toBe(404);

      const list = (await laptop.send('get', '/account/sessions')).body as Array<{ handle: string; current: boolean }>;
      const phoneHandle = list.find((s) => !s.current)!.handle;
      const ended = await laptop.send('delete', `/account/sessions/${phoneHandle}`);
      expect([ended.status, ended.body]).toEqual([200, { destroyed: 1 }]);
      expect(await userOf(phone)).toBeNull();
      expect(await userOf(laptop)).toBe(user);
      expect((await laptop.send('delete', `/account/sessions/${phoneHandle}`)).status).toBe(404);
    });

    it('POST /account/sessions/revoke-others ends every other session of the user, not the current one', async () => {
      const user = `others-${backend}-${adapter}`;
      const devices = [await loggedIn(app, user), await loggedIn(app, user), await loggedIn(app, user)];
      const stranger = await loggedIn(app, `stranger-${user}`);
      const res = await devices[0]!.send('post', '/account/sessions/revoke-others');
      expect([res.status, res.body]).toEqual([200, { destroyed: 2 }]);
      expect(await Promise.all(devices.map(userOf))).toEqual([user, null, null]);
      expect(await userOf(stranger)).toBe(`stranger-${user}`);
      const list = (await devices[0]!.send('get', '/account/sessions')).body as unknown[];
      expect(list).toHaveLength(1);
    });
  });

  describe('SESSION_ABSOLUTE_TIMEOUT (absoluteTimeout)', () => {
    it('ends even an active session at its absolute end', async () => {
      fakeOnlyDate(T0);
      const d = new Device(app);
      await d.send('put', '/session/data/k', { value: 1 });
      for (let t = 200; t < ABSOLUTE; t += 200) {
        at(t);
        expect((await d.send('put', '/session/data/k', { value: t })).status).toBe(200);
        expect((await d.send('get', '/session')).body).toMatchObject({ started: true, data: { k: t } });
      }
      at(ABSOLUTE - 0.01);
      expect((await d.send('get', '/session')).body.started).toBe(true);
      at(ABSOLUTE);
      expect((await d.send('get', '/session')).body).toEqual({ started: false, data: {}, tags: [], user: null });
    });

    it('restarts at login: the user is not logged out because the clock started at the anonymous visit', async () => {
      fakeOnlyDate(T0);
      const d = new Device(app);
      await d.send('put', '/session/data/cart', { value: ['book'] });
      at(ABSOLUTE - 100); // anonymous browsing, then the login
      expect((await d.send('post', '/auth/login', { user: `late-${backend}-${adapter}` })).status).toBe(200);
      at(ABSOLUTE + 1.5);
      expect(await userOf(d)).toBe(`late-${backend}-${adapter}`);
      const [mine] = (await d.send('get', '/account/sessions')).body as Array<{ expiresAt: string }>;
      expect(mine!.expiresAt).toBe(new Date(T0 + (2 * ABSOLUTE - 100) * 1000).toISOString());
      at(2 * ABSOLUTE - 100 - 0.01);
      expect(await userOf(d)).toBe(`late-${backend}-${adapter}`);
      at(2 * ABSOLUTE - 100);
      expect(await userOf(d)).toBeNull();
    });
  });

  describe('re-authentication age: GET /account/sensitive, POST /auth/reauth', () => {
    it('401 when not logged in, 200 within SESSION_FRESH_AGE of login, 401 {reauthenticate: true} after, 200 after POST /auth/reauth', async () => {
      fakeOnlyDate(T0);
      const anonymous = new Device(app);
      const notLoggedIn = await anonymous.send('get', '/account/sensitive');
      expect(notLoggedIn.status).toBe(401);
      expect(notLoggedIn.body.reauthenticate).toBeUndefined();
      expect((await anonymous.send('post', '/auth/reauth')).status).toBe(401);

      const d = await loggedIn(app, `fresh-${backend}-${adapter}`);
      expect((await d.send('get', '/account/sensitive')).status).toBe(200);
      at(FRESH_AGE);
      expect((await d.send('get', '/account/sensitive')).body).toEqual({ ok: true });
      at(FRESH_AGE + 1);
      const stale = await d.send('get', '/account/sensitive');
      expect(stale.status).toBe(401);
      expect(stale.body).toMatchObject({ statusCode: 401, reauthenticate: true });
      expect(await userOf(d)).toBe(`fresh-${backend}-${adapter}`); // still logged in
      expect((await d.send('post', '/auth/reauth')).status).toBe(200);
      expect((await d.send('get', '/account/sensitive')).status).toBe(200);
      at(2 * FRESH_AGE + 2);
      expect((await d.send('get', '/account/sensitive')).status).toBe(401);
    });
  });
});

describe('the session cap across two app instances on one Redis (express and fastify)', () => {
  const apps: INestApplication[] = [];
  const prefix = uniquePrefix('cap-multi');
  async function pair(session: SampleAppConfig['session']): Promise<[INestApplication, INestApplication]> {
    const config = (): SampleAppConfig => ({
      adminToken: TOKEN,
      session: { garbageCollection: NO_GC, ...session },
      redis: { url: TEST_REDIS_URL, prefix: `${prefix}${session?.maxSessionsPolicy ?? 'evict'}:` },
    });
    const started = await Promise.all([createSampleApp('express', config()), createSampleApp('fastify', config())]);
    apps.push(...started);
    return started;
  }
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
    const redis = await connectTestRedis();
    const keys: string[] = [];
    for await (const batch of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
    if (keys.length > 0) await redis.del(keys);
    await redis.close();
  });

  async function login(target: INestApplication, user: string): Promise<Response> {
    const d = new Device(target);
    await d.send('put', '/session/data/cart', { value: ['book'] });
    return d.send('post', '/auth/login', { user });
  }

  it("'evict-oldest': 10 parallel logins split over both instances leave exactly 3 sessions", async () => {
    const [a, b] = await pair({ maxSessionsPerUser: 3 });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => login(i % 2 === 0 ? a : b, 'shared-user')));
    expect(results.map((r) => r.status)).toEqual(Array.from({ length: 10 }, () => 200));
    for (const target of [a, b]) {
      const listed = await request(target.getHttpServer()).get('/admin/sessions?user=shared-user').set('x-admin-token', TOKEN);
      expect(listed.body.sessions).toHaveLength(3);
    }
  });

  it("'reject': 3 of 10 parallel logins split over both instances succeed, 7 answer 409", async () => {
    const [a, b] = await pair({ maxSessionsPerUser: 3, maxSessionsPolicy: 'reject' });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => login(i % 2 === 0 ? a : b, 'shared-user')));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(3);
    expect(statuses.filter((s) => s === 409)).toHaveLength(7);
    const listed = await request(b.getHttpServer()).get('/admin/sessions?user=shared-user').set('x-admin-token', TOKEN);
    expect(listed.body.sessions).toHaveLength(3);
  });
});
