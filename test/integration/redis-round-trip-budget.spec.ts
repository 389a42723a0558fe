import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { createRedisSessionStores, type RedisSessionStores } from '../../lib/redis/redis-session.factory.js';
import type { RedisLockerClient } from '../../lib/redis/redis.locker.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { tapCommands } from '../support/redis-command-tap.js';
import { connectTestRedis, TEST_REDIS_URL, uniquePrefix, type TestRedisClient, deleteKeysMatching } from '../support/redis.js';

/**
 * Counts round trips as a client sees them: a command starts a new round trip when a reply
 * has arrived since the current one began (its sender had to wait for Redis); commands sent
 * before any reply of the current round trip came back ride with it (node-redis pipelines
 * them). So this is the depth of the request's chain of waits on Redis, what latency costs.
 */
class RoundTripCounter {
  roundTrips = 0;
  commands = 0;
  private replied = true;

  wrap(client: RedisLockerClient): RedisLockerClient {
    const gate = (send: () => Promise<unknown>): Promise<unknown> => {
      if (this.replied) {
        this.roundTrips++;
        this.replied = false;
      }
      this.commands++;
      return send().finally(() => {
        this.replied = true;
      });
    };
    return tapCommands(client, gate);
  }

  async count(work: () => Promise<unknown>): Promise<number> {
    this.roundTrips = 0;
    this.commands = 0;
    this.replied = true;
    await work();
    return this.roundTrips;
  }
}

/*
 * Issue 11's budget of round trips per request on Redis (the session's own work, no HTTP),
 * measured at the client. Every script is used once before (SCRIPT LOAD rides with first use).
 */
describe('Round trips per request on Redis (createRedisSessionStores)', () => {
  const prefix = uniquePrefix('budget');
  const counter = new RoundTripCounter();
  let raw: TestRedisClient;
  let stores: RedisSessionStores<RedisLockerClient>;
  let store: SessionStore;

  beforeAll(async () => {
    raw = await connectTestRedis(TEST_REDIS_URL);
    stores = await createRedisSessionStores({ client: counter.wrap(raw), prefix });
    const { metadataBackend, storageBackend, locker } = stores;
    store = new SessionStore(
      resolveSessionOptions({
        metadataBackend,
        storageBackend,
        locker,
        updateGracePeriod: 60,
        garbageCollection: { probability: 0, cron: false },
      }),
    );
    // Warm every script up.
    const id = await create({ a: 1 });
    const s = await resume(id);
    await s.getAllData();
    await s.putData('a', 2);
    s.bindToUser('warm');
    await s.commit();
  });

  afterAll(async () => {
    await deleteKeysMatching(raw, `${prefix}*`);
    await stores.close();
    await raw.close();
  });

  async function create(data: Record<string, unknown>): Promise<string> {
    const s = new Session(store, { cookieIds: [], cookieName: 'sid' });
    s.start();
    for (const [key, value] of Object.entries(data)) await s.putData(key, value);
    await s.commit();
    return s.getId();
  }

  async function resume(id: string): Promise<Session> {
    const s = new Session(store, { cookieIds: [id], cookieName: 'sid' });
    await s.resume();
    expect(s.isStarted()).toBe(true);
    return s;
  }

  it('resume and read one key: 2', async () => {
    const id = await create({ a: 1, b: 2 });
    expect(
      await counter.count(async () => {
        const s = await resume(id);
        expect(await s.getData('a')).toBe(1);
        await s.commit();
      }),
    ).toBe(2);
  });

  it('an unchanged request within the grace period writes nothing: 1 (the resume)', async () => {
    const id = await create({ a: 1 });
    expect(await counter.count(async () => (await resume(id)).commit())).toBe(1);
  });

  it('commit of a changed key to a stored session: 1 (after the resume)', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    await s.putData('a', 2);
    expect(await counter.count(() => s.commit())).toBe(1);
  });

  it('commit of a key the request never read (maxKeysPerSession is counted in the write script): 1', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    expect(await counter.count(() => s.putData('fresh', 1))).toBe(0);
    expect(await counter.count(() => s.commit())).toBe(1);
  });

  it('a new session with one key: 1 round trip, 1 command (storage and metadata writes coalesced, index upkeep inside)', async () => {
    expect(await counter.count(() => create({ a: 1 }))).toBe(1);
    expect(counter.commands).toBe(1);
  });

  it('commit of a changed key to a stored session sends 1 command', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    await s.putData('a', 2);
    await counter.count(() => s.commit());
    expect(counter.commands).toBe(1);
  });

  it('login of a stored session (new id, new storage id): 4 before the response, then the lock release — the target is 2 (see README)', async () => {
    const id = await create({ a: 1, b: 2 });
    const s = await resume(id);
    s.bindToUser('alice');
    // 1 lock; 2 fresh metadata + guard check + copy of the old storage; 3 old id removed + new
    // storage (one script call, the index clean-up inside); 4 new metadata + old storage
    // flushed; 5 the release, sent as the commit returns and not waited for.
    expect(await counter.count(() => s.commit())).toBe(5);
    // The lock; the metadata GET, then the guard check and the copy as one script call; two
    // coalesced write calls; the release.
    expect(counter.commands).toBe(6);
    expect(await (await resume(s.getId())).getAllData()).toEqual({ a: 1, b: 2 });
  });
});
