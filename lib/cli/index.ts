// Public API of the admin CLI ('nest-session/cli'); needs the optional peer `nest-commander`.
export { runSessionCli } from './run-session-cli.js';
export { SessionCommandsModule } from './session-commands.module.js';
export { SessionsCommand } from './sessions.command.js';
export { SessionsListCommand } from './sessions-list.command.js';
export { SessionsDestroyCommand } from './sessions-destroy.command.js';
export { SessionsGcCommand } from './sessions-gc.command.js';
export { SessionsStatsCommand } from './sessions-stats.command.js';
export { SessionCliContext } from './session-cli.context.js';
