import type { SampleAppConfig } from './app.module.js';

/** The sample app's session settings, from the environment (`SESSION_*`, `REDIS_*`; unset = the module's default). */
export interface SessionEnvConfig {
  readonly config: SampleAppConfig;
  /** Where sessions live, for the start-up log line; never contains a password. */
  readonly description: string;
}

/**
 * - `SESSION_BACKEND=memory|redis` (default memory).
 * - With redis: `REDIS_URL` (default redis://127.0.0.1:6379), or `REDIS_CLUSTER_NODES` (comma-
 *   separated root node URLs of a Redis Cluster), and `SESSION_PREFIX` (key prefix, default
 *   `sess:`), so several apps or test runs can share one Redis.
 * - `SESSION_GC=manual`: no probabilistic and no scheduled garbage collection, only
 *   `POST /admin/gc` (e.g. one cron job for a whole fleet of instances).
 * @throws Error for an unknown SESSION_BACKEND or SESSION_GC.
 */
export function sessionConfigFromEnv(env: NodeJS.ProcessEnv): SessionEnvConfig {
  const gc = env.SESSION_GC ?? 'auto';
  if (gc !== 'auto' && gc !== 'manual') throw new Error(`SESSION_GC must be auto or manual, not ${JSON.stringify(gc)}`);
  const session = gc === 'manual' ? { garbageCollection: { probability: 0, cron: false as const } } : {};
  const backend = env.SESSION_BACKEND ?? 'memory';
  if (backend === 'memory') return { config: { session }, description: 'in memory' };
  if (backend !== 'redis') throw new Error(`SESSION_BACKEND must be memory or redis, not ${JSON.stringify(backend)}`);
  const prefix = env.SESSION_PREFIX || 'sess:';
  const clusterNodes = (env.REDIS_CLUSTER_NODES ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  if (clusterNodes.length > 0) {
    return {
      config: { session, redis: { cluster: { rootNodes: clusterNodes.map((url) => ({ url })) }, prefix } },
      description: `in a Redis Cluster at ${clusterNodes.map(redactUrl).join(', ')} (key prefix ${JSON.stringify(prefix)})`,
    };
  }
  const url = env.REDIS_URL || 'redis://127.0.0.1:6379';
  return {
    config: { session, redis: { url, prefix } },
    description: `in Redis at ${redactUrl(url)} (key prefix ${JSON.stringify(prefix)})`,
  };
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
