import { Controller, Get, HttpCode, Inject, Module, Post, type DynamicModule } from '@nestjs/common';
import { CurrentSession, SessionInterface, SessionLock, SessionModule, type SessionModuleOptions } from '../../lib/index.js';
import { createRedisSessionStores } from '../../lib/redis/index.js';
import type { AppEnv, HttpAdapterName, StoreKind } from '../variants.js';
import { COOKIE_NAME, SESSION_TTL } from '../variants.js';
import { connectRedis, createNestApp, next, type BenchApp } from './nest.js';

/** The routes' work, shared by both controller styles below. */
const routes = {
  async read(session: SessionInterface): Promise<{ value: number | null }> {
    if (!session.isStarted()) return { value: null };
    return { value: ((await session.getData('n')) as number | undefined) ?? null };
  },
  async write(session: SessionInterface): Promise<{ ok: boolean }> {
    session.start();
    await session.putData('n', next());
    return { ok: true };
  },
  /** Login: bind to a user, which renews the id (fixation defence) and tags the session. */
  login(session: SessionInterface): { ok: boolean } {
    session.bindToUser(`user${next()}`);
    return { ok: true };
  },
  /**
   * Locked read-modify-write (ours only): @SessionLock() takes the lock and re-reads before
   * the handler; the commit at the end of the request writes and unlocks.
   */
  async incr(session: SessionInterface): Promise<{ value: number }> {
    const value = (((await session.getData('n')) as number | undefined) ?? 0) + 1;
    await session.putData('n', value);
    return { value };
  },
};

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
  read(@CurrentSession() session: SessionInterface): Promise<{ value: number | null }> {
    return routes.read(session);
  }

  @Post('write')
  @HttpCode(200)
  write(@CurrentSession() session: SessionInterface): Promise<{ ok: boolean }> {
    return routes.write(session);
  }

  @Post('login')
  @HttpCode(200)
  login(@CurrentSession() session: SessionInterface): { ok: boolean } {
    return routes.login(session);
  }

  @Post('incr')
  @HttpCode(200)
  @SessionLock()
  incr(@CurrentSession() session: SessionInterface): Promise<{ value: number }> {
    return routes.incr(session);
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
  read(): Promise<{ value: number | null }> {
    return routes.read(this.session);
  }

  @Post('write')
  @HttpCode(200)
  write(): Promise<{ ok: boolean }> {
    return routes.write(this.session);
  }

  @Post('login')
  @HttpCode(200)
  login(): { ok: boolean } {
    return routes.login(this.session);
  }

  @Post('incr')
  @HttpCode(200)
  @SessionLock()
  incr(): Promise<{ value: number }> {
    return routes.incr(this.session);
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
    // The module's own defaults, as a user gets them: its storage MemoryBackend checks its
    // MemoryLocker's locks in its writes (option `locks`), so commits and logins take no lock
    // while nobody holds it. (Backends passed in without `locks`, as this bench did before
    // 2026-12-04, commit every write under the lock.)
    const app = await createNestApp(OursModule.forRoot(common, injected), adapter);
    return {
      app,
      info: 'module defaults (MemoryBackend x2, the storage one checking the MemoryLocker in its writes; DevalueSerializer)',
      close: () => app.close(),
    };
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
