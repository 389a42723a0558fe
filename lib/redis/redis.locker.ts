import { randomUUID } from 'node:crypto';
import { attemptStore } from '../cache/store-failure.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { LockTimeoutException } from '../errors/lock-timeout.exception.js';
import type { LockOptions, SessionLock, SessionLocker } from '../locking/session-locker.interface.js';
import {
  evalScript,
  isRedisClusterClient,
  SUPPORTED_REDIS_CLIENTS,
  type RedisLockerClient,
  type RedisLockerClusterClient,
} from './redis-client.adapter.js';
import { adaptIoRedis, isIoRedisClient, type IoRedisClient, type IoRedisClusterClient } from './ioredis-client.adapter.js';
import { AbandonRetries } from '../locking/abandon.retries.js';
import { AcquireTracker } from '../locking/acquire.tracker.js';
import { checkTtl, checkWaitTimeout, lockerClosedError } from '../locking/lock-options.check.js';
import { waitInQueue } from '../locking/queued-wait.js';
import { RedisLockWakeups } from './redis-lock-wakeups.js';
import { LOCK_SCRIPTS } from './redis-lock.scripts.js';
import { lockKeysOf, RedisLock, tombstoneOf, type LockKeys, type ScriptRunner } from './redis.lock.js';

// The client types are part of the options; they belong to the client adapter.
export type {
  RedisLockerClient,
  RedisLockerClusterClient,
  RedisScriptOptions,
  RedisShardedListener,
} from './redis-client.adapter.js';

/** Options of {@link RedisLocker}. */
export interface RedisLockerOptions {
  /**
   * A connected client for the lock commands: node-redis 5 or 6 `createClient()` (standalone
   * Redis or Valkey >= 6.2) or `createCluster()` (Redis Cluster >= 7; waiters then listen with
   * sharded Pub/Sub, SSUBSCRIBE, on the node that holds their key), or ioredis 5 or 6
   * `new Redis()` or `new Redis.Cluster(nodes, { shardedSubscribers: true })`, as it is (adapted
   * here, as `fromIoRedis` does). The locker never closes it: close it yourself after
   * `locker.close()`.
   */
  client: RedisLockerClient | RedisLockerClusterClient | IoRedisClient | IoRedisClusterClient;
  /**
   * Prepended to every key and channel the locker uses; lock keys look like
   * `<prefix>lock:{<key>}` (the hash tag keeps a key's lock, fence and queue in one slot).
   * @default 'sess:'
   */
  prefix?: string;
  /**
   * A connected client dedicated to Pub/Sub, used to wake waiters when a lock is released. The
   * locker does not close it. If omitted, the locker `duplicate()`s `client` the first time a
   * caller has to wait, connects it, and closes it in `close()`. With a cluster `client` it
   * must be a cluster client too; by default the cluster client itself serves (its sharded
   * Pub/Sub runs on connections of its own).
   * @default a duplicate of `client`, created on first contention (a cluster: `client`)
   */
  subscriber?: RedisLockerClient | RedisLockerClusterClient | IoRedisClient | IoRedisClusterClient;
  /**
   * Lifetime of a key's fence counter (its last fence), refreshed on every acquire. Fences do
   * not rely on it to grow: each is at least the Redis server time in microseconds, so it
   * exceeds every fence handed out before for any key, also for a new key and after the
   * counter expired. The counter only keeps one key's fences increasing should the Redis clock
   * step back (an NTP correction) within this time. `0` keeps counters forever (one small key
   * per session id ever locked). See the class notes for the clock assumption.
   * @default 604800000 (7 days)
   */
  fenceTtl?: number;
  /**
   * How long a waiter's place in the Redis queue survives without being refreshed. Live waiters
   * refresh it every third of this time; a waiter whose process died holds up the queue behind
   * it for at most this long.
   * @default 1000
   */
  waiterTtl?: number;
}

const DEFAULT_PREFIX = 'sess:';
/**
 * Fence counters get a long TTL, refreshed on every acquire, rather than none: counters of
 * long-gone session ids then do not pile up. Their expiry is harmless (the clock part of the
 * fence carries on); while they live they cover a Redis clock that steps back.
 */
const DEFAULT_FENCE_TTL_MS = 7 * 24 * 60 * 60 * 1000;
const DEFAULT_WAITER_TTL_MS = 1000;

