import { describe } from '@jest/globals';
import { RedisBackend } from '../../lib/redis/redis.backend.js';
import { redisSessionStoreFixture } from '../support/redis-session-store.fixture.js';
import { unlockedCommitContract } from '../contract/unlocked-commit.contract.js';

/*
 * Issue 11, "a commit is one atomic, conditional write per storage id": a commit that holds no
 * lock is one WRITE script that checks the lock is free and draws a fresh fence from it. These
 * are the properties the shortcut must keep from "acquire, write, release".
 */
describe('Unlocked commits on Redis (WriteGuard.unlocked, checked in the write script)', () => {
  const redis = redisSessionStoreFixture('unlocked', { waitTimeout: 5000, ttl: 5000 });

  unlockedCommitContract(
    'Redis',
    () => redis.stores,
    () => redis.store,
    () => new RedisBackend({ client: redis.stores.client, prefix: `${redis.prefix}bare:` }),
    true,
    true,
  );
});
