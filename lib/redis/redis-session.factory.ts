import type { IpcNetConnectOpts, TcpNetConnectOpts } from 'node:net';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { RedisLocker, type RedisLockerClient, type RedisLockerClusterClient, type RedisLockerOptions } from './redis.locker.js';
import { RedisBackend } from './redis.backend.js';
import { assertRedisPrefix } from './redis-backend.keys.js';
import {
  isRedisClusterClient,
  SUPPORTED_REDIS_CLIENTS,
  type RedisClusterCommandClient,
  type RedisCommandClient,
} from './redis-client.adapter.js';
import { fromIoRedis, isIoRedisClient, type IoRedisClient, type IoRedisClusterClient } from './ioredis-client.adapter.js';

/**
 * What the backends and the locker need of a node-redis 5 or 6 Redis Cluster client: every
 * `createCluster()` client fits.
 */
export type RedisSessionClusterClient = RedisClusterCommandClient & RedisLockerClusterClient;

/*
 * The node-redis options below are declared here, not imported from 'redis': the declarations
 * of 'nest-session/redis' must compile in an app that installed ioredis and not node-redis.
 * They are the subset of node-redis 5 and 6 `createClient()` / `createCluster()` options that
 * matters for a session store, with node-redis' own types, so an options object typed with
 * node-redis' `RedisClientOptions` / `RedisClusterOptions` fits them; anything beyond them
 * (modules, type mappings, client-side caching) means building the client yourself and
 * passing it as `client`.
 */

/** Options every socket kind of node-redis takes. */
interface RedisSessionSocketCommon {
  /** Milliseconds of inactivity after which node-redis closes the socket. */
  socketTimeout?: number;
}

/**
 * node-redis `socket` options (TCP, TLS with `tls: true`, or a Unix socket with `path`), as
 * node-redis 5 and 6 define them, without `connectTimeout` and `reconnectStrategy`, which
 * {@link createRedisSessionStores} sets (see `connectTimeout` and `maxReconnectDelay`).
 */
export type RedisSessionSocketOptions =
  | (RedisSessionSocketCommon &
      Omit<TcpNetConnectOpts, 'timeout' | 'onread' | 'readable' | 'writable' | 'port'> & { port?: number; tls?: false })
  | (RedisSessionSocketCommon & TlsConnectionOptions & { tls: true })
  | (RedisSessionSocketCommon & Omit<IpcNetConnectOpts, 'timeout' | 'onread' | 'readable' | 'writable'> & { tls: false });

/**
 * node-redis 5 and 6 client options (`createClient()`) a session store may need: credentials,
 * database, TLS and socket settings. `url`, `disableOfflineQueue`, `socket.connectTimeout` and
 * `socket.reconnectStrategy` are set by {@link createRedisSessionStores}.
 */
export interface RedisSessionClientOptions {
  /** Socket settings; TLS with `{ tls: true, ... }` (or a `rediss://` URL). */
  socket?: RedisSessionSocketOptions;
  /** ACL user name. */
  username?: string;
  /** ACL password (or the `requirepass` password). */
  password?: string;
  /** Connection name (`CLIENT SETNAME`). */
  name?: string;
  /** Database number (`SELECT`); standalone Redis only. */
  database?: number;
  /** RESP protocol version. @default node-redis' own (2 in node-redis 5, 3 in node-redis 6) */
  RESP?: 2 | 3;
  /** Maximum length of the client's command queue. */
  commandsQueueMaxLength?: number;
  /** Connects in `READONLY` mode (cluster replicas). */
  readonly?: boolean;
  /** Milliseconds between `PING`s, for networks that drop idle connections. */
  pingInterval?: number;
  /** Sends no `CLIENT SETINFO` at connect. */
  disableClientInfo?: boolean;
  /** Appended to the library name sent with `CLIENT SETINFO`. */
  clientInfoTag?: string;
}

/** One Redis Cluster node (a root node, or the defaults for every node) as node-redis takes it. */
export interface RedisSessionClusterNodeOptions extends Omit<RedisSessionClientOptions, 'RESP' | 'database'> {
  /** `redis[s]://[[user][:password]@]host[:port]` */
  url?: string;
}

