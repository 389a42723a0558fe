import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { userTag } from 'nest-session';
import { createPostgresSessionStores, POSTGRES_SCHEMA_VERSION, type PostgresSessionStores } from 'nest-session/postgres';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { buildSampleApp, InstanceBrowser, jsonRequest, SampleProcess } from '../support/sample-process.js';

/**
 * Two sample-app PROCESSES (one on Express, one on Fastify) on one PostgreSQL database, as two
 * app instances behind a load balancer would run: `SESSION_BACKEND=postgres`, the same
 * `DATABASE_URL` and `SESSION_PREFIX`. Both migrate the schema at boot, at the same time.
 */
const TOKEN = 'multi-instance-admin-token';
/** Key of SessionManager's GC lock in the configured locker. */
const GC_LOCK_KEY = '~gc';
const PREFIX = 'multi:';

describe('two app instances on one PostgreSQL database', () => {
  let db: TestDatabase;
  let a: SampleProcess;
  let b: SampleProcess;

  beforeAll(async () => {
    Logger.overrideLogger(['error', 'warn']);
    db = await createTestDatabase();
    const main = buildSampleApp();
    const env = {
      SESSION_BACKEND: 'postgres',
      DATABASE_URL: db.url,
      SESSION_PREFIX: PREFIX,
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
    await db?.drop();
  });

  it('each instance says where its sessions are, and both migrated the same schema once', async () => {
    for (const instance of [a, b]) expect(instance.log).toContain(`sessions in PostgreSQL at ${db.url}`);
    const { rows } = await db.pool.query('SELECT version FROM nest_session_schema_version');
    expect(rows).toEqual([{ version: POSTGRES_SCHEMA_VERSION }]);
  });

  it('a session created through one instance is read and written through the other', async () => {
    const browser = new InstanceBrowser();
    expect((await browser.put(a.url, '/session/data/color', { value: 'blue' })).status).toBe(200);
    const cookie = browser.cookie;
    expect(cookie).toBeDefined();
    const onB = await browser.get(b.url, '/session');
    expect(onB.body).toEqual({ started: true, data: { color: 'blue' }, tags: [], user: null });
    expect((await browser.put(b.url, '/session/data/size', { value: 'L' })).status).toBe(200);
    expect(browser.cookie).toBe(cookie);
    expect((await browser.get(a.url, '/session')).body.data).toEqual({ color: 'blue', size: 'L' });
    // Concurrent writes of different keys through both instances lose nothing.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => browser.put(i % 2 === 0 ? a.url : b.url, `/session/data/k${i}`, { value: i })),
    );
    const data = (await browser.get(b.url, '/session')).body.data as Record<string, number>;
    for (let i = 0; i < 20; i++) expect(data[`k${i}`]).toBe(i);
  });

  // 40, not 100 as on Redis: each hand-over is a commit that waits for the WAL flush, and all of
  // them must fit into the sample app's default lock wait (5 s) on a busy CI machine.
  it('40 locked increments split across both instances end at exactly 40', async () => {
    const browser = new InstanceBrowser();
    await browser.put(a.url, '/session/data/seed', { value: true });
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => browser.post(i % 2 === 0 ? a.url : b.url, '/counter/n/increment?lock=1')),
    );
    expect(results.filter((r) => r.status !== 200).map((r) => [r.status, r.body])).toEqual([]);
    expect(results.map((r) => r.body.value as number).sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect((await browser.get(b.url, '/session')).body.data).toMatchObject({ n: 40 });
    expect((await browser.get(a.url, '/session')).body.data).toMatchObject({ n: 40 });
  });

  it('destroying a user’s sessions through one instance logs the user out on the other', async () => {
    const user = `alice-${Date.now()}`;
    const onA = new InstanceBrowser();
    const onB = new InstanceBrowser();
    expect((await onA.post(a.url, '/auth/login', { user })).status).toBe(200);
    expect((await onB.post(b.url, '/auth/login', { user })).status).toBe(200);
    const bystander = new InstanceBrowser();
    await bystander.post(b.url, '/auth/login', { user: `${user}-other` });
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
      expect((await browser.get(b.url, '/session')).body).toEqual({ started: false, data: {}, tags: [], user: null });
    }
    expect((await bystander.get(a.url, '/session')).body.user).toBe(`${user}-other`);
  });

  describe('garbage collection', () => {
    const EXPIRED = 150;
    let stores: PostgresSessionStores;
    let expiredIds: string[] = [];

    beforeAll(async () => {
      // A third "instance" in this process writes sessions that expire after 1 s.
      stores = await createPostgresSessionStores({ pool: db.pool, prefix: PREFIX });
      const store = new SessionStore(
        resolveSessionOptions({
          metadataBackend: stores.metadataBackend,
          storageBackend: stores.storageBackend,
          locker: stores.locker,
          inactivityTimeout: 1,
          updateGracePeriod: 0,
        }),
      );
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
    const metadataLeft = async () =>
      Number(
        (
          await db.pool.query<{ n: string }>(
            'SELECT count(*) AS n FROM nest_session_entries WHERE namespace = $1 AND id = ANY ($2)',
            [stores.metadataBackend.namespace, expiredIds.map((id) => metadataKeyOf(id))],
          )
        ).rows[0]!.n,
      );
    const storageRows = async () =>
      Number(
        (
          await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM nest_session_entries WHERE namespace = $1', [
            stores.storageBackend.namespace,
          ])
        ).rows[0]!.n,
      );

    it('goes through the shared lock: while another instance holds it, neither instance collects', async () => {
      expect(await metadataLeft()).toBe(EXPIRED);
      const lock = await stores.locker.acquire(GC_LOCK_KEY, { waitTimeout: 0, ttl: 10_000 });
      try {
        const [onA, onB] = await Promise.all([gc(a), gc(b)]);
        expect([onA.status, onA.body, onB.status, onB.body]).toEqual([200, { removed: 0 }, 200, { removed: 0 }]);
        expect(await metadataLeft()).toBe(EXPIRED);
      } finally {
        await lock.release();
      }
    });

    it('two concurrent runs on both instances: one collects everything (data included), the other is skipped', async () => {
      const before = await storageRows();
      expect(before).toBeGreaterThanOrEqual(2 * EXPIRED);
      const [onA, onB] = await Promise.all([gc(a), gc(b)]);
      const removed = [onA.body.removed as number, onB.body.removed as number].sort((x, y) => x - y);
      expect(removed).toEqual([0, EXPIRED]);
      expect(await metadataLeft()).toBe(0);
      // Each expired session had one data entry and its write guard.
      expect(await storageRows()).toBe(before - 2 * EXPIRED);
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
