import { Controller, Get, HttpCode, Inject, Module, Post, type DynamicModule } from '@nestjs/common';
import {
  CurrentSession,
  MemoryBackend,
  MemoryLocker,
  SessionInterface,
  SessionLock,
  SessionModule,
  type SessionModuleOptions,
} from '../../lib/index.js';
import { createRedisSessionStores } from '../../lib/redis/index.js';
import type { AppEnv, HttpAdapterName, StoreKind } from '../variants.js';
import { COOKIE_NAME, SESSION_TTL } from '../variants.js';
import { connectRedis, createNestApp, next, type BenchApp } from './nest.js';

/**
 * The same trivial routes as every other app. Two styles, as a Nest app writes them:
 * `@CurrentSession()` parameters (the default rows; like the peers' `req.session`, no
 * AsyncLocalStorage) and the Flow-style `@Inject(SessionInterface)` (the "injected" rows: the
 * module then runs every request in AsyncLocalStorage, whose promise hooks cost on Node 20).
 */
@Controller()
class OursController {
  @Get('anon')
  anon(): { ok: boolean } {
    return { ok: true };
  }

  @Get('read')
  async read(@CurrentSession() session: SessionInterface): Promise<{ value: number | null }> {
    if (!session.isStarted()) return { value: null };
    return { value: ((await session.getData('n')) as number | undefined) ?? null };
  }

  @Post('write')
  @HttpCode(200)
  async write(@CurrentSession() session: SessionInterface): Promise<{ ok: boolean }> {
    session.start();
    await session.putData('n', next());
    return { ok: true };
  }

  /** Login: bind to a user, which renews the id (fixation defence) and tags the session. */
  @Post('login')
  @HttpCode(200)
  login(@CurrentSession() session: SessionInterface): { ok: boolean } {
    session.bindToUser(`user${next()}`);
    return { ok: true };
  }

  /**
   * Locked read-modify-write (ours only): @SessionLock() takes the lock and re-reads before
   * the handler; the commit at the end of the request writes and unlocks.
   */
  @Post('incr')
  @HttpCode(200)
  @SessionLock()
  async incr(@CurrentSession() session: SessionInterface): Promise<{ value: number }> {
    const value = (((await session.getData('n')) as number | undefined) ?? 0) + 1;
    await session.putData('n', value);
    return { value };
  }
}

/** The same routes through the injected `SessionInterface` (a singleton forwarding to the request's session). */
@Controller()
class OursInjectedController {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  @Get('anon')
  anon(): { ok: boolean } {
    return { ok: true };
  }

  @Get('read')
  async read(): Promise<{ value: number | null }> {
    const session = this.session;
    if (!session.isStarted()) return { value: null };
    return { value: ((await session.getData('n')) as number | undefined) ?? null };
  }

  @Post('write')
  @HttpCode(200)
  async write(): Promise<{ ok: boolean }> {
    this.session.start();
    await this.session.putData('n', next());
    return { ok: true };
  }

  @Post('login')
  @HttpCode(200)
  login(): { ok: boolean } {
    this.session.bindToUser(`user${next()}`);
    return { ok: true };
  }

  @Post('incr')
  @HttpCode(200)
  @SessionLock()
  async incr(): Promise<{ value: number }> {
    const value = (((await this.session.getData('n')) as number | undefined) ?? 0) + 1;
    await this.session.putData('n', value);
    return { value };
  }
}

@Module({})
export class OursModule {
  static forRoot(options: SessionModuleOptions, injected = false): DynamicModule {
    return {
      module: OursModule,
      imports: [SessionModule.forRoot(options)],
      controllers: [injected ? OursInjectedController : OursController],
    };
  }
}

export async function buildOursApp(adapter: HttpAdapterName, store: StoreKind, env: AppEnv, injected = false): Promise<BenchApp> {
  const common: SessionModuleOptions = { cookie: { name: COOKIE_NAME }, inactivityTimeout: SESSION_TTL };
  if (store === 'memory') {
    const options = {
      ...common,
      metadataBackend: new MemoryBackend(),
      storageBackend: new MemoryBackend(),
      locker: new MemoryLocker(),
    };
    const app = await createNestApp(OursModule.forRoot(options, injected), adapter);
    return { app, info: 'defaults (MemoryBackend x2, MemoryLocker, DevalueSerializer)', close: () => app.close() };
  }
  const client = await connectRedis(env.redisUrl);
  // As the README sets it up: createRedisSessionStores on one client for both caches and the
  // locker (the storage backend checks the locker's locks in its write script; the locker
  // duplicates the client for Pub/Sub when a caller has to wait), default options.
  const { metadataBackend, storageBackend, locker } = await createRedisSessionStores({ client, prefix: env.redisPrefix });
  const options = { ...common, metadataBackend, storageBackend, locker };
  const app = await createNestApp(OursModule.forRoot(options, injected), adapter);
  return {
    app,
    info: 'createRedisSessionStores (RedisBackend x2 and RedisLocker on one node-redis client), DevalueSerializer',
    close: async () => {
      await app.close();
      await client.quit().catch(() => undefined);
    },
  };
}
