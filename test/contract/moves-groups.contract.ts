import { describe, expect, it } from '@jest/globals';
import type { TaggableBackend } from '../../lib/cache/taggable-backend.interface.js';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';

/**
 * What a backend with `movesGroups` must do with `WriteBatch.mustMatch` and `WriteGuard.copyFrom`
 * (the commits and storage moves the session layer makes without the lock). `make()` answers a
 * fresh, empty backend of the engine.
 */
/** A creating guard of `group` (fence 0, a minute to live), with `extra` fields. */
export const guardOf = (group: string, extra: Record<string, unknown> = {}) => ({
  id: `${group}.~guard`,
  fence: 0,
  create: true,
  tags: [group],
  lifetime: 60,
  ...extra,
});

/** Sets of `group`'s entries, tagged with the group. */
export const entries = (group: string, values: Record<string, string>) =>
  Object.entries(values).map(([key, data]) => ({ id: `${group}.${key}`, data, tags: [group] }));

export function movesGroupsContract(name: string, make: () => Promise<TaggableBackend>): void {
  describe(`${name}: moving groups (movesGroups)`, () => {
    it('mustMatch applies only while the entry is live and holds exactly that data, writing nothing', async () => {
      const backend = await make();
      expect(backend.movesGroups).toBe(true);
      await backend.set('mm.a', 'one');
      await backend.set('mm.b', 'two', undefined, 0.05);
      expect(await backend.write({ mustMatch: [{ id: 'mm.a', data: 'one' }] })).toBe('ok');
      expect(await backend.write({ mustMatch: [{ id: 'mm.a', data: 'on' }] })).toBe('changed');
      expect(await backend.write({ mustMatch: [{ id: 'mm.a', data: 'one!' }] })).toBe('changed');
      expect(await backend.write({ mustMatch: [{ id: 'mm.none', data: 'one' }] })).toBe('changed');
      await new Promise((resolve) => setTimeout(resolve, 80));
      expect(await backend.write({ mustMatch: [{ id: 'mm.b', data: 'two' }] })).toBe('changed');
      expect(await backend.get('mm.a')).toBe('one');
    });

    it('copyFrom starts the new group with the source entries (not its guard), the write on top, the source untouched', async () => {
      const backend = await make();
      expect(await backend.write({ sets: entries('src', { a: 'A', b: 'B', c: 'C' }) }, guardOf('src'))).toBe('ok');
      expect(
        await backend.write(
          { sets: entries('dst', { b: 'B2', d: 'D' }), removes: ['dst.c'] },
          guardOf('dst', { copyFrom: 'src' }),
        ),
      ).toBe('ok');
      expect(await backend.getMany(['dst.a', 'dst.b', 'dst.c', 'dst.d'])).toEqual(['A', 'B2', undefined, 'D']);
      expect((await backend.findIdentifiersByTag('dst')).sort()).toEqual(['dst.a', 'dst.b', 'dst.d', 'dst.~guard']);
      expect(await backend.getMany(['src.a', 'src.b', 'src.c'])).toEqual(['A', 'B', 'C']);
      // The new guard fences as any created one.
      expect(await backend.write({ sets: entries('dst', { a: 'A2' }) }, { id: 'dst.~guard', fence: 1 })).toBe('ok');
      expect(await backend.get('dst.a')).toBe('A2');
    });

    it('copyFrom of a source holding an entry it cannot copy as such (own lifetime, another tag) answers changed and writes nothing', async () => {
      const backend = await make();
      for (const [group, odd] of [
        ['s1', { id: 's1.x', data: 'X', tags: ['s1'], lifetime: 30 }],
        ['s2', { id: 's2.x', data: 'X', tags: ['s2', 'red'] }],
      ] as const) {
        expect(await backend.write({ sets: [...entries(group, { a: 'A' }), odd] }, guardOf(group))).toBe('ok');
        const target = `${group}-to`;
        expect(await backend.write({ sets: entries(target, { b: 'B' }) }, guardOf(target, { copyFrom: group }))).toBe('changed');
        expect(await backend.findIdentifiersByTag(target)).toEqual([]);
        expect(await backend.get(`${target}.b`)).toBeUndefined();
      }
    });

    it('copyFrom counts the copies against maxEntries', async () => {
      const backend = await make();
      expect(await backend.write({ sets: entries('cap', { a: 'A', b: 'B' }) }, guardOf('cap'))).toBe('ok');
      expect(
        await backend.write({ sets: entries('cap2', { c: 'C' }) }, guardOf('cap2', { copyFrom: 'cap', maxEntries: 2 })),
      ).toBe('full');
      expect(await backend.findIdentifiersByTag('cap2')).toEqual([]);
      expect(
        await backend.write({ sets: entries('cap3', { c: 'C' }) }, guardOf('cap3', { copyFrom: 'cap', maxEntries: 3 })),
      ).toBe('ok');
    });

    it('refuses copyFrom without a creating guard, or naming its own group', async () => {
      const backend = await make();
      await expect(backend.write({}, { id: 'g.~guard', fence: 0, copyFrom: 'h' })).rejects.toThrow(InvalidArgumentException);
      await expect(backend.write({}, guardOf('g', { copyFrom: 'g' }))).rejects.toThrow(InvalidArgumentException);
    });
  });
}
