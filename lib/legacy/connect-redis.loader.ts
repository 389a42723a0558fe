import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import type { LegacySessionData, LegacySessionLoader } from './legacy-session.loader.js';

/**
 * A Redis client the loader can use: node-redis 5 or 6 (`createClient()` / `createCluster()`,
 * which have `getDel`) or ioredis 5 or 6 (`new Redis()` / `new Redis.Cluster()`, which have `getdel`).
 * Only GETDEL is sent (Redis >= 6.2), so no client library is imported here.
 */
export type ConnectRedisClient = { getDel(key: string): Promise<unknown> } | { getdel(key: string): Promise<unknown> };

/** connect-redis' `serializer` option: `parse` is all a takeover needs. */
export interface ConnectRedisSerializer {
  parse(text: string): unknown;
}

/** Options of {@link ConnectRedisLoader}. */
export interface ConnectRedisLoaderOptions {
  /** A connected Redis client of the Redis connect-redis writes to; owned by you (never closed here). */
  client: ConnectRedisClient;
  /** connect-redis' `prefix`: entries are `<prefix><sid>`. @default 'sess:' */
  prefix?: string;
  /** connect-redis' `serializer`. @default JSON */
  serializer?: ConnectRedisSerializer;
}

/**
 * Reads and removes connect-redis entries (`<prefix><sid>`, a JSON object with a `cookie`
 * field) in one GETDEL: of two parallel takeovers of one id exactly one gets the data.
 */
export class ConnectRedisLoader implements LegacySessionLoader {
  private readonly getDel: (key: string) => Promise<unknown>;
  private readonly prefix: string;
  private readonly serializer: ConnectRedisSerializer;

  /** @throws InvalidOptionException for a client that is neither node-redis nor ioredis, or a bad prefix. */
  constructor(options: ConnectRedisLoaderOptions) {
    const client = options.client as Partial<Record<'getDel' | 'getdel', (key: string) => Promise<unknown>>> | null;
    const method = typeof client?.getDel === 'function' ? 'getDel' : typeof client?.getdel === 'function' ? 'getdel' : undefined;
    if (client === null || method === undefined) {
      throw InvalidOptionException.create(
        'legacy.loader',
        'needs a Redis client of node-redis 5 or 6 (createClient/createCluster) or ioredis 5 or 6 (new Redis/new Redis.Cluster)',
      );
    }
    this.getDel = (key) => client[method]!(key);
    this.prefix = options.prefix ?? 'sess:';
    if (typeof this.prefix !== 'string') throw InvalidOptionException.create('legacy prefix', 'must be a string');
    this.serializer = options.serializer ?? JSON;
  }

  async take(sid: string): Promise<LegacySessionData | undefined> {
    const raw = await this.getDel(this.prefix + sid);
    const text = typeof raw === 'string' ? raw : Buffer.isBuffer(raw) ? raw.toString('utf8') : undefined;
    if (text === undefined) return undefined; // null: no such entry
    let data: unknown;
    try {
      data = this.serializer.parse(text);
    } catch {
      return undefined; // a corrupt entry is no session (it is gone now, as it would be after a logout)
    }
    // connect-redis only ever stores an object with a `cookie` field; anything else is not a session.
    if (typeof data !== 'object' || data === null || Array.isArray(data) || !('cookie' in data)) return undefined;
    return data;
  }
}
