import { describe, expect, it } from '@jest/globals';
import { MemoryBackend } from '../../lib/cache/memory.backend.js';
import type { TaggableBackend } from '../../lib/cache/taggable-backend.interface.js';
import { VariableFrontend } from '../../lib/cache/variable.frontend.js';
import { WriteTicket } from '../../lib/cache/write-ticket.js';

const RAW = { serialize: (value: unknown) => String(value), deserialize: (data: string) => data };

/** `backend` as a backend that cannot chain writes (no `ordersWrites`): the frontend does it. */
function unordered(backend: TaggableBackend): TaggableBackend {
  return new Proxy(backend, {
    get(target, property) {
      if (property === 'ordersWrites') return undefined;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/*
 * WriteOrder on a backend that cannot chain: the frontend sends each write only after its
 * prerequisites settled, and only if they all applied. MemoryBackend chains them itself.
 */
describe('VariableFrontend: dependent writes on a backend without ordersWrites', () => {
  it('skips a write whose prerequisite did not apply, and everything that requires it', async () => {
    const cache = new VariableFrontend(unordered(new MemoryBackend()), RAW);
    const removed = new WriteTicket();
    const published = new WriteTicket();
    const results = await Promise.all([
      cache.remove('absent', { ticket: removed }),
      cache.write({ sets: [{ id: 'new', data: 'v' }] }, undefined, { after: [removed], ticket: published }),
      cache.flushByTag('t', { after: [published] }),
    ]);
    expect(results).toEqual([false, 'skipped', 0]);
    expect(await published.applied).toBe(false);
    expect(await cache.getRaw('new')).toBeUndefined();
  });

  it('runs a write after its prerequisites, once they applied', async () => {
    const cache = new VariableFrontend(unordered(new MemoryBackend()), RAW);
    await cache.set('old', 'v', ['t']);
    const removed = new WriteTicket();
    const order: string[] = [];
    const removal = cache.remove('old', { ticket: removed }).then((r) => (order.push('remove'), r));
    const write = cache
      .write({ sets: [{ id: 'new', data: 'v' }] }, undefined, { after: [removed] })
      .then((r) => (order.push('write'), r));
    expect(await Promise.all([removal, write])).toEqual([true, 'ok']);
    expect(order).toEqual(['remove', 'write']);
    expect(await cache.getRaw('old')).toBeUndefined();
    expect(await cache.getRaw('new')).toBe('v');
  });

  it('a failed prerequisite (the store threw) counts as not applied', async () => {
    const backend = new MemoryBackend();
    const cache = new VariableFrontend(unordered(backend), RAW);
    const failed = new WriteTicket();
    const write = backend.write.bind(backend);
    // The store fails this one write.
    backend.write = () => Promise.reject(new Error('connection lost (test)'));
    await expect(cache.write({ sets: [{ id: 'first', data: 'v' }] }, undefined, { ticket: failed })).rejects.toThrow();
    backend.write = write;
    await expect(cache.write({ sets: [{ id: 'next', data: 'v' }] }, undefined, { after: [failed] })).resolves.toBe('skipped');
    expect(await cache.getRaw('next')).toBeUndefined();
  });
});

describe('MemoryBackend: dependent writes chained synchronously', () => {
  it('decides each write at once from the outcomes of the ones it requires', async () => {
    const backend = new MemoryBackend();
    expect(backend.ordersWrites).toBe(true);
    await backend.set('old', 'v', ['t']);
    const removed = new WriteTicket();
    const gone = new WriteTicket();
    const removal = backend.remove('old', { ticket: removed });
    // Settled synchronously: a write issued right after can be decided without waiting.
    expect(removed.outcome).toBe(true);
    const missing = backend.remove('absent', { ticket: gone });
    expect(gone.outcome).toBe(false);
    const results = await Promise.all([
      removal,
      missing,
      backend.write({ sets: [{ id: 'a', data: '1' }] }, undefined, { after: [removed] }),
      backend.write({ sets: [{ id: 'b', data: '1' }] }, undefined, { after: [removed, gone] }),
    ]);
    expect(results).toEqual([true, false, 'ok', 'skipped']);
    expect(await backend.get('a')).toBe('1');
    expect(await backend.get('b')).toBeUndefined();
  });
});
