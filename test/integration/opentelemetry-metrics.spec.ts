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
import { MemoryBackend, MemoryLocker, type SessionModuleOptions } from 'nest-session';
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

  it('measures lock waits and timeouts', async () => {
    const provider = new RecordingMeterProvider();
    const app = await start(provider, {
      metadataBackend: new MemoryBackend(),
      storageBackend: new MemoryBackend(),
      locker: new MemoryLocker(),
      lock: { waitTimeout: 100, ttl: 5000 },
    });
    const browser = new Browser(app);
    await browser.post('/counter/n/increment');
    const before = provider.sum('session.lock.acquired');
    const [slow, late] = await Promise.all([
      browser.post('/counter/n/increment?lock=1&delay=400'),
      new Promise((resolve) => setTimeout(resolve, 50)).then(() => browser.post('/counter/n/increment?lock=1')),
    ]);
    expect(slow.status).toBe(200);
    expect(late.status).toBe(423);
    expect(provider.sum('session.lock.timeouts')).toBe(1);
    expect(provider.count('session.lock.wait', { outcome: 'timeout' })).toBe(1);
    expect(provider.sum('session.lock.acquired')).toBeGreaterThan(before);
    const waits = provider.measurements.filter((m) => m.name === 'session.lock.wait' && m.attributes.outcome === 'timeout');
    expect(waits[0]!.value).toBeGreaterThanOrEqual(90);
  });

  describe('on Redis', () => {
    let server: RedisServer;
    beforeAll(async () => {
      server = await RedisServer.start();
    });
    afterAll(async () => {
      await server.stop();
    });

    it('counts store errors by part and operation', async () => {
      const provider = new RecordingMeterProvider();
      const { metadataBackend, storageBackend, locker } = await createRedisSessionStores({
        url: server.url,
        prefix: uniquePrefix('otel'),
        commandTimeout: 300,
      });
      const app = await start(provider, { metadataBackend, storageBackend, locker });
      const browser = new Browser(app);
      await browser.put('/session/data/a', { value: 1 });
      expect(provider.sum('session.store.errors')).toBe(0);
      await server.kill();
      try {
        const res = await browser.put('/session/data/a', { value: 2 });
        expect(res.status).toBe(503);
      } finally {
        await server.launch();
      }
      expect(provider.sum('session.store.errors', { part: 'metadata', operation: 'get' })).toBeGreaterThanOrEqual(1);
      expect(provider.sum('session.store.errors')).toBeGreaterThanOrEqual(1);
    });
  });
});
