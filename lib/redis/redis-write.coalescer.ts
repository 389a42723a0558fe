import { positionsIn, runInOrder, type WriteOrder } from '../cache/write-ticket.js';
import { STANDALONE_WRITE } from './redis-backend.scripts.js';
import { RedisTransport, type RedisCommandClient } from './redis-client.adapter.js';

/*
 * Same-tick coalescing on a standalone Redis. The session layer issues some writes together
 * (a new session's storage and metadata, a login's new storage and the old id's removal); each
 * used to be its own script call, and the client's command encoding and `writev` were a quarter
 * of the CPU of a new session. Backends sharing one coalescer (the metadata and storage backends
 * of one `createRedisSessionStores`) queue their WRITE and DROP units here; what was queued in
 * one tick goes out as one call of the standalone write function (FCALL; EVALSHA where Redis has
 * no functions), which runs the units in order and
 * answers one reply per unit. Each unit keeps its own conditions (a refused one wrote nothing
 * and does not undo another), so this is the pipelined scripts of before, without anything in
 * between. If the call fails, every unit in it fails with that error (with a lost reply, any of
 * them may have been applied, as with separate scripts).
 *
 * Order. Callers rely on the order of what they send in one tick (a storage move sends its
 * guard check, then the read that must see nothing older: Redis runs one connection's commands
 * in order). So every other command of the backends sharing the coalescer goes through
 * `ordered()`, which first sends what is queued: the queue never lets a later command overtake.
 *
 * Chains. A unit queued with `WriteOrder.after` naming units still in the same queue runs, in
 * the script, only if each of them applied (WRITE: answered 'ok'; DROP: removed a live entry;
 * BY_TAG: ran); otherwise it answers 'skipped' and writes nothing. The whole chain is one atomic
 * call: nothing can run between its units. A prerequisite already sent (or queued elsewhere) is
 * waited for first, as the frontend does for backends that cannot chain.
 *
 * Never on a cluster: the units' keys lie in different slots there.
 */

interface QueuedUnit {
  readonly args: readonly string[];
  readonly resolve: (reply: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Collects the write units that backends on one standalone client issue in one tick and sends
 * them as one script call. Created by `createRedisSessionStores` for its two backends; a
 * `RedisBackend` constructed alone makes its own.
 */
export class RedisWriteCoalescer {
  private readonly transport: RedisTransport;
  private readonly prefixes: string[] = [];
  private queue: QueuedUnit[] = [];
  /** Counts flushes: a ticket queued in batch n can be required natively while `batch` is still n. */
  private batch = 0;
  private firstKey = '';

  constructor(private readonly client: RedisCommandClient) {
    this.transport = new RedisTransport(client);
  }

  /** Whether units wait to be sent: a tag read issued now rides with them instead of sending them first. */
  get pending(): boolean {
    return this.queue.length > 0;
  }

  /** `client` for a backend's other commands: each sends the queued units first (see "Order" above). */
  ordered(): RedisCommandClient {
    return {
      sendCommand: (args) => {
        this.flush();
        return this.client.sendCommand(args);
      },
    };
  }

  /** Registers a backend's key prefix; answers the index its units name (every call sends the prefixes first). */
  register(prefix: string): number {
    const known = this.prefixes.indexOf(prefix);
    if (known >= 0) return known + 1;
    this.prefixes.push(prefix);
    return this.prefixes.length;
  }

  /**
   * Queues one unit: `kind` 'w' (WRITE), 'd' (DROP), 'f' (BY_TAG), 'm' (MATCH) or 'c' (COPY), the backend's prefix index,
   * the unit's clock and its arguments after prefix and clock. `key` is one of its keys (a
   * script call needs one). Answers the unit's own reply, or 'skipped' (see "Chains" above).
   */
  submit(
    kind: UnitKind,
    prefixIndex: number,
    now: number,
    key: string,
    args: readonly string[],
    order?: WriteOrder,
  ): Promise<unknown> {
    const positions = positionsIn(order?.after ?? [], this, this.batch);
    if (positions === undefined) {
      // Not chainable in this call: wait for it, then queue (or skip).
      return runInOrder(
        order,
        () => this.submit(kind, prefixIndex, now, key, args),
        (reply) => unitApplied(kind, reply),
        SKIPPED,
      );
    }
    const ticket = order?.ticket;
    if (ticket !== undefined) ticket.queued = { channel: this, batch: this.batch, position: this.queue.length };
    // The write function numbers the units of a call from 1 (Lua).
    const head =
      positions.length === 0 ? `${kind}${prefixIndex}` : `${kind}${prefixIndex}/${positions.map((p) => p + 1).join(',')}`;
    const reply = new Promise<unknown>((resolve, reject) => {
      if (this.queue.length === 0) {
        this.firstKey = key;
        // After the current microtasks: writes issued across a few awaits of one tick ride together.
        process.nextTick(() => this.flush());
      }
      this.queue.push({ args: [head, String(now), String(args.length), ...args], resolve, reject });
    });
    if (ticket === undefined) return reply;
    return ticket.follow(reply, (value) => unitApplied(kind, value));
  }

  private flush(): void {
    if (this.queue.length === 0) return;
    const units = this.queue;
    this.queue = [];
    this.batch++;
    const args: string[] = [String(this.prefixes.length), ...this.prefixes];
    for (const unit of units) for (const arg of unit.args) args.push(arg);
    this.transport.callLibrary(STANDALONE_WRITE, this.firstKey, args).then(
      (reply) => {
        const replies = reply as unknown[];
        units.forEach((unit, i) => unit.resolve(replies[i]));
      },
      (error: unknown) => units.forEach((unit) => unit.reject(error)),
    );
  }
}

/** A unit's answer when a unit it required did not apply. */
export const SKIPPED = 'skipped';

/** The units of the standalone write function: WRITE, DROP, BY_TAG, MATCH, COPY (a WRITE with a copied group). */
export type UnitKind = 'w' | 'd' | 'f' | 'm' | 'c';

/** Whether a unit's reply says it applied (see "Chains" above; the script decides the same way). */
function unitApplied(kind: UnitKind, reply: unknown): boolean {
  if (reply === SKIPPED || !Array.isArray(reply)) return false;
  if (kind === 'w' || kind === 'm' || kind === 'c') return String(reply[0]) === 'ok';
  if (kind === 'f') return true;
  // DROP: six strings per id, the code second ('live': a live entry was removed).
  for (let i = 1; i < reply.length; i += 6) if (String(reply[i]) === 'live') return true;
  return false;
}
