import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { createRedisSessionStores, type RedisSessionStores } from 'nest-session/redis';
import { LockException, MemoryBackend, SessionDestroyedException, type SessionLocker, type TaggableBackend } from 'nest-session';
import type { WriteBatch, WriteGuard, WriteResult } from '../../lib/cache/taggable-backend.interface.js';
import { SessionManager } from '../../lib/manager/session.manager.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { SessionContext } from '../../lib/session/session.context.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import type { SessionMetadata } from '../../lib/session/session-metadata.interface.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { connectTestRedis, TEST_REDIS_URL, uniquePrefix } from '../support/redis.js';

/*
 * Issue 11, items 5, 6 and 9: the write protocol of SessionStore over real backends (memory and
 * Redis). Time is this process's clock (only Date is faked): both backends check expiry by it.
 */

const TIMEOUT = 600;
const MARGIN = 120;

/** A backend that fails its Nth mutating call (set/write/remove), counting from 1: fault injection at the backend boundary. */
class FailingBackend implements TaggableBackend {
  readonly name: string;
  calls = 0;
  failAt = 0;
  constructor(private readonly inner: TaggableBackend) {
    this.name = inner.name;
  }
  private mutate<T>(call: () => Promise<T>): Promise<T> {
    this.calls++;
    if (this.calls === this.failAt) return Promise.reject(new Error(`injected failure of call ${this.calls}`));
    return call();
  }
  get = (id: string) => this.inner.get(id);
  getMany = (ids: readonly string[]) => this.inner.getMany(ids);
  getByTag = (tag: string) => this.inner.getByTag(tag);
  has = (id: string) => this.inner.has(id);
  set = (id: string, data: string, tags?: readonly string[], lifetime?: number) =>
    this.mutate(() => this.inner.set(id, data, tags, lifetime));
  remove = (id: string) => this.mutate(() => this.inner.remove(id));
  write = (batch: WriteBatch, guard?: WriteGuard): Promise<WriteResult> => this.mutate(() => this.inner.write(batch, guard));
  flush = () => this.inner.flush();
  flushByTag = (tag: string) => this.inner.flushByTag(tag);
  findIdentifiersByTag = (tag: string) => this.inner.findIdentifiersByTag(tag);
  collectGarbage = (limit?: number) => this.inner.collectGarbage(limit);
}

interface Stores {
  metadataBackend: TaggableBackend;
  storageBackend: TaggableBackend;
  locker?: SessionLocker;
  redis?: RedisSessionStores;
  close(): Promise<void>;
}

async function makeStores(kind: 'memory' | 'redis'): Promise<Stores> {
  if (kind === 'memory')
    return { metadataBackend: new MemoryBackend(), storageBackend: new MemoryBackend(), close: async () => {} };
  const redis = await createRedisSessionStores({ url: TEST_REDIS_URL, prefix: uniquePrefix('wp'), safetyTtlMargin: MARGIN });
  return {
    metadataBackend: redis.metadataBackend,
    storageBackend: redis.storageBackend,
    locker: redis.locker,
    redis,
    close: async () => {
      await redis.storageBackend.flush();
      await redis.metadataBackend.flush();
      await redis.close();
    },
  };
}

