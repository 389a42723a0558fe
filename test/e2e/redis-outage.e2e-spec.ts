import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import type { RedisClientName } from '../../sample-app/redis-stores.js';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { setCookies } from '../support/http.js';
import { RedisServer } from '../support/redis-server.js';

/**
 * Redis dies (SIGKILL) while the sample app is under load, then comes back on the same port.
 *
 * The private redis-server runs with `appendonly yes` and `appendfsync always` in a temporary
 * directory: Redis answers a write only once it is on disk, so a restart keeps every write the
 * app saw succeed, like a production Redis with persistence. That is what makes "no session is
 * corrupted" checkable for the sessions that existed before the outage (with `--save ''` a
 * restart would empty Redis and every old session would simply be unknown).
 */
const USERS = 8;
/** No request may take longer than this (supertest fails it, and the test with it). */
const REQUEST_TIMEOUT = 6000;
const COMMAND_TIMEOUT = 500;
const LOCK_WAIT = 1000;

interface Outcome {
  readonly user: number;
  readonly kind: 'increment' | 'put' | 'slow-put' | 'health';
  readonly status: number | 'timeout' | 'error';
  readonly body: Record<string, unknown>;
  readonly startedAt: number;
  readonly endedAt: number;
  /** Value sent (put) or answered (increment). */
  readonly value?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe.each<[HttpAdapterName, RedisClientName]>([
  ['express', 'node-redis'],
  ['fastify', 'node-redis'],
  ['express', 'ioredis'],
  ['fastify', 'ioredis'],
])('Redis outage under load on %s (%s)', (adapter, redisClient) => {
  let server: RedisServer;
  let app: INestApplication;

  beforeAll(async () => {
    server = await RedisServer.start({ appendonly: true });
    app = await createSampleApp(adapter, {
      redis: { url: server.url, prefix: 'outage:', commandTimeout: COMMAND_TIMEOUT, maxReconnectDelay: 200 },
      redisClient,
      session: { lock: { waitTimeout: LOCK_WAIT, ttl: 3000 }, garbageCollection: { probability: 0, cron: false } },
    });
    app.useLogger(['error']); // every 503 is also logged as a warning: hundreds of lines
    await app.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
    await server?.stop();
  });

  async function send(
    user: number,
    kind: Outcome['kind'],
    cookie: string | undefined,
    build: (agent: ReturnType<typeof request>) => request.Test,
    value?: number,
  ): Promise<Outcome> {
    const startedAt = Date.now();
    let req = build(request(app.getHttpServer()));
    if (cookie !== undefined) req = req.set('Cookie', `sid=${cookie}`);
    try {
      const res = await req.timeout({ deadline: REQUEST_TIMEOUT });
      const body = (res.body ?? {}) as Record<string, unknown>;
      const answered = kind === 'increment' && res.status === 200 ? (body.value as number) : value;
      return { user, kind, status: res.status, body, startedAt, endedAt: Date.now(), value: answered };
    } catch (error) {
      const timeout = (error as { timeout?: number }).timeout !== undefined;
      return {
        user,
        kind,
        status: timeout ? 'timeout' : 'error',
        body: { error: String(error) },
        startedAt,
        endedAt: Date.now(),
        value,
      };
    }
  }

  it('answers 503 with a clear body while Redis is down, never hangs or crashes, recovers without a restart, and no session is corrupted', async () => {
    // Sessions that exist before the outage, each with a value that must survive it.
    const cookies: string[] = [];
    for (let user = 0; user < USERS; user++) {
      const res = await request(app.getHttpServer())
        .put('/session/data/seed')
        .send({ value: `user-${user}` });
      expect(res.status).toBe(200);
      cookies.push(setCookies(res).get('sid')!.value);
    }

    const outcomes: Outcome[] = [];
    let stop = false;
    let killSentAt = Infinity;
    /** When the redis-server process was seen gone (a SIGKILLed process can take a moment on a busy machine). */
    let killedAt = Infinity;
    let restartedAt = Infinity;
    const recoveredUsers = new Set<number>();

    // Each user sends one request at a time (so its final state can be reasoned about), all
    // users at once: alternating a locked increment and a plain write of a sequence number.
    async function user(index: number): Promise<void> {
      let seq = 0;
      while (!stop) {
        seq++;
        const outcome =
          seq % 2 === 1
            ? await send(index, 'increment', cookies[index], (r) => r.post('/counter/n/increment?lock=1'))
            : await send(index, 'put', cookies[index], (r) => r.put('/session/data/last').send({ value: seq }), seq);
        outcomes.push(outcome);
        if (outcome.status === 200 && outcome.startedAt > restartedAt) recoveredUsers.add(index);
        if (outcome.status !== 200) await sleep(20);
      }
    }
    const load = Array.from({ length: USERS }, (_, i) => user(i));

    await sleep(300);
    // A request that has read its session when Redis dies and commits afterwards.
    const slow = send(0, 'slow-put', cookies[0], (r) => r.put('/session/data/slow?delay=300').send({ value: 1 }));
    await sleep(100);
    killSentAt = Date.now();
    await server.kill('SIGKILL');
    killedAt = Date.now();
    await sleep(700);
    const healthDuringOutage = await send(-1, 'health', undefined, (r) => r.get('/health'));
    await sleep(200);
    const relaunchedAt = Date.now(); // Redis may answer before launch() has noticed
    await server.launch();
    restartedAt = Date.now();
    const deadline = Date.now() + 10_000;
    while (recoveredUsers.size < USERS && Date.now() < deadline) await sleep(50);
    const recoveredAt = Date.now();
    await sleep(200);
    stop = true;
    await Promise.all(load);
    const slowOutcome = await slow;

    // Nothing hung, nothing crashed, and the app answered throughout.
    expect(outcomes.filter((o) => o.status === 'timeout' || o.status === 'error')).toEqual([]);
    // The longest any request can take: a lock wait, then a command that times out (plus slack for a busy machine).
    expect(Math.max(...outcomes.map((o) => o.endedAt - o.startedAt))).toBeLessThan(LOCK_WAIT + COMMAND_TIMEOUT + 2500);
    expect(healthDuringOutage.status).toBe(200);
    expect(slowOutcome.status).toBe(503);

    // Before the outage everything succeeded; during it, 503s with a JSON body that says why.
    expect(outcomes.filter((o) => o.endedAt < killSentAt && o.status !== 200)).toEqual([]);
    const during = outcomes.filter((o) => o.startedAt > killedAt && o.endedAt < relaunchedAt);
    expect(during.length).toBeGreaterThan(USERS);
    expect(during.filter((o) => o.status !== 503)).toEqual([]);
    for (const o of [...during, slowOutcome]) {
      expect(o.body).toMatchObject({ statusCode: 503, message: expect.stringMatching(/session store is unavailable/) });
      // Generic: the driver's error (host, port, command, key) goes to the log, never to the client.
      expect(JSON.stringify(o.body)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|socket|timeout|\(redis|sess:/i);
    }
    // 423 is possible after the restart: a lock taken just before the kill stays until its TTL.
    expect(outcomes.filter((o) => ![200, 503, 423].includes(o.status as number))).toEqual([]);

    // Recovery without a restart of the app: every user got a 200 again, soon.
    expect(recoveredUsers.size).toBe(USERS);
    expect(recoveredAt - restartedAt).toBeLessThan(5000);
    const fresh = await request(app.getHttpServer()).put('/session/data/x').send({ value: 'after' });
    expect(fresh.status).toBe(200);

    // No session is corrupted: each reads back its seed, and its counter and last write agree
    // with what the app answered (a 503 may or may not have been applied, but only whole).
    for (let index = 0; index < USERS; index++) {
      const res = await request(app.getHttpServer()).get('/session').set('Cookie', `sid=${cookies[index]}`);
      expect(res.status).toBe(200);
      expect(res.body.started).toBe(true);
      const data = res.body.data as Record<string, unknown>;
      expect(data.seed).toBe(`user-${index}`);

      const mine = outcomes.filter((o) => o.user === index);
      const increments = mine.filter((o) => o.kind === 'increment');
      const okValues = increments.filter((o) => o.status === 200).map((o) => o.value!);
      // Under the lock, successful increments answer strictly increasing values.
      expect(okValues).toEqual([...okValues].sort((a, b) => a - b));
      expect(new Set(okValues).size).toBe(okValues.length);
      const lastOk = increments.map((o) => o.status).lastIndexOf(200);
      const maybeAfter = increments.slice(lastOk + 1).filter((o) => o.status === 503).length;
      expect(data.n).toBeGreaterThanOrEqual(okValues.at(-1)!);
      expect(data.n).toBeLessThanOrEqual(okValues.at(-1)! + maybeAfter);

      const puts = mine.filter((o) => o.kind === 'put');
      const lastOkPut = puts.map((o) => o.status).lastIndexOf(200);
      const candidates = puts
        .slice(lastOkPut)
        .filter((o) => o.status === 200 || o.status === 503)
        .map((o) => o.value);
      expect(candidates).toContain(data.last);
    }
  });
});

/**
 * Issue 11, "lazy resume": a request that never uses its session must not fail because the
 * store is down, even when it carries a session cookie; routes that use the session still
 * answer 503, and everything works again once Redis is back.
 */
describe.each<[HttpAdapterName, RedisClientName]>([
  ['express', 'node-redis'],
  ['fastify', 'node-redis'],
  ['express', 'ioredis'],
  ['fastify', 'ioredis'],
])('Redis down, a request with a session cookie on %s (%s)', (adapter, redisClient) => {
  let server: RedisServer;
  let app: INestApplication;
  const warnings: string[] = [];
  const collect = (message: unknown): void => void warnings.push(String(message));

  beforeAll(async () => {
    server = await RedisServer.start({ appendonly: true });
    app = await createSampleApp(adapter, {
      redis: { url: server.url, prefix: 'outage-lazy:', commandTimeout: COMMAND_TIMEOUT, maxReconnectDelay: 200 },
      redisClient,
      session: { lock: { waitTimeout: LOCK_WAIT, ttl: 3000 }, garbageCollection: { probability: 0, cron: false } },
    });
    app.useLogger({ log: () => undefined, error: collect, warn: collect });
    await app.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
    await server?.stop();
  });

  const get = (path: string, cookie: string) =>
    request(app.getHttpServer()).get(path).set('Cookie', `sid=${cookie}`).timeout({ deadline: REQUEST_TIMEOUT });

  it('answers routes that never use the session normally, 503 where the session is used, and recovers', async () => {
    const seeded = await request(app.getHttpServer()).put('/session/data/seed').send({ value: 'kept' });
    expect(seeded.status).toBe(200);
    const cookie = setCookies(seeded).get('sid')!.value;

    await server.kill('SIGKILL');
    try {
      warnings.length = 0;
      const health = await get('/health', cookie);
      expect(health.status).toBe(200);
      expect(health.body).toEqual({ ok: true });
      expect(health.headers['set-cookie']).toBeUndefined();
      // Logged once, and the log never names the id.
      expect(warnings.filter((w) => /session store is unavailable/i.test(w))).toHaveLength(1);
      expect(warnings.join('\n')).not.toContain(cookie);

      const missing = await get('/no-such-route', cookie);
      expect(missing.status).toBe(404);
      expect(missing.headers['set-cookie']).toBeUndefined();

      // Routes that use the session: a sync getter first (GET /session), start() (PUT),
      // @SessionLock(), a bag (@Flashes()).
      const used = [
        await get('/session', cookie),
        await request(app.getHttpServer())
          .put('/session/data/x')
          .set('Cookie', `sid=${cookie}`)
          .send({ value: 1 })
          .timeout({ deadline: REQUEST_TIMEOUT }),
        await request(app.getHttpServer())
          .post('/counter/n/increment-locked')
          .set('Cookie', `sid=${cookie}`)
          .timeout({ deadline: REQUEST_TIMEOUT }),
        await get('/flash', cookie),
      ];
      for (const res of used) {
        expect(res.status).toBe(503);
        expect(res.body).toMatchObject({ statusCode: 503, message: 'The session store is unavailable; retry later.' });
        expect(res.headers['set-cookie']).toBeUndefined();
      }
      expect(warnings.join('\n')).not.toContain(cookie);
    } finally {
      await server.launch();
    }

    // Back without a restart of the app: the session is intact and usable.
    const deadline = Date.now() + 5000;
    let after = await get('/session', cookie);
    while (after.status !== 200 && Date.now() < deadline) {
      await sleep(50);
      after = await get('/session', cookie);
    }
    expect(after.status).toBe(200);
    expect(after.body).toMatchObject({ started: true, data: { seed: 'kept' } });
    const health = await get('/health', cookie);
    expect(health.status).toBe(200);
    expect(health.headers['set-cookie']).toBeUndefined();
  });
});
