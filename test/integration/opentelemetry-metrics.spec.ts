import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import type {
  Attributes,
  BatchObservableCallback,
  Meter,
  MeterProvider,
  Observable,
  ObservableCallback,
  ObservableGauge,
} from '@opentelemetry/api';
import request from 'supertest';
import { MemoryBackend, type SessionModuleOptions } from 'nest-session';
import { OpenTelemetrySessionMetrics } from 'nest-session/opentelemetry';
import { createRedisSessionStores } from 'nest-session/redis';
import { createSampleApp } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { RedisServer } from '../support/redis-server.js';
import { uniquePrefix } from '../support/redis.js';

/**
 * A minimal MeterProvider written against @opentelemetry/api's public interfaces (the contract
 * an SDK implements; no SDK is installed): it keeps every measurement, so the test can sum them.
 */
class RecordingMeterProvider implements MeterProvider {
  readonly measurements: Array<{ name: string; value: number; attributes: Attributes }> = [];
  readonly gauges = new Map<string, ObservableCallback[]>();

  getMeter(): Meter {
    const record =
      (name: string) =>
      (value: number, attributes: Attributes = {}): void => {
        this.measurements.push({ name, value, attributes });
      };
    const instrument = (name: string) => ({ add: record(name), record: record(name) });
    const observable = (name: string): ObservableGauge => ({
      addCallback: (callback: ObservableCallback) => this.gauges.set(name, [...(this.gauges.get(name) ?? []), callback]),
      removeCallback: () => undefined,
    });
    return {
      createCounter: (name: string) => instrument(name),
      createUpDownCounter: (name: string) => instrument(name),
      createHistogram: (name: string) => instrument(name),
      createGauge: (name: string) => instrument(name),
      createObservableGauge: observable,
      createObservableCounter: observable,
      createObservableUpDownCounter: observable,
      addBatchObservableCallback: (_callback: BatchObservableCallback, _observables: Observable[]) => undefined,
      removeBatchObservableCallback: () => undefined,
    };
  }

  /** Sum of the measurements of `name` whose attributes include `where`. */
  sum(name: string, where: Attributes = {}): number {
    return this.measurements
      .filter((m) => m.name === name && Object.entries(where).every(([k, v]) => m.attributes[k] === v))
      .reduce((total, m) => total + m.value, 0);
  }

  /** The measurements of `name`, in order, as `{ value, attributes }`. */
  of(name: string): Array<{ value: number; attributes: Attributes }> {
    return this.measurements.filter((m) => m.name === name).map(({ value, attributes }) => ({ value, attributes }));
  }

  /** The attributes of each measurement of `name` (histograms: their values are times). */
  attributesOf(name: string): Attributes[] {
    return this.measurements.filter((m) => m.name === name).map((m) => m.attributes);
  }

  count(name: string, where: Attributes = {}): number {
    return this.measurements.filter((m) => m.name === name && Object.entries(where).every(([k, v]) => m.attributes[k] === v))
      .length;
  }

  /** What the gauge's callbacks observe now (as a collection by an SDK would). */
  observe(name: string): number[] {
    const values: number[] = [];
    for (const callback of this.gauges.get(name) ?? []) {
      void callback({ observe: (value: number) => values.push(value) });
    }
    return values;
  }
}

