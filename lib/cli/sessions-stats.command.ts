import { Inject } from '@nestjs/common';
import { CommandRunner, Option, SubCommand } from 'nest-commander';
import { SessionCliContext } from './session-cli.context.js';

interface StatsOptions {
  json?: boolean;
}

/** `sessions stats [--json]`: counts over the live sessions (one paged listing, O(sessions)). */
@SubCommand({ name: 'stats', description: 'Count live sessions: total, user-bound, anonymous, permanent, users' })
export class SessionsStatsCommand extends CommandRunner {
  constructor(@Inject(SessionCliContext) private readonly cli: SessionCliContext) {
    super();
  }

  async run(_params: string[], options: StatsOptions = {}): Promise<void> {
    const users = new Set<string>();
    let total = 0;
    let userBound = 0;
    let permanent = 0;
    let oldest: number | undefined;
    for await (const info of this.cli.manager().listSessions()) {
      total++;
      if (info.userId !== undefined) {
        userBound++;
        users.add(info.userId);
      }
      if (info.permanent) permanent++;
      oldest = oldest === undefined ? info.createdAt : Math.min(oldest, info.createdAt);
    }
    const stats = {
      sessions: total,
      userBound,
      anonymous: total - userBound,
      permanent,
      users: users.size,
      oldestCreatedAt: oldest === undefined ? null : new Date(oldest).toISOString(),
    };
    if (options.json === true) {
      this.cli.print(JSON.stringify(stats));
      return;
    }
    for (const [name, value] of Object.entries(stats)) this.cli.print(`${name}: ${value ?? '-'}`);
  }

  @Option({ flags: '--json', description: 'as one JSON object' })
  parseJson(): boolean {
    return true;
  }
}
