/**
 * The acquires under way of a shared locker (Redis, PostgreSQL), so that `close()` can wait
 * until every one has cleaned up after itself (left its queue, released what it took late).
 */
export class AcquireTracker {
  private readonly pending = new Set<Promise<unknown>>();

  /** Runs `attempt` and keeps it tracked until it settles; answers what it answers. */
  async track<T>(attempt: Promise<T>): Promise<T> {
    this.pending.add(attempt);
    try {
      return await attempt;
    } finally {
      this.pending.delete(attempt);
    }
  }

  /** Settles once every attempt tracked now has settled (never rejects). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }
}
