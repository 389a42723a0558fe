import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Redis } from 'ioredis';
import { Redis as Redis6 } from 'ioredis6';
import request from 'supertest';
import { MemoryBackend, MemoryLocker, SessionModule, type SessionModuleOptions } from 'nest-session';
import { createRedisSessionStores } from 'nest-session/redis';
import { SessionHealthIndicator } from 'nest-session/terminus';
import { RedisServer } from '../support/redis-server.js';
import { uniquePrefix } from '../support/redis.js';

@Controller()
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly sessions: SessionHealthIndicator,
  ) {}

  @Get('health')
  @HealthCheck()
  check() {
    return this.health.check([() => this.sessions.isHealthy('sessions', { timeout: 500 })]);
  }
}

async function healthApp(options: () => Promise<SessionModuleOptions>): Promise<INestApplication> {
  @Module({
    // No GC: a run rolled by a /health request would hold the GC lock while a test lists the keys.
    imports: [
      TerminusModule,
      SessionModule.forRootAsync({
        useFactory: async () => ({ garbageCollection: { probability: 0, cron: false }, ...(await options()) }),
      }),
    ],
    providers: [SessionHealthIndicator],
    controllers: [HealthController],
  })
  class HealthAppModule {}
  const app = await NestFactory.create(HealthAppModule, new ExpressAdapter(), { logger: ['error'], abortOnError: false });
  await app.init();
  return app;
}

interface PartHealth {
  status: string;
  engine: string;
  latencyMs: number;
}
type SessionsHealth = { status: string; metadata: PartHealth; storage: PartHealth; locker: PartHealth };

describe('SessionHealthIndicator (@nestjs/terminus)', () => {
  let server: RedisServer;
  const apps: INestApplication[] = [];

  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(async () => {
    await Promise.allSettled(apps.map((app) => app.close()));
    await server.stop();
  });

  it('is up in memory, naming each engine with its latency', async () => {
    const app = await healthApp(async () => ({
      metadataBackend: new MemoryBackend(),
      storageBackend: new MemoryBackend(),
      locker: new MemoryLocker(),
    }));
    apps.push(app);
    const res = await request(app.getHttpServer()).get('/health').expect(200);
    const sessions = (res.body as { details: { sessions: SessionsHealth } }).details.sessions;
    expect(sessions.status).toBe('up');
    expect(sessions.metadata).toMatchObject({ status: 'up', engine: 'MemoryBackend' });
    expect(sessions.storage).toMatchObject({ status: 'up', engine: 'MemoryBackend' });
    expect(sessions.locker).toMatchObject({ status: 'up', engine: 'MemoryLocker' });
    expect(sessions.locker.latencyMs).toBeGreaterThanOrEqual(0);
  });

  it("is up on Redis, and down (503) while the test's own redis-server is stopped, then up again", async () => {
    const app = await healthApp(async () => {
      const { metadataBackend, storageBackend, locker } = await createRedisSessionStores({
        url: server.url,
        prefix: uniquePrefix('health'),
        commandTimeout: 300,
      });
      return { metadataBackend, storageBackend, locker };
    });
    apps.push(app);
    const up = await request(app.getHttpServer()).get('/health').expect(200);
    const sessions = (up.body as { details: { sessions: SessionsHealth } }).details.sessions;
    expect(sessions).toMatchObject({
      status: 'up',
      metadata: { status: 'up', engine: 'RedisBackend' },
      storage: { status: 'up', engine: 'RedisBackend' },
      locker: { status: 'up' },
    });
    // The locker that owns the client it created is a RedisLocker to an operator too.
    expect(sessions.locker.engine).toBe('RedisLocker');

    await server.kill();
    try {
      const down = await request(app.getHttpServer()).get('/health').expect(503);
      const body = down.body as { status: string; error: { sessions: SessionsHealth } };
      expect(body.status).toBe('error');
      expect(body.error.sessions).toMatchObject({
        status: 'down',
        metadata: { status: 'down' },
        storage: { status: 'down' },
        locker: { status: 'down' },
      });
      expect(JSON.stringify(body)).not.toContain(String(server.port));
    } finally {
      await server.launch();
    }
    // The client reconnects with backoff (at most 2 s between attempts).
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await request(app.getHttpServer()).get('/health')).status;
      if (status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(status).toBe(200);
  });

  describe.each([
    ['ioredis 5', (url: string) => new Redis(url, ioredisSettings)],
    ['ioredis 6', (url: string) => new Redis6(url, ioredisSettings)],
  ])('on %s (the app’s own client)', (_name, connect) => {
    it("is up, down (503) while the test's own redis-server is stopped, then up again without a restart", async () => {
      const prefix = uniquePrefix('health-io');
      const client = connect(server.url);
      client.on('error', () => undefined); // failures reach the probes
      await client.connect();
      const app = await healthApp(async () => {
        const { metadataBackend, storageBackend, locker } = await createRedisSessionStores({
          client,
          prefix,
        });
        return { metadataBackend, storageBackend, locker };
      });
      try {
        const up = await request(app.getHttpServer()).get('/health').expect(200);
        const sessions = (up.body as { details: { sessions: SessionsHealth } }).details.sessions;
        expect(sessions).toMatchObject({
          status: 'up',
          metadata: { status: 'up', engine: 'RedisBackend' },
          storage: { status: 'up', engine: 'RedisBackend' },
          locker: { status: 'up', engine: 'RedisLocker' },
        });
        for (const part of [sessions.metadata, sessions.storage, sessions.locker]) {
          expect(part.latencyMs).toBeGreaterThanOrEqual(0);
          expect(part.latencyMs).toBeLessThan(500);
        }
        // The probe lock was released: nothing of it is left but its fence counter.
        expect((await client.keys(`${prefix}*`)).sort()).toEqual([`${prefix}l:lock:{~health}:fence`]);

        await server.kill();
        try {
          const started = Date.now();
          const down = await request(app.getHttpServer()).get('/health').expect(503);
          // No offline queue: the probes fail at once instead of waiting for their timeout.
          expect(Date.now() - started).toBeLessThan(500);
          const body = down.body as {
            status: string;
            error: { sessions: SessionsHealth & Record<string, { message?: string }> };
          };
          expect(body.status).toBe('error');
          expect(body.error.sessions).toMatchObject({
            status: 'down',
            metadata: { status: 'down', engine: 'RedisBackend', message: 'unreachable' },
            storage: { status: 'down', engine: 'RedisBackend', message: 'unreachable' },
            locker: { status: 'down', engine: 'RedisLocker', message: 'unreachable' },
          });
          expect(JSON.stringify(body)).not.toContain(String(server.port));
        } finally {
          await server.launch();
        }
        const deadline = Date.now() + 10_000;
        let status = 0;
        while (Date.now() < deadline) {
          status = (await request(app.getHttpServer()).get('/health')).status;
          if (status === 200) break;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        expect(status).toBe(200);
      } finally {
        await app.close();
        await client.quit().catch(() => client.disconnect());
      }
    });
  });
});

/** What an app that hands its ioredis client over sets (see README "Redis clients"): fail fast while Redis is down, reconnect soon. */
const ioredisSettings = {
  lazyConnect: true,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  retryStrategy: (times: number) => Math.min(500, 50 * times),
};
