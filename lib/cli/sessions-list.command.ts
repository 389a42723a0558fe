import { Inject } from '@nestjs/common';
import { CommandRunner, Option, SubCommand } from 'nest-commander';
import { userTag } from '../session/user-tag.js';
import { SessionCliContext } from './session-cli.context.js';

interface ListOptions {
  user?: string;
  tag?: string;
  json?: boolean;
}

/** `sessions list [--user U] [--tag T] [--json]`: metadata of the live sessions, never ids or data. */
@SubCommand({ name: 'list', description: 'List live sessions (all, of a user, or with a tag)' })
export class SessionsListCommand extends CommandRunner {
  constructor(@Inject(SessionCliContext) private readonly cli: SessionCliContext) {
    super();
  }

  async run(_params: string[], options: ListOptions = {}): Promise<void> {
    if (options.user !== undefined && options.tag !== undefined) throw new Error('Give --user or --tag, not both.');
    const tag = options.user !== undefined ? userTag(options.user) : options.tag;
    let count = 0;
    for await (const info of this.cli.manager().listSessions(tag === undefined ? {} : { tag })) {
      count++;
      if (options.json === true) {
        this.cli.print(JSON.stringify(info));
        continue;
      }
      const custom = info.tags.filter((t) => info.userId === undefined || t !== userTag(info.userId));
      this.cli.print(
        [
          info.handle,
          `user=${info.userId ?? '-'}`,
          `created=${new Date(info.createdAt).toISOString()}`,
          `last=${new Date(info.lastActivity).toISOString()}`,
          `expires=${new Date(info.expiresAt).toISOString()}`,
          `tags=${custom.join(',') || '-'}`,
        ].join('  '),
      );
    }
    if (options.json !== true) this.cli.print(`${count} session(s)`);
  }

  @Option({ flags: '-u, --user <user>', description: 'only the sessions bound to this user' })
  parseUser(value: string): string {
    return value;
  }

  @Option({ flags: '-t, --tag <tag>', description: 'only the sessions with this tag' })
  parseTag(value: string): string {
    return value;
  }

  @Option({ flags: '--json', description: 'one JSON object per line' })
  parseJson(): boolean {
    return true;
  }
}
