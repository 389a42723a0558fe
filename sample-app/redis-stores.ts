import { Cluster, Redis } from 'ioredis';
import type { SessionModuleOptions } from 'nest-session';
import { createRedisSessionStores, type RedisSessionStoresOptions } from 'nest-session/redis';

/** Which Redis client library the sample app uses (`REDIS_CLIENT`). */
export type RedisClientName = 'node-redis' | 'ioredis';

/**
 * The Redis stores of the sample app: node-redis (the default) is created by
 * `createRedisSessionStores` from `url` or `cluster`; with `ioredis` the app creates the client
 * itself, as an app that already has one would, and hands it over as `client`. A client the app
 * created is quit after the locker has closed on shutdown.
 */
export async function redisStores(
  options: RedisSessionStoresOptions,
  client: RedisClientName = 'node-redis',
): Promise<SessionModuleOptions> {
  if (client === 'node-redis') {
    const stores = await createRedisSessionStores(options);
    return { metadataBackend: stores.metadataBackend, storageBackend: stores.storageBackend, locker: stores.locker };
  }
  const { url, cluster, clientOptions: _ignored, ...rest } = options;
  // The factory's connection settings, for the client the app creates here.
  const maxDelay = options.maxReconnectDelay ?? 2000;
  const retryStrategy = (times: number): number => Math.min(maxDelay, 50 * 2 ** Math.min(times, 16));
  const connectTimeout = options.connectTimeout ?? 5000;
  const io =
    cluster !== undefined
      ? new Cluster(
          cluster.rootNodes.map((node) => {
            const parsed = new URL(node.url ?? 'redis://127.0.0.1:6379');
            return { host: parsed.hostname, port: Number(parsed.port || 6379) };
          }),
          {
            shardedSubscribers: true,
            lazyConnect: true,
            enableOfflineQueue: false,
            clusterRetryStrategy: retryStrategy,
            redisOptions: { connectTimeout, maxRetriesPerRequest: 1 },
          },
        )
      : new Redis(url ?? 'redis://127.0.0.1:6379', {
          lazyConnect: true,
          enableOfflineQueue: false,
          maxRetriesPerRequest: 1,
          connectTimeout,
          retryStrategy,
        });
  io.on('error', () => undefined); // failures reach the requests that use Redis (503)
  await io.connect();
  const stores = await createRedisSessionStores({ ...rest, client: io });
  const locker = stores.locker;
  // The locker closes last on shutdown (SessionModule closes the backends and it in parallel;
  // only the locker has waiters to finish): the client goes after it.
  const closeLocker = locker.close.bind(locker);
  locker.close = async () => {
    await closeLocker();
    await io.quit().catch(() => io.disconnect());
  };
  return { metadataBackend: stores.metadataBackend, storageBackend: stores.storageBackend, locker };
}