/** Where a node announced by the cluster is reached from here (NAT, Docker): `{ host, port }`. */
export interface RedisSessionNodeAddress {
  host: string;
  port: number;
}

/**
 * node-redis 5 and 6 `createCluster()` options: at least `rootNodes`. `defaults.disableOfflineQueue`,
 * `defaults.socket.connectTimeout` and `defaults.socket.reconnectStrategy` are set by
 * {@link createRedisSessionStores}.
 */
export interface RedisSessionClusterOptions {
  /** Nodes to discover the cluster from: `[{ url: 'redis://host:port' }, ...]`. */
  rootNodes: readonly RedisSessionClusterNodeOptions[];
  /** Options for every node's connection (credentials, TLS, ...). */
  defaults?: RedisSessionClusterNodeOptions;
  /** Connects to masters only until a replica is needed. */
  minimizeConnections?: boolean;
  /** Sends read-only commands to replicas. */
  useReplicas?: boolean;
  /** How many MOVED/ASK redirections a command may follow. */
  maxCommandRedirections?: number;
  /** Maps the addresses the cluster announces to reachable ones. */
  nodeAddressMap?: Readonly<Record<string, RedisSessionNodeAddress>> | ((address: string) => RedisSessionNodeAddress | undefined);
  /** RESP protocol version. @default node-redis' own (2 in node-redis 5, 3 in node-redis 6) */
  RESP?: 2 | 3;
}

/** Options of {@link createRedisSessionStores}. Give exactly one of `url`, `cluster` and `client`. */
export interface RedisSessionStoresOptions {
  /**
   * `redis[s]://[[user][:password]@]host[:port][/db]`: a node-redis client is created,
   * connected, and owned (closed by `close()`, which `SessionModule` calls on shutdown).
   */
  url?: string;
  /**
   * A Redis Cluster (>= 7) to connect to: node-redis `createCluster()` options, at least
   * `rootNodes: [{ url: 'redis://host:port' }, ...]`. The cluster client is created, connected
   * and owned like a client made from `url`; `defaults.disableOfflineQueue`,
   * `defaults.socket.connectTimeout` and `defaults.socket.reconnectStrategy` are set by this
   * helper (with `connectTimeout` and `maxReconnectDelay`). Needs `redis` installed.
   */
  cluster?: RedisSessionClusterOptions;
  /**
   * A connected client, owned by you: never closed here. node-redis 5 or 6, or ioredis 5 or 6
   * (`new Redis()`, or `new Redis.Cluster(nodes, { shardedSubscribers: true })`, adapted with
   * `fromIoRedis` here). Either `createClient()`
   * (a standalone Redis or Valkey) or `createCluster()` (a Redis Cluster >= 7). Its reconnect,
   * offline-queue and timeout settings decide what a request does while Redis is unreachable
   * (see README "Running on many instances").
   */
  client?: RedisLockerClient | RedisSessionClusterClient | IoRedisClient | IoRedisClusterClient;
  /**
   * Key prefix. Metadata entries go under `${prefix}m:`, data entries under `${prefix}s:`, locks
   * under `${prefix}l:`. Must not contain `{` or `}`.
   * @default 'sess:'
   */
  prefix?: string;
  /**
   * Milliseconds a Redis command of the backends or the locker may take before the operation
   * fails with `StoreUnavailableException` (the request answers 503), so a Redis that stops
   * answering (overloaded, a long script, a network partition) cannot hang requests. The command
   * itself is not withdrawn: if Redis runs it later, it runs whole (every write is one atomic
   * script). `0` = wait as long as the client does.
   * @default 2000
   */
  commandTimeout?: number;
  /**
   * With `url`: milliseconds one connection attempt may take, at boot and on reconnects.
   * @default 5000
   */
  connectTimeout?: number;
  /**
   * With `url`: longest pause between reconnection attempts while Redis is down; attempts back
   * off exponentially from 50 ms to this (with jitter).
   * @default 2000
   */
  maxReconnectDelay?: number;
  /**
   * With `url`: further node-redis client options (TLS, credentials, `name`, `database`, ...).
   * `url`, `disableOfflineQueue`, `socket.connectTimeout` and `socket.reconnectStrategy` are
   * set by this helper.
   */
  clientOptions?: RedisSessionClientOptions;
  /** Seconds added to entry lifetimes for Redis-native TTLs (see `RedisBackendOptions`). @default 3600 */
  safetyTtlMargin?: number;
  /** Locker settings: `fenceTtl`, `waiterTtl` (see `RedisLockerOptions`). */
  locker?: Pick<RedisLockerOptions, 'fenceTtl' | 'waiterTtl' | 'subscriber'>;
}

