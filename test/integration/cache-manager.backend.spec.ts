import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import KeyvRedis from '@keyv/redis';
import { createCache, type Cache } from 'cache-manager';
import Keyv, { type KeyvStoreAdapter } from 'keyv';
import { createClient } from 'redis';
import { CacheManagerBackend } from '../../lib/cache-manager/cache-manager.backend.js';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { InvalidOptionException } from '../../lib/errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import { backendContract } from '../contract/backend.contract.js';
import { connectTestRedis, uniquePrefix, type TestRedisClient } from '../support/redis.js';

let redis: TestRedisClient;
/** One Keyv on Redis for the whole file, in a namespace no other file uses. */
let redisKeyv: Keyv;
// Keyv's iterator strips the namespace up to the first ":", so the namespace must not contain one.
const redisNamespace = uniquePrefix('cache-manager').slice(0, -1).replaceAll(':', '-');

beforeAll(async () => {
  redis = await connectTestRedis();
  redisKeyv = new Keyv({ store: new KeyvRedis(redis), namespace: redisNamespace });
});

afterAll(async () => {
  await redisKeyv?.clear(); // only this namespace
  await redis?.close();
});

/** Every key of a cache's first store, via Keyv's iterator (test only). */
async function storedKeys(cache: Cache): Promise<string[]> {
  const keys: string[] = [];
  for await (const [key] of cache.stores[0]!.iterator!(undefined) as AsyncGenerator<[string, unknown]>) keys.push(key);
  return keys.sort();
}

backendContract('cache-manager (in-memory Keyv)', async () => {
  const backend = new CacheManagerBackend({ cache: createCache({ stores: [new Keyv()] }) });
  return { backend, cleanup: () => backend.close() };
});

backendContract(
  'cache-manager (@keyv/redis)',
  async () => {
    const backend = new CacheManagerBackend({ cache: createCache({ stores: [redisKeyv] }), prefix: uniquePrefix('cm') });
    return {
      backend,
      cleanup: async () => {
        await backend.flush();
        await backend.close();
      },
    };
  },
  { realTime: true },
);

