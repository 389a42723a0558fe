const MIN_CAPACITY = 16;

/**
 * The expiry index: a binary min-heap of (expiry ms, slot) records in two typed arrays, with
 * each slot's position kept in a third, so that a slot has at most one record and a new expiry
 * moves its record in place (O(log n)) instead of leaving a stale one behind. 16 bytes per
 * expiring entry plus 4 per slot; no object per record. Capacity doubles as records are added
 * and halves once a quarter is used, so memory follows the live records.
 */
export class ExpiryHeap {
  private keys = new Float64Array(MIN_CAPACITY);
  private slots = new Int32Array(MIN_CAPACITY);
  /** Heap position of each slot's record, -1 for none. */
  private positions = new Int32Array(MIN_CAPACITY).fill(-1);
  private length = 0;

  /** Records, i.e. slots that have an expiry. */
  get size(): number {
    return this.length;
  }

  /** Records the arrays have room for. */
  get capacity(): number {
    return this.keys.length;
  }

  /** Slots `positions` has room for. */
  get slotCapacity(): number {
    return this.positions.length;
  }

  /** Expiry of the earliest record; Infinity when empty. */
  peekKey(): number {
    return this.length === 0 ? Infinity : this.keys[0]!;
  }

  /** Slot of the earliest record; -1 when empty. */
  peekSlot(): number {
    return this.length === 0 ? -1 : this.slots[0]!;
  }

  /** Sets the expiry of `slot` (adds its record, or moves it). */
  set(slot: number, key: number): void {
    if (slot >= this.positions.length) this.growPositions(slot + 1);
    const at = this.positions[slot]!;
    if (at === -1) {
      if (this.length === this.keys.length) this.resize(this.keys.length * 2);
      this.place(this.length++, key, slot);
      this.siftUp(this.length - 1);
    } else {
      const old = this.keys[at]!;
      this.keys[at] = key;
      if (key < old) this.siftUp(at);
      else this.siftDown(at);
    }
  }

  /** Removes the record of `slot`, if any. */
  delete(slot: number): void {
    if (slot >= this.positions.length) return;
    const at = this.positions[slot]!;
    if (at === -1) return;
    this.positions[slot] = -1;
    const last = --this.length;
    if (at !== last) {
      const key = this.keys[last]!;
      this.place(at, key, this.slots[last]!);
      if (at > 0 && this.keys[(at - 1) >> 1]! > key) this.siftUp(at);
      else this.siftDown(at);
    }
    if (this.keys.length > MIN_CAPACITY && this.length < this.keys.length / 4) this.resize(this.keys.length / 2);
  }

  clear(): void {
    this.keys = new Float64Array(MIN_CAPACITY);
    this.slots = new Int32Array(MIN_CAPACITY);
    this.positions = new Int32Array(MIN_CAPACITY).fill(-1);
    this.length = 0;
  }

  private place(at: number, key: number, slot: number): void {
    this.keys[at] = key;
    this.slots[at] = slot;
    this.positions[slot] = at;
  }

  private siftUp(index: number): void {
    const key = this.keys[index]!;
    const slot = this.slots[index]!;
    // For the usual "expires later than everything" this stops at once.
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (this.keys[parent]! <= key) break;
      this.place(index, this.keys[parent]!, this.slots[parent]!);
      index = parent;
    }
    this.place(index, key, slot);
  }

  private siftDown(index: number): void {
    const key = this.keys[index]!;
    const slot = this.slots[index]!;
    const length = this.length;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= length) break;
      if (child + 1 < length && this.keys[child + 1]! < this.keys[child]!) child++;
      if (this.keys[child]! >= key) break;
      this.place(index, this.keys[child]!, this.slots[child]!);
      index = child;
    }
    this.place(index, key, slot);
  }

  private resize(capacity: number): void {
    const keys = new Float64Array(capacity);
    const slots = new Int32Array(capacity);
    keys.set(this.keys.subarray(0, this.length));
    slots.set(this.slots.subarray(0, this.length));
    this.keys = keys;
    this.slots = slots;
  }

  /** Slot numbers only grow with the backend's slot columns (freed slots are reused). */
  private growPositions(needed: number): void {
    let size = this.positions.length;
    while (size < needed) size *= 2;
    const positions = new Int32Array(size).fill(-1);
    positions.set(this.positions);
    this.positions = positions;
  }
}
