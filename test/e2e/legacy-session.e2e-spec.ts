import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { createHmac } from 'node:crypto';
import express, { type Request, type Response } from 'express';
import session from 'express-session';
import { RedisStore } from 'connect-redis';
import passport from 'passport';
import request from 'supertest';
import { MemoryBackend, SessionManager, userTag } from 'nest-session';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { legacyConfigFromEnv } from '../../sample-app/legacy-session.config.js';
import { setCookies } from '../support/http.js';
import { connectTestRedis, TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from '../support/redis.js';

/** The secret express-session signs with; the takeover lists a newer one first (a rotated secret). */
const OLD_SECRET = 'legacy-secret-2019';
const NEW_SECRET = 'legacy-secret-2026';

interface LegacyUser {
  id: string;
}

/**
 * The app being migrated from: express-session + connect-redis, logging in through passport's
 * `req.login` (which writes `passport.user`), exactly as such apps do.
 */
function legacyApp(client: TestRedisClient, prefix: string): express.Express {
  const app = express();
  const auth = new passport.Passport();
  auth.serializeUser<string>((user, done) => done(null, (user as LegacyUser).id));
  auth.deserializeUser<string>((id, done) => done(null, { id }));
  app.use(express.json());
  app.use(
    session({
      secret: OLD_SECRET,
      resave: false,
      saveUninitialized: false,
      store: new RedisStore({ client, prefix, ttl: 600 }),
    }),
  );
  app.use(auth.session());
  app.post('/login', (req: Request, res: Response) => {
    const body = req.body as { user: string; color: string };
    req.login({ id: body.user }, (error?: unknown) => {
      if (error !== undefined && error !== null) {
        res.status(500).end();
        return;
      }
      (req.session as unknown as Record<string, unknown>).color = body.color;
      (req.session as unknown as Record<string, unknown>).cart = ['book', 'pen'];
      req.session.save(() => res.json({ ok: true }));
    });
  });
  return app;
}

/** The `connect.sid` cookie pair (`connect.sid=<value>`) of a legacy login. */
async function legacyLogin(app: express.Express, user: string): Promise<{ pair: string; sid: string }> {
  const res = await request(app).post('/login').send({ user, color: 'blue' }).expect(200);
  const cookie = setCookies(res).get('connect.sid');
  if (cookie === undefined) throw new Error('express-session set no cookie');
  const sid = decodeURIComponent(cookie.value).slice(2).split('.')[0]!;
  return { pair: `connect.sid=${cookie.value}`, sid };
}

describe.each<HttpAdapterName>(['express', 'fastify'])('taking over express-session users on %s', (adapter) => {
  let redis: TestRedisClient;
  let prefix: string;
  let legacy: express.Express;
  let app: INestApplication;

  beforeAll(async () => {
    redis = await connectTestRedis();
    prefix = uniquePrefix('legacy');
    legacy = legacyApp(redis, prefix);
    app = await createSampleApp(adapter, {
      session: {
        metadataBackend: new MemoryBackend(),
        storageBackend: new MemoryBackend(),
        garbageCollection: { probability: 0, cron: false },
      },
      legacy: { secrets: [NEW_SECRET, OLD_SECRET], prefix, redisUrl: TEST_REDIS_URL },
    });
  });
  afterAll(async () => {
    await app.close();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(keys);
    await redis.close();
  });

  const server = () => app.getHttpServer() as Parameters<typeof request>[0];

  it('keeps the data and the login, removes the legacy entry and expires the legacy cookie', async () => {
    const { pair, sid } = await legacyLogin(legacy, 'alice');
    expect(await redis.exists(prefix + sid)).toBe(1);

    const first = await request(server()).get('/session').set('Cookie', pair).expect(200);
    expect(first.body).toEqual({
      started: true,
      data: { color: 'blue', cart: ['book', 'pen'], passport: { user: 'alice' } },
      tags: [userTag('alice')],
      user: 'alice',
    });
    const cookies = setCookies(first);
    const ours = cookies.get('sid');
    expect(ours?.value).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(cookies.get('connect.sid')?.attributes['max-age']).toBe('0');
    expect(await redis.exists(prefix + sid)).toBe(0);

    // The new session is ours from now on: the browser sends only our cookie.
    const next = await request(server()).get('/session').set('Cookie', `sid=${ours!.value}`).expect(200);
    expect(next.body).toMatchObject({ started: true, user: 'alice', data: { color: 'blue' } });
    expect(setCookies(next).size).toBe(0);
    expect(await app.get(SessionManager).getSessionsForUser('alice')).toHaveLength(1);
    // The passport login of the legacy app is a passport login here too (PassportSessionModule).
    const me = await request(server()).get('/auth/me').set('Cookie', `sid=${ours!.value}`).expect(200);
    expect(me.body).toEqual({ user: { username: 'alice', via: 'deserializeUser' } });
  });

  it('starts nothing for a replayed legacy cookie', async () => {
    const { pair } = await legacyLogin(legacy, 'bob');
    await request(server()).get('/session').set('Cookie', pair).expect(200);
    const replay = await request(server()).get('/session').set('Cookie', pair).expect(200);
    expect(replay.body).toEqual({ started: false, data: {}, tags: [], user: null });
    expect(setCookies(replay).size).toBe(0);
    expect(await app.get(SessionManager).getSessionsForUser('bob')).toHaveLength(1);
  });

  it('starts nothing for a forged signature and leaves the legacy session alone', async () => {
    const { sid } = await legacyLogin(legacy, 'carol');
    const forged = `s:${sid}.${createHmac('sha256', 'guessed').update(sid).digest('base64').replace(/=+$/, '')}`;
    const res = await request(server())
      .get('/session')
      .set('Cookie', `connect.sid=${encodeURIComponent(forged)}`)
      .expect(200);
    expect(res.body).toEqual({ started: false, data: {}, tags: [], user: null });
    expect(setCookies(res).size).toBe(0);
    expect(await redis.exists(prefix + sid)).toBe(1);
    // An unsigned or truncated value is no better.
    for (const value of [`s%3A${sid}`, sid, `s%3A${sid}.`]) {
      const other = await request(server()).get('/session').set('Cookie', `connect.sid=${value}`).expect(200);
      expect(other.body).toMatchObject({ started: false });
    }
    expect(await redis.exists(prefix + sid)).toBe(1);
    expect(await app.get(SessionManager).getSessionsForUser('carol')).toHaveLength(0);
  });

  it('turns two parallel first requests with one legacy cookie into one session', async () => {
    const { pair, sid } = await legacyLogin(legacy, 'dave');
    const [a, b] = await Promise.all([
      request(server()).get('/session').set('Cookie', pair),
      request(server()).get('/session').set('Cookie', pair),
    ]);
    const started = [a, b].filter((res) => (res.body as { started: boolean }).started);
    expect(started).toHaveLength(1);
    expect([a, b].filter((res) => setCookies(res).has('sid'))).toHaveLength(1);
    expect(started[0]!.body).toMatchObject({ user: 'dave', data: { color: 'blue' } });
    expect(await app.get(SessionManager).getSessionsForUser('dave')).toHaveLength(1);
    expect(await redis.exists(prefix + sid)).toBe(0);
  });

  it('prefers a session cookie of ours over a legacy cookie', async () => {
    const { pair, sid } = await legacyLogin(legacy, 'erin');
    const own = await request(server()).put('/session/data/x').send({ value: 1 }).expect(200);
    const ours = setCookies(own).get('sid')!.value;
    const res = await request(server()).get('/session').set('Cookie', `sid=${ours}; ${pair}`).expect(200);
    expect(res.body).toMatchObject({ started: true, data: { x: 1 }, user: null });
    expect(await redis.exists(prefix + sid)).toBe(1);
  });
});

describe("the sample app's LEGACY_SESSION_* settings", () => {
  it('are off without a secret, and split the secrets newest first', () => {
    expect(legacyConfigFromEnv({})).toBeUndefined();
    expect(
      legacyConfigFromEnv({
        LEGACY_SESSION_SECRET: 'new, old',
        LEGACY_SESSION_COOKIE: 'app.sid',
        LEGACY_SESSION_PREFIX: 'legacy:',
        REDIS_URL: 'redis://127.0.0.1:6390',
      }),
    ).toEqual({ secrets: ['new', 'old'], cookieName: 'app.sid', prefix: 'legacy:', redisUrl: 'redis://127.0.0.1:6390' });
  });
});