/** What {@link createRedisSessionStores} answers: spread it into the `SessionModule` options. */
export interface RedisSessionStores<
  Client extends RedisLockerClient | RedisSessionClusterClient = RedisLockerClient | RedisSessionClusterClient,
> {
  readonly metadataBackend: RedisBackend;
  readonly storageBackend: RedisBackend;
  readonly locker: RedisLocker;
  /** The client in use (the one passed in, or the one created from `url` or `cluster`). */
  readonly client: Client;
  /**
   * Closes the locker and, if the client was created from `url` or `cluster`, the client.
   * Idempotent; the locker's own `close()` (called by `SessionModule` on shutdown) does the same.
   */
  close(): Promise<void>;
}

const DEFAULT_PREFIX = 'sess:';
const DEFAULT_COMMAND_TIMEOUT = 2000;
const DEFAULT_CONNECT_TIMEOUT = 5000;
const DEFAULT_MAX_RECONNECT_DELAY = 2000;

/**
 * A RedisLocker that also closes the client it runs on, once, after the locker itself has
 * closed: `SessionModule` closes the metadata backend, the storage backend and the locker in
 * parallel on shutdown, and only the locker has work to finish (pending waiters) before the
 * connection may go.
 */
class ClientOwningRedisLocker extends RedisLocker {
  private ended: Promise<void> | undefined;

  constructor(
    options: RedisLockerOptions,
    private readonly closeClient: () => Promise<void>,
  ) {
    super(options);
  }

  override close(): Promise<void> {
    this.ended ??= super.close().finally(() => this.closeClient());
    return this.ended;
  }
}
// What health checks and logs call it (`constructor.name`): a RedisLocker, whoever owns the client.
Object.defineProperty(ClientOwningRedisLocker, 'name', { value: 'RedisLocker' });

/** The options as an untyped caller (JavaScript, a configuration file) may pass them. */
type UntypedRedisSessionStoresOptions = Omit<RedisSessionStoresOptions, 'cluster' | 'client'> & {
  cluster?: RedisSessionClusterOptions | null;
  client?: RedisLockerClient | RedisSessionClusterClient | IoRedisClient | IoRedisClusterClient | null;
};

/**
 * Redis backends and locker for `SessionModule`, on one Redis client (node-redis or ioredis):
 *
 * ```ts
 * SessionModule.forRootAsync({
 *   useFactory: async () => ({ ...(await createRedisSessionStores({ url: process.env.REDIS_URL })) }),
 * })
 * ```
 *
 * With `url` the client is created with settings for many app instances: it reconnects with
 * backoff when Redis comes back, while commands fail at once during an outage (no offline
 * queue) or after `commandTimeout` when Redis hangs, so requests answer 503 instead of waiting.
 * `redis` (node-redis 5 or 6) is loaded only when this function runs with `url` or `cluster`.
 *
 * On a Redis Cluster (`cluster: { rootNodes: [{ url }] }`, or a connected `createCluster()`
 * client as `client`) the same stores work unchanged: every script touches one slot (see
 * `RedisBackend`), and the locker wakes waiters with sharded Pub/Sub.
 *
 * @throws InvalidOptionException for bad options (also when not exactly one of url, cluster and client is given).
 * @throws StoreUnavailableException when Redis cannot be reached at boot; the message names the
 *   URL (or the cluster's root node URLs) with passwords replaced by `***`.
 */
