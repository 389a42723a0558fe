import { createClient } from 'redis';
import { ConnectRedisLoader, type LegacySessionOptions } from 'nest-session';

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
}

/**
 * `LEGACY_SESSION_SECRET` (comma-separated, newest first) turns the takeover on;
 * `LEGACY_SESSION_COOKIE` (default `connect.sid`), `LEGACY_SESSION_PREFIX` (default `sess:`);
 * the legacy sessions are read from `REDIS_URL` (default redis://127.0.0.1:6379).
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
  };
}

/** A loader that owns its client: `SessionModule` closes it on shutdown. */
class OwnedClientLoader extends ConnectRedisLoader {
  constructor(
    private readonly owned: ReturnType<typeof createClient>,
    prefix: string | undefined,
  ) {
    super({ client: owned, prefix });
  }

  async close(): Promise<void> {
    await this.owned.close().catch(() => undefined);
  }
}

/** The `legacy` SessionModule option: connects a node-redis client of its own to the legacy Redis. */
export async function legacySessionOption(config: LegacySessionConfig): Promise<LegacySessionOptions> {
  const client = createClient({
    url: config.redisUrl ?? 'redis://127.0.0.1:6379',
    disableOfflineQueue: true,
    socket: { connectTimeout: 5000, reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 2000) },
  });
  client.on('error', () => {
    /* a failed GETDEL reports it; the request goes on without a session */
  });
  await client.connect();
  return {
    secrets: config.secrets,
    cookie: config.cookieName === undefined ? undefined : { name: config.cookieName },
    loader: new OwnedClientLoader(client, config.prefix),
  };
}
