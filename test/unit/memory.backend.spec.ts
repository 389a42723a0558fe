import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { MemoryBackend } from '../../lib/cache/memory.backend.js';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { backendContract } from '../contract/backend.contract.js';
import { movesGroupsContract } from '../contract/moves-groups.contract.js';

backendContract('memory', async () => {
  const backend = new MemoryBackend();
  return { backend, cleanup: () => backend.close() };
});

movesGroupsContract('memory', async () => new MemoryBackend());

describe('MemoryBackend', () => {
  beforeEach(() => {
    jest.useFakeTimers({ now: new Date('2031-01-01T00:00:00.000Z'), doNotFake: ['nextTick', 'queueMicrotask'] });
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('is named memory', () => {
    expect(new MemoryBackend().name).toBe('memory');
  });

  describe('maxEntryBytes', () => {
    it('defaults to 1 MiB of data', async () => {
      const backend = new MemoryBackend();
      await backend.set('max.ok', 'x'.repeat(1024 * 1024));
      expect((await backend.get('max.ok'))?.length).toBe(1024 * 1024);
      await expect(backend.set('max.big', 'x'.repeat(1024 * 1024 + 1))).rejects.toThrow(InvalidArgumentException);
      expect(await backend.has('max.big')).toBe(false);
    });

    it('rejects a bigger set, naming the id and the limit, and keeps the old data', async () => {
      const backend = new MemoryBackend({ maxEntryBytes: 10 });
      await backend.set('max.a', '0123456789', ['max']);

      const error = await backend.set('max.a', '0123456789+', ['other'], 60).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidArgumentException);
      expect((error as Error).message).toContain('"max.a"');
      expect((error as Error).message).toContain('maxEntryBytes (10)');

      expect(await backend.get('max.a')).toBe('0123456789');
      expect(await backend.findIdentifiersByTag('max')).toEqual(['max.a']);
      expect(backend.stats()).toEqual({ entries: 1, tags: 1, expiryIndex: 0 });
    });

    it('rejects a write batch with one oversized entry without applying any part of it', async () => {
      const backend = new MemoryBackend({ maxEntryBytes: 10 });
      await backend.set('wmax.victim', 'V', ['wmax']);

      await expect(
        backend.write(
          {
            sets: [
              { id: 'wmax.ok', data: 'small', tags: ['wmax'], lifetime: 60 },
              { id: 'wmax.big', data: 'far too large', tags: ['wmax'] },
            ],
            removes: ['wmax.victim'],
          },
          { id: 'wmax.fence', fence: 1, create: true, tags: ['wmax'] },
        ),
      ).rejects.toThrow(/"wmax\.big".*maxEntryBytes \(10\)/);

      expect(await backend.getMany(['wmax.ok', 'wmax.big', 'wmax.victim', 'wmax.fence'])).toEqual([
        undefined,
        undefined,
        'V',
        undefined,
      ]);
      expect(backend.stats()).toEqual({ entries: 1, tags: 1, expiryIndex: 0 });
    });

    it('rejects a bad option value', () => {
      expect(() => new MemoryBackend({ maxEntryBytes: 0 })).toThrow(InvalidArgumentException);
      expect(() => new MemoryBackend({ maxEntryBytes: Number.NaN })).toThrow(/maxEntryBytes/);
      expect(() => new MemoryBackend({ maxEntryBytes: Infinity })).not.toThrow();
    });
  });

  describe('arguments', () => {
    it('rejects negative or non-finite lifetimes and GC limits', async () => {
      const backend = new MemoryBackend();
      await expect(backend.set('arg.a', 'A', [], -1)).rejects.toThrow(InvalidArgumentException);
      await expect(backend.set('arg.a', 'A', [], Number.NaN)).rejects.toThrow(/lifetime/);
      await expect(backend.write({ sets: [{ id: 'arg.b', data: 'B', lifetime: -5 }] })).rejects.toThrow(/"arg\.b"/);
      await expect(backend.collectGarbage(-1)).rejects.toThrow(InvalidArgumentException);
      expect(backend.stats().entries).toBe(0);
    });

    it('keeps its own copy of the tags', async () => {
      const backend = new MemoryBackend();
      const tags = ['copy-a'];
      await backend.set('copy.x', 'X', tags);
      tags[0] = 'copy-b';
      await backend.remove('copy.x');
      expect(backend.stats()).toEqual({ entries: 0, tags: 0, expiryIndex: 0 });
    });

    it('accepts fractional lifetimes', async () => {
      const backend = new MemoryBackend();
      await backend.set('frac.a', 'A', [], 0.5);
      jest.setSystemTime(Date.now() + 499);
      expect(await backend.get('frac.a')).toBe('A');
      jest.setSystemTime(Date.now() + 1);
      expect(await backend.get('frac.a')).toBeUndefined();
    });
  });

  describe('stats and memory bounds', () => {
    it('drops tags and expiry records together with their entries', async () => {
      const backend = new MemoryBackend();
      for (let i = 0; i < 100; i++) await backend.set(`st.${i}`, 'x', [`st-${i}`, 'st-all'], i % 2 === 0 ? 60 : 0);
      expect(backend.stats()).toEqual({ entries: 100, tags: 101, expiryIndex: 50 });

      for (let i = 0; i < 10; i++) await backend.remove(`st.${i}`);
      expect(backend.stats()).toMatchObject({ entries: 90, tags: 91 });

      expect(await backend.flushByTag('st-all')).toBe(90);
      expect(backend.stats()).toMatchObject({ entries: 0, tags: 0 });

      // The expiry records left behind are stale; GC drops them without answering them.
      jest.setSystemTime(Date.now() + 61_000);
      expect(await backend.collectGarbage()).toEqual([]);
      expect(backend.stats()).toEqual({ entries: 0, tags: 0, expiryIndex: 0 });
    });

    it('keeps the expiry index bounded when one entry is re-set 100k times', async () => {
      const backend = new MemoryBackend();
      await backend.set('hp.other', 'o', [], 3600);
      for (let i = 0; i < 100_000; i++) {
        // Alternating, growing and shrinking lifetimes, with and without time passing.
        if (i % 3 === 0) jest.setSystemTime(Date.now() + 1);
        await backend.set('hp.hot', `v${i}`, ['hp'], [30, 60, 1, 0, 45][i % 5]);
      }
      const stats = backend.stats();
      expect(stats.entries).toBe(2);
      // Stale records are compacted away once they exceed 2x the live ones (plus a small slack).
      expect(stats.expiryIndex).toBeLessThanOrEqual(2 * 2 + 64);

      // The index is still right: the last lifetime was 45 s.
      expect(await backend.get('hp.hot')).toBe('v99999');
      jest.setSystemTime(Date.now() + 44_000);
      expect(await backend.collectGarbage()).toEqual([]);
      jest.setSystemTime(Date.now() + 2_000);
      expect(await backend.collectGarbage()).toEqual([{ id: 'hp.hot', data: 'v99999' }]);
      expect(backend.stats()).toMatchObject({ entries: 1, tags: 0 });
      jest.setSystemTime(Date.now() + 3600_000);
      expect(await backend.collectGarbage()).toEqual([{ id: 'hp.other', data: 'o' }]);
      expect(backend.stats()).toEqual({ entries: 0, tags: 0, expiryIndex: 0 });
    });

    it('keeps the expiry index bounded when many entries are touched again and again', async () => {
      const backend = new MemoryBackend();
      for (let round = 0; round < 100; round++) {
        jest.setSystemTime(Date.now() + 1000);
        for (let i = 0; i < 1000; i++) await backend.set(`many.${i}`, `r${round}`, ['many'], 1800);
        expect(backend.stats().expiryIndex).toBeLessThanOrEqual(2 * 1000 + 64);
      }
      jest.setSystemTime(Date.now() + 1_799_000);
      expect(await backend.collectGarbage()).toEqual([]);
      jest.setSystemTime(Date.now() + 1000);
      const collected = await backend.collectGarbage();
      expect(collected).toHaveLength(1000);
      expect(new Set(collected.map((entry) => entry.data))).toEqual(new Set(['r99']));
      expect(backend.stats()).toEqual({ entries: 0, tags: 0, expiryIndex: 0 });
    });

    it('collects 10 expired entries among 100k live ones', async () => {
      const backend = new MemoryBackend();
      for (let i = 0; i < 100_000; i++) await backend.set(`on.${i}`, 'x', ['on'], i % 2 === 0 ? 3600 : 0);
      for (let i = 0; i < 10; i++) await backend.set(`off.${i}`, `gone${i}`, ['off'], 10 + i);
      jest.setSystemTime(Date.now() + 30_000);

      const collected = await backend.collectGarbage();

      expect(collected).toEqual(Array.from({ length: 10 }, (_, i) => ({ id: `off.${i}`, data: `gone${i}` })));
      expect(backend.stats()).toEqual({ entries: 100_000, tags: 1, expiryIndex: 50_000 });
      expect(await backend.collectGarbage()).toEqual([]);
    });

    it('collects in expiry order whatever the insertion order', async () => {
      const backend = new MemoryBackend();
      const lifetimes = [50, 3, 40, 7, 1, 90, 20, 5, 60, 2, 30, 10];
      for (const [i, lifetime] of lifetimes.entries()) {
        await backend.set(`ord.${i}`, String(lifetime), [], lifetime);
      }
      // Reshuffle some lifetimes in place.
      await backend.set('ord.0', '4', [], 4);
      await backend.set('ord.5', '0', [], 0);
      await backend.set('ord.1', '70', [], 70);

      jest.setSystemTime(Date.now() + 100_000);
      const order = (await backend.collectGarbage()).map((entry) => Number(entry.data));
      expect(order).toEqual([1, 2, 4, 5, 7, 10, 20, 30, 40, 60, 70]);
      expect(backend.stats()).toEqual({ entries: 1, tags: 0, expiryIndex: 0 });
    });
  });

  describe('edge cases', () => {
    it('counts only live entries in remove() and flushByTag(), but removes the expired ones too', async () => {
      const backend = new MemoryBackend();
      await backend.set('ec.a', 'A', ['ec'], 1);
      await backend.set('ec.b', 'B', ['ec'], 1);
      await backend.set('ec.c', 'C', ['ec']);
      jest.setSystemTime(Date.now() + 2000);

      expect(await backend.remove('ec.a')).toBe(false);
      expect(await backend.flushByTag('ec')).toBe(1);
      expect(backend.stats()).toMatchObject({ entries: 0, tags: 0 });
      // Removed already, so GC has nothing to answer (their records were stale).
      expect(await backend.collectGarbage()).toEqual([]);
      expect(backend.stats().expiryIndex).toBe(0);
    });

    it('treats an expired guard entry as missing, or replaces it when creating', async () => {
      const backend = new MemoryBackend();
      await backend.set('eg.fence', '1', ['eg-old'], 1);
      jest.setSystemTime(Date.now() + 2000);

      expect(await backend.write({ sets: [{ id: 'eg.a', data: 'A' }] }, { id: 'eg.fence', fence: 5 })).toBe('missing');
      expect(await backend.has('eg.a')).toBe(false);

      expect(
        await backend.write({ sets: [{ id: 'eg.a', data: 'A' }] }, { id: 'eg.fence', fence: 0, create: true, tags: ['eg'] }),
      ).toBe('ok');
      expect(await backend.get('eg.fence')).toBe('0');
      expect(await backend.findIdentifiersByTag('eg')).toEqual(['eg.fence']);
      expect(await backend.findIdentifiersByTag('eg-old')).toEqual([]);
      // The guard entry no longer expires.
      jest.setSystemTime(Date.now() + 3600_000);
      expect(await backend.collectGarbage()).toEqual([]);
      expect(await backend.get('eg.fence')).toBe('0');
    });

    it('leaves the guard entry removed when the batch removes it', async () => {
      const backend = new MemoryBackend();
      await backend.write({}, { id: 'gr.fence', fence: 1, create: true, tags: ['gr'] });
      expect(await backend.write({ removes: ['gr.fence'] }, { id: 'gr.fence', fence: 2 })).toBe('ok');
      expect(await backend.has('gr.fence')).toBe(false);
    });

    it('close() empties the backend and leaves it usable', async () => {
      const backend = new MemoryBackend();
      await backend.set('cl.a', 'A', ['cl'], 60);
      await backend.close();
      expect(backend.stats()).toEqual({ entries: 0, tags: 0, expiryIndex: 0 });
      expect(await backend.get('cl.a')).toBeUndefined();
      await backend.set('cl.a', 'A2');
      expect(await backend.get('cl.a')).toBe('A2');
    });
  });
});

describe('MemoryBackend tag index (small groups, arrays and sets)', () => {
  it('agrees with a plain model through random sets, retags, removes and flushes', async () => {
    const backend = new MemoryBackend();
    const model = new Map<string, Set<string>>(); // id -> tags
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const tags = ['a', 'b', 'c', 'd', 'e'];
    for (let step = 0; step < 5000; step++) {
      const id = `id${random(30)}`;
      const op = random(10);
      if (op < 6) {
        const chosen = tags.filter(() => random(3) === 0);
        await backend.set(id, 'x', chosen);
        model.set(id, new Set(chosen));
      } else if (op < 9) {
        await backend.remove(id);
        model.delete(id);
      } else {
        const tag = tags[random(tags.length)]!;
        await backend.flushByTag(tag);
        for (const [key, t] of model) if (t.has(tag)) model.delete(key);
      }
      if (step % 50 === 0) {
        for (const tag of tags) {
          const expected = [...model]
            .filter(([, t]) => t.has(tag))
            .map(([key]) => key)
            .sort();
          expect((await backend.findIdentifiersByTag(tag)).sort()).toEqual(expected);
          expect((await backend.getByTag(tag)).map((e) => e.id).sort()).toEqual(expected);
        }
      }
    }
    // Every tag with members is indexed once, and none without.
    const used = new Set([...model.values()].flatMap((t) => [...t]));
    expect(backend.stats().tags).toBe(used.size);
  });
});
