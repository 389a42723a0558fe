import { randomUUID } from 'node:crypto';
import { attemptStore } from '../cache/store-failure.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { LockTimeoutException } from '../errors/lock-timeout.exception.js';
import type { LockOptions, SessionLock, SessionLocker } from '../locking/session-locker.interface.js';
import {
  evalScript,
  isRedisClusterClient,
  type RedisLockerClient,
  type RedisLockerClusterClient,
} from './redis-client.adapter.js';
import { RedisLockWakeups } from './redis-lock-wakeups.js';
import { LOCK_SCRIPTS } from './redis-lock.scripts.js';
import { checkTtl, lockerClosedError, lockKeysOf, RedisLock, type LockKeys, type ScriptRunner } from './redis.lock.js';

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
   * A connected node-redis client for the lock commands: `createClient()` (standalone Redis or
   * Valkey >= 6.2) or `createCluster()` (Redis Cluster >= 7; waiters then listen with sharded
   * Pub/Sub, SSUBSCRIBE, on the node that holds their key). The locker never closes it: close
   * it yourself after `locker.close()`.
   */
  client: RedisLockerClient | RedisLockerClusterClient;
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
  subscriber?: RedisLockerClient | RedisLockerClusterClient;
  /**
   * Lifetime of a key's fence counter, refreshed on every acquire. It must be longer than a
   * session can stay idle and still be used, or a fence could start again from 1. `0` keeps
   * counters forever (one small key per session id ever locked).
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
 * long-gone session ids then do not pile up. 7 days is meant to exceed any inactivity timeout,
 * so a session that can still be resumed never sees its counter restart; `fenceTtl` raises it.
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
 * - Acquire is one Lua script: `SET lock token NX PX ttl` plus `INCR` of the key's fence
 *   counter, which lives in the same hash slot (`{key}` hash tag).
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
  private readonly pending = new Set<Promise<unknown>>();
  private closing: Promise<void> | null = null;

  /** @throws InvalidArgumentException when `client` is missing or a duration is invalid. */
  constructor(options: RedisLockerOptions) {
    if (options?.client === undefined || options.client === null) {
      throw new InvalidArgumentException('RedisLocker: `client` (a connected node-redis client) is required.');
    }
    this.client = options.client;
    this.cluster = isRedisClusterClient(options.client);
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.fenceTtl = options.fenceTtl ?? DEFAULT_FENCE_TTL_MS;
    this.waiterTtl = options.waiterTtl ?? DEFAULT_WAITER_TTL_MS;
    this.wakeups = new RedisLockWakeups(options.client, options.subscriber);
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
   */
  async acquire(key: string, options: LockOptions): Promise<SessionLock> {
    const ttl = checkTtl(options.ttl);
    const waitTimeout = options.waitTimeout;
    if (!(waitTimeout >= 0)) {
      throw new InvalidArgumentException(`Lock options: waitTimeout must be >= 0 ms, got ${waitTimeout}.`);
    }
    if (this.closing !== null) throw lockerClosedError();
    // Tracked so that close() can wait until every acquire under way has cleaned up after itself.
    const pending = this.take(key, ttl, waitTimeout);
    this.pending.add(pending);
    try {
      return await pending;
    } finally {
      this.pending.delete(pending);
    }
  }

  private async take(key: string, ttl: number, waitTimeout: number): Promise<SessionLock> {
    const keys = this.keysFor(key);
    const token = randomUUID();
    if (waitTimeout > 0) return this.wait(keys, token, ttl, waitTimeout);
    const result = await this.attempt(keys, token, ttl, false);
    if (result.fence === null) {
      throw this.closing === null ? LockTimeoutException.create(waitTimeout) : lockerClosedError();
    }
    const lock = new RedisLock(this.runScript, keys, token, result.fence);
    if (this.closing === null) return lock;
    // Closed while the look was under way: undo it.
    await lock.release().catch(() => false);
    throw lockerClosedError();
  }

  /**
   * Fails pending waiters with `StoreUnavailableException` (after taking them out of the
   * queue), unsubscribes, and closes the subscriber connection if the locker created it. The
   * `client` (and a given `subscriber`) stay open. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  /** Runs a locker script (the client adapter handles NOSCRIPT); Redis errors become typed. */
  private readonly runScript: ScriptRunner = (operation, script, keys, args) =>
    attemptStore(operation, () => evalScript(this.client, script, keys, args));

  private keysFor(key: string): LockKeys {
    return lockKeysOf(this.prefix, key, this.cluster);
  }

  /** One look at Redis: `fence` when taken, else `retryIn` ms worth sleeping without a message. */
  private async attempt(
    keys: LockKeys,
    token: string,
    ttl: number,
    queue: boolean,
  ): Promise<{ fence: number | null; retryIn: number }> {
    const reply = (await this.runScript(
      'acquire lock',
      LOCK_SCRIPTS.acquire,
      [keys.lock, keys.fence, keys.queue, keys.lease],
      [token, String(ttl), String(this.fenceTtl), String(this.waiterTtl), queue ? '1' : '0', keys.channel, keys.publish],
    )) as unknown[];
    return Number(reply[0]) === 1 ? { fence: Number(reply[1]), retryIn: 0 } : { fence: null, retryIn: Number(reply[1]) };
  }

  /**
   * Queues and sleeps until a message names this waiter or a timer runs out, then looks again.
   * The waiter must listen on the key's channel before a look that leaves it waiting, or the
   * release right after that look could go unheard. When this process already listens there
   * (other waiters on the key: the contended case), it joins before its first look, so a
   * handoff costs one failed look, one successful one and the release. Otherwise it subscribes
   * after the first look and looks again.
   */
  private async wait(keys: LockKeys, token: string, ttl: number, waitTimeout: number): Promise<SessionLock> {
    const deadline = performance.now() + waitTimeout;
    const sleeper = this.wakeups.sleeper(token);
    let listening = this.wakeups.join(keys.channel, sleeper);
    try {
      for (;;) {
        if (this.closing !== null) throw lockerClosedError();
        sleeper.reset();
        const result = await this.attempt(keys, token, ttl, true);
        if (result.fence !== null) {
          const lock = new RedisLock(this.runScript, keys, token, result.fence);
          if (this.closing === null) return lock;
          await lock.release().catch(() => false);
          throw lockerClosedError();
        }
        const remaining = deadline - performance.now();
        if (remaining <= 0) break;
        if (!listening) {
          await this.wakeups.subscribe(keys.channel, sleeper);
          listening = true;
          continue; // a release between that look and the subscription went unheard
        }
        // Expiry publishes nothing: look again when the lock's PTTL (or the first waiter's
        // ticket) runs out, and often enough to keep our own ticket alive.
        // PTTL -1 (a lock without expiry, set by hand) gives no hint: fall back to refreshing.
        const retryIn = result.retryIn >= 0 ? Math.max(1, result.retryIn) : this.refreshEvery;
        await sleeper.sleep(Math.min(remaining, retryIn, this.refreshEvery));
      }
    } catch (error) {
      await this.cancel(keys, token).catch(() => undefined);
      throw error;
    } finally {
      this.wakeups.leave(keys.channel, sleeper);
    }
    await this.cancel(keys, token);
    throw LockTimeoutException.create(waitTimeout);
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
    await Promise.allSettled([...this.pending]);
    await this.wakeups.close();
  }
}
