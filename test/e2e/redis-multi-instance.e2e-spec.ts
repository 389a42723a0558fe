import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { userTag } from 'nest-session';
import { createRedisSessionStores, type RedisSessionStores } from 'nest-session/redis';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { connectTestRedis, TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from '../support/redis.js';
import { buildSampleApp, InstanceBrowser, jsonRequest, SampleProcess } from '../support/sample-process.js';

/**
 * Two sample-app PROCESSES (one on Express, one on Fastify) on one Redis, as two app instances
 * behind a load balancer would run: `SESSION_BACKEND=redis`, the same `SESSION_PREFIX`.
 */
const TOKEN = 'multi-instance-admin-token';
/** Key of SessionManager's GC lock in the configured locker. */
const GC_LOCK_KEY = '~gc';

// On each client library the sample app supports (REDIS_CLIENT, see sample-app/redis-stores.ts).
describe.each(['node-redis', 'ioredis'])('two app instances on one Redis (%s)', (redisClient) => {
  const prefix = uniquePrefix('multi');
  let redis: TestRedisClient;
  let a: SampleProcess;
  let b: SampleProcess;

  beforeAll(async () => {
    Logger.overrideLogger(['error', 'warn']); // the in-process store below logs session events at debug level
    redis = await connectTestRedis();
    const main = buildSampleApp();
    const env = {
      SESSION_BACKEND: 'redis',
      REDIS_CLIENT: redisClient,
      REDIS_URL: TEST_REDIS_URL,
      SESSION_PREFIX: prefix,
      ADMIN_TOKEN: TOKEN,
      // GC only when a test asks for it (POST /admin/gc), so the GC counts below are exact.
      SESSION_GC: 'manual',
    };
    [a, b] = await Promise.all([
      SampleProcess.start(main, 'A', { ...env, HTTP_ADAPTER: 'express' }),
      SampleProcess.start(main, 'B', { ...env, HTTP_ADAPTER: 'fastify' }),
    ]);
  }, 90_000);

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    if (redis !== undefined) {
      const keys: string[] = [];
      for await (const batch of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
      if (keys.length > 0) await redis.del(keys);
      await redis.close();
    }
  });

  it('each instance says where its sessions are', () => {
    for (const instance of [a, b]) expect(instance.log).toContain(`sessions in Redis at ${TEST_REDIS_URL}`);
  });

  it('a session created through one instance is read and written through the other', async () => {
    const browser = new InstanceBrowser();
    expect((await browser.put(a.url, '/session/data/color', { value: 'blue' })).status).toBe(200);
    const cookie = browser.cookie;
    expect(cookie).toBeDefined();

    const onB = await browser.get(b.url, '/session');
    expect(onB.body).toEqual({ started: true, data: { color: 'blue' }, tags: [], user: null });
    expect((await browser.put(b.url, '/session/data/size', { value: 'L' })).status).toBe(200);
    expect(browser.cookie).toBe(cookie); // same session, no new id

    expect((await browser.get(a.url, '/session')).body.data).toEqual({ color: 'blue', size: 'L' });
    // Concurrent writes of different keys through both instances lose nothing.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => browser.put(i % 2 === 0 ? a.url : b.url, `/session/data/k${i}`, { value: i })),
    );
    const data = (await browser.get(b.url, '/session')).body.data as Record<string, number>;
    for (let i = 0; i < 20; i++) expect(data[`k${i}`]).toBe(i);
  });

  it('100 locked increments split across both instances end at exactly 100', async () => {
    const browser = new InstanceBrowser();
    await browser.put(a.url, '/session/data/seed', { value: true });
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => browser.post(i % 2 === 0 ? a.url : b.url, '/counter/n/increment?lock=1')),
    );
    expect(results.filter((r) => r.status !== 200).map((r) => [r.status, r.body])).toEqual([]);
    expect(results.map((r) => r.body.value as number).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    expect((await browser.get(b.url, '/session')).body.data).toMatchObject({ n: 100 });
    expect((await browser.get(a.url, '/session')).body.data).toMatchObject({ n: 100 });
  });

  it('destroying a user’s sessions through one instance logs the user out on the other', async () => {
    const user = `alice-${prefix.length}-${Date.now()}`;
    const onA = new InstanceBrowser();
    const onB = new InstanceBrowser();
    expect((await onA.post(a.url, '/auth/login', { user })).status).toBe(200);
    expect((await onB.post(b.url, '/auth/login', { user })).status).toBe(200);
    const bystander = new InstanceBrowser();
    await bystander.post(b.url, '/auth/login', { user: `${user}-other` });
    // Each session is known to both instances.
    for (const browser of [onA, onB]) {
      expect((await browser.get(b.url, '/session')).body.user).toBe(user);
      expect((await browser.get(a.url, '/session')).body.user).toBe(user);
    }

    const tag = userTag(user);
    const listed = await jsonRequest(b.url, 'GET', `/admin/sessions?tag=${tag}`, undefined, { 'x-admin-token': TOKEN });
    expect((listed.body.sessions as unknown[]).length).toBe(2);
    const destroyed = await jsonRequest(a.url, 'DELETE', `/admin/sessions?tag=${tag}`, undefined, { 'x-admin-token': TOKEN });
    expect(destroyed.body).toEqual({ destroyed: 2 });

    for (const browser of [onA, onB]) {
      const res = await browser.get(b.url, '/session');
      expect(res.body).toEqual({ started: false, data: {}, tags: [], user: null });
    }
    expect((await bystander.get(a.url, '/session')).body.user).toBe(`${user}-other`);
  });

  describe('garbage collection', () => {
    const EXPIRED = 150;
    let stores: RedisSessionStores;
    let expiredIds: string[] = [];

    beforeAll(async () => {
      // A third "instance" in this process writes sessions that expire after 1 s.
      stores = await createRedisSessionStores({ client: redis, prefix });
      const store = new SessionStore(resolveSessionOptions({ ...stores, inactivityTimeout: 1, updateGracePeriod: 0 }));
      expiredIds = await Promise.all(
        Array.from({ length: EXPIRED }, async (_, i) => {
          const session = new Session(store, { cookieIds: [], cookieName: 'sid' });
          session.start();
          await session.putData('i', i);
          await session.commit();
          return session.getId();
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 1300));
    });
    afterAll(async () => {
      await stores?.close();
    });

    const gc = (instance: SampleProcess) => jsonRequest(instance.url, 'POST', '/admin/gc', undefined, { 'x-admin-token': TOKEN });
    const metadataKeysLeft = () => redis.exists(expiredIds.map((id) => stores.metadataBackend.entryKey(metadataKeyOf(id))));
    /** Redis keys of the expired sessions' data entries and write guards. */
    async function dataKeys(): Promise<string[]> {
      const keys: string[] = [];
      for (const id of expiredIds) {
        // The store knows a session by a digest of its id only.
        const raw = await redis.get(stores.metadataBackend.entryKey(metadataKeyOf(id)));
        const { storageId } = JSON.parse(raw!.split('\n').slice(2).join('\n')) as { storageId: string };
        keys.push(stores.storageBackend.entryKey(`${storageId}.i`), stores.storageBackend.entryKey(`${storageId}.~guard`));
      }
      return keys;
    }

    it('goes through the shared lock: while another instance holds it, neither instance collects', async () => {
      expect(await metadataKeysLeft()).toBe(EXPIRED);
      const lock = await stores.locker.acquire(GC_LOCK_KEY, { waitTimeout: 0, ttl: 10_000 });
      try {
        const [onA, onB] = await Promise.all([gc(a), gc(b)]);
        expect([onA.status, onA.body, onB.status, onB.body]).toEqual([200, { removed: 0 }, 200, { removed: 0 }]);
        expect(await metadataKeysLeft()).toBe(EXPIRED);
      } finally {
        await lock.release();
      }
    });

    it('two concurrent runs on both instances: one collects everything (data included), the other is skipped', async () => {
      const data = await dataKeys();
      expect(await redis.exists(data)).toBe(2 * EXPIRED);
      const [onA, onB] = await Promise.all([gc(a), gc(b)]);
      const removed = [onA.body.removed as number, onB.body.removed as number].sort((x, y) => x - y);
      // The expired sessions take two GC batches: two runs at once would have shared them.
      expect(removed).toEqual([0, EXPIRED]);
      expect(await metadataKeysLeft()).toBe(0);
      expect(await redis.exists(data)).toBe(0);
      expect((await gc(b)).body).toEqual({ removed: 0 });
      const session = await jsonRequest(a.url, 'GET', '/session', undefined, { cookie: `sid=${expiredIds[0]}` });
      expect(session.body.started).toBe(false);
    });
  });

  it('shuts down by itself on SIGTERM, without errors', async () => {
    const [stoppedA, stoppedB] = await Promise.all([a.stop(), b.stop()]);
    expect([stoppedA, stoppedB]).toEqual([true, true]);
    expect(a.log + b.log).not.toMatch(/ERROR/);
  });
});
