import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { ConnectRedisLoader, type LegacySessionOptions } from 'nest-session';
import type { RedisClientName } from './redis-stores.js';
import { redisClientFromEnv } from './session-env.config.js';

/** The sample app's express-session takeover settings (`LEGACY_SESSION_*`). */
export interface LegacySessionConfig {
  /** express-session's secrets, newest first. */
  readonly secrets: readonly string[];
  /** express-session's cookie name. @default 'connect.sid' */
  readonly cookieName?: string;
  /** connect-redis' key prefix. @default 'sess:' */
  readonly prefix?: string;
  /** The Redis connect-redis writes to. @default 'redis://127.0.0.1:6379' */
  readonly redisUrl?: string;
  /** The client library that reads it (`REDIS_CLIENT`). @default 'node-redis' */
  readonly redisClient?: RedisClientName;
  /** `legacy.graceSeconds` (not an environment setting; tests shorten it). @default 10 */
  readonly graceSeconds?: number;
}

/**
 * `LEGACY_SESSION_SECRET` (comma-separated, newest first) turns the takeover on;
 * `LEGACY_SESSION_COOKIE` (default `connect.sid`), `LEGACY_SESSION_PREFIX` (default `sess:`);
 * the legacy sessions are read from `REDIS_URL` (default redis://127.0.0.1:6379) with the
 * `REDIS_CLIENT` library (node-redis or ioredis, default node-redis).
 */
export function legacyConfigFromEnv(env: NodeJS.ProcessEnv): LegacySessionConfig | undefined {
  const secrets = (env.LEGACY_SESSION_SECRET ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (secrets.length === 0) return undefined;
  return {
    secrets,
    cookieName: env.LEGACY_SESSION_COOKIE || undefined,
    prefix: env.LEGACY_SESSION_PREFIX || undefined,
    redisUrl: env.REDIS_URL || undefined,
    redisClient: env.REDIS_CLIENT ? redisClientFromEnv(env) : undefined,
  };
}

/** A loader that owns its client: `SessionModule` closes it on shutdown. */
class OwnedClientLoader extends ConnectRedisLoader {
  constructor(
    private readonly closeClient: () => Promise<unknown>,
    client: ConstructorParameters<typeof ConnectRedisLoader>[0]['client'],
    prefix: string | undefined,
  ) {
    super({ client, prefix });
  }

  async close(): Promise<void> {
    await this.closeClient().catch(() => undefined);
  }
}

/** The `legacy` SessionModule option: connects a client of its own (`redisClient`) to the legacy Redis. */
export async function legacySessionOption(config: LegacySessionConfig): Promise<LegacySessionOptions> {
  const url = config.redisUrl ?? 'redis://127.0.0.1:6379';
  let loader: OwnedClientLoader;
  if (config.redisClient === 'ioredis') {
    const io = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 5000,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 16), 2000),
    });
    io.on('error', () => {
      /* a failed GETDEL reports it; the request goes on without a session */
    });
    await io.connect();
    loader = new OwnedClientLoader(() => io.quit(), io, config.prefix);
  } else {
    const client = createClient({
      url,
      disableOfflineQueue: true,
      socket: { connectTimeout: 5000, reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 2000) },
    });
    client.on('error', () => {
      /* a failed GETDEL reports it; the request goes on without a session */
    });
    await client.connect();
    loader = new OwnedClientLoader(() => client.close(), client, config.prefix);
  }
  return {
    secrets: config.secrets,
    cookie: config.cookieName === undefined ? undefined : { name: config.cookieName },
    loader,
    ...(config.graceSeconds === undefined ? {} : { graceSeconds: config.graceSeconds }),
  };
}
