import { Module, type DynamicModule } from '@nestjs/common';
import { SessionModule, type SessionModuleOptions } from 'nest-session';
import type { RedisSessionStoresOptions } from 'nest-session/redis';
import { createPostgresSessionStores, type PostgresSessionStoresOptions } from 'nest-session/postgres';
import { AdminController } from './admin.controller.js';
import { ADMIN_TOKEN, AdminTokenGuard } from './admin-token.guard.js';
import { AuthController } from './auth.controller.js';
import { CounterController } from './counter.controller.js';
import { FlashController } from './flash.controller.js';
import { CartModule } from './cart/cart.module.js';
import { HealthController } from './health.controller.js';
import { SessionController } from './session.controller.js';
import { WhoamiGateway } from './whoami.gateway.js';
import { PassportAuthModule } from './passport/passport-auth.module.js';
import { AccountController } from './account.controller.js';
import { ReauthController } from './reauth.controller.js';
import { DemoController } from './demo/demo.controller.js';
import { DemoCsrfGuard } from './demo/demo-csrf.guard.js';
import { legacySessionOption, type LegacySessionConfig } from './legacy-session.config.js';
import { redisStores, type RedisClientName } from './redis-stores.js';

/** Settings of the sample app, from the environment (see README "Sample app"). */
export interface SampleAppConfig {
  /** Extra SessionModule options (tests pass small timeouts, backends, ...). */
  readonly session?: SessionModuleOptions;
  /** Token the admin routes require in `x-admin-token`; default env `ADMIN_TOKEN`; unset/empty = admin routes answer 403. */
  readonly adminToken?: string;
  /**
   * Keep sessions in Redis (`SESSION_BACKEND=redis`): backends and locker come from
   * `createRedisSessionStores(redis)` and override those in `session`; the client it creates is
   * closed on shutdown.
   */
  readonly redis?: RedisSessionStoresOptions;
  /**
   * Keep sessions in PostgreSQL (`SESSION_BACKEND=postgres`): backends and locker come from
   * `createPostgresSessionStores(postgres)`, whose `migrate()` runs at boot; the pool it
   * creates is ended on shutdown.
   */
  readonly postgres?: PostgresSessionStoresOptions;
  /** Take over express-session + connect-redis users (`LEGACY_SESSION_*`, see legacy-session.config.ts). */
  readonly legacy?: LegacySessionConfig;
  /** The Redis client library with `redis` (`REDIS_CLIENT`, see redis-stores.ts). @default 'node-redis' */
  readonly redisClient?: RedisClientName;
  /** The framework's trust-proxy setting (`TRUST_PROXY`, see security.env.ts); used by `createSampleApp`. */
  readonly trustProxy?: boolean | number | string;
}

@Module({})
export class AppModule {
  static forRoot(config: SampleAppConfig = {}): DynamicModule {
    return {
      module: AppModule,
      providers: [
        { provide: ADMIN_TOKEN, useFactory: () => config.adminToken ?? process.env.ADMIN_TOKEN ?? '' },
        AdminTokenGuard,
        DemoCsrfGuard,
        WhoamiGateway,
      ],
      imports: [sessionModule(config), CartModule, PassportAuthModule],
      controllers: [
        HealthController,
        SessionController,
        AuthController,
        AdminController,
        CounterController,
        FlashController,
        AccountController,
        ReauthController,
        DemoController,
      ],
    };
  }
}

/** In memory (the default) or on Redis through `forRootAsync`, as a user's app would configure it. */
function sessionModule(config: SampleAppConfig): DynamicModule {
  const redis = config.redis;
  const legacy = config.legacy;
  const postgres = config.postgres;
  if (redis === undefined && legacy === undefined && postgres === undefined) {
    return SessionModule.forRoot({ ...config.session, isGlobal: true });
  }
  return SessionModule.forRootAsync({
    isGlobal: true,
    useFactory: async (): Promise<SessionModuleOptions> => ({
      ...config.session,
      ...(redis === undefined ? {} : await redisStores(redis, config.redisClient)),
      ...(postgres === undefined ? {} : await postgresStores(postgres)),
      ...(legacy === undefined ? {} : { legacy: await legacySessionOption(legacy) }),
    }),
  });
}

/** PostgreSQL stores with their schema created or upgraded first (idempotent, safe on every instance). */
async function postgresStores(options: PostgresSessionStoresOptions): Promise<SessionModuleOptions> {
  const stores = await createPostgresSessionStores(options);
  try {
    await stores.migrate();
  } catch (error) {
    await stores.close();
    throw error;
  }
  return { metadataBackend: stores.metadataBackend, storageBackend: stores.storageBackend, locker: stores.locker };
}
