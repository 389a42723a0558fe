// Public API of the Redis engine ('nest-session/redis'); needs the optional peer `redis`.
export {
  RedisBackend,
  type RedisBackendOptions,
  type RedisCommandClient,
  type RedisClusterCommandClient,
} from './redis.backend.js';
export {
  createRedisSessionStores,
  type RedisSessionStores,
  type RedisSessionStoresOptions,
  type RedisSessionClusterClient,
} from './redis-session.factory.js';
export {
  RedisLocker,
  type RedisLockerOptions,
  type RedisLockerClient,
  type RedisLockerClusterClient,
  type RedisScriptOptions,
  type RedisShardedListener,
} from './redis.locker.js';
