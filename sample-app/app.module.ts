import { Module, type DynamicModule } from '@nestjs/common';
import { SessionModule, type SessionModuleOptions } from 'nest-session';
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
}

@Module({})
export class AppModule {
  static forRoot(config: SampleAppConfig = {}): DynamicModule {
    return {
      module: AppModule,
      imports: [SessionModule.forRoot({ ...config.session, isGlobal: true }), CartModule],
      controllers: [HealthController, SessionController, AuthController, CounterController, FlashController],
    };
  }
}
