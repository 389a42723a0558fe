/** Where a command writes: a stream and whether it is a terminal (progress is drawn only there). */
export interface CliStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

const BAR_WIDTH = 24;

/**
 * Progress of a command that works in runs of unknown total (GC): on a terminal one line redrawn
 * in place with a bar filled by the last run's share of `perRun`, otherwise one plain line per
 * run, so logs and pipes get counts they can parse.
 */
export class CliProgress {
  private drawn = false;

  constructor(
    private readonly out: CliStream,
    private readonly perRun: number,
  ) {}

  /** After run `run` removed `removed` (of at most `perRun`), `total` so far. */
  update(run: number, removed: number, total: number): void {
    if (this.out.isTTY === true) {
      const filled = this.perRun <= 0 ? BAR_WIDTH : Math.min(BAR_WIDTH, Math.round((removed / this.perRun) * BAR_WIDTH));
      const bar = '#'.repeat(filled) + '-'.repeat(BAR_WIDTH - filled);
      this.out.write(`\r[${bar}] run ${run}: removed ${removed}, ${total} in total`);
      this.drawn = true;
    } else {
      this.out.write(`run ${run}: removed ${removed} (total ${total})\n`);
    }
  }

  /** Ends the progress line (terminal only). */
  done(): void {
    if (this.drawn) this.out.write('\n');
  }
}
