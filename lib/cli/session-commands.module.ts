import { Module } from '@nestjs/common';
import { SessionCliContext } from './session-cli.context.js';
import { SessionsCommand } from './sessions.command.js';
import { SessionsDestroyCommand } from './sessions-destroy.command.js';
import { SessionsGcCommand } from './sessions-gc.command.js';
import { SessionsListCommand } from './sessions-list.command.js';
import { SessionsStatsCommand } from './sessions-stats.command.js';

/**
 * The `sessions` commands for nest-commander. Import it next to your app module (whose
 * `SessionModule` configuration the commands use), or let `runSessionCli(AppModule)` do it.
 */
@Module({
  providers: [
    SessionCliContext,
    SessionsCommand,
    SessionsListCommand,
    SessionsDestroyCommand,
    SessionsGcCommand,
    SessionsStatsCommand,
  ],
})
export class SessionCommandsModule {}
