// Public API of the Redis engine ('nest-session/redis'); needs the optional peer `redis` or `ioredis`.
export { RedisBackend, type RedisBackendOptions } from './redis.backend.js';
export {
  createRedisSessionStores,
  type RedisSessionStores,
  type RedisSessionStoresOptions,
  type RedisSessionClusterClient,
  type RedisSessionClientOptions,
  type RedisSessionClusterOptions,
  type RedisSessionClusterNodeOptions,
  type RedisSessionNodeAddress,
  type RedisSessionSocketOptions,
} from './redis-session.factory.js';
export { RedisLocker, type RedisLockerOptions } from './redis.locker.js';
export type {
  RedisCommandClient,
  RedisClusterCommandClient,
  RedisLockerClient,
  RedisLockerClusterClient,
  RedisScriptOptions,
  RedisShardedListener,
} from './redis-client.adapter.js';
export { fromIoRedis, type IoRedisClient, type IoRedisClusterClient } from './ioredis-client.adapter.js';
