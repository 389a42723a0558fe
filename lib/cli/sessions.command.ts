import { Command, CommandRunner } from 'nest-commander';
import { SessionsDestroyCommand } from './sessions-destroy.command.js';
import { SessionsGcCommand } from './sessions-gc.command.js';
import { SessionsListCommand } from './sessions-list.command.js';
import { SessionsStatsCommand } from './sessions-stats.command.js';

/** `sessions <list|destroy|gc|stats>`; without a subcommand it prints the help. */
@Command({
  name: 'sessions',
  description: 'Inspect and control the sessions of this app',
  subCommands: [SessionsListCommand, SessionsDestroyCommand, SessionsGcCommand, SessionsStatsCommand],
})
export class SessionsCommand extends CommandRunner {
  run(): Promise<void> {
    this.command.help();
  }
}
