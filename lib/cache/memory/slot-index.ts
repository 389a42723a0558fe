import { hashString } from './string-hash.js';

/** A cell whose value field holds this is empty (never used since the last rebuild). */
const EMPTY = -0x80000000;
/** A cell whose value was deleted: probing goes on past it. */
const DELETED = 0x7fffffff;
const MIN_CELLS = 16;
/** Rebuild once live + deleted cells exceed this share of the cells (linear probing stays short). */
const MAX_LOAD = 0.75;
/** A rebuilt table is at most this full, so that it takes many inserts before the next rebuild. */
const REBUILT_LOAD = 0.6;

/**
 * An open-addressing hash table of int32 values (slot numbers, or negative group numbers) keyed
 * by the hash of a string that the caller keeps elsewhere (the entry's id, a tag): the table
 * stores only `[hash, value]` pairs in one Int32Array, 8 bytes a cell, no string and no object
 * per key. Several values may share a hash; the caller probes them with {@link first} /
 * {@link next} and compares the real key itself. A JS `Map<string, number>` costs about 37 B per
 * entry plus the key string; this costs 11-27 B (1.3-3.3 cells per key, about 2 on average).
 */
export class SlotIndex {
  private cells = new Int32Array(2 * MIN_CELLS).fill(EMPTY);
  private mask = MIN_CELLS - 1;
  /** Cells holding a value. */
  private live = 0;
  /** Cells holding a value or a tombstone. */
  private used = 0;

  /** Live values. */
  get size(): number {
    return this.live;
  }

  /** Cells allocated (each 8 bytes). */
  get capacity(): number {
    return this.mask + 1;
  }

  /** The hash this index uses for `key`. */
  static hash(key: string): number {
    return hashString(key);
  }

  /** The first cell holding a value with `hash`, or -1. */
  first(hash: number): number {
    return this.scan(hash, hash & this.mask);
  }

  /** The next cell after `cell` holding a value with `hash`, or -1. */
  next(hash: number, cell: number): number {
    return this.scan(hash, (cell + 1) & this.mask);
  }

  value(cell: number): number {
    return this.cells[2 * cell + 1]!;
  }

  setValue(cell: number, value: number): void {
    this.cells[2 * cell + 1] = value;
  }

  /** Adds a value (the caller checked that it is not there yet). */
  insert(hash: number, value: number): void {
    if (this.used + 1 > MAX_LOAD * (this.mask + 1)) this.rebuild(this.live + 1);
    let cell = hash & this.mask;
    for (;;) {
      const v = this.cells[2 * cell + 1]!;
      if (v === EMPTY || v === DELETED) break;
      cell = (cell + 1) & this.mask;
    }
    if (this.cells[2 * cell + 1] === EMPTY) this.used++;
    this.cells[2 * cell] = hash;
    this.cells[2 * cell + 1] = value;
    this.live++;
  }

  /** Removes the value in `cell` (from {@link first}/{@link next}). */
  deleteAt(cell: number): void {
    this.cells[2 * cell + 1] = DELETED;
    this.live--;
    // Shrinks (and drops tombstones) once mostly empty, so a table that was big once does not stay big.
    if (this.mask + 1 > MIN_CELLS && this.live < (this.mask + 1) / 8) this.rebuild(this.live);
  }

  /** Removes the first cell with `hash` and `value`; answers whether there was one. */
  delete(hash: number, value: number): boolean {
    for (let cell = this.first(hash); cell !== -1; cell = this.next(hash, cell)) {
      if (this.value(cell) === value) {
        this.deleteAt(cell);
        return true;
      }
    }
    return false;
  }

  clear(): void {
    this.cells = new Int32Array(2 * MIN_CELLS).fill(EMPTY);
    this.mask = MIN_CELLS - 1;
    this.live = 0;
    this.used = 0;
  }

  private scan(hash: number, start: number): number {
    const cells = this.cells;
    const mask = this.mask;
    for (let cell = start; ; cell = (cell + 1) & mask) {
      const v = cells[2 * cell + 1]!;
      if (v === EMPTY) return -1;
      if (v !== DELETED && cells[2 * cell] === hash) return cell;
    }
  }

  /** Re-inserts the live cells into the smallest table that holds `count` values at REBUILT_LOAD. */
  private rebuild(count: number): void {
    let size = MIN_CELLS;
    while (size * REBUILT_LOAD < count + 1) size *= 2;
    const old = this.cells;
    const cells = new Int32Array(2 * size).fill(EMPTY);
    const mask = size - 1;
    for (let i = 0; i < old.length; i += 2) {
      const v = old[i + 1]!;
      if (v === EMPTY || v === DELETED) continue;
      const hash = old[i]!;
      let cell = hash & mask;
      while (cells[2 * cell + 1] !== EMPTY) cell = (cell + 1) & mask;
      cells[2 * cell] = hash;
      cells[2 * cell + 1] = v;
    }
    this.cells = cells;
    this.mask = mask;
    this.used = this.live;
  }
}
