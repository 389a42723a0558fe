import { describe, expect, it } from '@jest/globals';
import { SessionLimitExceededException } from '../../lib/errors/session-limit-exceeded.exception.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { RedisBackend } from '../../lib/redis/redis.backend.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { redisSessionStoreFixture } from '../support/redis-session-store.fixture.js';
import { created, resumed } from '../support/session-requests.js';
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
  );

  it('maxKeysPerSession is enforced inside the write script (no read first): 413, nothing written, bags not counted against it', async () => {
    const { metadataBackend, storageBackend, locker } = redis.stores;
    const capped = new SessionStore(resolveSessionOptions({ metadataBackend, storageBackend, locker, maxKeysPerSession: 2 }));
    expect(capped.capsKeysInWrite).toBe(true);
    const id = await created(capped, { a: 1 });
    const second = await resumed(capped, id);
    await second.putData('b', 2); // no read of the keys: the script counts them
    await second.commit();
    const third = await resumed(capped, id);
    await third.putData('a', 10); // replacing a held key is always allowed
    await third.putData('c', 3);
    const error = await third.commit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionLimitExceededException);
    expect((error as SessionLimitExceededException).getStatus()).toBe(413);
    expect(await (await resumed(capped, id)).getAllData()).toEqual({ a: 1, b: 2 });
    const fourth = await resumed(capped, id);
    await fourth.removeData('b');
    await fourth.putData('c', 3); // a removal in the same commit makes room
    await fourth.commit();
    expect(await (await resumed(capped, id)).getAllData()).toEqual({ a: 1, c: 3 });
  });
});