export async function createRedisSessionStores<Client extends RedisSessionClusterClient>(
  options: RedisSessionStoresOptions & { client: Client },
): Promise<RedisSessionStores<Client>>;
export async function createRedisSessionStores(
  options: RedisSessionStoresOptions & { cluster: RedisSessionClusterOptions },
): Promise<RedisSessionStores<RedisSessionClusterClient>>;
export async function createRedisSessionStores<Client extends RedisLockerClient>(
  options: RedisSessionStoresOptions & { client: Client },
): Promise<RedisSessionStores<Client>>;
export async function createRedisSessionStores(
  options: RedisSessionStoresOptions & { client?: undefined; cluster?: undefined },
): Promise<RedisSessionStores<RedisLockerClient>>;
export async function createRedisSessionStores(options: RedisSessionStoresOptions): Promise<RedisSessionStores>;
export async function createRedisSessionStores(options: RedisSessionStoresOptions): Promise<RedisSessionStores> {
  // Options may come from untyped configuration: no options at all, or a null client or cluster, are refused below.
  const { url, cluster: clusterOptions, client: raw } = (options as UntypedRedisSessionStoresOptions | undefined) ?? {};
  // ioredis (standalone or Redis.Cluster) is adapted to the node-redis shape the engine speaks.
  const given = isIoRedisClient(raw) ? fromIoRedis(raw) : raw;
  if ([url, clusterOptions, given].filter((o) => o !== undefined).length !== 1) {
    throw InvalidOptionException.create(
      'redis',
      'needs exactly one of `url` (a redis:// URL), `cluster` (createCluster() options with rootNodes) and `client` (a connected node-redis or ioredis client)',
    );
  }
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  assertRedisPrefix('redis.prefix', prefix);
  const commandTimeout = durationOption('redis.commandTimeout', options.commandTimeout, DEFAULT_COMMAND_TIMEOUT);
  const connectTimeout = durationOption('redis.connectTimeout', options.connectTimeout, DEFAULT_CONNECT_TIMEOUT);
  const maxReconnectDelay = durationOption('redis.maxReconnectDelay', options.maxReconnectDelay, DEFAULT_MAX_RECONNECT_DELAY);

  let client: RedisLockerClient | RedisSessionClusterClient;
  let closeOwned: (() => Promise<void>) | undefined;
  if (given !== undefined) {
    const cluster = isRedisClusterClient(given);
    if (
      typeof given?.sendCommand !== 'function' ||
      (cluster
        ? typeof given.nodeClient !== 'function' || typeof given.sSubscribe !== 'function'
        : typeof given.duplicate !== 'function')
    ) {
      throw InvalidOptionException.create('redis.client', `must be ${SUPPORTED_REDIS_CLIENTS}`);
    }
    if (!given.isOpen) {
      throw InvalidOptionException.create('redis.client', 'must be connected: await client.connect() first');
    }
    client = given;
  } else if (clusterOptions !== undefined) {
    if (
      typeof clusterOptions !== 'object' ||
      clusterOptions === null ||
      !Array.isArray(clusterOptions.rootNodes) ||
      clusterOptions.rootNodes.length === 0
    ) {
      throw InvalidOptionException.create(
        'redis.cluster',
        'must be createCluster() options with at least one root node: { rootNodes: [{ url }] }',
      );
    }
    const created = await connectCluster(clusterOptions, { connectTimeout, maxReconnectDelay });
    client = created;
    closeOwned = onceOnly(async () => {
      if (created.isOpen) created.destroy();
    });
  } else {
    if (typeof url !== 'string' || url.length === 0) {
      throw InvalidOptionException.create('redis.url', `must be a redis:// or rediss:// URL, got ${typeof url}`);
    }
    const created = await connect(url, options.clientOptions ?? {}, { connectTimeout, maxReconnectDelay });
    client = created;
    closeOwned = onceOnly(() => closeClient(created));
  }

  const commands = commandTimeout > 0 ? withCommandDeadline(client, commandTimeout) : client;
  const lockerClient = commandTimeout > 0 ? withScriptDeadline(client, commandTimeout) : client;
  const lockerOptions: RedisLockerOptions = { ...options.locker, client: lockerClient, prefix: `${prefix}l:` };
  let locker: RedisLocker;
  try {
    const metadataBackend = new RedisBackend({
      client: commands,
      prefix: `${prefix}m:`,
      safetyTtlMargin: options.safetyTtlMargin,
    });
    locker = closeOwned !== undefined ? new ClientOwningRedisLocker(lockerOptions, closeOwned) : new RedisLocker(lockerOptions);
    // Storage ids are the lock keys: an unlocked commit checks the lock in its write script.
    // Shares the metadata backend's write coalescer (standalone): same-tick writes of both are one script call.
    const storageBackend = new RedisBackend(
      {
        client: commands,
        prefix: `${prefix}s:`,
        safetyTtlMargin: options.safetyTtlMargin,
        locker,
      },
      metadataBackend.shared,
    );
    // One standalone client, one connection: what the backends send after an acquire runs after it
    // (a commit's lock and its reads share a round trip). A no-op on a cluster.
    metadataBackend.orderAfterLocksOf(locker);
    storageBackend.orderAfterLocksOf(locker);
    return { metadataBackend, storageBackend, locker, client, close: () => locker.close() };
  } catch (error) {
    await closeOwned?.();
    throw error;
  }
}

