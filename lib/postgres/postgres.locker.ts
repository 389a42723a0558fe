import { randomUUID } from 'node:crypto';
import { attemptStore } from '../cache/store-failure.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { LockTimeoutException } from '../errors/lock-timeout.exception.js';
import type { LockOptions, SessionLock, SessionLocker } from '../locking/session-locker.interface.js';
import { rowsOf, type PostgresPool } from './postgres-client.js';
import { AbandonRetries } from '../locking/abandon.retries.js';
import { AcquireTracker } from '../locking/acquire.tracker.js';
import { checkTtl, checkWaitTimeout, lockerClosedError } from '../locking/lock-options.check.js';
import { waitInQueue } from '../locking/queued-wait.js';
import { PostgresLockWakeups } from './postgres-lock-wakeups.js';
import { PostgresNames, type PostgresSchemaOptions } from './postgres-names.js';
import { LockStatements, MAX_TTL_MS, PostgresLock, type LockQuery } from './postgres.lock.js';
import type { Statement } from './postgres-client.js';

/** Options of {@link PostgresLocker}. */
export interface PostgresLockerOptions extends PostgresSchemaOptions {
  /**
   * A `pg.Pool`. The locker runs its statements on it and checks one connection out for good
   * (the first time a caller has to wait) to LISTEN for releases; it never ends the pool.
   */
  pool: PostgresPool;
  /**
   * Prepended to every lock name, so several applications can share the lock table.
   * @default 'sess:'
   */
  prefix?: string;
  /**
   * How long a waiter's place in the queue survives without being refreshed. Live waiters
   * refresh it every third of this time; a waiter whose process died holds up the queue behind
   * it for at most this long.
   * @default 1000
   */
  waiterTtl?: number;
  /**
   * A lock's row (with the key's last fence) is deleted once the lock has been free this many
   * ms; fences carry on from the database clock after that. `0` keeps rows forever.
   * @default 604800000 (7 days)
   */
  fenceTtl?: number;
  /** Named prepared statements (see `PostgresBackendOptions.preparedStatements`). @default true */
  preparedStatements?: boolean;
}

const DEFAULT_PREFIX = 'sess:';
const DEFAULT_WAITER_TTL_MS = 1000;
const DEFAULT_FENCE_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** One prune of old lock rows per this many releases (bounded: 200 rows at most). */
const PRUNE_EVERY = 500;

/**
 * Session locker on PostgreSQL, for several processes sharing sessions in one database: the
 * same guarantees as the Redis locker, with rows instead of keys.
 *
 * - A lock is a row of the (UNLOGGED) locks table: holder token, expiry and the key's last
 *   fence. Every operation is one call of a schema function that first locks that row, so the
 *   operations of one key are serialised in the database.
 * - Fences are max(the key's last fence + 1, the database clock in microseconds): above every
 *   fence handed out before for any key (the clock part, assuming the database clock does not
 *   go back; two keys locked in the same microsecond may get equal fences), and strictly
 *   increasing per key whatever expires (the counter part, kept `fenceTtl`).
 * - Fair: waiters queue with tickets from a sequence (arrival order in the database, across all
 *   processes); a free lock goes only to the first in line. A waiter refreshes its ticket at
 *   every look; one that stops for `waiterTtl` ms loses it.
 * - No polling: a release NOTIFYs the token of the first waiter; one connection per locker
 *   LISTENs and wakes that waiter alone. Expiry notifies nobody, so a waiter also wakes when the
 *   lock's ttl runs out, and every `waiterTtl / 3` ms to refresh its ticket.
 * - An acquire whose outcome is unknown (the statement timed out on the client, the connection
 *   broke) is abandoned for real: a function frees the lock if that token got it, drops its
 *   ticket and leaves a tombstone, so that the acquire, should it still run, takes nothing.
 *   Retried in the background until PostgreSQL answers (at most the tombstone's life).
 */
