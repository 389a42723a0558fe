import { randomUUID } from 'node:crypto';
import { isNoScriptError, LuaScript } from './lua-script.js';
import type { RedisClientType } from 'redis';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { LockTimeoutException } from '../errors/lock-timeout.exception.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import type { LockOptions, SessionLock, SessionLocker } from '../locking/session-locker.interface.js';

/**
 * Any node-redis v5 client, whatever modules, scripts or RESP version it was created with
 * (`createClient()` returns a type that the default `RedisClientType` does not accept).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RedisLockerClient = RedisClientType<any, any, any, any, any>;

/** A script call as node-redis v5 takes it, on a client and on a cluster alike. */
export interface RedisScriptOptions {
  keys: string[];
  arguments: string[];
}

/** A sharded Pub/Sub message listener (`message`, `channel`). */
export type RedisShardedListener = (message: string, channel: string) => unknown;

/**
 * The part of a node-redis v5 Redis Cluster client (`createCluster()`, Redis >= 7) the locker
 * uses: scripts routed by their first key, and sharded Pub/Sub, whose connections the cluster
 * client opens and closes itself. Told apart from a standalone client by its `masters`.
 */
export interface RedisLockerClusterClient {
  readonly isOpen: boolean;
  /** The cluster's master nodes (`cluster.masters`). */
  readonly masters: readonly unknown[];
  evalSha(sha1: string, options: RedisScriptOptions): Promise<unknown>;
  eval(script: string, options: RedisScriptOptions): Promise<unknown>;
  sSubscribe(channel: string, listener: RedisShardedListener): Promise<void>;
  sUnsubscribe(channel: string, listener?: RedisShardedListener): Promise<void>;
}

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
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Lua prelude of the scripts that look at the queue: drops the tickets of waiters that stopped
 * refreshing them (process died or stalled) and sets `now` (Redis time, ms) and `dead` (the
 * tickets it dropped).
 */
function dropDeadWaiters(queue: string, lease: string): string {
  return `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGE', ${lease}, '-inf', now, 'BYSCORE', 'LIMIT', 0, 100)
if #dead > 0 then
  redis.call('ZREM', ${lease}, unpack(dead))
  redis.call('ZREM', ${queue}, unpack(dead))
end
`;
}

/**
 * KEYS: lock, fence, queue, lease. ARGV: token, ttl ms, fence ttl ms, waiter ttl ms, enqueue,
 * channel, publish command ('PUBLISH', or 'SPUBLISH' on a cluster: the channel shares the
 * lock's hash tag, so the message stays on the lock's node). Returns {1, fence} when taken, else {0, ms until worth retrying without a message}.
 *
 * The queue (ZSET token -> arrival number) makes waiting fair across processes: a free lock
 * goes only to the first queued token, or to anyone when nobody queues. `lease` (ZSET token ->
 * deadline, Redis time) drops tickets of waiters that stopped refreshing them. Wake-ups name
 * one waiter: the channel message is the token of the waiter whose turn it is. When dropping
 * dead tickets leaves a free lock to somebody else, that waiter is woken here, since no release
 * will come to do it.
 */
const ACQUIRE = `${dropDeadWaiters('KEYS[3]', 'KEYS[4]')}
local token = ARGV[1]
local held = redis.call('EXISTS', KEYS[1]) == 1
if not held then
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if head == nil or head == token then
    redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
    if head ~= nil then
      redis.call('ZREM', KEYS[3], token)
      redis.call('ZREM', KEYS[4], token)
    end
    local fence = redis.call('INCR', KEYS[2])
    if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
    return {1, fence}
  end
  if #dead > 0 then redis.call(ARGV[7], ARGV[6], head) end
end
if ARGV[5] ~= '1' then return {0, 0} end
local waiterTtl = tonumber(ARGV[4])
if not redis.call('ZSCORE', KEYS[3], token) then
  local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  local number = 1
  if last[2] then number = tonumber(last[2]) + 1 end
  redis.call('ZADD', KEYS[3], number, token)
end
redis.call('ZADD', KEYS[4], now + waiterTtl, token)
redis.call('PEXPIRE', KEYS[3], waiterTtl)
redis.call('PEXPIRE', KEYS[4], waiterTtl)
if held then return {0, redis.call('PTTL', KEYS[1])} end
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
return {0, tonumber(redis.call('ZSCORE', KEYS[4], head)) - now}
`;

