import { Module, type DynamicModule, type Type } from '@nestjs/common';
import { CommandFactory } from 'nest-commander';
import { SessionCommandsModule } from './session-commands.module.js';

/**
 * Runs the `sessions` commands on your app module (so they use its `SessionModule` settings and
 * stores), without HTTP: `await runSessionCli(AppModule)` in a `cli.ts`, then
 * `node dist/cli.js sessions list --user alice`. Reads `process.argv`; exits non-zero on an
 * error (the message goes to stderr). Nest logs warnings and errors only.
 */
export async function runSessionCli(appModule: Type | DynamicModule): Promise<void> {
  @Module({ imports: [appModule, SessionCommandsModule] })
  class SessionCliModule {}
  await CommandFactory.run(SessionCliModule, {
    logger: ['warn', 'error'],
    cliName: 'sessions-cli',
    errorHandler: (error: Error) => {
      process.stderr.write(`${error.message}\n`);
      process.exitCode = 1;
    },
    serviceErrorHandler: (error: Error) => {
      process.stderr.write(`${error.message}\n`);
      process.exitCode = 1;
    },
  });
}