describe.each(['memory', 'redis'] as const)('SessionStore write protocol on %s', (kind) => {
  let stores: Stores;
  let failing: FailingBackend;
  let store: SessionStore;

  beforeEach(async () => {
    fakeOnlyDate();
    stores = await makeStores(kind);
    failing = new FailingBackend(stores.metadataBackend);
    store = new SessionStore(
      resolveSessionOptions({
        metadataBackend: failing,
        storageBackend: stores.storageBackend,
        ...(stores.locker === undefined ? {} : { locker: stores.locker }),
        inactivityTimeout: TIMEOUT,
        updateGracePeriod: 10,
        lock: { waitTimeout: 500, ttl: 2000 },
        garbageCollection: { probability: 0, cron: false },
      }),
    );
  });
  afterEach(async () => {
    jest.useRealTimers();
    await stores.close();
  });

  const session = (ids: string[] = []) => new Session(store, { cookieIds: ids, cookieName: 'sid' });
  async function created(data: Record<string, unknown>): Promise<string> {
    const s = session();
    s.start();
    for (const [k, v] of Object.entries(data)) await s.putData(k, v);
    await s.commit();
    return s.getId();
  }
  async function resumed(id: string): Promise<Session> {
    const s = session([id]);
    await s.resume();
    expect(s.isStarted()).toBe(true);
    return s;
  }
  const meta = async (id: string): Promise<SessionMetadata> => (await store.loadMetadata(metadataKeyOf(id)))!;
  /** What a commit of a session resumed earlier writes: its metadata with a fresh last activity, no data. */
  const touchPlan = (id: string, m: SessionMetadata) => ({
    metadataKey: metadataKeyOf(id),
    metadata: { ...m, lastActivity: Date.now() },
    create: false,
    changes: new Map<string, string | null>(),
    retiredKeys: [],
  });

  describe('item 5: metadata writes are conditional', () => {
    it('a metadata-only commit planned before a destroy does not bring the session back (no zombie)', async () => {
      const id = await created({ k: 1 });
      const m = await meta(id);
      await store.destroy([metadataKeyOf(id)], m.storageId);
      await expect(store.write(m.storageId, touchPlan(id, m), 0)).rejects.toBeInstanceOf(SessionDestroyedException);
      expect(await store.metadataCache.get(metadataKeyOf(id))).toBeUndefined();
    });

    it('a metadata-only commit after GC collected the expired session does not re-create it', async () => {
      const id = await created({ k: 1 });
      const m = await meta(id);
      jest.setSystemTime(Date.now() + TIMEOUT * 1000 + 1000);
      const manager = new SessionManager(store, new SessionContext());
      expect(await manager.collectGarbage()).toBe(1);
      await expect(store.write(m.storageId, touchPlan(id, m), 0)).rejects.toBeInstanceOf(SessionDestroyedException);
      expect(await store.metadataCache.get(metadataKeyOf(id))).toBeUndefined();
      expect(await store.loadData(m.storageId)).toEqual(new Map());
    });

    it('a commit at the expiry boundary (metadata expired, not collected) writes nothing', async () => {
      const id = await created({ k: 1 });
      const m = await meta(id);
      jest.setSystemTime(Date.now() + TIMEOUT * 1000 + 1);
      await expect(store.write(m.storageId, touchPlan(id, m), 0)).rejects.toBeInstanceOf(SessionDestroyedException);
      // The expired entry is not revived: GC still finds it.
      expect(await store.metadataCache.get(metadataKeyOf(id))).toBeUndefined();
    });

    it('a data-only commit of a session whose metadata expired (not yet collected) is refused: its guard expired with it', async () => {
      const id = await created({ k: 1 });
      const s = await resumed(id);
      await s.putData('k', 2);
      jest.setSystemTime(Date.now() + TIMEOUT * 1000 + 1);
      await expect(s.commit()).rejects.toBeInstanceOf(SessionDestroyedException);
      jest.setSystemTime(Date.now() - TIMEOUT * 1000);
      expect(await store.loadValue((await store.metadataCache.get<SessionMetadata>(metadataKeyOf(id)))!.storageId, 'k')).toBe(
        store.storageCache.encode(1),
      );
    });

    it('a metadata write refreshes the guard: a session kept alive keeps accepting data', async () => {
      const id = await created({ k: 1 });
      for (let i = 0; i < 3; i++) {
        jest.setSystemTime(Date.now() + (TIMEOUT - 20) * 1000);
        const s = await resumed(id);
        await s.putData('k', i);
        await s.commit(); // grace period over: data and metadata, guard lifetime refreshed
      }
      expect(await (await resumed(id)).getData('k')).toBe(2);
    });
  });

  describe('item 6: renewal kills the old id first', () => {
    it('a failure at any step of a renewal never leaves two valid ids', async () => {
      for (let failAt = 1; failAt <= 3; failAt++) {
        const oldId = await created({ cart: ['book'] });
        const s = await resumed(oldId);
        const newId = s.renewId();
        await s.putData('cart', ['book', 'pen']);
        failing.calls = 0;
        failing.failAt = failAt;
        await s.commit().catch(() => undefined);
        failing.failAt = 0;
        const valid = [await store.loadMetadata(metadataKeyOf(oldId)), await store.loadMetadata(metadataKeyOf(newId))].filter(
          (m) => m !== undefined,
        );
        expect({ failAt, twoValidIds: valid.length > 1 }).toEqual({ failAt, twoValidIds: false });
      }
    });

    it('a renewal of a session destroyed meanwhile writes nothing and fails', async () => {
      const oldId = await created({ k: 1 });
      const s = await resumed(oldId);
      const m = await meta(oldId);
      const newId = s.renewId();
      await store.destroy([metadataKeyOf(oldId)], m.storageId);
      await expect(s.commit()).rejects.toBeInstanceOf(SessionDestroyedException);
      expect(await store.metadataCache.get(metadataKeyOf(newId))).toBeUndefined();
    });

    it.each([
      ['commit', false],
      ['save', false],
      ['commit', true],
    ] as const)(
      'a renewal whose lock expired while another request wrote: %s() (data changed: %s) throws LockException and writes nothing',
      async (how, withData) => {
        const oldId = await created({ k: 1 });
        const a = await resumed(oldId);
        await a.open({ ttl: 50 });
        const newId = a.renewId();
        if (withData) await a.putData('k', 3);
        await new Promise((resolve) => setTimeout(resolve, 100)); // A's lock expires
        const b = await resumed(oldId);
        await b.open(); // a newer fence
        await b.putData('k', 2);
        await b.save();
        await expect(how === 'save' ? a.save() : a.commit()).rejects.toBeInstanceOf(LockException);
        // The client's id still works with B's data; the id it never learned does not exist.
        expect(await store.metadataCache.get(metadataKeyOf(newId))).toBeUndefined();
        expect(await (await resumed(oldId)).getData('k')).toBe(2);
      },
    );

    it('a metadata-only commit whose lock expired after another request wrote throws LockException and writes no metadata', async () => {
      const id = await created({ k: 1 });
      const a = await resumed(id);
      await a.open({ ttl: 50 });
      await a.addTag('from-a');
      await new Promise((resolve) => setTimeout(resolve, 100)); // A's lock expires
      const b = await resumed(id);
      await b.addTag('from-b'); // a metadata-only commit under a newer fence
      await b.commit();
      await expect(a.commit()).rejects.toBeInstanceOf(LockException);
      expect((await meta(id)).tags).toEqual(['from-b']);
    });

    it('a destroy whose lock expired after another request wrote throws LockException and removes nothing', async () => {
      const id = await created({ k: 1 });
      const a = await resumed(id);
      await a.open({ ttl: 50 });
      await new Promise((resolve) => setTimeout(resolve, 100)); // A's lock expires
      const b = await resumed(id);
      await b.putData('k', 2);
      await b.commit();
      await expect(a.destroy()).rejects.toBeInstanceOf(LockException);
      expect(await (await resumed(id)).getData('k')).toBe(2);
    });

    it('a holder whose lock expired cannot write once a newer holder has opened (it would overwrite what that one never read)', async () => {
      const id = await created({ k: 1 });
      const a = await resumed(id);
      await a.open({ ttl: 50 });
      await new Promise((resolve) => setTimeout(resolve, 100)); // A's lock expires
      const b = await resumed(id);
      await b.open(); // a newer fence; B reads k = 1
      await a.removeData('k');
      await expect(a.commit()).rejects.toBeInstanceOf(LockException);
      expect(await b.getData('k')).toBe(1);
      await b.putData('k', 2);
      await b.save();
      expect(await (await resumed(id)).getData('k')).toBe(2);
    });

    it('a destroy whose lock expired with nobody writing since still destroys', async () => {
      const id = await created({ k: 1 });
      const a = await resumed(id);
      await a.open({ ttl: 50 });
      await new Promise((resolve) => setTimeout(resolve, 100)); // A's lock expires
      await a.destroy();
      expect(await store.loadMetadata(metadataKeyOf(id))).toBeUndefined();
    });
  });
});

