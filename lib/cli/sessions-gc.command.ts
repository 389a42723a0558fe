import { Inject } from '@nestjs/common';
import { CommandRunner, Option, SubCommand } from 'nest-commander';
import { CliProgress } from './cli-output.js';
import { SessionCliContext } from './session-cli.context.js';

interface GcOptions {
  all?: boolean;
}

/** Upper bound of runs of `--all`, so a store that keeps answering full runs cannot loop forever. */
const MAX_RUNS = 100_000;

/**
 * `sessions gc [--all]` (Flow's `session:collectgarbage`): one garbage collection run (at most
 * `garbageCollection.maximumPerRun` sessions), or with `--all` runs until one removes less than
 * that. Progress: a bar on a terminal, one line per run otherwise; then the total.
 */
@SubCommand({ name: 'gc', description: 'Remove expired sessions now' })
export class SessionsGcCommand extends CommandRunner {
  constructor(@Inject(SessionCliContext) private readonly cli: SessionCliContext) {
    super();
  }

  async run(_params: string[], options: GcOptions = {}): Promise<void> {
    const manager = this.cli.manager();
    const perRun = this.cli.options().garbageCollection.maximumPerRun;
    const progress = new CliProgress(this.cli.out, perRun);
    let total = 0;
    let run = 0;
    for (;;) {
      run++;
      const removed = await manager.collectGarbage();
      total += removed;
      progress.update(run, removed, total);
      if (options.all !== true || removed < perRun || run >= MAX_RUNS) break;
    }
    progress.done();
    this.cli.print(`removed ${total} expired session(s) in ${run} run(s)`);
  }

  @Option({ flags: '-a, --all', description: 'repeat until every expired session is removed' })
  parseAll(): boolean {
    return true;
  }
}