/**
 * KEYS: lock, queue, lease. ARGV: token, channel, publish command. Wakes only the first live waiter,
 * by publishing its token: waking all of them would make every release cost one acquire
 * attempt per waiter, O(waiters^2) per queue. Dead tickets are dropped first, so a waiter that
 * died long ago is not the one woken; one that died recently (ticket still valid) is, and the
 * others get past it by refreshing their tickets (within `waiterTtl`).
 */
const RELEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
${dropDeadWaiters('KEYS[2]', 'KEYS[3]')}
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if head then redis.call(ARGV[3], ARGV[2], head) end
return 1
`;

/** KEYS: lock. ARGV: token, ttl ms. */
const EXTEND = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;

/**
 * KEYS: lock, queue, lease. ARGV: token, channel, publish command. A waiter gives up its place; if that leaves a
 * free lock to the next in line, wake it.
 */
const CANCEL = `
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if removed == 1 and redis.call('EXISTS', KEYS[1]) == 0 then
  ${dropDeadWaiters('KEYS[2]', 'KEYS[3]')}
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if head then redis.call(ARGV[3], ARGV[2], head) end
end
return removed
`;

const SCRIPTS = {
  acquire: new LuaScript(ACQUIRE),
  release: new LuaScript(RELEASE),
  extend: new LuaScript(EXTEND),
  cancel: new LuaScript(CANCEL),
};

/** Redis names used for one lock key. */
interface LockKeys {
  readonly key: string;
  readonly lock: string;
  readonly fence: string;
  readonly queue: string;
  readonly lease: string;
  readonly channel: string;
  /** PUBLISH, or SPUBLISH on a cluster. */
  readonly publish: string;
}

/** A waiting `acquire()`: sleeps until a message on its key's channel or a timer wakes it. */
class Sleeper {
  private signalled = false;
  private wake: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  /** @param token the waiter's ticket: a release message naming it wakes this sleeper. */
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

  /** Forget signals that arrived before the next look at Redis: that look sees their effect. */
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

/** Where waiters listen: a standalone client's Pub/Sub, or a cluster's sharded Pub/Sub. */
interface Listening {
  readonly isOpen: boolean;
  subscribe(channel: string, listener: (message: string) => void): Promise<void>;
  unsubscribe(channel: string, listener: (message: string) => void): Promise<void>;
}

/** A cluster's sharded Pub/Sub as {@link Listening}. */
function shardedListening(cluster: RedisLockerClusterClient): Listening {
  return {
    get isOpen() {
      return cluster.isOpen;
    },
    subscribe: (channel, listener) => cluster.sSubscribe(channel, listener),
    unsubscribe: (channel, listener) => cluster.sUnsubscribe(channel, listener),
  };
}

function isClusterClient(client: unknown): client is RedisLockerClusterClient {
  return typeof client === 'object' && client !== null && 'masters' in client;
}

/** This process's subscription to one key's channel, shared by its waiters on that key. */
interface ChannelEntry {
  /** Waiters by token: a message wakes only the one it names. */
  readonly sleepers: Map<string, Sleeper>;
  readonly listener: (message: string) => void;
  readonly ready: Promise<void>;
  /** SUBSCRIBE has been answered: from now on every message published reaches `listener`. */
  subscribed: boolean;
}

type ScriptRunner = (
  operation: string,
  script: LuaScript,
  keys: string[],
  args: string[],
) => Promise<unknown>;

class RedisLock implements SessionLock {
  constructor(
    private readonly run: ScriptRunner,
    private readonly keys: LockKeys,
    readonly token: string,
    readonly fence: number,
  ) {}

  get key(): string {
    return this.keys.key;
  }

  async release(): Promise<boolean> {
    const { lock, queue, lease, channel, publish } = this.keys;
    const reply = await this.run('release lock', SCRIPTS.release, [lock, queue, lease], [
      this.token,
      channel,
      publish,
    ]);
    return Number(reply) === 1;
  }

  async extend(ttl: number): Promise<boolean> {
    const ms = checkTtl(ttl);
    const reply = await this.run('extend lock', SCRIPTS.extend, [this.keys.lock], [
      this.token,
      String(ms),
    ]);
    return Number(reply) === 1;
  }
}

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
  private readonly givenSubscriber: Listening | undefined;
  private ownedSubscriber: RedisLockerClient | null = null;
  private subscriberReady: Promise<Listening> | null = null;
  private readonly channels = new Map<string, ChannelEntry>();
  private readonly sleepers = new Set<Sleeper>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly unsubscribing = new Set<Promise<unknown>>();
  private closing: Promise<void> | null = null;

  /** @throws InvalidArgumentException when `client` is missing or a duration is invalid. */
  constructor(options: RedisLockerOptions) {
    if (options?.client === undefined || options.client === null) {
      throw new InvalidArgumentException(
        'RedisLocker: `client` (a connected node-redis client) is required.',
      );
    }
    this.client = options.client;
    this.cluster = isClusterClient(options.client);
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.fenceTtl = options.fenceTtl ?? DEFAULT_FENCE_TTL_MS;
    this.waiterTtl = options.waiterTtl ?? DEFAULT_WAITER_TTL_MS;
    if (this.cluster) {
      const subscriber = options.subscriber ?? options.client;
      if (!isClusterClient(subscriber)) {
        throw new InvalidArgumentException(
          'RedisLocker: with a cluster `client`, `subscriber` must be a cluster client too (or omitted).',
        );
      }
      this.givenSubscriber = shardedListening(subscriber);
    } else {
      if (isClusterClient(options.subscriber)) {
        throw new InvalidArgumentException(
          'RedisLocker: a cluster `subscriber` needs a cluster `client`.',
        );
      }
      this.givenSubscriber = options.subscriber;
    }
    if (!(Number.isSafeInteger(this.fenceTtl) && this.fenceTtl >= 0)) {
      throw new InvalidArgumentException(
        `RedisLocker: fenceTtl must be an integer >= 0 ms, got ${this.fenceTtl}.`,
      );
    }
    if (!(Number.isSafeInteger(this.waiterTtl) && this.waiterTtl >= 30)) {
      throw new InvalidArgumentException(
        `RedisLocker: waiterTtl must be an integer >= 30 ms, got ${this.waiterTtl}.`,
      );
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
      throw new InvalidArgumentException(
        `Lock options: waitTimeout must be >= 0 ms, got ${waitTimeout}.`,
      );
    }
    if (this.closing !== null) throw closedError();
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
      throw this.closing === null ? LockTimeoutException.create(waitTimeout) : closedError();
    }
    const lock = new RedisLock(this.runScript, keys, token, result.fence);
    if (this.closing === null) return lock;
    // Closed while the look was under way: undo it.
    await lock.release().catch(() => false);
    throw closedError();
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

  /** Runs a script by SHA, loading it on NOSCRIPT; Redis errors become typed. */
  private readonly runScript: ScriptRunner = async (operation, script, keys, args) => {
    // Both client kinds take scripts the same way (a cluster routes by the first key).
    const client: Pick<RedisLockerClusterClient, 'evalSha' | 'eval'> = this.client;
    try {
      try {
        return await client.evalSha(script.sha, { keys, arguments: args });
      } catch (error) {
        if (!isNoScriptError(error)) throw error;
        // Not cached yet (first use, restart, SCRIPT FLUSH, a cluster node that has not seen
        // it): EVAL runs it and caches it.
        return await client.eval(script.source, { keys, arguments: args });
      }
    } catch (error) {
      throw StoreUnavailableException.create(operation, error);
    }
  };

  private keysFor(key: string): LockKeys {
    const lock = `${this.prefix}lock:{${key}}`;
    return {
      key,
      lock,
      fence: `${lock}:fence`,
      queue: `${lock}:queue`,
      lease: `${lock}:lease`,
      channel: `${lock}:released`,
      publish: this.cluster ? 'SPUBLISH' : 'PUBLISH',
    };
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
      SCRIPTS.acquire,
      [keys.lock, keys.fence, keys.queue, keys.lease],
      [
        token,
        String(ttl),
        String(this.fenceTtl),
        String(this.waiterTtl),
        queue ? '1' : '0',
        keys.channel,
        keys.publish,
      ],
    )) as unknown[];
    return Number(reply[0]) === 1
      ? { fence: Number(reply[1]), retryIn: 0 }
      : { fence: null, retryIn: Number(reply[1]) };
  }

  /**
   * Queues and sleeps until a message names this waiter or a timer runs out, then looks again.
   * The waiter must listen on the key's channel before a look that leaves it waiting, or the
   * release right after that look could go unheard. When this process already listens there
   * (other waiters on the key: the contended case), it joins before its first look, so a
   * handoff costs one failed look, one successful one and the release. Otherwise it subscribes
   * after the first look and looks again.
   */
  private async wait(
    keys: LockKeys,
    token: string,
    ttl: number,
    waitTimeout: number,
  ): Promise<SessionLock> {
    const deadline = performance.now() + waitTimeout;
    const sleeper = new Sleeper(token);
    this.sleepers.add(sleeper);
    let listening = this.joinListeners(keys.channel, sleeper);
    try {
      for (;;) {
        if (this.closing !== null) throw closedError();
        sleeper.reset();
        const result = await this.attempt(keys, token, ttl, true);
        if (result.fence !== null) {
          const lock = new RedisLock(this.runScript, keys, token, result.fence);
          if (this.closing === null) return lock;
          await lock.release().catch(() => false);
          throw closedError();
        }
        const remaining = deadline - performance.now();
        if (remaining <= 0) break;
        if (!listening) {
          await this.subscribe(keys.channel, sleeper);
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
      this.sleepers.delete(sleeper);
      this.unsubscribe(keys.channel, sleeper);
    }
    await this.cancel(keys, token);
    throw LockTimeoutException.create(waitTimeout);
  }

  private async cancel(keys: LockKeys, token: string): Promise<void> {
    await this.runScript('acquire lock', SCRIPTS.cancel, [keys.lock, keys.queue, keys.lease], [
      token,
      keys.channel,
      keys.publish,
    ]);
  }

  /**
   * Adds `sleeper` to the key's listeners if this process's subscription to `channel` is
   * already in place; answers whether it did.
   */
  private joinListeners(channel: string, sleeper: Sleeper): boolean {
    const entry = this.channels.get(channel);
    const subscriber = this.givenSubscriber ?? this.ownedSubscriber;
    if (entry === undefined || !entry.subscribed || subscriber === null || !subscriber.isOpen) {
      return false;
    }
    entry.sleepers.set(sleeper.token, sleeper);
    return true;
  }

  private async subscribe(channel: string, sleeper: Sleeper): Promise<void> {
    let entry = this.channels.get(channel);
    if (entry === undefined) {
      const subscriber = await this.subscriber();
      entry = this.channels.get(channel); // another waiter may have subscribed meanwhile
      if (entry === undefined) {
        const sleepers = new Map<string, Sleeper>();
        // The message is the token of the waiter whose turn it is (in this process or another):
        // only that one wakes. Any other text (older versions of this locker published
        // 'released' / 'cancelled') wakes every waiter, as those versions expect.
        const listener = (message: string): void => {
          const named = sleepers.get(message);
          if (named !== undefined) named.signal();
          else if (message === 'released' || message === 'cancelled') {
            for (const s of sleepers.values()) s.signal();
          }
        };
        const created: ChannelEntry = {
          sleepers,
          listener,
          ready: subscriber.subscribe(channel, listener),
          subscribed: false,
        };
        created.ready.then(
          () => {
            created.subscribed = true;
          },
          () => {
            if (this.channels.get(channel) === created) this.channels.delete(channel);
          },
        );
        this.channels.set(channel, created);
        entry = created;
      }
    }
    entry.sleepers.set(sleeper.token, sleeper);
    try {
      await entry.ready;
    } catch (error) {
      entry.sleepers.delete(sleeper.token);
      throw StoreUnavailableException.create('acquire lock', error);
    }
  }

  private unsubscribe(channel: string, sleeper: Sleeper): void {
    const entry = this.channels.get(channel);
    if (entry?.sleepers.get(sleeper.token) !== sleeper) return;
    entry.sleepers.delete(sleeper.token);
    if (entry.sleepers.size > 0) return;
    this.channels.delete(channel);
    const subscriber = this.givenSubscriber ?? this.ownedSubscriber;
    if (subscriber === null || !subscriber.isOpen) return;
    const done = subscriber.unsubscribe(channel, entry.listener).catch(() => undefined);
    this.unsubscribing.add(done);
    void done.finally(() => this.unsubscribing.delete(done));
  }

  /** The Pub/Sub connection; the locker's own one is created on first contention. */
  private subscriber(): Promise<Listening> {
    if (this.closing !== null) return Promise.reject(closedError());
    if (this.givenSubscriber !== undefined) return Promise.resolve(this.givenSubscriber);
    const lost = this.ownedSubscriber !== null && !this.ownedSubscriber.isOpen;
    if (lost && this.subscriberReady !== null) {
      // Lost (e.g. no reconnect strategy): start over with a fresh connection.
      this.ownedSubscriber = null;
      this.subscriberReady = null;
      this.channels.clear();
    }
    if (this.subscriberReady === null) {
      // Never a cluster here: a cluster client always serves as `givenSubscriber`.
      const duplicate = (this.client as RedisLockerClient).duplicate();
      // Without a listener an 'error' event would crash the process; failures surface through
      // the failing subscribe, and waiters keep their timer fallback meanwhile.
      duplicate.on('error', () => undefined);
      this.ownedSubscriber = duplicate;
      this.subscriberReady = duplicate.connect().then(
        () => duplicate,
        (error: unknown) => {
          if (this.ownedSubscriber === duplicate) {
            this.ownedSubscriber = null;
            this.subscriberReady = null;
          }
          duplicate.destroy();
          throw StoreUnavailableException.create('acquire lock', error);
        },
      );
    }
    return this.subscriberReady;
  }

  private async shutDown(): Promise<void> {
    for (const sleeper of this.sleepers) sleeper.signal();
    await Promise.allSettled([...this.pending]);
    await Promise.allSettled([...this.unsubscribing]);
    this.channels.clear();
    const owned = this.ownedSubscriber;
    const ready = this.subscriberReady;
    this.ownedSubscriber = null;
    this.subscriberReady = null;
    if (owned === null || ready === null) return;
    await ready.catch(() => undefined);
    if (!owned.isOpen) return;
    try {
      await owned.close();
    } catch {
      owned.destroy();
    }
  }
}

/** Validates a ttl and turns it into whole ms for PX / PEXPIRE. */
function checkTtl(ttl: number): number {
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) {
    throw new InvalidArgumentException(
      `Lock options: ttl must be a positive finite number of ms, got ${ttl}.`,
    );
  }
  return Math.ceil(ttl);
}

function closedError(): StoreUnavailableException {
  return StoreUnavailableException.create('acquire lock', new Error('the locker was closed'));
}