describe('CacheManagerBackend', () => {
  let cache: Cache;
  let backend: CacheManagerBackend;

  beforeEach(() => {
    cache = createCache({ stores: [new Keyv()] });
    backend = new CacheManagerBackend({ cache, prefix: 'p:' });
  });

  afterEach(async () => {
    await backend.close();
    jest.useRealTimers();
  });

  it('rejects bad options', () => {
    expect(() => new CacheManagerBackend({ cache: undefined as unknown as Cache })).toThrow(InvalidOptionException);
    expect(() => new CacheManagerBackend({ cache, prefix: 'a|b' })).toThrow(InvalidOptionException);
    expect(() => new CacheManagerBackend({ cache, safetyTtlMargin: -1 })).toThrow(InvalidOptionException);
    expect(() => new CacheManagerBackend({ cache, expiryBucketSeconds: 0 })).toThrow(InvalidOptionException);
  });

  it('rejects a bad lifetime, data or fence and stores nothing', async () => {
    await expect(backend.set('v.a', 'A', [], -1)).rejects.toThrow(InvalidArgumentException);
    await expect(backend.set('v.a', 1 as unknown as string)).rejects.toThrow(InvalidArgumentException);
    await expect(backend.write({}, { id: 'v.f', fence: Number.NaN })).rejects.toThrow(InvalidArgumentException);
    expect(await storedKeys(cache)).toEqual([]);
  });

  it('keeps entries, tag indexes and expiry buckets under its prefix, with store TTLs of lifetime + margin', async () => {
    const now = Date.UTC(2031, 0, 1, 12, 0, 10);
    jest.useFakeTimers({ now, doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask', 'setTimeout', 'setInterval'] });
    const withMargin = new CacheManagerBackend({ cache, prefix: 'q:', safetyTtlMargin: 100 });
    await withMargin.set('s1.a', 'A', ['s1'], 20);
    await withMargin.set('s1.b', 'B', ['s1']);

    const bucket = Math.floor((now + 20_000) / 60_000);
    expect(await storedKeys(cache)).toEqual(['q:|e|s1.a', 'q:|e|s1.b', 'q:|t|s1', `q:|x|${bucket}`]);
    expect(await cache.ttl('q:|e|s1.a')).toBe(now + 120_000);
    expect(await cache.ttl('q:|e|s1.b')).toBeUndefined();
    expect(await cache.ttl(`q:|x|${bucket}`)).toBe((bucket + 1) * 60_000 + 100_000);
    expect(await cache.get('q:|t|s1')).toEqual(['s1.a', 's1.b']);
    await withMargin.close();
  });

  it('flush removes its own keys only, also when another prefix starts with it', async () => {
    const inner = new CacheManagerBackend({ cache, prefix: 'p:m:' });
    await backend.set('a.x', 'A', ['t'], 60);
    await inner.set('a.x', 'inner', ['t'], 60);
    await cache.set('unrelated', 'u');

    await backend.flush();

    expect(await backend.get('a.x')).toBeUndefined();
    expect(await inner.get('a.x')).toBe('inner');
    expect(await inner.findIdentifiersByTag('t')).toEqual(['a.x']);
    expect(await cache.get('unrelated')).toBe('u');
    await inner.close();
  });

  it('serialises guarded writes within the process: the highest fence wins whatever the order', async () => {
    await backend.write({}, { id: 'cc.fence', fence: 0, create: true, tags: ['cc'] });
    const fences = [7, 3, 19, 1, 12, 20, 5, 16, 9, 2, 14, 11, 18, 4, 8, 6, 13, 15, 10, 17];
    const results = await Promise.all(
      fences.map((fence) =>
        backend.write({ sets: [{ id: 'cc.data', data: `v${fence}`, tags: ['cc', `cc-${fence}`] }] }, { id: 'cc.fence', fence }),
      ),
    );
    const applied = fences.filter((_, i) => results[i] === 'ok');
    expect(applied).toEqual([...applied].sort((a, b) => a - b));
    expect(await backend.get('cc.fence')).toBe('20');
    expect(await backend.get('cc.data')).toBe('v20');
    expect((await backend.findIdentifiersByTag('cc')).sort()).toEqual(['cc.data', 'cc.fence']);
    // Only the last retagging left a membership behind.
    for (const fence of fences) {
      expect(await backend.findIdentifiersByTag(`cc-${fence}`)).toEqual(fence === 20 ? ['cc.data'] : []);
    }
  });

  it('prunes tag index members whose entry is gone or no longer carries the tag', async () => {
    await backend.set('pr.a', 'A', ['pr']);
    await backend.set('pr.b', 'B', ['other']);
    await cache.set('p:|t|pr', ['pr.a', 'pr.gone', 'pr.b']);

    expect(await backend.findIdentifiersByTag('pr')).toEqual(['pr.a']);
    expect(await cache.get('p:|t|pr')).toEqual(['pr.a']);
  });

  describe('garbage collection', () => {
    const start = Date.UTC(2031, 0, 1, 12, 0, 0);

    beforeEach(() => {
      jest.useFakeTimers({ now: start, doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask', 'setTimeout', 'setInterval'] });
    });

    it('reads only the buckets from its cursor to now, and removes tag memberships', async () => {
      await backend.set('gc.1', 'one', ['gc'], 30); // bucket of minute 0
      await backend.set('gc.2', 'two', ['gc'], 90); // minute 1
      await backend.set('gc.3', 'three', ['gc'], 600); // minute 10
      const get = jest.spyOn(cache, 'get');
      const mget = jest.spyOn(cache, 'mget');

      jest.setSystemTime(start + 100_000);
      expect(await backend.collectGarbage()).toEqual([
        { id: 'gc.1', data: 'one' },
        { id: 'gc.2', data: 'two' },
      ]);
      expect(await backend.findIdentifiersByTag('gc')).toEqual(['gc.3']);
      expect(await cache.get('p:|t|gc')).toEqual(['gc.3']);
      expect(await storedKeys(cache)).toEqual(['p:|e|gc.3', 'p:|t|gc', `p:|x|${start / 60_000 + 10}`, 'p:|x|cursor']);

      // The cursor moved to the bucket of the last run's now: the next run reads from there, not the whole margin.
      get.mockClear();
      mget.mockClear();
      jest.setSystemTime(start + 130_000);
      expect(await backend.collectGarbage()).toEqual([]);
      const bucketReads = [...get.mock.calls.map(([key]) => key), ...mget.mock.calls.flatMap(([keys]) => keys)].filter((key) =>
        /\|x\|\d+$/.test(key),
      );
      expect(bucketReads).toEqual([`p:|x|${start / 60_000 + 1}`, `p:|x|${start / 60_000 + 2}`]);
    });

    it('drops the old record of an entry whose lifetime changed, and hands it over once', async () => {
      await backend.set('lc.a', 'A', [], 30);
      await backend.set('lc.a', 'A2', [], 150); // now expires in minute 2
      jest.setSystemTime(start + 60_000);
      expect(await backend.collectGarbage()).toEqual([]);
      expect(await cache.get(`p:|x|${start / 60_000}`)).toBeUndefined();

      jest.setSystemTime(start + 151_000);
      expect(await backend.collectGarbage()).toEqual([{ id: 'lc.a', data: 'A2' }]);
      expect(await backend.collectGarbage()).toEqual([]);
    });

    it('leaves what is over the limit for the next run', async () => {
      await backend.set('lim.1', '1', [], 10);
      await backend.set('lim.2', '2', [], 20);
      await backend.set('lim.3', '3', [], 70);
      jest.setSystemTime(start + 100_000);
      expect(await backend.collectGarbage(2)).toEqual([
        { id: 'lim.1', data: '1' },
        { id: 'lim.2', data: '2' },
      ]);
      expect(await backend.collectGarbage(2)).toEqual([{ id: 'lim.3', data: '3' }]);
    });
  });

  describe('store failures', () => {
    it('surfaces errors of a Keyv store with throwOnErrors as StoreUnavailableException', async () => {
      const failing: KeyvStoreAdapter = {
        opts: {},
        namespace: undefined,
        get: async () => {
          throw new Error('connection refused');
        },
        set: async () => {
          throw new Error('connection refused');
        },
        delete: async () => {
          throw new Error('connection refused');
        },
        clear: async () => {},
        on() {
          return this;
        },
      } as unknown as KeyvStoreAdapter;
      const broken = new CacheManagerBackend({
        cache: createCache({ stores: [new Keyv({ store: failing, throwOnErrors: true })] }),
      });

      await expect(broken.get('f.a')).rejects.toThrow(StoreUnavailableException);
      await expect(broken.getMany(['f.a', 'f.b'])).rejects.toThrow(StoreUnavailableException);
      await expect(broken.set('f.a', 'A')).rejects.toThrow(StoreUnavailableException);
      await expect(broken.write({}, { id: 'f.fence', fence: 1, create: true })).rejects.toThrow(
        /cache-manager write: connection refused/,
      );
      await broken.close();
    });

    it('surfaces errors that @keyv/redis only reports as events (Redis unreachable)', async () => {
      const unreachable = createClient({ url: 'redis://127.0.0.1:1', socket: { reconnectStrategy: false, connectTimeout: 500 } });
      unreachable.on('error', () => {});
      const keyv = new Keyv({ store: new KeyvRedis(unreachable), namespace: 'never' });
      const broken = new CacheManagerBackend({ cache: createCache({ stores: [keyv] }) });

      for (const operation of [
        () => broken.get('u.a'),
        () => broken.getMany(['u.a']),
        () => broken.findIdentifiersByTag('u'),
        () => broken.set('u.a', 'A', ['u'], 10),
        () => broken.collectGarbage(),
      ]) {
        await expect(operation()).rejects.toThrow(StoreUnavailableException);
      }
      await broken.close();
    });
  });
});
