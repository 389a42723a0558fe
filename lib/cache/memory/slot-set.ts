import { mixInt } from './string-hash.js';

const EMPTY = -1;
const DELETED = -2;
const MIN_CELLS = 16;
const MAX_LOAD = 0.75;
/** A rebuilt table is at most this full, so that it takes many inserts before the next rebuild. */
const REBUILT_LOAD = 0.6;

/**
 * A set of slot numbers (ints >= 0) in one Int32Array with open addressing: 4 bytes a cell,
 * 6-12 bytes a member, against about 26 B in a `Set<number>`. For the members of big tag groups
 * (e.g. "all sessions"); iteration visits the cells, at most 8x the members since the set
 * shrinks as it empties, so it stays O(members).
 */
export class SlotSet {
  private cells: Int32Array;
  private mask: number;
  private live = 0;
  private used = 0;

  constructor(members: readonly number[] = []) {
    let size = MIN_CELLS;
    while (size * MAX_LOAD < 2 * members.length) size *= 2;
    this.cells = new Int32Array(size).fill(EMPTY);
    this.mask = size - 1;
    for (const slot of members) this.add(slot);
  }

  get size(): number {
    return this.live;
  }

  /** Cells allocated (each 4 bytes). */
  get capacity(): number {
    return this.mask + 1;
  }

  has(slot: number): boolean {
    const cells = this.cells;
    for (let cell = mixInt(slot) & this.mask; ; cell = (cell + 1) & this.mask) {
      const v = cells[cell]!;
      if (v === slot) return true;
      if (v === EMPTY) return false;
    }
  }

  /** Adds `slot`; answers false when it was there already. */
  add(slot: number): boolean {
    if (this.has(slot)) return false;
    if (this.used + 1 > MAX_LOAD * (this.mask + 1)) this.rebuild(this.live + 1);
    let cell = mixInt(slot) & this.mask;
    while (this.cells[cell]! >= 0) cell = (cell + 1) & this.mask;
    if (this.cells[cell] === EMPTY) this.used++;
    this.cells[cell] = slot;
    this.live++;
    return true;
  }

  /** Removes `slot`; answers whether it was there. */
  delete(slot: number): boolean {
    const cells = this.cells;
    for (let cell = mixInt(slot) & this.mask; ; cell = (cell + 1) & this.mask) {
      const v = cells[cell]!;
      if (v === EMPTY) return false;
      if (v === slot) {
        cells[cell] = DELETED;
        this.live--;
        if (this.mask + 1 > MIN_CELLS && this.live < (this.mask + 1) / 8) this.rebuild(this.live);
        return true;
      }
    }
  }

  /** The members, a snapshot (safe to change the set while going through it). */
  toArray(): number[] {
    const result: number[] = [];
    const cells = this.cells;
    for (let i = 0; i < cells.length; i++) if (cells[i]! >= 0) result.push(cells[i]!);
    return result;
  }

  /** Calls `visit` for every member; the set must not change meanwhile. */
  forEach(visit: (slot: number) => void): void {
    const cells = this.cells;
    for (let i = 0; i < cells.length; i++) if (cells[i]! >= 0) visit(cells[i]!);
  }

  private rebuild(count: number): void {
    let size = MIN_CELLS;
    while (size * REBUILT_LOAD < count + 1) size *= 2;
    const old = this.cells;
    const cells = new Int32Array(size).fill(EMPTY);
    const mask = size - 1;
    for (let i = 0; i < old.length; i++) {
      const v = old[i]!;
      if (v < 0) continue;
      let cell = mixInt(v) & mask;
      while (cells[cell] !== EMPTY) cell = (cell + 1) & mask;
      cells[cell] = v;
    }
    this.cells = cells;
    this.mask = mask;
    this.used = this.live;
  }
}
