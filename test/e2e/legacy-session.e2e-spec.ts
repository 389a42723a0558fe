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
import { sessionConfigFromEnv } from '../../sample-app/session-env.config.js';
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
function legacyApp(client: TestRedisClient, prefix: string, name = 'connect.sid'): express.Express {
  const app = express();
  const auth = new passport.Passport();
  auth.serializeUser<string>((user, done) => done(null, (user as LegacyUser).id));
  auth.deserializeUser<string>((id, done) => done(null, { id }));
  app.use(express.json());
  app.use(
    session({
      name,
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
async function legacyLogin(app: express.Express, user: string, name = 'connect.sid'): Promise<{ pair: string; sid: string }> {
  const res = await request(app).post('/login').send({ user, color: 'blue' }).expect(200);
  const cookie = setCookies(res).get(name);
  if (cookie === undefined) throw new Error('express-session set no cookie');
  const sid = decodeURIComponent(cookie.value).slice(2).split('.')[0]!;
  return { pair: `${name}=${cookie.value}`, sid };
}

/** Seconds a takeover is followed by requests that still carry the legacy cookie, shortened here. */
const GRACE_SECONDS = 2;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The one value of our `sid` cookie that responses set (throws when they differ or none sets one). */
function oneSid(responses: readonly request.Response[]): string {
  const values = new Set(responses.map((res) => setCookies(res).get('sid')?.value));
  expect(values.size).toBe(1);
  const [value] = values;
  expect(value).toMatch(/^[A-Za-z0-9_-]{32}$/);
  return value!;
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
      legacy: { secrets: [NEW_SECRET, OLD_SECRET], prefix, redisUrl: TEST_REDIS_URL, graceSeconds: GRACE_SECONDS },
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

  it('gives a late request with the legacy cookie the same session during the grace, nothing after it', async () => {
    const { pair } = await legacyLogin(legacy, 'bob');
    const first = await request(server()).get('/session').set('Cookie', pair).expect(200);
    // Sent before the first response arrived, received after it: the same session, its cookie again.
    const late = await request(server()).get('/session').set('Cookie', pair).expect(200);
    expect(late.body).toMatchObject({ started: true, user: 'bob', data: { color: 'blue' } });
    expect(oneSid([first, late])).toBeDefined();
    expect(setCookies(late).get('connect.sid')?.attributes['max-age']).toBe('0');
    await sleep(GRACE_SECONDS * 1000 + 300);
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
    for (const res of [a, b]) expect(res.body).toMatchObject({ started: true, user: 'dave', data: { color: 'blue' } });
    oneSid([a, b]);
    expect(await app.get(SessionManager).getSessionsForUser('dave')).toHaveLength(1);
    expect(await redis.exists(prefix + sid)).toBe(0);
  });

  it('keeps every write of parallel first requests with one legacy cookie, in one session', async () => {
    const { pair } = await legacyLogin(legacy, 'dora');
    const writes = await Promise.all(
      [0, 1, 2, 3].map((i) => request(server()).put(`/session/data/k${i}`).set('Cookie', pair).send({ value: i }).expect(200)),
    );
    const ours = oneSid(writes);
    const sessions = await app.get(SessionManager).getSessionsForUser('dora');
    expect(sessions).toHaveLength(1);
    const after = await request(server()).get('/session').set('Cookie', `sid=${ours}`).expect(200);
    expect(after.body).toMatchObject({
      started: true,
      user: 'dora',
      data: { color: 'blue', cart: ['book', 'pen'], k0: 0, k1: 1, k2: 2, k3: 3 },
    });
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

/** Every key matching `pattern` and its contents, as one text (to look for ids kept in clear). */
async function storedText(redis: TestRedisClient, pattern: string): Promise<string> {
  const parts: string[] = [];
  for (const key of await redis.keys(pattern)) {
    const type = await redis.type(key);
    const read: Record<string, string[]> = {
      string: ['GET', key],
      hash: ['HGETALL', key],
      zset: ['ZRANGE', key, '0', '-1', 'WITHSCORES'],
      set: ['SMEMBERS', key],
      list: ['LRANGE', key, '0', '-1'],
    };
    const command = read[type];
    parts.push(key, command === undefined ? `(${type})` : JSON.stringify(await redis.sendCommand(command)));
  }
  return parts.join('\n');
}

describe('taking over on two instances sharing Redis, configured from the environment', () => {
  let redis: TestRedisClient;
  let legacyPrefix: string;
  let sessionPrefix: string;
  let legacy: express.Express;
  let apps: INestApplication[];

  beforeAll(async () => {
    redis = await connectTestRedis();
    legacyPrefix = uniquePrefix('legacy');
    sessionPrefix = uniquePrefix('e2e');
    // A custom express-session cookie name, read by the sample app from LEGACY_SESSION_COOKIE.
    legacy = legacyApp(redis, legacyPrefix, 'app.sid');
    const env = {
      SESSION_BACKEND: 'redis',
      REDIS_URL: TEST_REDIS_URL,
      REDIS_CLIENT: 'ioredis',
      SESSION_PREFIX: sessionPrefix,
      SESSION_GC: 'manual',
      LEGACY_SESSION_SECRET: `${NEW_SECRET},${OLD_SECRET}`,
      LEGACY_SESSION_COOKIE: 'app.sid',
      LEGACY_SESSION_PREFIX: legacyPrefix,
    };
    const config = sessionConfigFromEnv(env).config;
    const legacyConfig = legacyConfigFromEnv(env)!;
    expect(legacyConfig).toMatchObject({ cookieName: 'app.sid', redisClient: 'ioredis' });
    apps = [
      await createSampleApp('express', { ...config, legacy: legacyConfig }),
      await createSampleApp('fastify', { ...config, legacy: legacyConfig }),
    ];
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    for (const pattern of [`${legacyPrefix}*`, `${sessionPrefix}*`]) {
      const keys = await redis.keys(pattern);
      if (keys.length > 0) await redis.del(keys);
    }
    await redis.close();
  });

  const server = (i: number) => apps[i % apps.length]!.getHttpServer() as Parameters<typeof request>[0];

  it('ends parallel writing first requests spread over both instances in one session with every write', async () => {
    const { pair, sid } = await legacyLogin(legacy, 'frank', 'app.sid');
    const writes = await Promise.all(
      [0, 1, 2, 3, 4, 5].map((i) =>
        request(server(i)).put(`/session/data/k${i}`).set('Cookie', pair).send({ value: i }).expect(200),
      ),
    );
    const ours = oneSid(writes);
    for (const res of writes) expect(setCookies(res).get('app.sid')?.attributes['max-age']).toBe('0');
    expect(await redis.exists(legacyPrefix + sid)).toBe(0);
    expect(await apps[0]!.get(SessionManager).getSessionsForUser('frank')).toHaveLength(1);
    // Neither id is kept in clear by our stores (the takeover's lock and pointer included).
    const stored = await storedText(redis, `${sessionPrefix}*`);
    expect(stored).toContain('~takeover-');
    expect(stored).not.toContain(ours);
    expect(stored).not.toContain(sid);
    const after = await request(server(1)).get('/session').set('Cookie', `sid=${ours}`).expect(200);
    expect(after.body).toMatchObject({
      user: 'frank',
      data: { color: 'blue', k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5 },
    });
  });

  it('ignores the default cookie name when LEGACY_SESSION_COOKIE names another', async () => {
    const { pair, sid } = await legacyLogin(legacy, 'gina', 'app.sid');
    const renamed = pair.replace(/^app\.sid=/, 'connect.sid=');
    const res = await request(server(0)).get('/session').set('Cookie', renamed).expect(200);
    expect(res.body).toMatchObject({ started: false });
    expect(await redis.exists(legacyPrefix + sid)).toBe(1);
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
