import { describe, expect, it } from '@jest/globals';
import { MemoryBackend } from '../../lib/cache/memory.backend.js';
import { hashString } from '../../lib/cache/memory/string-hash.js';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';

const sorted = (ids: string[]): string[] => [...ids].sort();

/** Two different tags with the same 32-bit hash (a birthday search: about 80k tries). */
function collidingTags(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const tag = `c${i}`;
    const hash = hashString(tag);
    const other = seen.get(hash);
    if (other !== undefined) return [other, tag];
    seen.set(hash, tag);
  }
}

describe('MemoryBackend compact layout', () => {
  it('grows a tag group past the small size into a set and back, answering the right members throughout', async () => {
    const backend = new MemoryBackend();
    const expected: string[] = [];
    for (let i = 0; i < 40; i++) {
      await backend.set(`grp.${i}`, `v${i}`, ['grp', `own-${i}`]);
      expected.push(`grp.${i}`);
      expect(sorted(await backend.findIdentifiersByTag('grp'))).toEqual(sorted(expected));
    }
    for (let i = 39; i >= 0; i--) {
      await backend.remove(`grp.${i}`);
      expected.pop();
      expect(sorted(await backend.findIdentifiersByTag('grp'))).toEqual(sorted(expected));
      expect((await backend.getByTag('grp')).map((e) => e.data).sort()).toEqual(sorted(expected.map((id) => `v${id.slice(4)}`)));
      expect(backend.stats().tags).toBe(i === 0 ? 0 : i + 1);
    }
    expect(backend.stats()).toEqual({ entries: 0, tags: 0, expiryIndex: 0 });
  });

  it('keeps entries tagged with their own group (ids stored relative to the tag) right through retags and flushes', async () => {
    const backend = new MemoryBackend();
    // `s1.cart` tagged `s1`: stored as the shared suffix `.cart` after the tag.
    for (let s = 0; s < 50; s++) {
      await backend.write(
        { sets: [{ id: `s${s}.cart`, data: `c${s}`, tags: [`s${s}`] }] },
        { id: `s${s}.~guard`, fence: 1, create: true, tags: [`s${s}`], lifetime: 60 },
      );
    }
    expect(await backend.get('s7.cart')).toBe('c7');
    expect(await backend.get('s7.~guard')).toBe('1');
    expect(await backend.get('s7.car')).toBeUndefined();
    expect(await backend.get('s77.cart')).toBeUndefined();
    expect(await backend.get('s.cart')).toBeUndefined();
    expect(sorted(await backend.findIdentifiersByTag('s7'))).toEqual(['s7.cart', 's7.~guard']);

    // Retag: the id no longer continues its tag, so it is stored whole; and back again.
    await backend.set('s7.cart', 'moved', ['elsewhere']);
    expect(await backend.get('s7.cart')).toBe('moved');
    expect(await backend.findIdentifiersByTag('s7')).toEqual(['s7.~guard']);
    expect(await backend.findIdentifiersByTag('elsewhere')).toEqual(['s7.cart']);
    await backend.set('s7.cart', 'back', ['s7']);
    expect(sorted(await backend.findIdentifiersByTag('s7'))).toEqual(['s7.cart', 's7.~guard']);
    expect(await backend.findIdentifiersByTag('elsewhere')).toEqual([]);

    expect(await backend.flushByTag('s7')).toBe(2);
    expect(await backend.get('s7.cart')).toBeUndefined();
    expect(await backend.get('s8.cart')).toBe('c8');
    expect(backend.stats()).toEqual({ entries: 98, tags: 49, expiryIndex: 49 });

    // GC answers whole ids of relative entries.
    const later = Date.now() + 61_000;
    const realNow = Date.now;
    Date.now = () => later;
    try {
      const collected = await backend.collectGarbage(3);
      expect(collected).toHaveLength(3);
      for (const entry of collected) expect(entry).toEqual({ id: expect.stringMatching(/^s\d+\.~guard$/), data: '1' });
    } finally {
      Date.now = realNow;
    }
  });

  it('round-trips odd data: empty, unicode, very long, separators; and odd ids', async () => {
    const backend = new MemoryBackend({ maxEntryBytes: Infinity });
    const values = [
      '',
      '\u0000\u0001\u0002',
      'Grüße 日本語 👋🏽👨‍👩‍👧 e\u0301 مرحبا',
      'x'.repeat(2_000_000),
      `${'ab'.repeat(50)}${'c'.repeat(50)}`,
    ];
    for (const [i, value] of values.entries()) {
      await backend.set(`odd.${i}`, value, ['odd']);
      await backend.set(`odd-${i}`, value, [`odd-${i}`]);
    }
    for (const [i, value] of values.entries()) {
      expect(await backend.get(`odd.${i}`)).toBe(value);
      expect(await backend.get(`odd-${i}`)).toBe(value);
    }
    expect((await backend.getByTag('odd')).map((e) => e.data).sort()).toEqual([...values].sort());
    for (const id of ['ü.key', 'ü', 'a.b.c', '.leading', 'trailing.', '日本.語']) {
      await backend.set(id, id, [id.split('.')[0] || 'empty-group']);
      expect(await backend.get(id)).toBe(id);
    }
    expect(await backend.findIdentifiersByTag('ü')).toEqual(['ü.key', 'ü']);
  });

  it('refuses empty tags and tags containing NUL, storing nothing', async () => {
    const backend = new MemoryBackend();
    await expect(backend.set('bad.a', 'x', [''])).rejects.toThrow(InvalidArgumentException);
    await expect(backend.set('bad.a', 'x', ['a\u0000b'])).rejects.toThrow(InvalidArgumentException);
    await expect(backend.write({ sets: [{ id: 'bad.b', data: 'x', tags: ['ok', ''] }] })).rejects.toThrow(
      InvalidArgumentException,
    );
    expect(backend.stats()).toEqual({ entries: 0, tags: 0, expiryIndex: 0 });
  });

  it('tells apart two tags of one entry that share a hash', async () => {
    const [a, b] = collidingTags();
    expect(hashString(a)).toBe(hashString(b));
    const backend = new MemoryBackend();
    await backend.set('col.1', '1', [a, b]);
    expect(await backend.findIdentifiersByTag(a)).toEqual(['col.1']);
    expect(await backend.findIdentifiersByTag(b)).toEqual(['col.1']);
    // b becomes a group of two; a stays a lone member.
    await backend.set('col.2', '2', [b]);
    expect(await backend.findIdentifiersByTag(a)).toEqual(['col.1']);
    expect(sorted(await backend.findIdentifiersByTag(b))).toEqual(['col.1', 'col.2']);
    expect(backend.stats().tags).toBe(2);
    await backend.set('col.1', '1', [a]);
    expect(await backend.findIdentifiersByTag(a)).toEqual(['col.1']);
    expect(await backend.findIdentifiersByTag(b)).toEqual(['col.2']);
    await backend.remove('col.1');
    expect(await backend.findIdentifiersByTag(a)).toEqual([]);
    expect(await backend.findIdentifiersByTag(b)).toEqual(['col.2']);
    expect(backend.stats().tags).toBe(1);
  });

  it('reuses freed slots and gives all memory back once empty', async () => {
    const backend = new MemoryBackend();
    for (let i = 0; i < 10_000; i++) await backend.set(`re.${i}`, 'x', ['re', `re-${i}`], 60);
    const full = backend.memoryUsage();
    for (let i = 0; i < 5_000; i++) await backend.remove(`re.${i}`);
    for (let i = 0; i < 5_000; i++) await backend.set(`re2.${i}`, 'y', ['re'], 60);
    expect(backend.memoryUsage().slots).toBeLessThanOrEqual(full.slots);
    expect(backend.stats()).toEqual({ entries: 10_000, tags: 5_001, expiryIndex: 10_000 });
    expect(await backend.flushByTag('re')).toBe(10_000);
    const empty = backend.memoryUsage();
    expect(empty.total).toBeLessThan(full.total / 50);
    expect(empty.ids + empty.data + empty.tagStrings).toBe(0);
  });

  it('estimates its memory by structure, with shares by kind of entry', async () => {
    const backend = new MemoryBackend();
    for (let i = 0; i < 100; i++) {
      await backend.write(
        { sets: [{ id: `m${i}.n`, data: `[${i}]`, tags: [`m${i}`] }] },
        { id: `m${i}.~guard`, fence: 0, create: true, tags: [`m${i}`], lifetime: 60 },
      );
    }
    const usage = backend.memoryUsage((id) => (id.endsWith('.~guard') ? 'guard' : 'data'));
    expect(Object.keys(usage.shares).sort()).toEqual(['data', 'guard']);
    expect(usage.total).toBe(
      usage.ids + usage.data + usage.tagStrings + usage.slots + usage.idIndex + usage.tagIndex + usage.expiryIndex,
    );
    // The suffixes `.n` and `.~guard` are shared: ids cost two small strings, not 200.
    expect(usage.ids).toBeLessThanOrEqual(2 * 32);
    expect(usage.expiryIndex).toBeGreaterThan(0);
  });
});
