import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { TaggableBackend } from '../../lib/cache/taggable-backend.interface.js';
import { fakeOnlyDate } from '../support/fake-date.js';

/** What a contract factory answers: a fresh, empty backend and how to dispose of it. */
export interface BackendUnderTest {
  backend: TaggableBackend;
  cleanup: () => Promise<void>;
}

export interface BackendContractOptions {
  /**
   * The backend keeps time outside this process (Redis), so Jest's fake clock cannot move it:
   * expiry cases then use real 1-second lifetimes and wait for them (a few seconds in all).
   * Otherwise only `Date` is faked and moved forward.
   */
  realTime?: boolean;
}

/** Every lifetime in this suite is 1 second; waiting this long makes such an entry expire. */
const EXPIRED_AFTER_MS = 1250;

/**
 * The contract every `TaggableBackend` must pass (memory, Redis, cache-manager, ...). Call it
 * from a spec file: `backendContract('redis', async () => ({ backend, cleanup }), { realTime: true })`.
 *
 * `factory` runs before every test and must give a backend that sees no entry of any other
 * test (a fresh instance, or a unique key prefix on a shared store); `cleanup` runs after it.
 */
export function backendContract(
  name: string,
  factory: () => Promise<BackendUnderTest>,
  options: BackendContractOptions = {},
): void {
  const realTime = options.realTime === true;

  describe(`TaggableBackend contract: ${name}`, () => {
    let backend: TaggableBackend;
    let cleanup: (() => Promise<void>) | undefined;

    beforeEach(async () => {
      if (!realTime) {
        // Only Date: the store's client may rely on real timers and microtasks.
        fakeOnlyDate(new Date('2031-03-04T05:06:07.000Z'));
      }
      const made = await factory();
      backend = made.backend;
      cleanup = made.cleanup;
    });

    afterEach(async () => {
      try {
        await cleanup?.();
      } finally {
        cleanup = undefined;
        if (!realTime) jest.useRealTimers();
      }
    });

    /** Lets `ms` pass for the backend: moves the fake clock, or really waits. */
    async function elapse(ms: number): Promise<void> {
      if (realTime) await new Promise((resolve) => setTimeout(resolve, ms));
      else jest.setSystemTime(Date.now() + ms);
    }

    const sorted = (values: readonly string[]): string[] => [...values].sort();
    const byId = <T extends { id: string }>(entries: readonly T[]): T[] =>
      [...entries].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

    it('has a name', () => {
      expect(typeof backend.name).toBe('string');
      expect(backend.name.length).toBeGreaterThan(0);
    });

    describe('get, set, has, remove', () => {
      it('round-trips an entry', async () => {
        expect(await backend.get('rt.a')).toBeUndefined();
        expect(await backend.has('rt.a')).toBe(false);

        await backend.set('rt.a', 'hello');
        expect(await backend.get('rt.a')).toBe('hello');
        expect(await backend.has('rt.a')).toBe(true);

        expect(await backend.remove('rt.a')).toBe(true);
        expect(await backend.get('rt.a')).toBeUndefined();
        expect(await backend.has('rt.a')).toBe(false);
        expect(await backend.remove('rt.a')).toBe(false);
      });

      it('stores the empty string as data', async () => {
        await backend.set('rt.empty', '');
        expect(await backend.get('rt.empty')).toBe('');
        expect(await backend.has('rt.empty')).toBe(true);
      });

      it('answers false when removing an entry that never existed', async () => {
        expect(await backend.remove('rt.never')).toBe(false);
      });

      it('keeps entries apart', async () => {
        await backend.set('rt.one', '1');
        await backend.set('rt.two', '2');
        await backend.remove('rt.one');
        expect(await backend.get('rt.one')).toBeUndefined();
        expect(await backend.get('rt.two')).toBe('2');
      });

      it('overwrite replaces data and tags', async () => {
        await backend.set('ow.a', 'old', ['ow-t1', 'ow-t2']);
        await backend.set('ow.a', 'new', ['ow-t3']);

        expect(await backend.get('ow.a')).toBe('new');
        expect(await backend.findIdentifiersByTag('ow-t1')).toEqual([]);
        expect(await backend.findIdentifiersByTag('ow-t2')).toEqual([]);
        expect(await backend.findIdentifiersByTag('ow-t3')).toEqual(['ow.a']);
        expect(await backend.getByTag('ow-t3')).toEqual([{ id: 'ow.a', data: 'new' }]);
      });

      it('overwrite without tags drops all tags', async () => {
        await backend.set('ow.b', 'old', ['ow-t4']);
        await backend.set('ow.b', 'new');
        expect(await backend.findIdentifiersByTag('ow-t4')).toEqual([]);
        expect(await backend.flushByTag('ow-t4')).toBe(0);
        expect(await backend.get('ow.b')).toBe('new');
      });
    });

    describe('getMany', () => {
      it('answers aligned with the ids, undefined for missing ones', async () => {
        await backend.set('gm.a', 'A');
        await backend.set('gm.c', 'C');
        expect(await backend.getMany(['gm.a', 'gm.b', 'gm.c', 'gm.a'])).toEqual(['A', undefined, 'C', 'A']);
        expect(await backend.getMany(['gm.x', 'gm.y'])).toEqual([undefined, undefined]);
      });

      it('answers an empty array for no ids', async () => {
        expect(await backend.getMany([])).toEqual([]);
      });
    });

    describe('tags', () => {
      it('finds identifiers and entries by tag', async () => {
        await backend.set('tg.a', 'A', ['tg-red', 'tg-blue']);
        await backend.set('tg.b', 'B', ['tg-red']);
        await backend.set('tg.c', 'C', ['tg-blue']);
        await backend.set('tg.d', 'D');

        expect(sorted(await backend.findIdentifiersByTag('tg-red'))).toEqual(['tg.a', 'tg.b']);
        expect(sorted(await backend.findIdentifiersByTag('tg-blue'))).toEqual(['tg.a', 'tg.c']);
        expect(await backend.findIdentifiersByTag('tg-green')).toEqual([]);

        expect(byId(await backend.getByTag('tg-red'))).toEqual([
          { id: 'tg.a', data: 'A' },
          { id: 'tg.b', data: 'B' },
        ]);
        expect(await backend.getByTag('tg-green')).toEqual([]);
      });

      it('flushByTag removes exactly the tagged entries and counts them', async () => {
        await backend.set('fl.a', 'A', ['fl-x', 'fl-y']);
        await backend.set('fl.b', 'B', ['fl-x']);
        await backend.set('fl.c', 'C', ['fl-x']);
        await backend.set('fl.d', 'D', ['fl-y']);
        await backend.set('fl.e', 'E');

        expect(await backend.flushByTag('fl-x')).toBe(3);
        expect(await backend.getMany(['fl.a', 'fl.b', 'fl.c', 'fl.d', 'fl.e'])).toEqual([
          undefined,
          undefined,
          undefined,
          'D',
          'E',
        ]);
        // The flushed entry also left its other tags.
        expect(await backend.findIdentifiersByTag('fl-y')).toEqual(['fl.d']);
        expect(await backend.findIdentifiersByTag('fl-x')).toEqual([]);
        expect(await backend.flushByTag('fl-x')).toBe(0);
        expect(await backend.flushByTag('fl-unknown')).toBe(0);
      });

      it('retagging an entry removes its old memberships', async () => {
        await backend.set('rtg.a', 'A', ['rtg-old', 'rtg-kept']);
        await backend.set('rtg.a', 'A2', ['rtg-kept', 'rtg-new']);

        expect(await backend.findIdentifiersByTag('rtg-old')).toEqual([]);
        expect(await backend.findIdentifiersByTag('rtg-kept')).toEqual(['rtg.a']);
        expect(await backend.findIdentifiersByTag('rtg-new')).toEqual(['rtg.a']);

        // Flushing the old tag must not take the retagged entry with it.
        expect(await backend.flushByTag('rtg-old')).toBe(0);
        expect(await backend.get('rtg.a')).toBe('A2');
      });

      it('remove drops the tag memberships', async () => {
        await backend.set('rmt.a', 'A', ['rmt-t']);
        await backend.set('rmt.b', 'B', ['rmt-t']);
        expect(await backend.remove('rmt.a')).toBe(true);
        expect(await backend.findIdentifiersByTag('rmt-t')).toEqual(['rmt.b']);

        // Re-created without the tag: the old membership must not come back.
        await backend.set('rmt.a', 'A2');
        expect(await backend.findIdentifiersByTag('rmt-t')).toEqual(['rmt.b']);
        expect(await backend.flushByTag('rmt-t')).toBe(1);
        expect(await backend.get('rmt.a')).toBe('A2');
      });
    });

    describe('findIdentifiersByTagPage (when implemented)', () => {
      /** Every page until the cursor ends; `between` runs after each page. */
      async function allPages(tag: string, limit: number, between: (page: number) => Promise<void> = async () => {}) {
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const step = await backend.findIdentifiersByTagPage!(tag, cursor, limit);
          expect(new Set(step.ids).size).toBe(step.ids.length);
          seen.push(...step.ids);
          cursor = step.cursor;
          pages++;
          expect(pages).toBeLessThan(10_000);
          await between(pages);
        } while (cursor !== undefined);
        return seen;
      }

      it('answers every live member once across pages, none of other tags', async () => {
        if (backend.findIdentifiersByTagPage === undefined) return;
        const ids = Array.from({ length: 300 }, (_, i) => `pg${i}.meta`);
        await backend.write({ sets: ids.map((id) => ({ id, data: 'x', tags: ['paged'] })) });
        await backend.set('other.meta', 'x', ['unpaged']);
        const seen = await allPages('paged', 10);
        expect(seen.length).toBe(ids.length);
        expect(new Set(seen)).toEqual(new Set(ids));
        expect(await allPages('nothing', 10)).toEqual([]);
      });

      it('pages a tag over its own group', async () => {
        if (backend.findIdentifiersByTagPage === undefined) return;
        const ids = Array.from({ length: 200 }, (_, i) => `grp.e${i}`);
        await backend.write({ sets: ids.map((id) => ({ id, data: 'x', tags: ['grp'] })) });
        await backend.remove('grp.e7');
        const seen = await allPages('grp', 10);
        expect(seen.length).toBe(ids.length - 1);
        expect(seen).not.toContain('grp.e7');
      });

      it('sees members present throughout once, with additions, rewrites and removals between pages', async () => {
        if (backend.findIdentifiersByTagPage === undefined) return;
        const stable = Array.from({ length: 300 }, (_, i) => `st${i}.meta`);
        const doomed = Array.from({ length: 60 }, (_, i) => `dm${i}.meta`);
        await backend.write({ sets: [...stable, ...doomed].map((id) => ({ id, data: 'x', tags: ['churn'] })) });
        const seen = await allPages('churn', 10, async (page) => {
          // New members, rewrites of present ones (new versions) and removals between pages.
          await backend.set(`new${page}.meta`, 'x', ['churn']);
          await backend.set(stable[(page * 37) % stable.length]!, 'y', ['churn']);
          const gone = doomed[page];
          if (gone !== undefined) await backend.remove(gone);
        });
        expect(new Set(seen).size).toBe(seen.length);
        for (const id of stable) expect(seen).toContain(id);
      });

      it('hides expired members', async () => {
        if (backend.findIdentifiersByTagPage === undefined) return;
        await backend.set('live.meta', 'x', ['exp']);
        await backend.set('dying.meta', 'x', ['exp'], 1);
        await elapse(EXPIRED_AFTER_MS);
        expect(await allPages('exp', 10)).toEqual(['live.meta']);
      });
    });

    describe('flush', () => {
      it('removes every entry and every tag membership', async () => {
        await backend.set('fa.a', 'A', ['fa-t']);
        await backend.set('fa.b', 'B');
        await backend.set('fa.c', 'C', ['fa-t'], 3600);

        await backend.flush();

        expect(await backend.getMany(['fa.a', 'fa.b', 'fa.c'])).toEqual([undefined, undefined, undefined]);
        expect(await backend.has('fa.b')).toBe(false);
        expect(await backend.findIdentifiersByTag('fa-t')).toEqual([]);
        expect(await backend.getByTag('fa-t')).toEqual([]);
        expect(await backend.collectGarbage()).toEqual([]);

        await backend.set('fa.a', 'again');
        expect(await backend.findIdentifiersByTag('fa-t')).toEqual([]);
      });
    });

    // Few tests on purpose: with `realTime` each one waits for real.
    describe('expiry and garbage collection', () => {
      it('an expired entry is invisible to every read before GC, and GC answers exactly it', async () => {
        await backend.set('ex.short', 'S', ['ex-t'], 1);
        await backend.set('ex.forever', 'F', ['ex-t']);
        await backend.set('ex.zero', 'Z', ['ex-t'], 0);
        await backend.set('ex.long', 'L', ['ex-t'], 3600);
        expect(await backend.get('ex.short')).toBe('S');

        await elapse(EXPIRED_AFTER_MS);

        expect(await backend.get('ex.short')).toBeUndefined();
        expect(await backend.has('ex.short')).toBe(false);
        expect(await backend.getMany(['ex.short', 'ex.forever', 'ex.zero', 'ex.long'])).toEqual([undefined, 'F', 'Z', 'L']);
        expect(sorted(await backend.findIdentifiersByTag('ex-t'))).toEqual(['ex.forever', 'ex.long', 'ex.zero']);
        expect(byId(await backend.getByTag('ex-t'))).toEqual([
          { id: 'ex.forever', data: 'F' },
          { id: 'ex.long', data: 'L' },
          { id: 'ex.zero', data: 'Z' },
        ]);

        // Reads must not swallow it: GC hands expired entries over so callers can clean up.
        expect(await backend.collectGarbage()).toEqual([{ id: 'ex.short', data: 'S' }]);
        expect(await backend.collectGarbage()).toEqual([]);

        // Live and unlimited entries are untouched.
        expect(await backend.getMany(['ex.forever', 'ex.zero', 'ex.long'])).toEqual(['F', 'Z', 'L']);
        // The collected entry's tag membership is gone: re-created untagged, it is not found by tag.
        await backend.set('ex.short', 'S2');
        expect(sorted(await backend.findIdentifiersByTag('ex-t'))).toEqual(['ex.forever', 'ex.long', 'ex.zero']);
        expect(await backend.flushByTag('ex-t')).toBe(3);
        expect(await backend.get('ex.short')).toBe('S2');
      });

      it('collectGarbage takes the oldest first and respects the limit', async () => {
        await backend.set('gl.1', 'one', ['gl-t'], 1);
        await elapse(60);
        await backend.set('gl.2', 'two', ['gl-t'], 1);
        await elapse(60);
        await backend.set('gl.3', 'three', ['gl-t'], 1);
        await backend.set('gl.live', 'live', ['gl-t'], 3600);

        await elapse(EXPIRED_AFTER_MS);

        expect(await backend.collectGarbage(2)).toEqual([
          { id: 'gl.1', data: 'one' },
          { id: 'gl.2', data: 'two' },
        ]);
        expect(await backend.collectGarbage(0)).toEqual([]);
        expect(await backend.collectGarbage(5)).toEqual([{ id: 'gl.3', data: 'three' }]);
        expect(await backend.collectGarbage()).toEqual([]);
        expect(await backend.findIdentifiersByTag('gl-t')).toEqual(['gl.live']);
        expect(await backend.get('gl.live')).toBe('live');
      });

      it('overwrite replaces the lifetime; write() sets lifetimes too', async () => {
        await backend.set('lt.extended', 'E', [], 1);
        await backend.set('lt.extended', 'E2', [], 3600);
        await backend.set('lt.unlimited', 'U', [], 1);
        await backend.set('lt.unlimited', 'U2');
        await backend.set('lt.shortened', 'S', [], 3600);
        await backend.set('lt.shortened', 'S2', ['lt-t'], 1);
        expect(await backend.write({ sets: [{ id: 'lt.batch', data: 'B', tags: ['lt-t'], lifetime: 1 }] })).toBe('ok');

        await elapse(EXPIRED_AFTER_MS);

        expect(await backend.getMany(['lt.extended', 'lt.unlimited', 'lt.shortened', 'lt.batch'])).toEqual([
          'E2',
          'U2',
          undefined,
          undefined,
        ]);
        expect(byId(await backend.collectGarbage())).toEqual([
          { id: 'lt.batch', data: 'B' },
          { id: 'lt.shortened', data: 'S2' },
        ]);
        expect(await backend.getMany(['lt.extended', 'lt.unlimited'])).toEqual(['E2', 'U2']);
        expect(await backend.findIdentifiersByTag('lt-t')).toEqual([]);
      });
    });

    describe('write', () => {
      it('applies a batch of sets and removes', async () => {
        await backend.set('wb.old', 'O', ['wb']);
        await backend.set('wb.keep', 'K', ['wb']);

        const result = await backend.write({
          sets: [
            { id: 'wb.a', data: 'A', tags: ['wb', 'wb-extra'] },
            { id: 'wb.b', data: 'B', tags: ['wb'], lifetime: 3600 },
            { id: 'wb.keep', data: 'K2', tags: ['wb'] },
          ],
          removes: ['wb.old', 'wb.never-existed'],
        });

        expect(result).toBe('ok');
        expect(await backend.getMany(['wb.a', 'wb.b', 'wb.keep', 'wb.old'])).toEqual(['A', 'B', 'K2', undefined]);
        expect(sorted(await backend.findIdentifiersByTag('wb'))).toEqual(['wb.a', 'wb.b', 'wb.keep']);
        expect(await backend.findIdentifiersByTag('wb-extra')).toEqual(['wb.a']);
      });

      it('accepts an empty batch', async () => {
        expect(await backend.write({})).toBe('ok');
        expect(await backend.write({ sets: [], removes: [] })).toBe('ok');
      });

      it('with a guard that does not exist: writes nothing and answers missing', async () => {
        await backend.set('wm.victim', 'V', ['wm']);
        const result = await backend.write(
          { sets: [{ id: 'wm.a', data: 'A', tags: ['wm'] }], removes: ['wm.victim'] },
          { id: 'wm.fence', fence: 1 },
        );
        expect(result).toBe('missing');
        expect(await backend.get('wm.a')).toBeUndefined();
        expect(await backend.get('wm.victim')).toBe('V');
        expect(await backend.has('wm.fence')).toBe(false);
      });

      it('with guard.create: creates the guard entry with its tags and the fence as data', async () => {
        const result = await backend.write(
          { sets: [{ id: 'wc.a', data: 'A', tags: ['wc'] }] },
          { id: 'wc.fence', fence: 3, create: true, tags: ['wc'] },
        );
        expect(result).toBe('ok');
        expect(await backend.get('wc.a')).toBe('A');
        expect(await backend.get('wc.fence')).toBe('3');
        expect(sorted(await backend.findIdentifiersByTag('wc'))).toEqual(['wc.a', 'wc.fence']);
      });

      it('with guard.create on an existing guard: still checks the fence and keeps its tags', async () => {
        await backend.write({}, { id: 'wce.fence', fence: 5, create: true, tags: ['wce'] });
        expect(
          await backend.write(
            { sets: [{ id: 'wce.a', data: 'A', tags: ['wce'] }] },
            { id: 'wce.fence', fence: 4, create: true, tags: ['wce-other'] },
          ),
        ).toBe('fenced');
        expect(await backend.get('wce.a')).toBeUndefined();
        expect(await backend.get('wce.fence')).toBe('5');

        expect(await backend.write({}, { id: 'wce.fence', fence: 6, create: true, tags: ['wce-other'] })).toBe('ok');
        expect(await backend.get('wce.fence')).toBe('6');
        expect(await backend.findIdentifiersByTag('wce')).toEqual(['wce.fence']);
        expect(await backend.findIdentifiersByTag('wce-other')).toEqual([]);
      });

      it('with an older fence: writes nothing and answers fenced', async () => {
        await backend.write({}, { id: 'wf.fence', fence: 5, create: true, tags: ['wf'] });
        await backend.set('wf.victim', 'V', ['wf']);

        const result = await backend.write(
          { sets: [{ id: 'wf.a', data: 'A', tags: ['wf'] }], removes: ['wf.victim'] },
          { id: 'wf.fence', fence: 4 },
        );

        expect(result).toBe('fenced');
        expect(await backend.get('wf.a')).toBeUndefined();
        expect(await backend.get('wf.victim')).toBe('V');
        expect(await backend.get('wf.fence')).toBe('5');
      });

      it('with an equal or newer fence: writes and stores the fence, keeping the guard tags', async () => {
        await backend.write({}, { id: 'wo.fence', fence: 5, create: true, tags: ['wo'] });

        expect(await backend.write({ sets: [{ id: 'wo.a', data: 'A', tags: ['wo'] }] }, { id: 'wo.fence', fence: 5 })).toBe('ok');
        expect(await backend.get('wo.fence')).toBe('5');
        expect(await backend.get('wo.a')).toBe('A');

        expect(
          await backend.write(
            { sets: [{ id: 'wo.b', data: 'B', tags: ['wo'] }], removes: ['wo.a'] },
            { id: 'wo.fence', fence: 9 },
          ),
        ).toBe('ok');
        expect(await backend.get('wo.fence')).toBe('9');
        expect(await backend.getMany(['wo.a', 'wo.b'])).toEqual([undefined, 'B']);
        expect(sorted(await backend.findIdentifiersByTag('wo'))).toEqual(['wo.b', 'wo.fence']);

        // The stored fence moved up: the old one is refused now.
        expect(await backend.write({ sets: [{ id: 'wo.c', data: 'C', tags: ['wo'] }] }, { id: 'wo.fence', fence: 5 })).toBe(
          'fenced',
        );
        expect(await backend.get('wo.c')).toBeUndefined();
      });

      it('a guard entry flushed with its tag refuses later writes as missing', async () => {
        await backend.write(
          { sets: [{ id: 'wd.a', data: 'A', tags: ['wd'] }] },
          { id: 'wd.fence', fence: 1, create: true, tags: ['wd'] },
        );
        expect(await backend.flushByTag('wd')).toBe(2);
        expect(await backend.has('wd.fence')).toBe(false);

        expect(await backend.write({ sets: [{ id: 'wd.a', data: 'again', tags: ['wd'] }] }, { id: 'wd.fence', fence: 2 })).toBe(
          'missing',
        );
        expect(await backend.get('wd.a')).toBeUndefined();
        expect(await backend.findIdentifiersByTag('wd')).toEqual([]);
      });
    });

    describe('conditional writes and guard lifetimes (issue 11 item 5)', () => {
      it('mustExist: applies the batch only while the entry is live, else writes nothing and answers missing', async () => {
        await backend.set('me', 'v1', ['me-t'], 1);
        await backend.set('mx', 'x1', ['me-t'], 1);
        expect(await backend.write({ sets: [{ id: 'me', data: 'v2', tags: ['me-t'], lifetime: 1 }], mustExist: ['me'] })).toBe(
          'ok',
        );
        expect(await backend.get('me')).toBe('v2');

        await elapse(EXPIRED_AFTER_MS);
        // Expired but not collected: no revival.
        expect(await backend.write({ sets: [{ id: 'mx', data: 'x2', tags: ['me-t'] }], mustExist: ['mx'] })).toBe('missing');
        expect(await backend.get('mx')).toBeUndefined();
        expect(byId(await backend.collectGarbage())).toEqual([
          { id: 'me', data: 'v2' },
          { id: 'mx', data: 'x1' },
        ]);

        // Removed: no zombie.
        expect(await backend.write({ sets: [{ id: 'me', data: 'v4', tags: ['me-t'] }], mustExist: ['me'] })).toBe('missing');
        expect(await backend.get('me')).toBeUndefined();
        expect(await backend.findIdentifiersByTag('me-t')).toEqual([]);
      });

      it('guard.lifetime: the guard expires with it (later writes answer missing); writes without one keep it', async () => {
        expect(
          await backend.write(
            { sets: [{ id: 'gl.a', data: 'A', tags: ['gl'] }] },
            { id: 'gl.g', fence: 1, create: true, tags: ['gl'], lifetime: 1 },
          ),
        ).toBe('ok');
        expect(await backend.write({ sets: [{ id: 'gl.b', data: 'B', tags: ['gl'] }] }, { id: 'gl.g', fence: 1 })).toBe('ok');
        expect(await backend.get('gl.g')).toBe('1');
        await elapse(EXPIRED_AFTER_MS);
        expect(await backend.has('gl.g')).toBe(false);
        expect(await backend.write({ sets: [{ id: 'gl.c', data: 'C', tags: ['gl'] }] }, { id: 'gl.g', fence: 2 })).toBe(
          'missing',
        );
        expect(await backend.get('gl.c')).toBeUndefined();
      });

      it('guard.lifetime on an existing guard refreshes its expiry', async () => {
        await backend.write({}, { id: 'gr.g', fence: 1, create: true, tags: ['gr'], lifetime: 1 });
        expect(await backend.write({}, { id: 'gr.g', fence: 2, lifetime: 3600 })).toBe('ok');
        await elapse(EXPIRED_AFTER_MS);
        expect(await backend.get('gr.g')).toBe('2');
        expect(await backend.write({ sets: [{ id: 'gr.a', data: 'A', tags: ['gr'] }] }, { id: 'gr.g', fence: 2 })).toBe('ok');
        expect(await backend.get('gr.a')).toBe('A');
      });
    });

    describe('data and identifiers', () => {
      it('accepts every identifier and tag character: . : % & - _', async () => {
        const id = 'Grp_1.a:b%c&d-e_F.9';
        const tag = 'tag:x%y&z-w_v.1';
        await backend.set(id, 'data', [tag]);
        await backend.set('Grp_1.other', 'other', [tag]);

        expect(await backend.get(id)).toBe('data');
        expect(await backend.has(id)).toBe(true);
        expect(await backend.getMany([id, 'Grp_1.other'])).toEqual(['data', 'other']);
        expect(sorted(await backend.findIdentifiersByTag(tag))).toEqual(sorted([id, 'Grp_1.other']));
        expect(byId(await backend.getByTag(tag))).toEqual(
          byId([
            { id, data: 'data' },
            { id: 'Grp_1.other', data: 'other' },
          ]),
        );
        expect(await backend.remove(id)).toBe(true);
        expect(await backend.flushByTag(tag)).toBe(1);
      });

      it('round-trips 100 KB of data', async () => {
        let data = '';
        for (let i = 0; data.length < 100 * 1024; i++) data += `{"k${i}":"${i.toString(36)}"},`;
        await backend.set('big.a', data, ['big']);
        expect(await backend.get('big.a')).toBe(data);
        expect(await backend.getByTag('big')).toEqual([{ id: 'big.a', data }]);
      });

      it('round-trips unicode data', async () => {
        const data = 'Grüße, 日本語, emoji 👋🏽👨‍👩‍👧, RTL مرحبا, combining e\u0301, "quotes" \\ back\nnew\tline';
        await backend.set('uni.a', data);
        await backend.write({ sets: [{ id: 'uni.b', data, tags: ['uni'] }] });
        expect(await backend.get('uni.a')).toBe(data);
        expect(await backend.getMany(['uni.a', 'uni.b'])).toEqual([data, data]);
        expect(await backend.getByTag('uni')).toEqual([{ id: 'uni.b', data }]);
      });
    });
  });
}
