import { MemoryBackend, type SessionLocker, type TaggableBackend } from 'nest-session';
import { createRedisSessionStores } from 'nest-session/redis';
import { TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from './redis.js';

/** Where an e2e suite keeps its sessions. */
export type SessionBackendName = 'memory' | 'redis';

/** Stores for `SessionModule` options; SessionModule closes them (and an owned Redis client) on app.close(). */
export interface TestSessionStores {
  readonly metadataBackend: TaggableBackend;
  readonly storageBackend: TaggableBackend;
  /** Undefined: SessionModule's default MemoryLocker. */
  readonly locker?: SessionLocker;
  /** How many entries the storage cache holds (data entries and write guards). */
  storageEntries(): Promise<number>;
}

/**
 * Fresh, empty stores of the named kind. Redis: the test Redis (`REDIS_URL`, fails when it is
 * missing), a prefix no other suite uses, a client of its own that app.close() closes.
 */
export async function createTestSessionStores(backend: SessionBackendName): Promise<TestSessionStores> {
  if (backend === 'memory') {
    const metadataBackend = new MemoryBackend();
    const storageBackend = new MemoryBackend();
    return { metadataBackend, storageBackend, storageEntries: async () => storageBackend.stats().entries };
  }
  const prefix = uniquePrefix('e2e');
  let stores;
  try {
    stores = await createRedisSessionStores({ url: TEST_REDIS_URL, prefix });
  } catch (error) {
    throw new Error(
      `These tests need Redis at ${TEST_REDIS_URL} (${(error as Error).message}). ` +
        `Start it: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no`,
    );
  }
  const { metadataBackend, storageBackend, locker } = stores;
  const client = stores.client as TestRedisClient; // created from `url`: a node-redis client
  return {
    metadataBackend,
    storageBackend,
    locker,
    storageEntries: async () => {
      let count = 0;
      for await (const keys of client.scanIterator({ MATCH: `${storageBackend.prefix}{*`, COUNT: 1000 })) {
        count += keys.map(String).filter((key) => !key.endsWith('#tag') && !key.endsWith('{}#expiry')).length;
      }
      return count;
    },
  };
}

/** Every adapter on every backend, for `describe.each`: [adapter, backend] pairs. */
export function onEveryBackend<A extends string>(adapters: readonly A[]): Array<[A, SessionBackendName]> {
  return (['memory', 'redis'] as const).flatMap((backend) =>
    adapters.map((adapter): [A, SessionBackendName] => [adapter, backend]),
  );
}