/**
 * A cluster client created from `cluster` options, connected, with the same failure behaviour
 * as a client from `url`: no offline queue, fail at the first error at boot, reconnect with
 * backoff afterwards.
 */
async function connectCluster(options: RedisSessionClusterOptions, settings: ConnectionSettings): Promise<OwnedCluster> {
  // node-redis' own option types are a superset of RedisSessionClusterOptions (checked by
  // test/architecture/consumer-types.spec.ts), its cluster a superset of OwnedCluster.
  const { createCluster } = (await importRedis('redis.cluster')) as {
    createCluster: (options: OwnedClusterOptions) => OwnedCluster;
  };
  let connectedOnce = false;
  const cluster = createCluster({
    ...options,
    defaults: {
      ...options.defaults,
      disableOfflineQueue: true,
      socket: {
        ...options.defaults?.socket,
        connectTimeout: settings.connectTimeout,
        reconnectStrategy: (retries: number) => reconnectDelay(connectedOnce, retries, settings.maxReconnectDelay),
      },
    },
  });
  cluster.on('error', () => undefined);
  const where = options.rootNodes.map((node) => (typeof node.url === 'string' ? redactUrl(node.url) : 'a root node')).join(', ');
  try {
    await cluster.connect();
  } catch (error) {
    if (cluster.isOpen) cluster.destroy();
    throw StoreUnavailableException.atBoot(`connect to the Redis Cluster at ${where}`, error);
  }
  connectedOnce = true;
  return cluster;
}

/**
 * Boot fails at the first error (a wrong URL should not look like a slow start); after the
 * first successful connection every loss is retried with backoff until Redis is back.
 */
function reconnectDelay(connectedOnce: boolean, retries: number, maxReconnectDelay: number): number | false {
  if (!connectedOnce) return false;
  const backoff = Math.min(maxReconnectDelay, 50 * 2 ** Math.min(retries, 16));
  return Math.round(backoff / 2 + Math.random() * (backoff / 2));
}

/** The backends' view of the client, every command under the deadline. */
function withCommandDeadline(
  client: RedisLockerClient | RedisSessionClusterClient,
  ms: number,
): RedisCommandClient | RedisClusterCommandClient {
  if (isRedisClusterClient(client)) {
    return {
      sendCommand: (firstKey, isReadonly, args) => withDeadline(client.sendCommand(firstKey, isReadonly, args), ms),
      get masters() {
        return client.masters;
      },
      nodeClient: async (node) => {
        const nodeClient = await withDeadline(client.nodeClient(node), ms);
        return { sendCommand: (args) => withDeadline(nodeClient.sendCommand(args), ms) };
      },
    };
  }
  return { sendCommand: (args: readonly string[]) => withDeadline(client.sendCommand([...args]), ms) };
}

/** The socket settings this helper adds to what it passes to node-redis. */
interface OwnedSocketSettings {
  connectTimeout: number;
  reconnectStrategy: (retries: number) => number | false;
}

/** The options this helper passes to node-redis' `createClient()`. */
type OwnedClientOptions = Omit<RedisSessionClientOptions, 'socket'> & {
  url: string;
  disableOfflineQueue: boolean;
  socket: OwnedSocketSettings & Partial<RedisSessionSocketOptions>;
};

