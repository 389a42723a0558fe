import { describe, expect, it } from '@jest/globals';
import { SessionLimitExceededException } from '../../lib/errors/session-limit-exceeded.exception.js';
import { Session } from '../../lib/session/session.js';
import { redisSessionStoreFixture } from '../support/redis-session-store.fixture.js';

/*
 * A login's storage move on a standalone Redis is one chained script call: the fresh storage
 * first, the old id's removal only if it was written. So a fresh storage the key cap refuses
 * leaves the session as it was (same id, same data), instead of logging the user out.
 */
describe('Storage move on a standalone Redis: one chain, all or nothing', () => {
  const redis = redisSessionStoreFixture('move', { waitTimeout: 2000, ttl: 5000 }, { maxKeysPerSession: 2 });

  /** A session of the fixture's store with these cookie ids. */
  const session = (...cookieIds: string[]) => new Session(redis.store, { cookieIds, cookieName: 'sid' });

  async function resume(id: string): Promise<Session> {
    const s = session(id);
    await s.resume();
    return s;
  }

  it('a login whose fresh storage would exceed maxKeysPerSession writes nothing: the old id and its data stay', async () => {
    const s = session();
    s.start();
    await s.putData('a', 1);
    await s.putData('b', 2);
    await s.commit();
    const id = s.getId();

    const login = await resume(id);
    login.bindToUser('dave');
    await login.putData('c', 3);
    await expect(login.commit()).rejects.toBeInstanceOf(SessionLimitExceededException);

    const again = await resume(id);
    expect(again.isStarted()).toBe(true);
    expect(again.getUserId()).toBeUndefined();
    expect(await again.getAllData()).toEqual({ a: 1, b: 2 });
    // The renewed id was never published.
    expect(login.getId()).not.toBe(id);
    expect((await resume(login.getId())).isStarted()).toBe(false);
  });

  it('a login that stays within the cap moves the data: the old id is gone, the new one has everything', async () => {
    const s = session();
    s.start();
    await s.putData('a', 1);
    await s.commit();
    const id = s.getId();
    const login = await resume(id);
    login.bindToUser('erin');
    await login.putData('b', 2);
    await login.commit();
    expect((await resume(id)).isStarted()).toBe(false);
    const moved = await resume(login.getId());
    expect(moved.getUserId()).toBe('erin');
    expect(await moved.getAllData()).toEqual({ a: 1, b: 2 });
  });
});