/**
 * Session locker on Redis (>= 6.2) or Redis Cluster (>= 7), for several processes sharing
 * sessions. One primary per key with random tokens and fencing numbers; no Redlock.
 *
 * - Every script touches the keys of one lock key only (lock, fence, queue, lease), which share
 *   the `{key}` hash tag: one cluster slot. On a cluster, wake-ups use sharded Pub/Sub
 *   (SPUBLISH from the script, SSUBSCRIBE through the cluster client) on a channel with the
 *   same hash tag, so a release message only travels to the node holding the key.
 * - Acquire is one Lua script: `SET lock token PX ttl` plus the fence, max(the key's last
 *   fence + 1, Redis `TIME` in microseconds), kept in a counter in the same hash slot (`{key}`
 *   hash tag). Fences therefore exceed every fence handed out before by this Redis for any key,
 *   also for a new key (`regenerate(true)` moves data to a new storage id, whose write guard
 *   gets the old key's fence) and after a counter expired (a session idle for `fenceTtl`).
 *   Assumption: the clock of the Redis primary does not go back. After a failover to a replica
 *   whose clock is behind, or a clock stepped back, fences of keys without a live counter can
 *   repeat earlier values for up to that skew (write guards then refuse those commits, 409).
 * - An attempt whose outcome is unknown (the command timed out on the client, or the
 *   connection failed after sending it) is abandoned for real: a script sent after it releases
 *   the lock if that token got it, drops its queue ticket, and leaves a tombstone (for at least
 *   twice the ttl, 10 s or more) so that an ACQUIRE of the token arriving even later takes
 *   nothing. It is retried in the background until Redis answers or the tombstone's life has
 *   passed (and stops at `close()`), so a timed-out acquisition cannot leave a lock behind.
 * - Release and extend compare the token in Lua, so an expired holder can never free or
 *   prolong the next holder's lock.
 * - Waiting does not poll, and a release wakes one waiter: waiters listen on their key's
 *   channel, and the release script publishes the token of the first in line, so only that
 *   waiter (in whichever process) looks again. A contended handoff costs about three scripts:
 *   the waiter's look that queues it, the look that takes the lock, the release. Expiry
 *   publishes nothing, so a waiter also wakes when the lock's PTTL runs out, and at least
 *   every `waiterTtl / 3` ms to refresh its ticket.
 * - Fairness: waiters are served in the order their first attempt reached Redis, across all
 *   processes (a FIFO ticket queue stored next to the lock); a free lock is never taken by a
 *   newcomer while someone queues. A waiter that stops refreshing its ticket for `waiterTtl`
 *   ms (process died or stalled) loses its place, so a dead waiter delays the others by at
 *   most `waiterTtl`. Expired tickets are dropped before anyone is woken; a release whose
 *   first in line died but still has a valid ticket wakes nobody, and the others' refreshes
 *   drop that ticket once it expires (a look that drops it and leaves a free lock to somebody
 *   else wakes that waiter).
 */
export class RedisLocker implements SessionLocker {
  private readonly client: RedisLockerClient | RedisLockerClusterClient;
  /** On a cluster: SPUBLISH / SSUBSCRIBE; the cluster client is the subscriber. */
  private readonly cluster: boolean;
  private readonly prefix: string;
  private readonly fenceTtl: number;
  private readonly waiterTtl: number;
  /** Longest sleep of a waiter: it refreshes its ticket at least this often. */
  private readonly refreshEvery: number;
  private readonly wakeups: RedisLockWakeups;
  private readonly acquires = new AcquireTracker();
  /** Abandons under way (see {@link abandon}); `close()` waits for their current try. */
  private readonly abandons = new AbandonRetries();
  private closing: Promise<void> | null = null;

  /**
   * @throws InvalidArgumentException when `client` is missing or of no supported kind (the
   *   message names the supported ones), or a duration is invalid.
   * @throws InvalidOptionException for an ioredis client that is not connected, or an ioredis
   *   cluster without `shardedSubscribers: true`.
   */
  constructor(options: RedisLockerOptions) {
    // Checked at run time too: JavaScript callers can pass anything.
    const given = (options as Partial<RedisLockerOptions> | null | undefined)?.client as unknown;
    if (given === undefined || given === null) {
      throw new InvalidArgumentException(`RedisLocker: \`client\` is required: ${SUPPORTED_REDIS_CLIENTS}, connected.`);
    }
    const client = lockerClient(given, 'client');
    const subscriber = options.subscriber === undefined ? undefined : lockerClient(options.subscriber, 'subscriber');
    if (!isRedisClusterClient(client) && subscriber === undefined && typeof client.duplicate !== 'function') {
      throw unsupportedClient('client');
    }
    this.client = client;
    this.cluster = isRedisClusterClient(client);
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.fenceTtl = options.fenceTtl ?? DEFAULT_FENCE_TTL_MS;
    this.waiterTtl = options.waiterTtl ?? DEFAULT_WAITER_TTL_MS;
    this.wakeups = new RedisLockWakeups(client, subscriber);
    if (!(Number.isSafeInteger(this.fenceTtl) && this.fenceTtl >= 0)) {
      throw new InvalidArgumentException(`RedisLocker: fenceTtl must be an integer >= 0 ms, got ${this.fenceTtl}.`);
    }
    if (!(Number.isSafeInteger(this.waiterTtl) && this.waiterTtl >= 30)) {
      throw new InvalidArgumentException(`RedisLocker: waiterTtl must be an integer >= 30 ms, got ${this.waiterTtl}.`);
    }
    this.refreshEvery = Math.floor(this.waiterTtl / 3);
  }

