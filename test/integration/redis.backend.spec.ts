import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { RedisBackend, type RedisCommandClient } from '../../lib/redis/redis.backend.js';
import { STANDALONE_WRITE } from '../../lib/redis/redis-backend.scripts.js';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { InvalidOptionException } from '../../lib/errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import { backendContract } from '../contract/backend.contract.js';
import { entries, guardOf, movesGroupsContract } from '../contract/moves-groups.contract.js';
import { connectTestRedis, uniquePrefix, type TestRedisClient } from '../support/redis.js';

let client: TestRedisClient;
const prefixes: string[] = [];

beforeAll(async () => {
  client = await connectTestRedis();
});

afterAll(async () => {
  // Leave nothing behind in the shared Redis: only this file's prefixes are deleted.
  for (const prefix of prefixes) await new RedisBackend({ client, prefix }).flush();
  await client?.close();
});

function makeBackend(name: string, options: { safetyTtlMargin?: number; client?: RedisCommandClient } = {}): RedisBackend {
  const prefix = uniquePrefix(name);
  prefixes.push(prefix);
  return new RedisBackend({ client: options.client ?? client, prefix, safetyTtlMargin: options.safetyTtlMargin });
}

/** Every key under a prefix, via SCAN (test only). */
async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const batch of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
  return keys.sort();
}

/** A client that records every command and can fake replies, wrapping the real one. */
function recordingClient(intercept?: (args: readonly string[]) => Promise<unknown> | undefined): {
  client: RedisCommandClient;
  commands: string[][];
} {
  const commands: string[][] = [];
  return {
    commands,
    client: {
      sendCommand(args: readonly string[]) {
        commands.push([...args]);
        return intercept?.(args) ?? client.sendCommand([...args]);
      },
    },
  };
}

movesGroupsContract('redis', async () => makeBackend('moves'));

backendContract(
  'redis',
  async () => {
    const backend = makeBackend('contract');
    return { backend, cleanup: () => backend.flush() };
  },
  { realTime: true },
);

