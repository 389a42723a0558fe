// The consumer app of test/compat/consumers.sh: a strict TypeScript Nest app (ESM) on the packed
// library, compiled in a fresh directory with `skipLibCheck: false` and run on Redis through the
// client of ./consumer-redis.ts (ioredis; consumers.sh puts consumer-node-redis.ts in its place
// for node-redis). Not part of `npm test`: consumers.sh installs it from the registry.
import 'reflect-metadata';
import { createRequire } from 'node:module';
import { Body, Controller, Get, HttpCode, Inject, Module, Post, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FlashBag, Flashes, SessionInterface, SessionLock, SessionModule, type FlashMessages } from 'nest-session';
import type { RedisSessionStores } from 'nest-session/redis';
import { connectRedis, REDIS_CLIENT } from './consumer-redis.js';

// Declaration merging across the package boundary: typed session data.
declare module 'nest-session' {
  interface SessionData {
    greeting: string;
    counter: number;
  }
}

/** What each client file (consumer-redis.ts, consumer-node-redis.ts) gives the app. */
export interface ConsumerRedis {
  readonly stores: RedisSessionStores;
  /** How many keys exist under the app's prefix (the session really is in Redis). */
  countKeys(): Promise<number>;
  close(): Promise<void>;
}

/** The running app. */
export interface ConsumerApp {
  readonly url: string;
  readonly nest: string;
  readonly client: string;
  countKeys(): Promise<number>;
  close(): Promise<void>;
}

@Controller()
class ConsumerController {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  @Post('login')
  @HttpCode(200)
  async login(@Body() body: { user: string }): Promise<{ ok: true }> {
    this.session.bindToUser(body.user);
    await this.session.putData('greeting', `hello ${body.user}`);
    return { ok: true };
  }

  @Get('me')
  async me(): Promise<{ started: boolean; user: string | null; greeting: string | null }> {
    if (!this.session.isStarted()) return { started: false, user: null, greeting: null };
    return {
      started: true,
      user: this.session.getUserId() ?? null,
      greeting: (await this.session.getData('greeting')) ?? null,
    };
  }

  /** Read-modify-write under the session lock: parallel calls never lose an increment. */
  @Post('counter')
  @HttpCode(200)
  @SessionLock({ waitTimeout: 10_000 })
  async increment(): Promise<{ counter: number }> {
    const counter = ((await this.session.getData('counter')) ?? 0) + 1;
    await this.session.putData('counter', counter);
    return { counter };
  }

  @Post('flash')
  @HttpCode(200)
  addFlash(@Body() body: { message: string }, @Flashes() flashes: FlashBag): { ok: true } {
    flashes.add('info', body.message);
    return { ok: true };
  }

  @Get('flash')
  showFlashes(@Flashes() flashes: FlashBag): FlashMessages {
    return flashes.all();
  }

  @Post('regenerate')
  @HttpCode(200)
  async regenerate(): Promise<{ regenerated: boolean }> {
    return { regenerated: await this.session.regenerate(true) };
  }

  @Post('logout')
  @HttpCode(200)
  async logout(): Promise<{ ok: true }> {
    await this.session.destroy('logout');
    return { ok: true };
  }
}

/** Boots the app on 127.0.0.1 (a free port) with its sessions on Redis at `redisUrl` under `prefix`. */
export async function startConsumerApp(redisUrl: string, prefix: string): Promise<ConsumerApp> {
  const redis = await connectRedis(redisUrl, prefix);
  @Module({
    imports: [
      SessionModule.forRoot({
        metadataBackend: redis.stores.metadataBackend,
        storageBackend: redis.stores.storageBackend,
        locker: redis.stores.locker,
        garbageCollection: { cron: false, probability: 0 },
      }),
    ],
    controllers: [ConsumerController],
  })
  class ConsumerModule {}

  let app: INestApplication | undefined;
  try {
    app = await NestFactory.create(ConsumerModule, { logger: ['error', 'warn'] });
    await app.listen(0, '127.0.0.1');
  } catch (error) {
    await app?.close();
    await redis.close();
    throw error;
  }
  const started = app;
  const nest = (createRequire(import.meta.url)('@nestjs/core/package.json') as { version: string }).version;
  return {
    url: (await started.getUrl()).replace('[::1]', '127.0.0.1'),
    nest,
    client: REDIS_CLIENT,
    countKeys: () => redis.countKeys(),
    close: async () => {
      await started.close();
      await redis.close();
    },
  };
}