export class PostgresLocker implements SessionLocker {
  private readonly pool: PostgresPool;
  private readonly names: PostgresNames;
  private readonly prefix: string;
  private readonly waiterTtl: number;
  private readonly fenceTtl: number;
  private readonly refreshEvery: number;
  private readonly prepare: boolean;
  private readonly sql: LockStatements;
  private readonly channel: string;
  private readonly wakeups: PostgresLockWakeups;
  private readonly acquires = new AcquireTracker();
  private readonly abandons = new AbandonRetries();
  private closing: Promise<void> | null = null;
  private releases = 0;

  /** @throws InvalidOptionException for a missing pool, a bad schema or prefix; InvalidArgumentException for a bad duration. */
  constructor(options: PostgresLockerOptions) {
    const given = options as Partial<PostgresLockerOptions> | null | undefined;
    if (typeof given?.pool?.query !== 'function' || typeof given.pool.connect !== 'function') {
      throw InvalidOptionException.create('postgres.pool', 'must be a pg.Pool (query() and connect())');
    }
    this.pool = options.pool;
    this.names = new PostgresNames(options);
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    if (typeof this.prefix !== 'string') throw InvalidOptionException.create('postgres.prefix', 'must be a string');
    this.waiterTtl = options.waiterTtl ?? DEFAULT_WAITER_TTL_MS;
    this.fenceTtl = options.fenceTtl ?? DEFAULT_FENCE_TTL_MS;
    if (!(Number.isSafeInteger(this.fenceTtl) && this.fenceTtl >= 0)) {
      throw new InvalidArgumentException(`PostgresLocker: fenceTtl must be an integer >= 0 ms, got ${this.fenceTtl}.`);
    }
    if (!(Number.isSafeInteger(this.waiterTtl) && this.waiterTtl >= 30 && this.waiterTtl <= 2_147_483_647)) {
      throw new InvalidArgumentException(`PostgresLocker: waiterTtl must be an integer >= 30 ms, got ${this.waiterTtl}.`);
    }
    this.refreshEvery = Math.floor(this.waiterTtl / 3);
    this.prepare = options.preparedStatements ?? true;
    this.sql = new LockStatements(this.names);
    this.channel = this.names.channel;
    this.wakeups = new PostgresLockWakeups(this.pool, this.channel);
  }

  /**
   * Takes the lock for `key`, waiting behind earlier callers from any process.
   * @throws LockTimeoutException when the lock could not be had within `waitTimeout` ms (the
   *   waiter leaves the queue). `waitTimeout: 0` tries once and never queues.
   * @throws InvalidArgumentException when `ttl` is not a positive finite number or `waitTimeout` is negative.
   * @throws StoreUnavailableException when PostgreSQL fails or does not answer, or after `close()`.
   */
  async acquire(key: string, options: LockOptions): Promise<SessionLock> {
    const ttl = checkTtl(options.ttl, MAX_TTL_MS);
    const waitTimeout = checkWaitTimeout(options.waitTimeout);
    if (this.closing !== null) throw lockerClosedError();
    return this.acquires.track(this.take(key, ttl, waitTimeout));
  }

  /**
   * Fails pending waiters with `StoreUnavailableException` (after taking them out of the
   * queue), waits for the try under way of every abandon, and gives the listening connection
   * up. The pool stays open. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  /** `schema.tablePrefix` of the tables this locker uses (a backend checking its locks must use the same). */
  get tables(): string {
    return `${this.names.schema}.${this.names.tablePrefix}`;
  }

  /** The row name of `key`'s lock: what a PostgresBackend given this locker checks in an unlocked guarded write. */
  lockNameOf(key: string): string {
    return this.prefix + key;
  }

  private isClosing(): boolean {
    return this.closing !== null;
  }

  private readonly run: LockQuery = (operation, statement: Statement, values) =>
    attemptStore(`postgres ${operation}`, async () =>
      rowsOf<unknown>(await this.pool.query(statement.with(values, this.prepare))),
    );

