/*
 * What a locker's waiting `acquire()` sleeps on: a wake-up naming its token (a Redis message, a
 * PostgreSQL notification) or a timer, whichever comes first. Every locker that queues waiters
 * across processes uses it; a lost wake-up costs time, never correctness.
 */

const MAX_TIMER_MS = 2_147_483_647;

/** A waiting `acquire()`: sleeps until a wake-up naming its token or a timer wakes it. */
export class Sleeper {
  private signalled = false;
  private wake: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  /** @param token the waiter's ticket: a wake-up naming it wakes this sleeper. */
  constructor(readonly token: string) {}

  signal(): void {
    const wake = this.wake;
    if (wake === null) {
      this.signalled = true;
      return;
    }
    this.wake = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    wake();
  }

  /** Forget signals that arrived before the next look at the store: that look sees their effect. */
  reset(): void {
    this.signalled = false;
  }

  sleep(ms: number): Promise<void> {
    if (this.signalled) {
      this.signalled = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(
        () => {
          this.timer = null;
          this.wake = null;
          resolve();
        },
        Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(ms))),
      );
    });
  }
}
