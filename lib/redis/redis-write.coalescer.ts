import type { LuaScript } from './lua-script.js';
import { standaloneWriteScript } from './redis-backend.scripts.js';
import { RedisTransport, type RedisCommandClient } from './redis-client.adapter.js';

/*
 * Same-tick coalescing on a standalone Redis. The session layer issues some writes together
 * (a new session's storage and metadata, a login's new storage and the old id's removal); each
 * used to be its own script call, and the client's command encoding and `writev` were a quarter
 * of the CPU of a new session. Backends sharing one coalescer (the metadata and storage backends
 * of one `createRedisSessionStores`) queue their WRITE and DROP units here; what was queued in
 * one tick goes out as one EVALSHA of the standalone script, which runs the units in order and
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
  private script: LuaScript | undefined;
  private queue: QueuedUnit[] = [];
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

  /** Registers a backend's key prefix; answers the index its units name (the script bakes the prefixes in). */
  register(prefix: string): number {
    const known = this.prefixes.indexOf(prefix);
    if (known >= 0) return known + 1;
    this.prefixes.push(prefix);
    this.script = undefined;
    return this.prefixes.length;
  }

  /**
   * Queues one unit: `kind` 'w' (WRITE), 'd' (DROP) or 'f' (BY_TAG), the backend's prefix index,
   * the unit's clock and its arguments after prefix and clock. `key` is one of its keys (a
   * script call needs one). Answers the unit's own reply.
   */
  submit(kind: 'w' | 'd' | 'f', prefixIndex: number, now: number, key: string, args: readonly string[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.queue.length === 0) {
        this.firstKey = key;
        // After the current microtasks: writes issued across a few awaits of one tick ride together.
        process.nextTick(() => this.flush());
      }
      this.queue.push({ args: [`${kind}${prefixIndex}`, String(now), String(args.length), ...args], resolve, reject });
    });
  }

  private flush(): void {
    if (this.queue.length === 0) return;
    const units = this.queue;
    this.queue = [];
    this.script ??= standaloneWriteScript(this.prefixes);
    const args: string[] = [];
    for (const unit of units) for (const arg of unit.args) args.push(arg);
    this.transport.evalScript(this.script, this.firstKey, args).then(
      (reply) => {
        const replies = reply as unknown[];
        units.forEach((unit, i) => unit.resolve(replies[i]));
      },
      (error: unknown) => units.forEach((unit) => unit.reject(error)),
    );
  }
}
