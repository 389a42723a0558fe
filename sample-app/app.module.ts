import { Module, type DynamicModule } from '@nestjs/common';
import { SessionModule, type SessionModuleOptions } from 'nest-session';
import { createRedisSessionStores, type RedisSessionStoresOptions } from 'nest-session/redis';
import { AdminController } from './admin.controller.js';
import { ADMIN_TOKEN, AdminTokenGuard } from './admin-token.guard.js';
import { AuthController } from './auth.controller.js';
import { CounterController } from './counter.controller.js';
import { FlashController } from './flash.controller.js';
import { CartModule } from './cart/cart.module.js';
import { HealthController } from './health.controller.js';
import { SessionController } from './session.controller.js';

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
}

@Module({})
export class AppModule {
  static forRoot(config: SampleAppConfig = {}): DynamicModule {
    return {
      module: AppModule,
      providers: [
        { provide: ADMIN_TOKEN, useFactory: () => config.adminToken ?? process.env.ADMIN_TOKEN ?? '' },
        AdminTokenGuard,
      ],
      imports: [sessionModule(config), CartModule],
      controllers: [HealthController, SessionController, AuthController, AdminController, CounterController, FlashController],
    };
  }
}

/** In memory (the default) or on Redis through `forRootAsync`, as a user's app would configure it. */
function sessionModule(config: SampleAppConfig): DynamicModule {
  const redis = config.redis;
  if (redis === undefined) return SessionModule.forRoot({ ...config.session, isGlobal: true });
  return SessionModule.forRootAsync({
    isGlobal: true,
    useFactory: async (): Promise<SessionModuleOptions> => ({ ...config.session, ...(await createRedisSessionStores(redis)) }),
  });
}