/** The options this helper passes to node-redis' `createCluster()`. */
type OwnedClusterOptions = Omit<RedisSessionClusterOptions, 'defaults'> & {
  defaults: Omit<RedisSessionClusterNodeOptions, 'socket'> & {
    disableOfflineQueue: boolean;
    socket: OwnedSocketSettings & Partial<RedisSessionSocketOptions>;
  };
};

/** A client this helper created, as far as it drives it. */
interface OwnedClient extends RedisLockerClient {
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'ready', listener: () => void): unknown;
}

/** A cluster client this helper created, as far as it drives it. */
interface OwnedCluster extends RedisSessionClusterClient {
  on(event: 'error', listener: (error: Error) => void): unknown;
  connect(): Promise<unknown>;
  destroy(): void;
}

/**
 * The `redis` package (node-redis 5 or 6), loaded here, not at the top: it is an optional peer
 * dependency, and importing this package must work without it.
 * @throws InvalidOptionException naming `option` (the one that needs it) and the install command.
 */
async function importRedis(option: string): Promise<unknown> {
  try {
    return await import('redis');
  } catch (error) {
    throw InvalidOptionException.create(
      option,
      `needs the "redis" package (node-redis 5 or 6): npm install redis (${(error as Error).message})`,
    );
  }
}

interface ConnectionSettings {
  readonly connectTimeout: number;
  readonly maxReconnectDelay: number;
}

async function connect(url: string, extra: RedisSessionClientOptions, settings: ConnectionSettings): Promise<RedisLockerClient> {
  // Its option types are a superset of ours (see connectCluster).
  const { createClient } = (await importRedis('redis.url')) as { createClient: (options: OwnedClientOptions) => OwnedClient };

  let connectedOnce = false;
  const reconnectStrategy = (retries: number): number | false =>
    reconnectDelay(connectedOnce, retries, settings.maxReconnectDelay);
  const client = createClient({
    ...extra,
    url,
    // Commands sent while the connection is down fail at once (the request answers 503)
    // instead of queueing until Redis returns.
    disableOfflineQueue: true,
    socket: { ...extra.socket, connectTimeout: settings.connectTimeout, reconnectStrategy },
  });
  // node-redis emits 'error' for every failed attempt; without a listener the process would
  // crash. Failures reach callers as failing commands (StoreUnavailableException, HTTP 503).
  client.on('error', () => undefined);
  client.on('ready', () => {
    connectedOnce = true;
  });
  try {
    await client.connect();
  } catch (error) {
    if (client.isOpen) client.destroy();
    throw StoreUnavailableException.atBoot(`connect to ${redactUrl(url)}`, error);
  }
  return client;
}

/** A URL with its password (if any) replaced by `***`: `redis://user:***@host:6379`. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
  }
}

/**
 * Drops the connection. By the time SessionModule shuts down, the HTTP server is closed, GC
 * runs have finished and the locker has settled its waiters, so nothing is pending; `destroy()`
 * (unlike `close()`, which waits for replies) cannot hang on a Redis that stopped answering.
 */
async function closeClient(client: RedisLockerClient): Promise<void> {
  if (client.isOpen) client.destroy();
}

/**
 * The reply, or a rejection after `ms`. node-redis' own `timeout` command option only covers the
 * wait before a command is written to the socket, not the wait for the reply of a Redis that
 * stopped answering; this covers both.
 */
function withDeadline<T>(reply: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms (commandTimeout)`)), ms);
  });
  return Promise.race([reply, deadline]).finally(() => clearTimeout(timer));
}

/**
 * The client as the locker sees it: its scripts (`evalSha`, `eval`, all its commands) get the
 * deadline; everything else, including `duplicate()` for Pub/Sub, is the client itself.
 */
function withScriptDeadline<C extends RedisLockerClient | RedisSessionClusterClient>(client: C, ms: number): C {
  return new Proxy(client, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      if (property === 'evalSha' || property === 'eval') {
        return (...args: unknown[]) => withDeadline((value as (...a: unknown[]) => Promise<unknown>).apply(target, args), ms);
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

function onceOnly(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

function durationOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw InvalidOptionException.create(name, `must be a number of milliseconds >= 0, got ${String(value)}`);
  }
  return value;
}
