import { Inject } from '@nestjs/common';
import { CommandRunner, Option, SubCommand } from 'nest-commander';
import { SessionCliContext } from './session-cli.context.js';

interface DestroyOptions {
  user?: string;
  tag?: string;
  handle?: string;
  reason?: string;
}

/** `sessions destroy --user U | --tag T | --handle H [--reason R]`: ends sessions, prints how many. */
@SubCommand({ name: 'destroy', description: 'Destroy the sessions of a user, with a tag, or one by its handle' })
export class SessionsDestroyCommand extends CommandRunner {
  constructor(@Inject(SessionCliContext) private readonly cli: SessionCliContext) {
    super();
  }

  async run(_params: string[], options: DestroyOptions = {}): Promise<void> {
    const given = [options.user, options.tag, options.handle].filter((v) => v !== undefined).length;
    if (given !== 1) throw new Error('Give exactly one of --user, --tag and --handle.');
    const manager = this.cli.manager();
    const reason = options.reason ?? 'cli';
    let destroyed: number;
    if (options.user !== undefined) destroyed = await manager.destroySessionsForUser(options.user, reason);
    else if (options.tag !== undefined) destroyed = await manager.destroySessionsByTag(options.tag, reason);
    else destroyed = (await manager.destroySessionByHandle(options.handle!, reason)) ? 1 : 0;
    this.cli.print(`destroyed ${destroyed} session(s)`);
  }

  @Option({ flags: '-u, --user <user>', description: 'every session bound to this user ("log out everywhere")' })
  parseUser(value: string): string {
    return value;
  }

  @Option({ flags: '-t, --tag <tag>', description: 'every session with this tag' })
  parseTag(value: string): string {
    return value;
  }

  @Option({ flags: '-H, --handle <handle>', description: 'the session with this handle (from "sessions list")' })
  parseHandle(value: string): string {
    return value;
  }

  @Option({ flags: '-r, --reason <reason>', description: 'reason recorded in the destroyed events (default "cli")' })
  parseReason(value: string): string {
    return value;
  }
}
