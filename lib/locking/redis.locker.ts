import { createHash, randomUUID } from 'node:crypto';
import type { RedisClientType } from 'redis';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { LockTimeoutException } from '../errors/lock-timeout.exception.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import type { LockOptions, SessionLock, SessionLocker } from './session-locker.interface.js';

/**
 * Any node-redis v5 client, whatever modules, scripts or RESP version it was created with
 * (`createClient()` returns a type that the default `RedisClientType` does not accept).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RedisLockerClient = RedisClientType<any, any, any, any, any>;

/** Options of {@link RedisLocker}. */
export interface RedisLockerOptions {
  /**
   * A connected node-redis client for the lock commands. The locker never closes it: close it
   * yourself after `locker.close()`.
   */
  client: RedisLockerClient;
  /**
   * Prepended to every key and channel the locker uses; lock keys look like
   * `<prefix>lock:{<key>}` (the hash tag keeps a key's lock, fence and queue in one slot).
   * @default 'sess:'
   */
  prefix?: string;
  /**
   * A connected client dedicated to Pub/Sub, used to wake waiters when a lock is released. The
   * locker does not close it. If omitted, the locker `duplicate()`s `client` the first time a
   * caller has to wait, connects it, and closes it in `close()`.
   * @default a duplicate of `client`, created on first contention
   */
  subscriber?: RedisLockerClient;
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
 * KEYS: lock, fence, queue, lease. ARGV: token, ttl ms, fence ttl ms, waiter ttl ms, enqueue.
 * Returns {1, fence} when taken, else {0, ms until worth retrying without a message}.
 *
 * The queue (ZSET token -> arrival number) makes waiting fair across processes: a free lock
 * goes only to the first queued token, or to anyone when nobody queues. `lease` (ZSET token ->
 * deadline, Redis time) drops tickets of waiters that stopped refreshing them.
 */
const ACQUIRE = `
local token = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGE', KEYS[4], '-inf', now, 'BYSCORE', 'LIMIT', 0, 100)
if #dead > 0 then
  redis.call('ZREM', KEYS[4], unpack(dead))
  redis.call('ZREM', KEYS[3], unpack(dead))
end
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

/** KEYS: lock, queue. ARGV: token, channel. Publishes only when somebody queues. */
const RELEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[2], 'released') end
return 1
`;

/** KEYS: lock. ARGV: token, ttl ms. */
const EXTEND = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;

/**
 * KEYS: lock, queue, lease. ARGV: token, channel. A waiter gives up its place; if that leaves a
 * free lock to the next in line, wake it.
 */
const CANCEL = `
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if removed == 1 and redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[2], 'cancelled')
end
return removed
`;

class Script {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

const SCRIPTS = {
  acquire: new Script(ACQUIRE),
  release: new Script(RELEASE),
  extend: new Script(EXTEND),
  cancel: new Script(CANCEL),
};

/** Redis names used for one lock key. */
interface LockKeys {
  readonly key: string;
  readonly lock: string;
  readonly fence: string;
  readonly queue: string;
  readonly lease: string;
  readonly channel: string;
}

/** A waiting `acquire()`: sleeps until a message on its key's channel or a timer wakes it. */
class Sleeper {
  private signalled = false;
  private wake: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

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

interface ChannelEntry {
  readonly sleepers: Set<Sleeper>;
  readonly listener: () => void;
  readonly ready: Promise<void>;
}

type ScriptRunner = (
  operation: string,
  script: Script,
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
    const { lock, queue, channel } = this.keys;
    const reply = await this.run('release lock', SCRIPTS.release, [lock, queue], [
      this.token,
      channel,
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
 * Session locker on Redis (>= 6.2), for several processes sharing sessions. One primary with
 * random tokens and fencing numbers; no Redlock.
 *
 * - Acquire is one Lua script: `SET lock token NX PX ttl` plus `INCR` of the key's fence
 *   counter, which lives in the same hash slot (`{key}` hash tag).
 * - Release and extend compare the token in Lua, so an expired holder can never free or
 *   prolong the next holder's lock.
 * - Waiting does not poll: a waiter subscribes to its key's channel before retrying and the
 *   release script publishes there when someone queues. Expiry publishes nothing, so a waiter
 *   also wakes when the lock's PTTL runs out, and at least every `waiterTtl / 3` ms to refresh
 *   its ticket.
 * - Fairness: waiters are served in the order their first attempt reached Redis, across all
 *   processes (a FIFO ticket queue stored next to the lock); a free lock is never taken by a
 *   newcomer while someone queues. A waiter that stops refreshing its ticket for `waiterTtl`
 *   ms (process died or stalled) loses its place, so a dead waiter delays the others by at
 *   most `waiterTtl`.
 */
export class RedisLocker implements SessionLocker {
  private readonly client: RedisLockerClient;
  private readonly prefix: string;
  private readonly fenceTtl: number;
  private readonly waiterTtl: number;
  /** Longest sleep of a waiter: it refreshes its ticket at least this often. */
  private readonly refreshEvery: number;
  private readonly givenSubscriber: RedisLockerClient | undefined;
  private ownedSubscriber: RedisLockerClient | null = null;
  private subscriberReady: Promise<RedisLockerClient> | null = null;
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
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.fenceTtl = options.fenceTtl ?? DEFAULT_FENCE_TTL_MS;
    this.waiterTtl = options.waiterTtl ?? DEFAULT_WAITER_TTL_MS;
    this.givenSubscriber = options.subscriber;
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
    const deadline = performance.now() + waitTimeout;
    const queue = waitTimeout > 0;
    const first = await this.attempt(keys, token, ttl, queue);
    if (this.closing !== null) {
      // Closed while the first look was under way: undo what it did.
      if (first.fence !== null) {
        await new RedisLock(this.runScript, keys, token, first.fence).release().catch(() => false);
      } else if (queue) {
        await this.cancel(keys, token).catch(() => undefined);
      }
      throw closedError();
    }
    if (first.fence !== null) return new RedisLock(this.runScript, keys, token, first.fence);
    if (!queue) throw LockTimeoutException.create(waitTimeout);
    return this.wait(keys, token, ttl, waitTimeout, deadline);
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
    try {
      try {
        return await this.client.evalSha(script.sha, { keys, arguments: args });
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
        // Not cached yet (first use, restart, SCRIPT FLUSH): EVAL runs it and caches it.
        return await this.client.eval(script.source, { keys, arguments: args });
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
      [token, String(ttl), String(this.fenceTtl), String(this.waiterTtl), queue ? '1' : '0'],
    )) as unknown[];
    return Number(reply[0]) === 1
      ? { fence: Number(reply[1]), retryIn: 0 }
      : { fence: null, retryIn: Number(reply[1]) };
  }

  private async wait(
    keys: LockKeys,
    token: string,
    ttl: number,
    waitTimeout: number,
    deadline: number,
  ): Promise<SessionLock> {
    if (performance.now() >= deadline) {
      await this.cancel(keys, token);
      throw LockTimeoutException.create(waitTimeout);
    }
    const sleeper = new Sleeper();
    this.sleepers.add(sleeper);
    try {
      // Subscribe before the next look, so a release after that look cannot go unnoticed.
      await this.subscribe(keys.channel, sleeper);
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
    ]);
  }

  private async subscribe(channel: string, sleeper: Sleeper): Promise<void> {
    let entry = this.channels.get(channel);
    if (entry === undefined) {
      const subscriber = await this.subscriber();
      entry = this.channels.get(channel); // another waiter may have subscribed meanwhile
      if (entry === undefined) {
        const sleepers = new Set<Sleeper>();
        const listener = (): void => {
          for (const s of sleepers) s.signal();
        };
        const created: ChannelEntry = {
          sleepers,
          listener,
          ready: subscriber.subscribe(channel, listener),
        };
        created.ready.catch(() => {
          if (this.channels.get(channel) === created) this.channels.delete(channel);
        });
        this.channels.set(channel, created);
        entry = created;
      }
    }
    entry.sleepers.add(sleeper);
    try {
      await entry.ready;
    } catch (error) {
      entry.sleepers.delete(sleeper);
      throw StoreUnavailableException.create('acquire lock', error);
    }
  }

  private unsubscribe(channel: string, sleeper: Sleeper): void {
    const entry = this.channels.get(channel);
    if (entry === undefined || !entry.sleepers.delete(sleeper) || entry.sleepers.size > 0) return;
    this.channels.delete(channel);
    const subscriber = this.givenSubscriber ?? this.ownedSubscriber;
    if (subscriber === null || !subscriber.isOpen) return;
    const done = subscriber.unsubscribe(channel, entry.listener).catch(() => undefined);
    this.unsubscribing.add(done);
    void done.finally(() => this.unsubscribing.delete(done));
  }

  /** The Pub/Sub connection; the locker's own one is created on first contention. */
  private subscriber(): Promise<RedisLockerClient> {
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
      const duplicate = this.client.duplicate();
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
