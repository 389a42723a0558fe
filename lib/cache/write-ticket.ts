/**
 * Dependent writes (see `WriteOrder`): what a storage move or a renewal sends as one chain, the
 * old id's removal only after the new storage was written, the new metadata only after the old
 * id is gone. A backend that can (`TaggableBackend.ordersWrites`: a standalone Redis through its
 * write coalescer, PostgreSQL through its shared batcher, the memory backend synchronously) runs
 * such a chain inside one atomic call; for any other backend the frontend
 * waits for each write's prerequisites before it sends it, with the same outcome.
 */
export class WriteTicket {
  /** Whether the write applied: settles once its outcome is known and never rejects (a failed write did not apply). */
  readonly applied: Promise<boolean>;
  /**
   * Set by a backend that queued the write where a later write can require it inside the same
   * atomic call: the queue (`channel`), its batch and the write's position in it.
   */
  queued: { readonly channel: object; readonly batch: number; readonly position: number } | undefined;
  private settleWith!: (applied: boolean) => void;
  private settledAs: boolean | undefined;

  constructor() {
    this.applied = new Promise<boolean>((resolve) => (this.settleWith = resolve));
  }

  /** The outcome once settled (synchronously readable, for backends whose steps are synchronous), else undefined. */
  get outcome(): boolean | undefined {
    return this.settledAs;
  }

  /** Records the write's outcome (the first call counts). */
  settle(applied: boolean): void {
    if (this.settledAs !== undefined) return;
    this.settledAs = applied;
    this.settleWith(applied);
  }

  /**
   * `answer`, which settles this ticket first: with whether it means the write `applied`, or
   * false when it fails. For a backend that queued the write in a batch of its own.
   */
  follow<T>(answer: Promise<T>, applied: (answer: T) => boolean): Promise<T> {
    return answer.then(
      (value) => {
        this.settle(applied(value));
        return value;
      },
      (error: unknown) => {
        this.settle(false);
        throw error;
      },
    );
  }
}

/**
 * Where the writes `after` stand in `batch` of the queue `channel` (their positions, in order),
 * or undefined when one of them is not queued there: a backend that chains writes inside one
 * call can chain only onto writes of the same call, and otherwise waits for them (`runInOrder`).
 */
export function positionsIn(after: readonly WriteTicket[], channel: object, batch: number): number[] | undefined {
  const positions: number[] = [];
  for (const ticket of after) {
    const queued = ticket.queued;
    if (queued?.channel !== channel || queued.batch !== batch) return undefined;
    positions.push(queued.position);
  }
  return positions;
}

/**
 * How a write depends on earlier ones (the optional last argument of `TaggableBackend.write`,
 * `remove` and `flushByTag`).
 */
export interface WriteOrder {
  /**
   * Earlier writes this one requires: it is sent after them and applies only if every one of
   * them applied; otherwise it writes nothing and answers `'skipped'` (`remove`: false,
   * `flushByTag`: 0). @default [] (independent)
   */
  readonly after?: readonly WriteTicket[];
  /** Settled with whether this write applied, for later writes' `after`. */
  readonly ticket?: WriteTicket;
}

/**
 * Honours `order` for a backend that cannot chain writes itself: waits for the prerequisites,
 * runs `run` only if all of them applied (else answers `skipped`), and settles the ticket with
 * `applied(result)` (false when `run` fails).
 */
export async function runInOrder<T>(
  order: WriteOrder | undefined,
  run: () => Promise<T>,
  applied: (result: T) => boolean,
  skipped: T,
): Promise<T> {
  const after = order?.after;
  if (after !== undefined && after.length > 0) {
    const ready = await Promise.all(after.map((ticket) => ticket.applied));
    if (ready.includes(false)) {
      order?.ticket?.settle(false);
      return skipped;
    }
  }
  try {
    const result = await run();
    order?.ticket?.settle(applied(result));
    return result;
  } catch (error) {
    order?.ticket?.settle(false);
    throw error;
  }
}
