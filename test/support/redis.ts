import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';

/** The Redis the tests use: `REDIS_URL`, default the local one at 127.0.0.1:6379. */
export const TEST_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export type TestRedisClient = ReturnType<typeof createClient>;

/**
 * A connected node-redis client for tests. Tests that need Redis fail (never skip) when it is
 * missing, locally and in CI: the message says how to start it. Close it in `afterAll`.
 */
export async function connectTestRedis(url: string = TEST_REDIS_URL): Promise<TestRedisClient> {
  const client = createClient({
    url,
    socket: { connectTimeout: 2000, reconnectStrategy: false },
  });
  client.on('error', () => {
    /* reported through the failing command instead */
  });
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    client.destroy();
    throw new Error(
      `These tests need Redis at ${url} and it does not answer (${(error as Error).message}). ` +
        `Start it: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no`,
    );
  }
  return client;
}

/** A key prefix no other test file or run shares, so suites never see each other's keys. */
export function uniquePrefix(name: string): string {
  return `test:${name}:${randomBytes(4).toString('hex')}:`;
}

/** Deletes every key matching `pattern` (SCAN, then one DEL); answers how many there were. */
export async function deleteKeysMatching(client: TestRedisClient, pattern: string): Promise<number> {
  const keys: string[] = [];
  for await (const batch of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) keys.push(...batch);
  if (keys.length > 0) await client.del(keys);
  return keys.length;
}