describe('OpenTelemetry metrics (nest-session/opentelemetry)', () => {
  const apps: INestApplication[] = [];
  afterEach(() => {
    jest.useRealTimers();
  });
  afterAll(async () => {
    await Promise.allSettled(apps.map((app) => app.close()));
  });

  async function start(provider: RecordingMeterProvider, session: SessionModuleOptions): Promise<INestApplication> {
    const app = await createSampleApp('express', {
      adminToken: 'token',
      session: {
        garbageCollection: { probability: 0, cron: false },
        instrumentation: new OpenTelemetrySessionMetrics({ meterProvider: provider }),
        ...session,
      },
    });
    apps.push(app);
    return app;
  }

  it('counts sessions started, renewed, destroyed by reason, expired; commits; GC; the active gauge', async () => {
    const provider = new RecordingMeterProvider();
    const app = await start(provider, {
      metadataBackend: new MemoryBackend(),
      storageBackend: new MemoryBackend(),
      inactivityTimeout: 60,
      updateGracePeriod: 1,
    });
    const alice = new Browser(app);
    const bob = new Browser(app);
    const carol = new Browser(app);
    await alice.put('/session/data/a', { value: 1 });
    await bob.put('/session/data/b', { value: 2 });
    await carol.put('/session/data/c', { value: 3 });
    expect(provider.sum('session.started')).toBe(3);
    expect(provider.observe('session.active')).toEqual([3]);
    expect(provider.sum('session.commits', { outcome: 'ok' })).toBe(3);
    expect(provider.count('session.commit.duration')).toBe(3);

    await alice.post('/auth/login', { user: 'alice' });
    expect(provider.sum('session.renewed')).toBe(1);
    await alice.post('/auth/logout');
    expect(provider.sum('session.destroyed', { reason: 'logout', remote: false })).toBe(1);
    expect(provider.observe('session.active')).toEqual([2]);

    // Two expire; GC collects them.
    fakeOnlyDate(Date.now() + 61_000);
    await request(app.getHttpServer()).post('/admin/gc').set('x-admin-token', 'token').expect(200);
    expect(provider.sum('session.expired')).toBe(2);
    expect(provider.sum('session.gc.runs')).toBe(1);
    expect(provider.sum('session.gc.removed')).toBe(2);
    expect(provider.count('session.gc.duration')).toBe(1);
    expect(provider.observe('session.active')).toEqual([0]);
    expect(provider.sum('session.store.errors')).toBe(0);
  });

  it('measures lock waits and timeouts: one acquisition per locked request, one timeout, nothing for unlocked commits', async () => {
    const provider = new RecordingMeterProvider();
    // The module's default stores: the storage checks the default locker's locks in its writes,
    // so a plain commit takes no lock (and measuring must not change that).
    const app = await start(provider, { lock: { waitTimeout: 100, ttl: 5000 } });
    const browser = new Browser(app);
    await browser.post('/counter/n/increment'); // a new session: stored without a lock
    await browser.post('/counter/n/increment'); // an unlocked commit
    await browser.put('/session/data/a', { value: 1 }); // another
    expect(provider.of('session.lock.acquired')).toEqual([]);
    expect(provider.of('session.commits')).toEqual(Array(3).fill({ value: 1, attributes: { outcome: 'ok' } }));

    const [slow, late] = await Promise.all([
      browser.post('/counter/n/increment?lock=1&delay=400'),
      new Promise((resolve) => setTimeout(resolve, 50)).then(() => browser.post('/counter/n/increment?lock=1')),
    ]);
    expect(slow.status).toBe(200);
    expect(slow.body).toEqual({ key: 'n', value: 3 });
    expect(late.status).toBe(423);
    // The slow request's lock (its commit runs under it: no second acquisition), the late one's timeout.
    expect(provider.of('session.lock.acquired')).toEqual([{ value: 1, attributes: {} }]);
    expect(provider.of('session.lock.timeouts')).toEqual([{ value: 1, attributes: {} }]);
    expect(provider.attributesOf('session.lock.wait')).toEqual([{}, { outcome: 'timeout' }]);
    const [acquiredWait, timeoutWait] = provider.of('session.lock.wait').map((m) => m.value);
    expect(acquiredWait).toBeLessThan(50); // the lock was free
    expect(timeoutWait).toBeGreaterThanOrEqual(90); // waitTimeout 100 ms
    expect(timeoutWait).toBeLessThan(1000);
    // The late request answered 423 before its handler ran: it committed nothing.
    expect(provider.of('session.commits')).toEqual(Array(4).fill({ value: 1, attributes: { outcome: 'ok' } }));
    expect(provider.of('session.store.errors')).toEqual([]);
  });

  describe('on Redis', () => {
    let server: RedisServer;
    beforeAll(async () => {
      // Persistent (append-only, fsync always): the sessions written before the outage survive the restart.
      server = await RedisServer.start({ appendonly: true });
    });
    afterAll(async () => {
      await server.stop();
    });

    it('counts store errors by part and operation, one per failed operation, and takes no lock for unlocked commits', async () => {
      const provider = new RecordingMeterProvider();
      const { metadataBackend, storageBackend, locker } = await createRedisSessionStores({
        url: server.url,
        prefix: uniquePrefix('otel'),
        commandTimeout: 300,
      });
      const app = await start(provider, { metadataBackend, storageBackend, locker });
      app.useLogger(['error']); // every 503 is also logged as a warning
      const browser = new Browser(app);
      await browser.put('/session/data/a', { value: 1 }); // new session
      await browser.put('/session/data/a', { value: 2 }); // unlocked commit: the lock is checked inside the write script
      expect((await browser.post('/counter/n/increment?lock=1')).body).toEqual({ key: 'n', value: 1 });
      expect(provider.of('session.started')).toEqual([{ value: 1, attributes: { user_bound: false } }]);
      expect(provider.of('session.commits')).toEqual(Array(3).fill({ value: 1, attributes: { outcome: 'ok' } }));
      expect(provider.of('session.lock.acquired')).toEqual([{ value: 1, attributes: {} }]);
      expect(provider.of('session.store.errors')).toEqual([]);

      await server.kill();
      try {
        // An existing session: its resume reads the metadata, which fails; nothing is committed.
        expect((await browser.put('/session/data/a', { value: 3 })).status).toBe(503);
        expect(provider.of('session.store.errors')).toEqual([{ value: 1, attributes: { part: 'metadata', operation: 'get' } }]);
        // A locked route resumes first too: the same single error, no lock measured.
        expect((await browser.post('/counter/n/increment?lock=1')).status).toBe(503);
        expect(provider.of('session.store.errors')).toEqual(
          Array(2).fill({ value: 1, attributes: { part: 'metadata', operation: 'get' } }),
        );
        // A new session's commit writes both parts at once: one error each, and a failed commit.
        expect((await new Browser(app).put('/session/data/b', { value: 1 })).status).toBe(503);
        const errors = provider.of('session.store.errors');
        expect(errors).toHaveLength(4);
        expect(errors.slice(2).sort((x, y) => String(x.attributes.part).localeCompare(String(y.attributes.part)))).toEqual([
          { value: 1, attributes: { part: 'metadata', operation: 'write' } },
          { value: 1, attributes: { part: 'storage', operation: 'write' } },
        ]);
        expect(provider.of('session.commits').slice(3)).toEqual([
          { value: 1, attributes: { outcome: 'error', error: 'StoreUnavailableException' } },
        ]);
      } finally {
        await server.launch();
      }
      expect(provider.of('session.lock.acquired')).toHaveLength(1);

      // Until the client has reconnected each request fails once more, and is counted once.
      let refused = 0;
      const deadline = Date.now() + 10_000;
      for (;;) {
        const res = await browser.get('/session');
        if (res.status === 200) break;
        expect(res.status).toBe(503);
        refused++;
        if (Date.now() > deadline) throw new Error('Redis did not come back within 10 s');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(provider.of('session.store.errors')).toHaveLength(4 + refused);
      expect(provider.of('session.store.errors').slice(4)).toEqual(
        Array(refused).fill({ value: 1, attributes: { part: 'metadata', operation: 'get' } }),
      );
      expect((await browser.get('/session')).body).toMatchObject({ data: { a: 2, n: 1 } });
      expect(provider.of('session.store.errors')).toHaveLength(4 + refused);
    });
  });
});
