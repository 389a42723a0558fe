import { Module, type DynamicModule } from '@nestjs/common';
import { PassportSessions, type PassportSessionOptions } from './passport-sessions.js';

/**
 * Passport login sessions on this library's sessions, on Express and Fastify:
 * `imports: [SessionModule.forRoot(...), PassportModule.register({ session: true }),
 * PassportSessionModule.forRoot({ passport })]` with `import passport from 'passport'`.
 * `SessionModule` installs it right after its own middleware, wherever this module is
 * imported; no `express-session`, no `app.use(passport.session())` (see README "Using passport").
 */
@Module({})
export class PassportSessionModule {
  /** @throws InvalidOptionException at boot for a bad option. */
  static forRoot(options: PassportSessionOptions): DynamicModule {
    return {
      module: PassportSessionModule,
      providers: [{ provide: PassportSessions, useFactory: () => new PassportSessions(options) }],
      exports: [PassportSessions],
    };
  }
}
