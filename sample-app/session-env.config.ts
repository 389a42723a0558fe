import type { SampleAppConfig } from './app.module.js';
import { userSessionOptionsFromEnv } from './user-session.env.js';
import { securitySessionOptionsFromEnv, trustProxyFromEnv } from './security.env.js';

/** The sample app's session settings, from the environment (`SESSION_*`, `REDIS_*`; unset = the module's default). */
export interface SessionEnvConfig {
  readonly config: SampleAppConfig;
  /** Where sessions live, for the start-up log line; never contains a password. */
  readonly description: string;
}

/**
 * - `SESSION_BACKEND=memory|redis|postgres` (default memory).
 * - With postgres: `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres) and
 *   `SESSION_PREFIX` (namespace prefix, default `sess:`); the schema is migrated at boot.
 * - With redis: `REDIS_URL` (default redis://127.0.0.1:6379), or `REDIS_CLUSTER_NODES` (comma-
 *   separated root node URLs of a Redis Cluster), and `SESSION_PREFIX` (key prefix, default
 *   `sess:`), so several apps or test runs can share one Redis.
 * - `SESSION_GC=manual`: no probabilistic and no scheduled garbage collection, only
 *   `POST /admin/gc` (e.g. one cron job for a whole fleet of instances).
 * - `SESSION_GC_MAX_PER_RUN` (n >= 1): `garbageCollection.maximumPerRun`, the sessions one run
 *   removes at most (also what `sessions gc` of the CLI does per run).
 * - `SESSION_ABSOLUTE_TIMEOUT`, `SESSION_MAX_PER_USER`: see user-session.env.ts.
 * - `SESSION_INACTIVITY_TIMEOUT`, `SESSION_COOKIE_NAME`, `SESSION_ID_HEADER`, `TRUST_PROXY`: see security.env.ts.
 * @throws Error for an unknown SESSION_BACKEND or SESSION_GC, or a SESSION_GC_MAX_PER_RUN that is not a whole number >= 1.
 */
export function sessionConfigFromEnv(env: NodeJS.ProcessEnv): SessionEnvConfig {
  const gc = env.SESSION_GC ?? 'auto';
  if (gc !== 'auto' && gc !== 'manual') throw new Error(`SESSION_GC must be auto or manual, not ${JSON.stringify(gc)}`);
  const perRun = gcMaximumPerRunFromEnv(env);
  const garbageCollection = {
    ...(gc === 'manual' ? { probability: 0, cron: false as const } : {}),
    ...(perRun !== undefined ? { maximumPerRun: perRun } : {}),
  };
  const session = {
    ...(Object.keys(garbageCollection).length > 0 ? { garbageCollection } : {}),
    ...userSessionOptionsFromEnv(env),
    ...securitySessionOptionsFromEnv(env),
  };
  const trustProxy = trustProxyFromEnv(env);
  const backend = env.SESSION_BACKEND ?? 'memory';
  if (backend === 'memory') return { config: { session, trustProxy }, description: 'in memory' };
  if (backend === 'postgres') {
    const connectionString = env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
    const prefix = env.SESSION_PREFIX || 'sess:';
    return {
      config: { session, trustProxy, postgres: { connectionString, prefix } },
      description: `in PostgreSQL at ${redactUrl(connectionString)} (namespace prefix ${JSON.stringify(prefix)})`,
    };
  }
  if (backend !== 'redis') throw new Error(`SESSION_BACKEND must be memory, redis or postgres, not ${JSON.stringify(backend)}`);
  const prefix = env.SESSION_PREFIX || 'sess:';
  const clusterNodes = (env.REDIS_CLUSTER_NODES ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  if (clusterNodes.length > 0) {
    return {
      config: {
        session,
        trustProxy,
        redis: { cluster: { rootNodes: clusterNodes.map((url) => ({ url })) }, prefix },
        redisClient: redisClientFromEnv(env),
      },
      description: `in a Redis Cluster at ${clusterNodes.map(redactUrl).join(', ')} (key prefix ${JSON.stringify(prefix)})`,
    };
  }
  const url = env.REDIS_URL || 'redis://127.0.0.1:6379';
  return {
    config: { session, trustProxy, redis: { url, prefix }, redisClient: redisClientFromEnv(env) },
    description: `in Redis at ${redactUrl(url)} (key prefix ${JSON.stringify(prefix)})`,
  };
}

/** `SESSION_GC_MAX_PER_RUN`: a whole number >= 1, or unset (the module's default). */
function gcMaximumPerRunFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.SESSION_GC_MAX_PER_RUN;
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new Error(`SESSION_GC_MAX_PER_RUN must be a whole number >= 1, not ${JSON.stringify(raw)}`);
  }
  return value;
}

/** The URL with its password replaced by `***`, for logs. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable REDIS_URL)';
  }
}

/** `REDIS_CLIENT=node-redis|ioredis` (default node-redis): which client library talks to Redis. */
export function redisClientFromEnv(env: NodeJS.ProcessEnv): 'node-redis' | 'ioredis' {
  const client = env.REDIS_CLIENT || 'node-redis';
  if (client !== 'node-redis' && client !== 'ioredis') {
    throw new Error(`REDIS_CLIENT must be node-redis or ioredis, not ${JSON.stringify(client)}`);
  }
  return client;
}