  private lock(name: string, key: string, token: string, fence: number): PostgresLock {
    return new PostgresLock(this.run, this.sql, this.channel, name, key, token, fence, () => this.released());
  }

  private async take(key: string, ttl: number, waitTimeout: number): Promise<SessionLock> {
    const name = this.prefix + key;
    const token = randomUUID();
    if (waitTimeout > 0) return this.wait(name, key, token, ttl, waitTimeout);
    const result = await this.attempt(name, token, ttl, false);
    if (result.fence === null) throw this.isClosing() ? lockerClosedError() : LockTimeoutException.create(waitTimeout);
    const lock = this.lock(name, key, token, result.fence);
    if (!this.isClosing()) return lock;
    await lock.release().catch(() => false);
    throw lockerClosedError();
  }

  /** One look: `fence` when taken, else `retryIn` ms worth sleeping without a notification. */
  private async attempt(
    name: string,
    token: string,
    ttl: number,
    queue: boolean,
  ): Promise<{ fence: number | null; retryIn: number }> {
    let rows: unknown[];
    try {
      rows = await this.run('acquire lock', this.sql.acquire, [name, token, ttl, queue, this.waiterTtl, this.channel]);
    } catch (error) {
      // A timeout or a broken connection says nothing about whether the function ran, or will.
      this.abandon(name, token, ttl);
      throw error;
    }
    const row = rows[0] as { fence: string | null; retry: number | null } | undefined;
    if (row?.fence !== null && row?.fence !== undefined) return { fence: Number(row.fence), retryIn: 0 };
    return { fence: null, retryIn: row?.retry ?? 0 };
  }

  /**
   * Queues and sleeps until a notification names this waiter or a timer runs out, then looks
   * again (`waitInQueue`); the LISTENing connection is started if there is none yet.
   */
  private wait(name: string, key: string, token: string, ttl: number, waitTimeout: number): Promise<SessionLock> {
    const sleeper = this.wakeups.sleeper(token);
    return waitInQueue(
      {
        look: () => this.attempt(name, token, ttl, true),
        grant: (look) => this.lock(name, key, token, look.fence),
        retryIn: (look) => (look.retryIn > 0 ? look.retryIn : this.refreshEvery),
        join: () => this.wakeups.join(sleeper),
        listen: () => this.wakeups.listen(),
        leave: () => {
          this.wakeups.leave(sleeper);
        },
        rejoinAfterSleep: true,
        cancel: () => this.cancel(name, token),
      },
      sleeper,
      waitTimeout,
      this.refreshEvery,
      () => this.isClosing(),
    );
  }

  private async cancel(name: string, token: string): Promise<void> {
    await this.run('acquire lock', this.sql.cancel, [name, token, this.channel]);
  }

  /**
   * Makes sure `token` holds nothing, whatever became of its acquire: runs the abandon
   * function, retried with backoff until PostgreSQL answers, the tombstone's life has passed,
   * or the locker closes.
   */
  private abandon(name: string, token: string, ttl: number): void {
    const tombstoneTtl = AbandonRetries.tombstoneTtl(ttl);
    this.abandons.start(
      () => this.run('abandon lock acquisition', this.sql.abandon, [name, token, this.channel, tombstoneTtl]),
      tombstoneTtl,
      () => this.isClosing(),
    );
  }

  /** Every few hundred releases, deletes a bounded batch of lock rows unused for `fenceTtl`. */
  private released(): void {
    if (this.fenceTtl === 0 || ++this.releases % PRUNE_EVERY !== 0) return;
    void this.run('prune locks', this.sql.prune, [this.fenceTtl]).catch(() => undefined);
  }

  private async shutDown(): Promise<void> {
    this.wakeups.interrupt();
    await this.acquires.settled();
    await this.abandons.stopAll();
    await this.wakeups.close();
  }
}
