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
    // And the locked paths' scripts (the lock's, the storage read under it).
    const w = await resume(s.getId());
    await w.open();
    await w.putData('a', 3);
    await w.save();
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

  it('login of a stored session nobody holds the lock of (new id, new storage id): 1 round trip, 1 command, no lock', async () => {
    const id = await create({ a: 1, b: 2 });
    const s = await resume(id);
    s.bindToUser('alice');
    // One function call: the old storage's lock checked free (a fresh fence drawn from it), the
    // metadata checked unchanged since the resume, the new storage created with the old one's
    // entries copied server-side, the old id removed, the new metadata, the old storage flushed.
    expect(await counter.count(() => s.commit())).toBe(1);
    expect(counter.commands).toBe(1);
    expect(await (await resume(s.getId())).getAllData()).toEqual({ a: 1, b: 2 });
    expect((await resume(s.getId())).getUserId()).toBe('alice');
    const old = new Session(store, { cookieIds: [id], cookieName: 'sid' });
    await old.resume();
    expect(old.isStarted()).toBe(false);
  });

  it('a login carries over what another request wrote after this one resumed (the copy is made server-side, in the same call)', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    const other = await resume(id);
    await other.putData('b', 2);
    await other.commit();
    s.bindToUser('dave');
    await s.putData('c', 3);
    expect(await counter.count(() => s.commit())).toBe(1);
    expect(await (await resume(s.getId())).getAllData()).toEqual({ a: 1, b: 2, c: 3 });
  });

  it('a login whose metadata another request rewrote after this one resumed moves under the lock instead, and keeps that change', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    const other = await resume(id);
    await other.addTag('green');
    await other.commit();
    s.bindToUser('erin');
    // 1 the refused call (nothing but a fresh fence on the old guard written), then the locked
    // move: 2 before the response, then the release.
    expect(await counter.count(() => s.commit())).toBe(4);
    const fresh = await resume(s.getId());
    expect(fresh.getTags()).toHaveLength(2);
    expect(fresh.getTags()).toEqual(expect.arrayContaining(['green', expect.stringMatching(/^user-/)]));
    expect(fresh.getUserId()).toBe('erin');
    expect(await fresh.getAllData()).toEqual({ a: 1 });
  });

  it('a commit that writes metadata (a tag) while nobody holds the lock: 1 round trip, 1 command', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    await s.addTag('blue');
    // One call: the metadata unchanged since the resume, the guarded storage write (lock free, a
    // fresh fence, the guard's new lifetime), then the conditional metadata.
    expect(await counter.count(() => s.commit())).toBe(1);
    expect(counter.commands).toBe(1);
    expect((await resume(id)).getTags()).toEqual(['blue']);
  });

  it('a tag commit whose metadata another request rewrote after this one resumed commits under the lock instead, and keeps both tags', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    const other = await resume(id);
    await other.addTag('green');
    await other.commit();
    await s.addTag('blue');
    await s.putData('a', 2);
    // 1 the refused call (nothing written), then the lock with the metadata re-read behind it,
    // the chained write, and the release.
    expect(await counter.count(() => s.commit())).toBe(4);
    const fresh = await resume(id);
    expect(fresh.getTags().sort()).toEqual(['blue', 'green']);
    expect(await fresh.getAllData()).toEqual({ a: 2 });
  });

  it('a metadata commit while another request holds the lock waits for it, and carries over what the holder wrote to the metadata', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    const holder = await resume(id);
    await holder.open();
    await s.addTag('blue');
    const commit = s.commit();
    await holder.addTag('green');
    await holder.save();
    await commit;
    expect((await resume(id)).getTags().sort()).toEqual(['blue', 'green']);
  });

  it('a renewal (renewId) while nobody holds the lock: 1 round trip, 1 command', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    s.renewId();
    expect(await counter.count(() => s.commit())).toBe(1);
    expect(counter.commands).toBe(1);
    expect(await (await resume(s.getId())).getAllData()).toEqual({ a: 1 });
    const old = new Session(store, { cookieIds: [id], cookieName: 'sid' });
    await old.resume();
    expect(old.isStarted()).toBe(false);
  });

  it('a login whose lock is held by another request waits for it, then reads again under the lock (nothing it read early is used)', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    const other = await resume(id);
    await other.open();
    s.bindToUser('bob');
    const login = s.commit();
    // The holder writes while the login waits: the login must carry this value over, not what it read beside its ACQUIRE.
    await other.putData('a', 2);
    await other.save();
    await login;
    expect(await (await resume(s.getId())).getAllData()).toEqual({ a: 2 });
  });

  it('a login right after SCRIPT FLUSH (every script re-sent by source, the ACQUIRE after the reads) still lands', async () => {
    const id = await create({ a: 1 });
    const s = await resume(id);
    s.bindToUser('carol');
    await raw.sendCommand(['SCRIPT', 'FLUSH']);
    await s.commit();
    expect(await (await resume(s.getId())).getAllData()).toEqual({ a: 1 });
    expect((await resume(s.getId())).getUserId()).toBe('carol');
  });
});
