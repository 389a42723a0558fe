import { describe, expect, it } from '@jest/globals';
import { ExpiryHeap } from '../../lib/cache/memory/expiry-heap.js';
import { flatten } from '../../lib/cache/memory/flat-string.js';
import { SlotIndex } from '../../lib/cache/memory/slot-index.js';
import { SlotSet } from '../../lib/cache/memory/slot-set.js';
import { hashString } from '../../lib/cache/memory/string-hash.js';

/** A deterministic pseudo-random sequence, so a failure can be replayed. */
function randomFrom(seed: number): (n: number) => number {
  let state = seed;
  return (n) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % n;
  };
}

describe('SlotIndex (open-addressing hash index of int values)', () => {
  /** All values stored under `hash`. */
  const valuesOf = (index: SlotIndex, hash: number): number[] => {
    const values: number[] = [];
    for (let cell = index.first(hash); cell !== -1; cell = index.next(hash, cell)) values.push(index.value(cell));
    return values.sort((a, b) => a - b);
  };

  it('grows past its load limit and shrinks back as it empties, keeping every value findable', () => {
    const index = new SlotIndex();
    const start = index.capacity;
    const keys = Array.from({ length: 20_000 }, (_, i) => `key.${i}`);
    keys.forEach((key, i) => index.insert(SlotIndex.hash(key), i));
    expect(index.size).toBe(20_000);
    // At most 75% full, at least about 30%.
    expect(index.capacity).toBeGreaterThanOrEqual(20_000 / 0.75);
    expect(index.capacity).toBeLessThanOrEqual(Math.ceil(20_000 / 0.3));
    keys.forEach((key, i) => expect(valuesOf(index, SlotIndex.hash(key))).toContain(i));

    for (let i = 0; i < 19_990; i++) expect(index.delete(SlotIndex.hash(keys[i]!), i)).toBe(true);
    expect(index.size).toBe(10);
    expect(index.capacity).toBeLessThanOrEqual(64);
    for (let i = 19_990; i < 20_000; i++) expect(valuesOf(index, SlotIndex.hash(keys[i]!))).toEqual([i]);
    expect(valuesOf(index, SlotIndex.hash(keys[0]!))).toEqual([]);

    index.clear();
    expect(index.size).toBe(0);
    expect(index.capacity).toBe(start);
  });

  it('keeps several values under one hash apart (the caller tells them apart)', () => {
    const index = new SlotIndex();
    for (let value = -3; value < 5; value++) index.insert(42, value);
    expect(valuesOf(index, 42)).toEqual([-3, -2, -1, 0, 1, 2, 3, 4]);
    expect(index.delete(42, 0)).toBe(true);
    expect(index.delete(42, 0)).toBe(false);
    expect(valuesOf(index, 42)).toEqual([-3, -2, -1, 1, 2, 3, 4]);
    expect(valuesOf(index, 43)).toEqual([]);
  });

  it('stays right through random inserts and deletes with tombstones (against a Map)', () => {
    const index = new SlotIndex();
    const model = new Map<number, number>(); // value -> hash
    const random = randomFrom(7);
    for (let step = 0; step < 30_000; step++) {
      const value = random(3000);
      // Few distinct hashes: long probe chains and many shared hashes.
      const hash = random(500) - 250;
      if (model.has(value)) {
        expect(index.delete(model.get(value)!, value)).toBe(true);
        model.delete(value);
      } else {
        index.insert(hash, value);
        model.set(value, hash);
      }
    }
    expect(index.size).toBe(model.size);
    for (const [value, hash] of model) expect(valuesOf(index, hash)).toContain(value);
  });
});

describe('SlotSet (set of slot numbers in an Int32Array)', () => {
  it('grows, answers membership, iterates exactly its members and shrinks back', () => {
    const set = new SlotSet([1, 2, 3]);
    for (let i = 0; i < 10_000; i++) set.add(i * 3);
    expect(set.add(3)).toBe(false);
    expect(set.size).toBe(10_000 + 2);
    expect(set.has(1)).toBe(true);
    expect(set.has(4)).toBe(false);
    const big = set.capacity;
    expect(big).toBeGreaterThanOrEqual(10_002 / 0.75);

    for (let i = 0; i < 10_000; i++) expect(set.delete(i * 3)).toBe(true);
    expect(set.delete(0)).toBe(false);
    expect(set.toArray().sort((a, b) => a - b)).toEqual([1, 2]);
    const seen: number[] = [];
    set.forEach((slot) => seen.push(slot));
    expect(seen.sort((a, b) => a - b)).toEqual([1, 2]);
    expect(set.capacity).toBeLessThan(big / 100);
  });
});

describe('ExpiryHeap (indexed min-heap on typed arrays)', () => {
  it('pops in expiry order, moves a re-set record in place and grows and shrinks its arrays', () => {
    const heap = new ExpiryHeap();
    const random = randomFrom(11);
    const model = new Map<number, number>(); // slot -> key
    for (let slot = 0; slot < 5000; slot++) {
      const key = 1_000_000 + random(100_000);
      heap.set(slot, key);
      model.set(slot, key);
    }
    // Re-set half of them (later and earlier), delete a tenth.
    for (let slot = 0; slot < 5000; slot += 2) {
      const key = 1_000_000 + random(100_000);
      heap.set(slot, key);
      model.set(slot, key);
    }
    for (let slot = 0; slot < 5000; slot += 10) {
      heap.delete(slot);
      model.delete(slot);
    }
    heap.delete(999_999); // not there: nothing happens
    expect(heap.size).toBe(model.size);
    const grown = heap.capacity;
    expect(grown).toBeGreaterThanOrEqual(5000);

    const order: number[] = [];
    while (heap.size > 0) {
      const slot = heap.peekSlot();
      expect(heap.peekKey()).toBe(model.get(slot));
      order.push(heap.peekKey());
      heap.delete(slot);
    }
    expect(order).toEqual([...model.values()].sort((a, b) => a - b));
    expect(heap.peekKey()).toBe(Infinity);
    expect(heap.peekSlot()).toBe(-1);
    expect(heap.capacity).toBeLessThan(grown / 100);
  });
});

describe('string helpers', () => {
  it('flatten answers the same text for ropes, short, empty, unicode and very long strings', () => {
    const long = 'ab'.repeat(600_000);
    for (const text of ['', 'x', 'a'.repeat(13) + 'b'.repeat(13), 'Grüße 日本語 👋🏽 e\u0301', long, `${long}+${long}`]) {
      const copy = flatten(text);
      expect(copy).toBe(text);
      expect(copy.length).toBe(text.length);
    }
  });

  it('hashString spreads similar ids over the low bits', () => {
    const buckets = new Set<number>();
    for (let i = 0; i < 1024; i++) buckets.add(hashString(`storage-${i}`) & 1023);
    // A perfect spread would fill 1024; random hashing fills about 63%.
    expect(buckets.size).toBeGreaterThan(550);
  });
});
