import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import type {
  RedisClusterCommandClient,
  RedisCommandClient,
  RedisLockerClient,
  RedisLockerClusterClient,
  RedisScriptOptions,
  RedisShardedListener,
} from './redis-client.adapter.js';

/*
 * ioredis 5 and 6 behind the engine's client interface (redis-client.adapter.ts): the backend's raw
 * commands become `call()`, the locker's scripts `evalsha`/`eval`, its Pub/Sub a duplicated
 * connection (standalone) or the cluster's sharded subscribers. Nothing here imports ioredis:
 * the types below are the parts of `new Redis()` and `new Redis.Cluster()` that are used, so the
 * engine's declarations name no second driver.
 */

/** The parts of an ioredis 5 or 6 standalone client (`new Redis(...)`) the engine uses. */
export interface IoRedisClient {
  /** `wait`, `connecting`, `connect`, `ready`, `reconnecting`, `close` or `end`. */
  readonly status: string;
  call(command: string, ...args: string[]): Promise<unknown>;
  evalsha(sha: string, numKeys: number, ...args: string[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...args: string[]): Promise<unknown>;
  duplicate(override?: { lazyConnect?: boolean }): IoRedisClient;
  connect(): Promise<void>;
  quit(): Promise<unknown>;
  disconnect(): void;
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  on(event: 'message', listener: (channel: string, message: string) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** The parts of an ioredis 5 or 6 cluster client (`new Redis.Cluster(nodes, { shardedSubscribers: true })`) the engine uses. */
export interface IoRedisClusterClient {
  readonly isCluster: boolean;
  readonly status: string;
  readonly options: { readonly shardedSubscribers?: boolean };
  call(command: string, ...args: string[]): Promise<unknown>;
  evalsha(sha: string, numKeys: number, ...args: string[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...args: string[]): Promise<unknown>;
  nodes(role: 'master'): IoRedisClient[];
  ssubscribe(...channels: string[]): Promise<unknown>;
  sunsubscribe(...channels: string[]): Promise<unknown>;
  on(event: 'smessage', listener: (channel: string, message: string) => void): unknown;
}

/** Whether `client` is an ioredis client (standalone or cluster): ioredis clients have `status` and `call`. */
export function isIoRedisClient(client: unknown): client is IoRedisClient | IoRedisClusterClient {
  if (typeof client !== 'object' || client === null) return false;
  const candidate = client as { status?: unknown; call?: unknown; evalsha?: unknown };
  return typeof candidate.status === 'string' && typeof candidate.call === 'function' && typeof candidate.evalsha === 'function';
}

function isIoRedisCluster(client: IoRedisClient | IoRedisClusterClient): client is IoRedisClusterClient {
  return (client as Partial<IoRedisClusterClient>).isCluster === true;
}

/** ioredis' "open" as node-redis means it: connecting, connected or reconnecting (not before `connect`, not after `quit`). */
function isOpen(status: string): boolean {
  return status !== 'wait' && status !== 'end';
}

/**
 * An ioredis 5 or 6 client (standalone or cluster) as the node-redis client the backends and the
 * locker take: `createRedisSessionStores({ client })`, `new RedisBackend({ client })` and
 * `new RedisLocker({ client })` do this by themselves when given the ioredis client as it is. Raw commands go
 * through `call` (ioredis routes a cluster command by its keys, EVALSHA included), scripts
 * through `evalsha`/`eval`, and the locker's Pub/Sub through a duplicated connection
 * (standalone) or the cluster's sharded subscribers.
 * @throws InvalidOptionException when the client is not connected (`lazyConnect` without
 *   `connect()`, or quit), or a cluster was created without `shardedSubscribers: true` (its
 *   single subscriber connection cannot reach the lock channels of every slot).
 */
export function fromIoRedis(
  client: IoRedisClient | IoRedisClusterClient,
): RedisLockerClient | (RedisClusterCommandClient & RedisLockerClusterClient) {
  return adaptIoRedis(client, true);
}

/**
 * `fromIoRedis` for the engine's own use. `pubSub: false` (a backend, which never subscribes)
 * also takes a cluster created without `shardedSubscribers: true`.
 * @internal
 */
export function adaptIoRedis(
  client: IoRedisClient | IoRedisClusterClient,
  pubSub: boolean,
): RedisLockerClient | (RedisClusterCommandClient & RedisLockerClusterClient) {
  assertConnected(client);
  if (isIoRedisCluster(client)) return lockerCluster(client, pubSub);
  // The engine uses exactly these members of a node-redis client (sendCommand, scripts, isOpen,
  // duplicate, connect, on, subscribe, unsubscribe, close, destroy); this object provides them.
  return new IoRedisConnection(client) as unknown as RedisLockerClient;
}

function send(target: { call(command: string, ...args: string[]): Promise<unknown> }, args: readonly string[]): Promise<unknown> {
  return target.call(args[0]!, ...args.slice(1));
}

function assertConnected(client: IoRedisClient | IoRedisClusterClient): void {
  if (!isOpen(client.status)) {
    throw InvalidOptionException.create(
      'redis.client',
      'must be connected: await client.connect() first (an ioredis client with lazyConnect, or one that was quit)',
    );
  }
}

function scriptArgs(options: RedisScriptOptions): [number, ...string[]] {
  return [options.keys.length, ...options.keys, ...options.arguments];
}

/** A standalone ioredis connection shaped as the node-redis client the backend, the locker and its wake-ups use. */
class IoRedisConnection implements RedisCommandClient {
  /** Pub/Sub listeners by channel (this connection serves as a subscriber once duplicated). */
  private readonly listeners = new Map<string, Set<(message: string) => void>>();
  private dispatching = false;

  constructor(private readonly client: IoRedisClient) {}

  get isOpen(): boolean {
    return isOpen(this.client.status);
  }

  sendCommand(args: readonly string[]): Promise<unknown> {
    return send(this.client, args);
  }

  evalSha(sha: string, options: RedisScriptOptions): Promise<unknown> {
    return this.client.evalsha(sha, ...scriptArgs(options));
  }

  eval(script: string, options: RedisScriptOptions): Promise<unknown> {
    return this.client.eval(script, ...scriptArgs(options));
  }

  /** A new connection with the same settings, not yet connected (as node-redis' `duplicate()`). */
  duplicate(): IoRedisConnection {
    return new IoRedisConnection(this.client.duplicate({ lazyConnect: true }));
  }

  on(event: 'error', listener: (error: Error) => void): this {
    this.client.on(event, listener);
    return this;
  }

  connect(): Promise<void> {
    return this.client.connect();
  }

  async subscribe(channel: string, listener: (message: string) => void): Promise<void> {
    if (!this.dispatching) {
      this.dispatching = true;
      this.client.on('message', (from, message) => {
        for (const each of this.listeners.get(from) ?? []) each(message);
      });
    }
    let set = this.listeners.get(channel);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    set.add(listener);
    if (set.size === 1) await this.client.subscribe(channel);
  }

  async unsubscribe(channel: string, listener: (message: string) => void): Promise<void> {
    const set = this.listeners.get(channel);
    if (set === undefined) return;
    set.delete(listener);
    if (set.size > 0) return;
    this.listeners.delete(channel);
    await this.client.unsubscribe(channel);
  }

  async close(): Promise<void> {
    await this.client.quit();
  }

  destroy(): void {
    this.client.disconnect();
  }
}

/** An ioredis cluster shaped as the node-redis cluster client the backend and the locker use (sharded Pub/Sub). */
function lockerCluster(cluster: IoRedisClusterClient, pubSub: boolean): RedisClusterCommandClient & RedisLockerClusterClient {
  if (pubSub && cluster.options.shardedSubscribers !== true) {
    throw InvalidOptionException.create(
      'redis.client',
      'must be an ioredis Cluster created with { shardedSubscribers: true }: the locker wakes waiters with sharded Pub/Sub (SSUBSCRIBE)',
    );
  }
  const listeners = new Map<string, Set<RedisShardedListener>>();
  let dispatching = false;
  return {
    get isOpen() {
      return isOpen(cluster.status);
    },
    get masters() {
      return cluster.nodes('master');
    },
    sendCommand: (_firstKey, _isReadonly, args) => send(cluster, args),
    nodeClient: async (node) => ({ sendCommand: (args) => send(node as IoRedisClient, args) }),
    evalSha: (sha, options) => cluster.evalsha(sha, ...scriptArgs(options)),
    eval: (script, options) => cluster.eval(script, ...scriptArgs(options)),
    async sSubscribe(channel, listener) {
      if (!dispatching) {
        dispatching = true;
        cluster.on('smessage', (from, message) => {
          for (const each of listeners.get(from) ?? []) each(message, from);
        });
      }
      let set = listeners.get(channel);
      if (set === undefined) {
        set = new Set();
        listeners.set(channel, set);
      }
      set.add(listener);
      if (set.size === 1) await cluster.ssubscribe(channel);
    },
    async sUnsubscribe(channel, listener) {
      const set = listeners.get(channel);
      if (set === undefined) return;
      if (listener === undefined) set.clear();
      else set.delete(listener);
      if (set.size > 0) return;
      listeners.delete(channel);
      await cluster.sunsubscribe(channel);
    },
  };
}
