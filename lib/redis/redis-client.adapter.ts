import type { LuaLibrary } from './lua-library.js';
import type { LuaScript } from './lua-script.js';

/*
 * How the Redis engine talks to node-redis (v5 and v6): which kind of client it was given, how a
 * command or a script reaches the right node, and what to do when a node does not know a
 * script yet. The backend and the locker both go through here, so a second Redis client
 * library would mean a second adapter (ioredis-client.adapter.ts), not branches in the backend.
 * The client types are declared here member by member, never imported from 'redis': the
 * declarations of 'nest-session/redis' must compile in an app that installed only ioredis.
 */

/**
 * The part of a standalone node-redis (v5, v6) client the backend uses. Every `createClient()`
 * client fits, whatever its modules, scripts or RESP version.
 */
export interface RedisCommandClient {
  sendCommand(args: readonly string[]): Promise<unknown>;
}

/**
 * The part of a node-redis (v5, v6) Redis Cluster client (`createCluster()`) the backend uses:
 * commands routed by their first key, and the master nodes (for `flush()`, which scans each).
 */
export interface RedisClusterCommandClient {
  sendCommand(firstKey: string | undefined, isReadonly: boolean | undefined, args: string[]): Promise<unknown>;
  /** The cluster's master nodes (`cluster.masters`). */
  readonly masters: readonly unknown[];
  /** A connected client of one of `masters` (`cluster.nodeClient(node)`). */
  nodeClient(node: unknown): Promise<RedisCommandClient>;
}

/** A script call as node-redis takes it, on a client and on a cluster alike. */
export interface RedisScriptOptions {
  keys: string[];
  arguments: string[];
}

/** The script calls node-redis clients and clusters share (a cluster routes by the first key). */
export interface RedisScriptClient {
  evalSha(sha1: string, options: RedisScriptOptions): Promise<unknown>;
  eval(script: string, options: RedisScriptOptions): Promise<unknown>;
}

/**
 * The part of a standalone client the locker (and the backend) use: every node-redis 5 or 6
 * `createClient()` client fits, whatever its RESP version, modules, scripts or type mapping, and
 * so does `fromIoRedis(new Redis())`. The locker's lock commands go through `evalSha`/`eval`, its
 * Pub/Sub connection is a `duplicate()` it connects, subscribes on and closes.
 */
export interface RedisLockerClient extends RedisCommandClient, RedisScriptClient {
  readonly isOpen: boolean;
  /** A new client with the same options, not yet connected. */
  duplicate(): RedisLockerClient;
  connect(): Promise<unknown>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  subscribe(channel: string, listener: (message: string, channel: string) => unknown): Promise<void>;
  unsubscribe(channel: string, listener?: (message: string, channel: string) => unknown): Promise<void>;
  /** Waits for pending replies, then closes the connection. */
  close(): Promise<void>;
  /** Closes the connection at once; pending commands fail. */
  destroy(): void;
}

/** A sharded Pub/Sub message listener (`message`, `channel`). */
export type RedisShardedListener = (message: string, channel: string) => unknown;

/**
 * The part of a node-redis 5 or 6 Redis Cluster client (`createCluster()`, Redis >= 7) the locker
 * uses: scripts routed by their first key, and sharded Pub/Sub, whose connections the cluster
 * client opens and closes itself. Told apart from a standalone client by its `masters`.
 */
export interface RedisLockerClusterClient extends RedisScriptClient {
  readonly isOpen: boolean;
  /** The cluster's master nodes (`cluster.masters`). */
  readonly masters: readonly unknown[];
  sSubscribe(channel: string, listener: RedisShardedListener): Promise<void>;
  sUnsubscribe(channel: string, listener?: RedisShardedListener): Promise<void>;
}

/**
 * The clients the engine takes and how each is passed, for the messages that refuse anything
 * else (a client of another library, a wrapper, something that is no client at all).
 */
export const SUPPORTED_REDIS_CLIENTS =
  'a node-redis 5 or 6 client (createClient() or createCluster(), passed as it is) or an ioredis 5 or 6 client ' +
  '(new Redis() or new Redis.Cluster(nodes, { shardedSubscribers: true }), passed as it is or through fromIoRedis())';

/** Whether a client is a cluster client (`createCluster()`): only those have `masters`. */
export function isRedisClusterClient(client: unknown): client is { readonly masters: readonly unknown[] } {
  return typeof client === 'object' && client !== null && 'masters' in client;
}

/**
 * Runs a script by its SHA; when the node answers NOSCRIPT (first use, restart, failover,
 * SCRIPT FLUSH, a cluster node that has not seen it) runs its source, which caches it there.
 */
async function evalCached(
  script: LuaScript,
  bySha: (sha: string) => Promise<unknown>,
  bySource: (source: string) => Promise<unknown>,
  sent?: ScriptSending,
): Promise<unknown> {
  try {
    return await bySha(script.sha);
  } catch (error) {
    // Matched by message: the client may come from another copy of node-redis than ours.
    if (!(error instanceof Error && error.message.startsWith('NOSCRIPT'))) throw error;
    if (sent !== undefined) sent.again = true;
    return await bySource(script.source);
  }
}

/** Filled by `evalScript`: `again` when the script had to be sent a second time (by source, after NOSCRIPT). */
export interface ScriptSending {
  again: boolean;
}