describe('item 9: every key on Redis has a native TTL, none outlives its session by more than the margin', () => {
  let redis: RedisSessionStores;
  beforeEach(async () => {
    redis = await createRedisSessionStores({ url: TEST_REDIS_URL, prefix: uniquePrefix('ttl'), safetyTtlMargin: MARGIN });
  });
  afterEach(async () => {
    await redis.storageBackend.flush();
    await redis.metadataBackend.flush();
    await redis.close();
  });

  it('after a mixed workload (create, write, login, renew, regenerate, destroy, GC)', async () => {
    const store = new SessionStore(
      resolveSessionOptions({
        metadataBackend: redis.metadataBackend,
        storageBackend: redis.storageBackend,
        locker: redis.locker,
        inactivityTimeout: 5,
        updateGracePeriod: 1,
        garbageCollection: { probability: 0, cron: false },
      }),
    );
    const manager = new SessionManager(store, new SessionContext());
    const start = async (data: Record<string, unknown>) => {
      const s = new Session(store, { cookieIds: [], cookieName: 'sid' });
      s.start();
      for (const [k, v] of Object.entries(data)) await s.putData(k, v);
      await s.commit();
      return s.getId();
    };
    const resume = async (id: string) => {
      const s = new Session(store, { cookieIds: [id], cookieName: 'sid' });
      await s.resume();
      return s;
    };
    const ids = await Promise.all([1, 2, 3, 4, 5].map((n) => start({ n, bag: { big: 'x'.repeat(n * 10) } })));
    // A session that dies by GC: a short lifetime.
    const short = await resume(ids[0]!);
    short.setTTL(1);
    await short.commit();
    const a = await resume(ids[1]!);
    await a.putData('more', 1);
    a.bindToUser('alice'); // login: renews the id
    await a.commit();
    const b = await resume(ids[2]!);
    b.renewId();
    await b.putData('x', 1);
    await b.commit();
    const c = await resume(ids[3]!);
    await c.regenerate(true);
    await c.commit();
    await (await resume(ids[4]!)).destroy();
    await new Promise((resolve) => setTimeout(resolve, 1200));
    // A data-only write (no metadata write within the grace period) adds a key: it must get the guard's TTL.
    const d = await resume(a.getId());
    await d.putData('late', 1);
    await d.commit();
    expect(await manager.collectGarbage()).toBe(1);

    const client = await connectTestRedis();
    const metaPttl = new Map<string, number>();
    const storagePttl: Array<[string, number]> = [];
    const prefix = redis.metadataBackend.prefix.slice(0, -2); // both caches and the locker share it
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
      for (const key of keys.map(String)) {
        const pttl = await client.pTTL(key);
        expect({ key, hasTtl: pttl > 0 }).toEqual({ key, hasTtl: true });
        if (key.startsWith(redis.metadataBackend.prefix) && !key.includes('#')) {
          const raw = String(await client.get(key));
          metaPttl.set((JSON.parse(raw.slice(raw.indexOf('\n', raw.indexOf('\n') + 1) + 1)) as SessionMetadata).storageId, pttl);
        }
        if (key.startsWith(redis.storageBackend.prefix) && !key.includes('}#')) storagePttl.push([key, pttl]);
      }
    }
    client.destroy();
    expect(storagePttl.length).toBeGreaterThan(0);
    for (const [key, pttl] of storagePttl) {
      const storageId = key.slice(key.indexOf('{') + 1, key.indexOf('}'));
      const sessionPttl = metaPttl.get(storageId);
      // Every data key belongs to a live session and lives natively no longer than it (+ slack).
      expect({ key, owned: sessionPttl !== undefined }).toEqual({ key, owned: true });
      expect(pttl).toBeLessThanOrEqual(sessionPttl! + 1000);
      expect(pttl).toBeGreaterThanOrEqual(sessionPttl! - 1000);
    }
  }, 20_000);
});
