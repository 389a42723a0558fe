import { afterAll, beforeAll } from '@jest/globals';
import type { SessionLockOptions, SessionModuleOptions } from '../../lib/session/session-module.options.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { createRedisSessionStores, type RedisSessionStores } from '../../lib/redis/redis-session.factory.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { deleteKeysMatching, TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from './redis.js';

/** What `redisSessionStoreFixture` sets up: filled in `beforeAll`. */
export interface RedisSessionStoreFixture {
  readonly prefix: string;
  stores: RedisSessionStores<TestRedisClient>;
  store: SessionStore;
}

/**
 * A SessionStore on `createRedisSessionStores` under a prefix of its own, created in the suite's
 * `beforeAll`; `afterAll` deletes its keys and closes the stores. Created from `url`, so
 * `stores.client` is a node-redis client the suite may use for SCAN and DEL. `options`: further
 * session options (the stores and `lock` are the fixture's).
 */
export function redisSessionStoreFixture(
  name: string,
  lock: Required<SessionLockOptions>,
  options: Omit<SessionModuleOptions, 'metadataBackend' | 'storageBackend' | 'locker' | 'lock'> = {},
): RedisSessionStoreFixture {
  const fixture = { prefix: uniquePrefix(name) } as RedisSessionStoreFixture;
  beforeAll(async () => {
    fixture.stores = (await createRedisSessionStores({
      url: TEST_REDIS_URL,
      prefix: fixture.prefix,
    })) as RedisSessionStores<TestRedisClient>;
    const { metadataBackend, storageBackend, locker } = fixture.stores;
    fixture.store = new SessionStore(resolveSessionOptions({ ...options, metadataBackend, storageBackend, locker, lock }));
  });
  afterAll(async () => {
    await deleteKeysMatching(fixture.stores.client, `${fixture.prefix}*`);
    await fixture.stores.close();
  });
  return fixture;
}
