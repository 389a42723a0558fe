import { setTimeout as delay } from 'node:timers/promises';

/** Shortest life of an abandoned token's tombstone (it lives at least twice the lock ttl too), and so the longest an abandon is retried. */
const MIN_TOMBSTONE_MS = 10_000;
/** First and longest pause between two tries of an abandon the store did not answer. */
const RETRY_FIRST_MS = 25;
const RETRY_MAX_MS = 1000;
/** setTimeout's longest delay. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * The abandons of a locker that shares locks across processes (Redis, PostgreSQL): an acquire
 * whose outcome is unknown (timed out on the client, connection lost) is abandoned for real by a
 * store call that frees the lock if that token got it, drops its ticket and leaves a tombstone,
 * so that the acquire, should it still run, takes nothing. That call is retried in the
 * background with backoff until the store answers, the tombstone's life has passed, or the
 * locker closes.
 */
export class AbandonRetries {
  private readonly tasks = new Set<Promise<void>>();
  private readonly stop = new AbortController();

  /** The tombstone's life (ms) for a lock of `ttl` ms: at least twice the ttl and 10 s. */
  static tombstoneTtl(ttl: number): number {
    return Math.min(MAX_TIMER_MS, Math.max(2 * ttl, MIN_TOMBSTONE_MS));
  }

  /**
   * Runs `abandon` in the background until it resolves, `tombstoneTtl` ms have passed, or
   * `closing()` answers true; a failed try is retried after 25 ms, doubling up to 1 s.
   */
  start(abandon: () => Promise<unknown>, tombstoneTtl: number, closing: () => boolean): void {
    const giveUpAt = performance.now() + tombstoneTtl;
    const run = async (): Promise<void> => {
      for (let pause = RETRY_FIRST_MS; ; pause = Math.min(2 * pause, RETRY_MAX_MS)) {
        try {
          await abandon();
          return;
        } catch {
          // The store still does not answer: try again after a pause, unless it is too late.
        }
        if (closing() || performance.now() + pause >= giveUpAt) return;
        // Unref'd: a process that has nothing else to do may exit meanwhile.
        await delay(pause, undefined, { ref: false, signal: this.stop.signal }).catch(() => undefined);
        if (closing()) return;
      }
    };
    const task = run();
    this.tasks.add(task);
    void task.finally(() => this.tasks.delete(task));
  }

  /** At close: cuts the pauses short (no try after the current one) and waits for the tries under way. */
  async stopAll(): Promise<void> {
    this.stop.abort();
    await Promise.allSettled([...this.tasks]);
  }
}