  /**
   * Takes the lock for `key`, waiting behind earlier callers from any process.
   * @throws LockTimeoutException when the lock could not be had within `waitTimeout` ms (the
   *   waiter leaves the queue). `waitTimeout: 0` tries once and never queues.
   * @throws InvalidArgumentException when `ttl` is not a positive finite number or
   *   `waitTimeout` is negative.
   * @throws StoreUnavailableException when Redis fails or does not answer, or after `close()`.
   *   An attempt that failed that way is abandoned in the background (see the class notes):
   *   should Redis still run it, the lock it took is released at once, not left to its ttl.
   */
  async acquire(key: string, options: LockOptions): Promise<SessionLock> {
    const ttl = checkTtl(options.ttl);
    const waitTimeout = checkWaitTimeout(options.waitTimeout);
    if (this.closing !== null) throw lockerClosedError();
    return this.acquires.track(this.take(key, ttl, waitTimeout));
  }

  private async take(key: string, ttl: number, waitTimeout: number): Promise<SessionLock> {
    const keys = this.keysFor(key);
    const token = randomUUID();
    if (waitTimeout > 0) return this.wait(keys, token, ttl, waitTimeout);
    const result = await this.attempt(keys, token, ttl, false);
    if (result.fence === null) {
      throw this.closing === null ? LockTimeoutException.create(waitTimeout) : lockerClosedError();
    }
    const lock = new RedisLock(this.runScript, keys, token, result.fence, result.direct);
    if (this.closing === null) return lock;
    // Closed while the look was under way: undo it.
    await lock.release().catch(() => false);
    throw lockerClosedError();
  }

  /**
   * Fails pending waiters with `StoreUnavailableException` (after taking them out of the
   * queue), waits for the try under way of every abandon (retries stop: a lock that such a
   * token may still get is then left to its ttl), unsubscribes, and closes the subscriber
   * connection if the locker created it. The `client` (and a given `subscriber`) stay open.
   * Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  /**
   * Whether `close()` was called. A method, not a field test: the flag changes across awaits,
   * which TypeScript's narrowing of `this.closing` does not see.
   */
  private isClosing(): boolean {
    return this.closing !== null;
  }

  /** Runs a locker script (the client adapter handles NOSCRIPT); Redis errors become typed. */
  private readonly runScript: ScriptRunner = (operation, script, keys, args) =>
    attemptStore(operation, () => evalScript(this.client, script, keys, args));

  /**
   * The Redis keys of `key`'s lock and fence counter, and the counter's TTL ms (0 = none): what
   * a RedisBackend given this locker checks and advances in an unlocked guarded write (same
   * `{key}` hash tag as the guard of a storage group named `key`).
   */
  fencingKeysOf(key: string): { readonly lock: string; readonly fence: string; readonly fenceTtl: number } {
    const keys = this.keysFor(key);
    return { lock: keys.lock, fence: keys.fence, fenceTtl: this.fenceTtl };
  }

  private keysFor(key: string): LockKeys {
    return lockKeysOf(this.prefix, key, this.cluster);
  }

  /**
   * One look at Redis: `fence` when taken, else `retryIn` ms worth sleeping without a message.
   * When it fails, the token is abandoned (in the background) before the error goes up.
   */
  private async attempt(
    keys: LockKeys,
    token: string,
    ttl: number,
    queue: boolean,
  ): Promise<{ fence: number | null; retryIn: number; direct: boolean }> {
    let reply: unknown[];
    const sent = { again: false };
    try {
      reply = (await attemptStore('acquire lock', () =>
        evalScript(
          this.client,
          LOCK_SCRIPTS.acquire,
          [keys.lock, keys.fence, keys.queue, keys.lease, tombstoneOf(keys, token)],
          [token, String(ttl), String(this.fenceTtl), String(this.waiterTtl), queue ? '1' : '0', keys.channel, keys.publish],
          sent,
        ),
      )) as unknown[];
    } catch (error) {
      // A timeout or a lost connection says nothing about whether Redis ran the script, or
      // will: without this, a lock taken by it would be held by nobody until its ttl.
      this.abandon(keys, token, ttl);
      throw error;
    }
    // `direct`: the EVALSHA sent before acquire() returned took it (not a repeat after NOSCRIPT).
    const direct = !sent.again;
    return Number(reply[0]) === 1
      ? { fence: Number(reply[1]), retryIn: 0, direct }
      : { fence: null, retryIn: Number(reply[1]), direct };
  }