describe('RedisBackend', () => {
  let backend: RedisBackend;

  beforeEach(() => {
    backend = makeBackend('redis');
  });

  describe('options', () => {
    it('rejects a prefix with hash-tag braces, a negative margin and a missing client', () => {
      expect(() => new RedisBackend({ client, prefix: 'a{b}:' })).toThrow(InvalidOptionException);
      expect(() => new RedisBackend({ client, safetyTtlMargin: -1 })).toThrow(InvalidOptionException);
      expect(() => new RedisBackend({ client: undefined as unknown as RedisCommandClient })).toThrow(InvalidOptionException);
    });

    it('defaults the prefix to sess:', () => {
      expect(new RedisBackend({ client }).prefix).toBe('sess:');
    });

    it('rejects a bad lifetime, data or fence before touching Redis', async () => {
      const recorded = recordingClient();
      const strict = makeBackend('strict', { client: recorded.client });
      await expect(strict.set('v.a', 'A', [], -1)).rejects.toThrow(InvalidArgumentException);
      await expect(strict.set('v.a', 42 as unknown as string)).rejects.toThrow(InvalidArgumentException);
      await expect(strict.write({}, { id: 'v.fence', fence: Number.NaN })).rejects.toThrow(InvalidArgumentException);
      await expect(strict.set('v.a', 'A', ['has space'])).rejects.toThrow(InvalidArgumentException);
      expect(recorded.commands).toEqual([]);
    });
  });

  describe('key layout', () => {
    it('keeps every key under the prefix, grouped by hash tag', async () => {
      await backend.write(
        {
          sets: [
            { id: 'st1.cart', data: 'C', tags: ['st1'], lifetime: 600 },
            { id: 'st1.user', data: 'U', tags: ['st1', 'all-sessions'] },
          ],
        },
        { id: 'st1.fence', fence: 1, create: true, tags: ['st1'] },
      );
      await backend.set('nodot', 'N');
      const p = backend.prefix;

      expect(await keysUnder(p)).toEqual(
        [
          `${p}{st1}.cart`,
          `${p}{st1}.user`,
          `${p}{st1}.fence`,
          `${p}{st1}#tag`,
          `${p}{all-sessions}#tag`,
          `${p}{nodot}`,
          `${p}{}#expiry`,
        ].sort(),
      );
      expect(backend.entryKey('st1.cart')).toBe(`${p}{st1}.cart`);
      expect(backend.tagKey('st1')).toBe(`${p}{st1}#tag`);
      // Entries, guard and the session's tag set share the hash tag {st1}: one cluster slot.
      expect((await client.zRange(`${p}{st1}#tag`, 0, -1)).sort()).toEqual(['st1.cart', 'st1.fence', 'st1.user']);
      expect(await client.zRange(`${p}{all-sessions}#tag`, 0, -1)).toEqual(['st1.user']);
      expect(await client.zRange(backend.expiryIndexKey, 0, -1)).toEqual(['st1.cart']);
    });

    it('flush deletes its own prefix only, also when another prefix starts with it', async () => {
      const inner = new RedisBackend({ client, prefix: `${backend.prefix}m:` });
      await backend.set('a.x', 'A', ['t']);
      await inner.set('a.x', 'inner', ['t']);

      await backend.flush();

      expect(await backend.get('a.x')).toBeUndefined();
      expect(await inner.get('a.x')).toBe('inner');
      expect(await inner.findIdentifiersByTag('t')).toEqual(['a.x']);
      await inner.flush();
      expect(await keysUnder(backend.prefix)).toEqual([]);
    });
  });

  describe('native TTL', () => {
    it('is lifetime + safetyTtlMargin on the entry, at least that on its tag sets, none without lifetime', async () => {
      const withMargin = makeBackend('ttl', { safetyTtlMargin: 100 });
      await withMargin.set('ttl.a', 'A', ['ttl-t'], 20);
      await withMargin.set('ttl.forever', 'F', ['ttl-f']);

      const entryTtl = await client.pTTL(withMargin.entryKey('ttl.a'));
      expect(entryTtl).toBeGreaterThan(119_000);
      expect(entryTtl).toBeLessThanOrEqual(120_000);
      expect(await client.pTTL(withMargin.tagKey('ttl-t'))).toBeGreaterThanOrEqual(entryTtl - 50);
      expect(await client.pTTL(withMargin.entryKey('ttl.forever'))).toBe(-1);
      expect(await client.pTTL(withMargin.tagKey('ttl-f'))).toBe(-1);
      expect(Number(await client.zScore(withMargin.expiryIndexKey, 'ttl.a'))).toBeGreaterThan(Date.now() + 19_000);

      // A longer-living member extends the tag set; a member without lifetime makes it permanent.
      await withMargin.set('ttl.b', 'B', ['ttl-t'], 1000);
      expect(await client.pTTL(withMargin.tagKey('ttl-t'))).toBeGreaterThan(1_099_000);
      await withMargin.set('ttl.c', 'C', ['ttl-t']);
      expect(await client.pTTL(withMargin.tagKey('ttl-t'))).toBe(-1);
    });

    it('keeps the guard entry native TTL when the fence is updated', async () => {
      await backend.set('gt.fence', '1', ['gt'], 50);
      const before = await client.pTTL(backend.entryKey('gt.fence'));
      expect(await backend.write({ sets: [{ id: 'gt.a', data: 'A', tags: ['gt'] }] }, { id: 'gt.fence', fence: 2 })).toBe('ok');
      expect(await backend.get('gt.fence')).toBe('2');
      const after = await client.pTTL(backend.entryKey('gt.fence'));
      expect(after).toBeGreaterThan(before - 1000);
      expect(after).toBeLessThanOrEqual(before);
    });

    it("extends every entry of the guard's group and its tag set to the guard's new lifetime, also in the write that creates it", async () => {
      const pttlOf = (id: string): Promise<number> => client.pTTL(backend.entryKey(id));
      // Created with its first entries in one write (the guard's group was empty before).
      const guard = { id: 'rt.~guard', fence: 1, create: true, tags: ['rt'], lifetime: 60 };
      expect(await backend.write({ sets: [{ id: 'rt.a', data: 'A', tags: ['rt'], lifetime: 5 }] }, guard)).toBe('ok');
      const created = await pttlOf('rt.~guard');
      expect(created).toBeGreaterThan(59_000);
      expect(await pttlOf('rt.a')).toBeGreaterThanOrEqual(created - 50);
      expect(await client.pTTL(backend.tagKey('rt'))).toBeGreaterThanOrEqual(created - 50);

      // A later write that only moves the guard's lifetime on reaches the entry it did not rewrite.
      expect(
        await backend.write(
          { sets: [{ id: 'rt.b', data: 'B', tags: ['rt'] }] },
          { ...guard, create: false, fence: 2, lifetime: 600 },
        ),
      ).toBe('ok');
      const extended = await pttlOf('rt.~guard');
      expect(extended).toBeGreaterThan(599_000);
      for (const id of ['rt.a', 'rt.b']) expect(await pttlOf(id)).toBeGreaterThanOrEqual(extended - 50);
      expect(await client.pTTL(backend.tagKey('rt'))).toBeGreaterThanOrEqual(extended - 50);

      // A guard created over entries left in its group extends them too.
      await backend.set('rt2.old', 'O', ['rt2'], 5);
      const over = { id: 'rt2.~guard', fence: 1, create: true, tags: ['rt2'], lifetime: 60 };
      expect(await backend.write({ sets: [{ id: 'rt2.new', data: 'N', tags: ['rt2'] }] }, over)).toBe('ok');
      const overTtl = await pttlOf('rt2.~guard');
      for (const id of ['rt2.old', 'rt2.new']) expect(await pttlOf(id)).toBeGreaterThanOrEqual(overTtl - 50);
    });
  });

  describe('the usual rewrite (existing entries of the guard group, no lifetime of their own, the guard lifetime kept)', () => {
    /** Everything a write leaves: each key's value and native TTL (ms), names without the group. */
    const stateOf = async (group: string): Promise<Map<string, { value: string | null; pttl: number }>> => {
      const state = new Map<string, { value: string | null; pttl: number }>();
      for (const key of await keysUnder(backend.prefix)) {
        if (!key.includes(`{${group}}`)) continue;
        const type = await client.type(key);
        const raw = type === 'string' ? await client.get(key) : JSON.stringify(await client.zRange(key, 0, -1));
        // The version (random per write) and a clock time are compared without their digits.
        const value =
          raw
            ?.replace(/^0 \d+\n/, '0 <v>\n')
            .replace(/^[1-9]\d* \d+\n/, '<t> <v>\n')
            .replaceAll(group, '<g>') ?? null;
        state.set(key.replace(group, '<g>'), { value, pttl: await client.pTTL(key) });
      }
      return state;
    };
    type State = Awaited<ReturnType<typeof stateOf>>;

    /** The fast path's state equals the general path's: same keys (\`size\`) and values, TTLs within the ms between the writes. */
    const expectSameOutcome = ([fast, general]: State[], size: number): void => {
      expect([...fast!.keys()].sort()).toEqual([...general!.keys()].sort());
      expect(fast!.size).toBe(size);
      for (const [key, { value, pttl }] of fast!) {
        expect(value).toEqual(general!.get(key)!.value);
        expect(Math.abs(pttl - general!.get(key)!.pttl)).toBeLessThan(500);
        expect(pttl).toBeGreaterThan(59_000);
      }
    };

    it('has the outcome of the general write path: values, tag set, guard fence and native TTLs', async () => {
      const outcomes = [];
      for (const [group, general] of [
        ['fp1', false],
        ['fp2', true],
      ] as const) {
        const guard = { id: `${group}.~guard`, fence: 1, create: true, tags: [group], lifetime: 60 };
        const data = (n: number) => [
          { id: `${group}.a`, data: `A${n}`, tags: [group] },
          { id: `${group}.b`, data: `B${n}`, tags: [group] },
        ];
        expect(await backend.write({ sets: data(1) }, guard)).toBe('ok');
        // Naming the (live) guard as an entry that must exist changes nothing, but takes the general path.
        const batch = { sets: data(2), ...(general ? { mustExist: [guard.id] } : {}) };
        expect(await backend.write(batch, { id: guard.id, fence: 5 })).toBe('ok');
        expect(await backend.write({ sets: data(3) }, { id: guard.id, fence: 4 })).toBe('fenced');
        outcomes.push(await stateOf(group));
        expect(await backend.getMany([`${group}.a`, `${group}.b`])).toEqual(['A2', 'B2']);
      }
      expectSameOutcome(outcomes, 4); // a, b, the guard and the group's tag set
    });

    it('a guard created with the first entries of its group (a new session) has the outcome of the general path too', async () => {
      const outcomes = [];
      for (const [group, general] of [
        ['fc1', false],
        ['fc2', true],
      ] as const) {
        const sets = [
          { id: `${group}.a`, data: 'A', tags: [group] },
          { id: `${group}.b`, data: 'B', tags: [group] },
        ];
        // Removing an entry that does not exist changes nothing, but takes the general path.
        const batch = { sets, ...(general ? { removes: [`${group}.none`] } : {}) };
        expect(await backend.write(batch, { id: `${group}.~guard`, fence: 0, create: true, tags: [group], lifetime: 60 })).toBe(
          'ok',
        );
        outcomes.push(await stateOf(group));
        expect(await client.zScore(backend.expiryIndexKey, `${group}.~guard`)).not.toBeNull();
        // The created guard fences as any: a later write with its fence lands, the group lists its entries.
        expect(
          await backend.write({ sets: [{ id: `${group}.a`, data: 'A2', tags: [group] }] }, { id: `${group}.~guard`, fence: 1 }),
        ).toBe('ok');
        expect((await backend.findIdentifiersByTag(group)).sort()).toEqual([`${group}.a`, `${group}.b`, `${group}.~guard`]);
      }
      expectSameOutcome(outcomes, 4);
      // Over an existing guard it is the general path's answer: not created again.
      expect(
        await backend.write(
          { sets: [{ id: 'fc1.c', data: 'C', tags: ['fc1'] }] },
          { id: 'fc1.~guard', fence: 2, create: true, tags: ['fc1'], lifetime: 60 },
        ),
      ).toBe('ok');
      expect(await backend.get('fc1.b')).toBe('B');
    });

    it('falls back to the general path for anything else in the batch, with its usual outcome', async () => {
      const guard = { id: 'fb.~guard', fence: 1, create: true, tags: ['fb'], lifetime: 60 };
      expect(await backend.write({ sets: [{ id: 'fb.a', data: 'A', tags: ['fb'] }] }, guard)).toBe('ok');
      // A new key, a second tag, an own lifetime, a remove: each still written with its index upkeep.
      expect(
        await backend.write(
          {
            sets: [
              { id: 'fb.a', data: 'A2', tags: ['fb', 'fb-red'] },
              { id: 'fb.new', data: 'N', tags: ['fb'], lifetime: 30 },
            ],
          },
          { id: guard.id, fence: 2 },
        ),
      ).toBe('ok');
      expect(await backend.findIdentifiersByTag('fb-red')).toEqual(['fb.a']);
      expect(await client.zScore(backend.expiryIndexKey, 'fb.new')).not.toBeNull();
      expect(
        await backend.write(
          { sets: [{ id: 'fb.a', data: 'A3', tags: ['fb'] }], removes: ['fb.new'] },
          { id: guard.id, fence: 3 },
        ),
      ).toBe('ok');
      expect(await backend.findIdentifiersByTag('fb-red')).toEqual([]);
      expect(await client.zScore(backend.expiryIndexKey, 'fb.new')).toBeNull();
      expect(await backend.get('fb.a')).toBe('A3');
      // A missing guard is still told apart from a stale fence.
      expect(await backend.write({ sets: [{ id: 'fb.a', data: 'X', tags: ['fb'] }] }, { id: 'fb.~gone', fence: 9 })).toBe(
        'missing',
      );
    });
  });

  describe('moving a group (movesGroups: WriteBatch.mustMatch, WriteGuard.copyFrom)', () => {
    it('copyFrom leaves the keys, native TTLs and index records that writing every entry directly leaves', async () => {
      expect(await backend.write({ sets: entries('src', { a: 'A', b: 'B', c: 'C' }) }, guardOf('src'))).toBe('ok');
      const copied = await backend.write(
        { sets: entries('dst', { b: 'B2', d: 'D' }), removes: ['dst.c'] },
        guardOf('dst', { copyFrom: 'src' }),
      );
      expect(copied).toBe('ok');
      expect(await backend.getMany(['dst.a', 'dst.b', 'dst.c', 'dst.d'])).toEqual(['A', 'B2', undefined, 'D']);
      expect((await backend.findIdentifiersByTag('dst')).sort()).toEqual(['dst.a', 'dst.b', 'dst.d', 'dst.~guard']);
      // The source is left as it was (the caller flushes it in the same chain).
      expect(await backend.getMany(['src.a', 'src.b', 'src.c'])).toEqual(['A', 'B', 'C']);
      // Same keys, TTLs and index records as writing every entry directly.
      expect(await backend.write({ sets: entries('ref', { a: 'A', b: 'B2', d: 'D' }) }, guardOf('ref'))).toBe('ok');
      const keysOf = async (group: string) =>
        (await keysUnder(backend.prefix)).filter((key) => key.includes(`{${group}}`)).map((key) => key.replace(group, '<g>'));
      expect(await keysOf('dst')).toEqual(await keysOf('ref'));
      for (const key of await keysOf('dst')) {
        expect(
          Math.abs((await client.pTTL(key.replace('<g>', 'dst'))) - (await client.pTTL(key.replace('<g>', 'ref')))),
        ).toBeLessThan(500);
      }
      expect(await client.zScore(backend.expiryIndexKey, 'dst.~guard')).not.toBeNull();
    });

    it('takes mustMatch in a batch of its own only (a MATCH unit chained before the writes it guards)', async () => {
      await backend.set('mm.a', 'one');
      await expect(
        backend.write({ mustMatch: [{ id: 'mm.a', data: 'one' }], sets: [{ id: 'mm.a', data: 'x' }] }),
      ).rejects.toThrow(InvalidArgumentException);
      expect(await backend.get('mm.a')).toBe('one');
    });
  });

  describe('write with a guard', () => {
    it('leaves no partial state in Redis when the guard refuses', async () => {
      await backend.set('ws.victim', 'V', ['ws'], 600);
      const before = await keysUnder(backend.prefix);
      const batch = {
        sets: [
          { id: 'ws.a', data: 'A', tags: ['ws', 'ws-other'], lifetime: 60 },
          { id: 'ws.victim', data: 'V2', tags: ['ws-new'] },
        ],
        removes: ['ws.victim'],
      };

      expect(await backend.write(batch, { id: 'ws.fence', fence: 1 })).toBe('missing');
      await backend.write({}, { id: 'ws.fence', fence: 7, create: true, tags: ['ws'] });
      const afterCreate = await keysUnder(backend.prefix);
      expect(await backend.write(batch, { id: 'ws.fence', fence: 6 })).toBe('fenced');

      expect(afterCreate).toEqual([...before, backend.entryKey('ws.fence')].sort());
      expect(await keysUnder(backend.prefix)).toEqual(afterCreate);
      expect(await client.get(backend.entryKey('ws.victim'))).toMatch(/\nws\nV$/);
      expect((await client.zRange(backend.tagKey('ws'), 0, -1)).sort()).toEqual(['ws.fence', 'ws.victim']);
      expect(await client.zRange(backend.expiryIndexKey, 0, -1)).toEqual(['ws.victim']);
    });

    it('is atomic under concurrency: the highest fence wins whatever the order', async () => {
      await backend.write({}, { id: 'cc.fence', fence: 0, create: true, tags: ['cc'] });
      const fences = [7, 3, 19, 1, 12, 20, 5, 16, 9, 2, 14, 11, 18, 4, 8, 6, 13, 15, 10, 17];
      const results = await Promise.all(
        fences.map((fence) =>
          backend.write({ sets: [{ id: 'cc.data', data: `v${fence}`, tags: ['cc'] }] }, { id: 'cc.fence', fence }),
        ),
      );
      expect(results[fences.indexOf(20)]).toBe('ok');
      expect(await backend.get('cc.fence')).toBe('20');
      expect(await backend.get('cc.data')).toBe('v20');
      // Each write that went through had a fence no smaller than all earlier ones.
      const applied = fences.filter((_, i) => results[i] === 'ok');
      expect(applied).toEqual([...applied].sort((a, b) => a - b));
    });
  });

  describe('garbage collection', () => {
    it('removes the entry, its tag memberships and its expiry record', async () => {
      await backend.set('gc.old', 'O', ['gc-t', 'gc-u'], 1);
      await backend.set('gc.live', 'L', ['gc-t'], 600);
      await new Promise((resolve) => setTimeout(resolve, 1100));

      // Before GC the expired entry is still stored (invisible) and indexed.
      expect(await client.exists(backend.entryKey('gc.old'))).toBe(1);
      expect(await client.zScore(backend.tagKey('gc-u'), 'gc.old')).not.toBeNull();

      expect(await backend.collectGarbage()).toEqual([{ id: 'gc.old', data: 'O' }]);

      expect(await client.exists(backend.entryKey('gc.old'))).toBe(0);
      expect(await client.zRange(backend.tagKey('gc-t'), 0, -1)).toEqual(['gc.live']);
      expect(await client.exists(backend.tagKey('gc-u'))).toBe(0);
      expect(await client.zRange(backend.expiryIndexKey, 0, -1)).toEqual(['gc.live']);
    });

    it('skips and repairs stale index records instead of answering live entries', async () => {
      await backend.set('st.live', 'L', [], 600);
      // A record pointing at a live entry too early, and one for an entry that is gone.
      await client.zAdd(backend.expiryIndexKey, [
        { score: 1, value: 'st.live' },
        { score: 2, value: 'st.gone' },
      ]);
      expect(await backend.collectGarbage(1)).toEqual([]);
      expect(await client.zRange(backend.expiryIndexKey, 0, -1)).toEqual(['st.live']);
      expect(Number(await client.zScore(backend.expiryIndexKey, 'st.live'))).toBeGreaterThan(Date.now());
    });
  });

  describe('tag sets', () => {
    it('prune members whose entry is gone or no longer carries the tag when read', async () => {
      await backend.set('pr.a', 'A', ['pr']);
      await backend.set('pr.b', 'B', ['other']);
      await client.zAdd(backend.tagKey('pr'), [
        { score: 1, value: 'pr.gone' },
        { score: 1, value: 'pr.b' },
      ]);

      expect(await backend.findIdentifiersByTag('pr')).toEqual(['pr.a']);
      expect(await client.zRange(backend.tagKey('pr'), 0, -1)).toEqual(['pr.a']);
    });
  });

  describe('commands and round trips', () => {
    it('uses one command per operation, loading each script once in the same round trip', async () => {
      const recorded = recordingClient();
      const counted = makeBackend('count', { client: recorded.client });
      await counted.write(
        { sets: [{ id: 'rt.k1', data: 'one', tags: ['rt'] }] },
        { id: 'rt.fence', fence: 1, create: true, tags: ['rt'] },
      );
      // The write is a Redis function: FUNCTION LOAD rides with its first FCALL.
      expect(recorded.commands.map((c) => c.slice(0, 2).join(' '))).toEqual([
        'FUNCTION LOAD',
        `FCALL ${STANDALONE_WRITE.functionName}`,
      ]);

      recorded.commands.length = 0;
      await counted.get('rt.fence');
      await counted.getMany(['rt.k1', 'rt.k2', 'rt.k3']);
      await counted.has('rt.k1');
      await counted.write({ sets: [{ id: 'rt.k2', data: 'two', tags: ['rt'] }] }, { id: 'rt.fence', fence: 2 });
      expect(recorded.commands.map((c) => c[0])).toEqual(['GET', 'MGET', 'GETRANGE', 'FCALL']);
    });

    it('falls back to EVAL when Redis answers NOSCRIPT', async () => {
      let refused = 0;
      const recorded = recordingClient((args) => {
        if (args[0] === 'SCRIPT') return Promise.resolve('ignored');
        if (args[0] === 'EVALSHA') {
          refused++;
          return Promise.reject(new Error('NOSCRIPT No matching script. Please use EVAL.'));
        }
        return undefined;
      });
      const reloaded = makeBackend('noscript', { client: recorded.client });
      await reloaded.set('ns.a', 'A', ['ns']);
      expect(await reloaded.findIdentifiersByTag('ns')).toEqual(['ns.a']);
      expect(refused).toBe(1);
      expect(recorded.commands.map((c) => c[0])).toEqual(['FUNCTION', 'FCALL', 'SCRIPT', 'EVALSHA', 'EVAL']);
    });

    it('loads the write function again when Redis lost it (restart, FUNCTION FLUSH), and the write lands once', async () => {
      let lost = 1;
      const recorded = recordingClient((args) => {
        if (args[0] === 'FCALL' && lost > 0) {
          lost--;
          return Promise.reject(new Error('ERR Function not found'));
        }
        return undefined;
      });
      const reloaded = makeBackend('fnlost', { client: recorded.client });
      await reloaded.set('fl.a', 'A', ['fl']);
      expect(recorded.commands.map((c) => c.slice(0, 2).join(' '))).toEqual([
        'FUNCTION LOAD',
        `FCALL ${STANDALONE_WRITE.functionName}`,
        'FUNCTION LOAD',
        `FCALL ${STANDALONE_WRITE.functionName}`,
      ]);
      expect(await reloaded.get('fl.a')).toBe('A');
      expect(await reloaded.findIdentifiersByTag('fl')).toEqual(['fl.a']);
    });

    it('runs the same code as EVAL scripts where Redis has no functions (Redis 6, an ACL without FUNCTION)', async () => {
      for (const refusal of [
        "ERR unknown command 'FCALL', with args beginning with: ",
        "NOPERM this user has no permissions to run the 'fcall' command",
      ]) {
        const recorded = recordingClient((args) => {
          if (args[0] === 'FUNCTION' || args[0] === 'FCALL') return Promise.reject(new Error(refusal));
          return undefined;
        });
        const old = makeBackend('nofn', { client: recorded.client });
        await old.write(
          { sets: [{ id: 'nf.k', data: 'one', tags: ['nf'] }] },
          { id: 'nf.~guard', fence: 1, create: true, tags: ['nf'] },
        );
        await old.write({ sets: [{ id: 'nf.k', data: 'two', tags: ['nf'] }] }, { id: 'nf.~guard', fence: 2 });
        // Asked once; from then on the EVAL script only.
        expect(recorded.commands.map((c) => c[0])).toEqual(['FUNCTION', 'FCALL', 'SCRIPT', 'EVALSHA', 'EVALSHA']);
        expect(await old.get('nf.k')).toBe('two');
        expect(await old.write({ sets: [{ id: 'nf.k', data: 'old' }] }, { id: 'nf.~guard', fence: 1 })).toBe('fenced');
        await old.flush();
      }
    });
  });

  describe('store failures', () => {
    it('turns errors of a disconnected client into StoreUnavailableException', async () => {
      const lost = await connectTestRedis();
      const broken = makeBackend('broken', { client: lost });
      await broken.set('down.a', 'A', ['down']);
      lost.destroy();

      const operations: Array<() => Promise<unknown>> = [
        () => broken.get('down.a'),
        () => broken.getMany(['down.a']),
        () => broken.has('down.a'),
        () => broken.set('down.b', 'B'),
        () => broken.write({ sets: [{ id: 'down.b', data: 'B' }] }, { id: 'down.fence', fence: 1, create: true }),
        () => broken.remove('down.a'),
        () => broken.getByTag('down'),
        () => broken.findIdentifiersByTag('down'),
        () => broken.flushByTag('down'),
        () => broken.collectGarbage(),
        () => broken.flush(),
      ];
      for (const operation of operations) {
        const error = await operation().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(StoreUnavailableException);
        expect((error as StoreUnavailableException).httpStatus).toBe(503);
        expect((error as Error).message).toMatch(/^The session store is unavailable \(redis \w+: /);
      }
      // Nothing was written after the connection went away.
      expect(await client.exists(broken.entryKey('down.b'))).toBe(0);
    });
  });
});