/**
 * Runs `script` through a client's `evalSha` / `eval` (the locker's way). The EVALSHA is sent
 * before this returns; `sent.again` tells whether it had to be repeated as EVAL (then it ran
 * after commands sent in between).
 */
export function evalScript(
  client: RedisScriptClient,
  script: LuaScript,
  keys: string[],
  args: string[],
  sent?: ScriptSending,
): Promise<unknown> {
  const options = { keys, arguments: args };
  return evalCached(
    script,
    (sha) => client.evalSha(sha, options),
    (source) => client.eval(source, options),
    sent,
  );
}

/**
 * Raw commands to one standalone client, or to a cluster that routes them by key (the
 * backend's way). One per backend: it remembers which scripts it has loaded.
 */
export class RedisTransport {
  /** Whether commands go to a cluster (routed by key) rather than one node. */
  readonly cluster: boolean;
  private readonly sendTo: (key: string, readonly: boolean, args: string[]) => Promise<unknown>;
  private readonly masterClients: () => Promise<RedisCommandClient[]>;
  /** Scripts whose SCRIPT LOAD was sent on the (standalone) client. */
  private readonly loaded = new Set<LuaScript>();
  /** Libraries whose FUNCTION LOAD was sent on the (standalone) client. */
  private readonly loadedLibraries = new Set<LuaLibrary>();
  /** False once the server turned functions down (Redis < 7, an ACL without them): EVAL scripts from then on. */
  private functions = true;

  constructor(client: RedisCommandClient | RedisClusterCommandClient) {
    if (isRedisClusterClient(client)) {
      this.cluster = true;
      this.sendTo = (key, readonly, args) => client.sendCommand(key, readonly, args);
      this.masterClients = () => Promise.all(client.masters.map((node) => client.nodeClient(node)));
    } else {
      this.cluster = false;
      this.sendTo = (_key, _readonly, args) => client.sendCommand(args);
      this.masterClients = async () => [client];
    }
  }

  /** Sends one command, routed by `key` on a cluster. */
  send(key: string, readonly: boolean, args: string[]): Promise<unknown> {
    return this.sendTo(key, readonly, args);
  }

  /** Clients of every master (the one client for a standalone Redis), for SCAN. */
  masters(): Promise<RedisCommandClient[]> {
    return this.masterClients();
  }

  /** Runs a script with KEYS = [key] and ARGV = `args`, routed by `key`. */
  evalScript(script: LuaScript, key: string, args: readonly string[]): Promise<unknown> {
    const tail = ['1', key, ...args];
    if (!this.cluster && !this.loaded.has(script)) {
      this.loaded.add(script);
      // Sent in the same tick as the EVALSHA below, so it rides the same round trip and runs
      // first. (On a cluster it would reach one node only; there NOSCRIPT teaches each node.)
      this.send(key, false, ['SCRIPT', 'LOAD', script.source]).catch(() => this.loaded.delete(script));
    }
    return evalCached(
      script,
      (sha) => this.send(key, false, ['EVALSHA', sha, ...tail]),
      (source) => this.send(key, false, ['EVAL', source, ...tail]),
    );
  }

  /**
   * Calls a library's function with KEYS = [key] and ARGV = `args` (standalone clients only; a
   * cluster runs its script). FUNCTION LOAD rides with the first call, as SCRIPT LOAD does; a
   * server that lost the function (restart, FUNCTION FLUSH) gets it again, and one that has no
   * functions (or forbids them) runs the library's EVAL script from then on.
   */
  async callLibrary(library: LuaLibrary, key: string, args: readonly string[]): Promise<unknown> {
    if (this.cluster || !this.functions) return this.evalScript(library.script, key, args);
    const call = ['FCALL', library.functionName, '1', key, ...args];
    if (!this.loadedLibraries.has(library)) {
      this.loadedLibraries.add(library);
      // Same tick as the FCALL below: one round trip, and Redis runs the load first.
      this.loadLibrary(library, key).catch(() => this.loadedLibraries.delete(library));
    }
    try {
      return await this.send(key, false, call);
    } catch (error) {
      const message = error instanceof Error ? error.message : '';
      if (message.includes('Function not found')) {
        // Matched by message (the client may be another copy of node-redis, or ioredis).
        try {
          await this.loadLibrary(library, key);
        } catch {
          this.functions = false;
          return this.evalScript(library.script, key, args);
        }
        return this.send(key, false, call);
      }
      if (message.startsWith('ERR unknown command') || message.startsWith('NOPERM')) {
        this.functions = false;
        return this.evalScript(library.script, key, args);
      }
      throw error;
    }
  }

  /** FUNCTION LOAD of `library`; already loaded (by another client, or in a race) counts as done. */
  private async loadLibrary(library: LuaLibrary, key: string): Promise<void> {
    try {
      await this.send(key, false, ['FUNCTION', 'LOAD', library.source]);
    } catch (error) {
      if (error instanceof Error && error.message.includes('already exists')) return;
      throw error;
    }
  }
}

/**
 * Waits for every promise (none is left unobserved), then answers them or throws the first
 * failure: commands sent in one tick are pipelined, and all of them must have answered before
 * the operation reports.
 */
export async function settleAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