  /**
   * Makes sure `token` holds nothing, whatever became of its ACQUIRE: runs the ABANDON script
   * (release if held, leave the queue, tombstone), retried with backoff until Redis answers,
   * the tombstone's life has passed (after that a lock the token got has expired anyway), or
   * the locker closes. Sent on the same client after the failed ACQUIRE, so on one connection
   * it runs after it; the tombstone covers an ACQUIRE that arrives later by another way.
   */
  private abandon(keys: LockKeys, token: string, ttl: number): void {
    const tombstoneTtl = AbandonRetries.tombstoneTtl(ttl);
    this.abandons.start(
      () =>
        this.runScript(
          'abandon lock acquisition',
          LOCK_SCRIPTS.abandon,
          [keys.lock, keys.queue, keys.lease, tombstoneOf(keys, token)],
          [token, keys.channel, keys.publish, String(tombstoneTtl)],
        ),
      tombstoneTtl,
      () => this.isClosing(),
    );
  }

  /**
   * Queues and sleeps until a message on the key's channel names this waiter or a timer runs
   * out, then looks again (`waitInQueue`); it subscribes to the channel if this process does
   * not listen there yet.
   */
  private wait(keys: LockKeys, token: string, ttl: number, waitTimeout: number): Promise<SessionLock> {
    const sleeper = this.wakeups.sleeper(token);
    return waitInQueue(
      {
        look: () => this.attempt(keys, token, ttl, true),
        // Only the first look is sent before acquire() returns (SessionLock.immediate).
        grant: (look, first) => new RedisLock(this.runScript, keys, token, look.fence, first && look.direct),
        // Expiry publishes nothing: look again when the lock's PTTL (or the first waiter's
        // ticket) runs out, and often enough to keep our own ticket alive.
        // PTTL -1 (a lock without expiry, set by hand) gives no hint: fall back to refreshing.
        retryIn: (look) => (look.retryIn >= 0 ? Math.max(1, look.retryIn) : this.refreshEvery),
        join: () => this.wakeups.join(keys.channel, sleeper),
        listen: () => this.wakeups.subscribe(keys.channel, sleeper),
        leave: () => {
          this.wakeups.leave(keys.channel, sleeper);
        },
        rejoinAfterSleep: false,
        cancel: () => this.cancel(keys, token),
      },
      sleeper,
      waitTimeout,
      this.refreshEvery,
      () => this.isClosing(),
    );
  }

  private async cancel(keys: LockKeys, token: string): Promise<void> {
    await this.runScript(
      'acquire lock',
      LOCK_SCRIPTS.cancel,
      [keys.lock, keys.queue, keys.lease],
      [token, keys.channel, keys.publish],
    );
  }

  private async shutDown(): Promise<void> {
    this.wakeups.interrupt();
    await this.acquires.settled();
    // Every abandon gets its try under way (or its first one) answered before the client may
    // close; pauses before further tries end now, and so do the retries.
    await this.abandons.stopAll();
    await this.wakeups.close();
  }
}

/**
 * A `client` or `subscriber` option as the locker speaks to it: an ioredis client adapted, a
 * node-redis client as it is.
 * @throws InvalidArgumentException for anything that is neither (a client without the script
 *   calls, or a cluster client without sharded Pub/Sub).
 */
function lockerClient(given: unknown, option: 'client' | 'subscriber'): RedisLockerClient | RedisLockerClusterClient {
  const client = isIoRedisClient(given) ? adaptIoRedis(given, true) : given;
  if (typeof client !== 'object' || client === null) throw unsupportedClient(option);
  const candidate = client as Partial<RedisLockerClient & RedisLockerClusterClient>;
  const scripts = typeof candidate.evalSha === 'function' && typeof candidate.eval === 'function';
  // A cluster listens with sharded Pub/Sub; a standalone subscriber with SUBSCRIBE.
  const listens = isRedisClusterClient(client)
    ? typeof candidate.sSubscribe === 'function'
    : option === 'client' || typeof candidate.subscribe === 'function';
  if (!(option === 'subscriber' || scripts) || !listens) throw unsupportedClient(option);
  return candidate as RedisLockerClient | RedisLockerClusterClient;
}

function unsupportedClient(option: 'client' | 'subscriber'): InvalidArgumentException {
  return new InvalidArgumentException(`RedisLocker: \`${option}\` must be ${SUPPORTED_REDIS_CLIENTS}, connected.`);
}
