import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { SessionLimitExceededException } from '../errors/session-limit-exceeded.exception.js';
import { assertEntryData, assertGuardFence, gcLimit } from './backend-arguments.js';
import { expiryAt } from './lifetime.js';
import type { UnlockedFences } from './unlocked-fences.interface.js';
import type { WriteOrder, WriteTicket } from './write-ticket.js';
import { ExpiryHeap } from './memory/expiry-heap.js';
import { flatten } from './memory/flat-string.js';
import { SlotIndex } from './memory/slot-index.js';
import { SlotSet } from './memory/slot-set.js';
import type {
  BackendEntry,
  BackendWrite,
  TaggableBackend,
  WriteBatch,
  WriteGuard,
  WriteResult,
} from './taggable-backend.interface.js';

/** Options of {@link MemoryBackend}. */
export interface MemoryBackendOptions {
  /**
   * Largest accepted entry, measured as the length of its data string (UTF-16 code units; for
   * the ASCII output of the serializer that is bytes). Bounds the memory one entry can take:
   * a bigger `set()` or `write()` throws `SessionLimitExceededException` (HTTP 413, a body that
   * names no entry) and stores nothing.
   * `Infinity` disables the check.
   * @default 1048576 (1 MiB)
   */
  maxEntryBytes?: number;
  /**
   * The in-process locker whose locks guarded writes with `WriteGuard.unlocked` check, in the
   * same synchronous step (a `MemoryLocker`; the backend then names it as `checksLocksOf`).
   * `SessionModule` passes its default locker to its default storage backend. Without it,
   * unlocked writes are refused (InvalidArgumentException). @default undefined
   */
  locks?: UnlockedFences;
}

/** Sizes of the backend's internal structures, for tests and monitoring. */
export interface MemoryBackendStats {
  /** Stored entries, expired ones not yet collected included. */
  readonly entries: number;
  /** Tags that at least one entry carries. */
  readonly tags: number;
  /**
   * Records in the expiry index: one per stored entry that has a lifetime (expired ones not yet
   * collected included). An overwrite moves the entry's record; nothing stale is left behind.
   */
  readonly expiryIndex: number;
}

/**
 * Estimated bytes of the backend's structures (see {@link MemoryBackend.memoryUsage}): V8 string
 * sizes (16-byte header plus the characters, 1 or 2 bytes each, rounded up to 8) and the
 * capacity of the typed arrays and slot columns; the same figures the benchmark checks against
 * the measured heap growth.
 */
export interface MemoryBackendUsage {
  /** The id strings of the entries. */
  readonly ids: number;
  /** The data strings of the entries. */
  readonly data: number;
  /** The entries' tag strings (one string per entry; a single tag is shared with its group). */
  readonly tagStrings: number;
  /** The slot columns (id, data, tags: 8 B each; expiry: 8 B) at their capacity. */
  readonly slots: number;
  /** The id hash index. */
  readonly idIndex: number;
  /** The tag hash index and the member sets of tags with more than 8 members. */
  readonly tagIndex: number;
  /** The expiry heap and its slot positions. */
  readonly expiryIndex: number;
  /** The sum of the above. */
  readonly total: number;
}

const DEFAULT_MAX_ENTRY_BYTES = 1024 * 1024;
const NO_TICKETS: readonly WriteTicket[] = [];
const NO_IDS: readonly string[] = Object.freeze([]);
const NO_WRITES: readonly BackendWrite[] = Object.freeze([]);
const NO_MATCHES: readonly { readonly id: string; readonly data: string }[] = Object.freeze([]);
/** Separates the tags of an entry in its one tag string; refused inside tags. */
const TAG_SEPARATOR = '\u0000';
/** Members up to which a tag has an index cell per member; above it one cell and a SlotSet. */
const SMALL_GROUP = 8;
/** Initial (and minimum) capacity of the slot columns. */
const MIN_SLOTS = 16;
/** Id suffixes (`.key` after a group tag) up to this length are shared between entries... */
const MAX_SHARED_SUFFIX = 64;
/** ...up to this many distinct ones per backend (bounds the table whatever the keys). */
const MAX_SHARED_SUFFIXES = 4096;

/**
 * The default cache backend: everything in this process's memory, nothing to set up. Suits a
 * single node; use the Redis backend when several processes share sessions.
 *
 * Compact by design (an idle session with one key: 679 B, against 1,022 B with an object per
 * entry; see the README's benchmarks):
 * - Entries live in slots: parallel columns (id, data and tag strings in arrays, the expiry in a
 *   Float64Array), no object per entry. Stored strings are flattened (callers hand over ropes).
 * - The id -> slot and tag -> members indexes are open-addressing hash tables of int32 pairs
 *   (`SlotIndex`): they store hashes and slot numbers, never the key strings again.
 * - A tag with up to 8 members costs one index cell per member and no object (its text is read
 *   from the members' tags); bigger ones one cell and a `SlotSet` (4 B a cell). An entry's tags
 *   are one string (joined by NUL); entries whose only tag is the same share one string.
 * - Expiry: an indexed binary min-heap in typed arrays (`ExpiryHeap`), one record per entry that
 *   has a lifetime; re-setting an entry moves its record in O(log n), so `collectGarbage` is
 *   O(expired · log n) and the index never holds stale records.
 * - Tag look-ups and `flushByTag` cost O(matches); `collectGarbage` O(expired).
 * - An expired entry is invisible to every read at once, but stays stored until
 *   `collectGarbage` (or an overwrite, `remove`, `flushByTag`, `flush`) removes it. Reads do not
 *   delete it on purpose: `collectGarbage` hands expired entries to the caller so it can clean
 *   up what they referenced (e.g. the data of an expired session), and an entry deleted on read
 *   would never be handed over.
 * - Every operation is synchronous inside, so `write()` is atomic within the process.
 * - It owns no timers: garbage collection is driven by the caller (the GC scheduler).
 * Tags must not be empty or contain NUL (the frontend's identifiers never do).
 */
export class MemoryBackend implements TaggableBackend {
  readonly name = 'memory';
  /** Guarded writes honour `WriteGuard.maxEntries` (counted in the same synchronous step). */
  readonly capsGroupEntries = true;

  /** Dependent writes (`WriteOrder`) are chained here, synchronously. */
  readonly ordersWrites = true;

  /** `WriteBatch.mustMatch` and `WriteGuard.copyFrom` are checked and applied in the write's one synchronous step. */
  readonly movesGroups = true;

  /** `WriteGuard.copyUnlocked` checks the source's lock (option `locks`) in the same step. */
  readonly copiesUnlocked = true;

  private readonly maxEntryBytes: number;
  private readonly locks: UnlockedFences | undefined;

  /** The locker whose locks unlocked guarded writes check (option `locks`), if any. */
  get checksLocksOf(): object | undefined {
    return this.locks;
  }

  // Slot columns; a free slot has id undefined.
  /**
   * The id, or with `relative[slot]` only its part after the entry's lone tag (`<tag>.<key>`:
   * a session's storage entries are all tagged with their storage id, so the storage id is kept
   * once, as the tag, and `.~guard` or `.cart` is one string shared by every session).
   */
  private ids: (string | undefined)[] = [];
  private relative = new Uint8Array(MIN_SLOTS);
  private readonly suffixes = new Map<string, string>();
  private data: string[] = [];
  /** '' = no tags; one tag; or several joined by TAG_SEPARATOR. */
  private tags: string[] = [];
  /** Epoch ms at which the entry expires; 0 = never. */
  private expires = new Float64Array(MIN_SLOTS);
  private freeSlots: number[] = [];
  private entryCount = 0;

  private readonly idIndex = new SlotIndex();
  /** Tag -> one cell per member slot (value >= 0, up to SMALL_GROUP members), or one group cell (value ~g < 0). */
  private readonly tagIndex = new SlotIndex();
  private groupTags: (string | undefined)[] = [];
  private groupMembers: (SlotSet | undefined)[] = [];
  private freeGroups: number[] = [];
  private tagCount = 0;

  private readonly heap = new ExpiryHeap();

  constructor(options: MemoryBackendOptions = {}) {
    const max = options.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES;
    if (typeof max !== 'number' || Number.isNaN(max) || max <= 0) {
      throw new InvalidArgumentException(
        `MemoryBackend option "maxEntryBytes" must be a positive number (or Infinity), got ${String(max)}.`,
      );
    }
    this.maxEntryBytes = max;
    this.locks = options.locks;
  }

  async get(id: string): Promise<string | undefined> {
    return this.getSync(id);
  }

  /** `get` without the promise (see `TaggableBackend.getSync`). */
  getSync(id: string): string | undefined {
    const slot = this.live(id, Date.now());
    return slot === -1 ? undefined : this.data[slot];
  }

  async getMany(ids: readonly string[]): Promise<(string | undefined)[]> {
    const now = Date.now();
    const result = new Array<string | undefined>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const slot = this.live(ids[i]!, now);
      result[i] = slot === -1 ? undefined : this.data[slot];
    }
    return result;
  }

  async getByTag(tag: string): Promise<BackendEntry[]> {
    const now = Date.now();
    const result: BackendEntry[] = [];
    for (const slot of this.membersOf(tag)) {
      if (!this.isExpired(slot, now)) result.push({ id: this.idOf(slot), data: this.data[slot]! });
    }
    return result;
  }

  async has(id: string): Promise<boolean> {
    return this.live(id, Date.now()) !== -1;
  }

  async set(id: string, data: string, tags?: readonly string[], lifetime?: number): Promise<void> {
    this.checkData(id, data);
    const joined = joinTags(id, tags);
    const expires = expiryAt(id, lifetime, Date.now());
    this.store(id, data, joined, expires);
  }

  /** `order`: see `WriteOrder`; chained synchronously (a prerequisite issued before this one has its outcome already). */
  async remove(id: string, order?: WriteOrder): Promise<boolean> {
    return order === undefined
      ? this.removeNow(id)
      : this.inOrder(
          order,
          () => this.removeNow(id),
          (existed) => existed,
          false,
        );
  }

  private removeNow(id: string): boolean {
    const slot = this.find(id);
    if (slot === -1) return false;
    const existed = !this.isExpired(slot, Date.now());
    this.delete(slot);
    return existed;
  }

  /** `order`: see `WriteOrder` (as `remove`). */
  async write(batch: WriteBatch, guard?: WriteGuard, order?: WriteOrder): Promise<WriteResult> {
    if (order === undefined) return this.writeNow(batch, guard);
    return this.inOrder(
      order,
      () => this.writeNow(batch, guard),
      (result) => result === 'ok',
      'skipped',
    );
  }

  private writeNow(batch: WriteBatch, guard: WriteGuard | undefined): WriteResult {
    let sets = batch.sets ?? NO_WRITES;
    const removes = batch.removes ?? NO_IDS;
    const now = Date.now();
    if (guard?.unlocked === true && this.locks === undefined) {
      throw new InvalidArgumentException(
        'An unlocked guarded write needs a MemoryBackend created with the `locks` option (its locks are checked in the write).',
      );
    }
    if (guard?.copyUnlocked === true && guard.copyFrom !== undefined) {
      if (this.locks === undefined) {
        throw new InvalidArgumentException(
          'WriteGuard.copyUnlocked needs a MemoryBackend created with the `locks` option (its locks are checked in the write).',
        );
      }
      // The source's guard is named like this one's (`<group>.~guard`); its fence is left as it
      // is (the locker's answer is only a "free?": the fence it draws is not stored).
      const sourceGuard = guard.copyFrom + guard.id.slice(groupOf(guard.id).length);
      if (this.locks.drawFenceIfFree(guard.copyFrom) === undefined) return 'locked';
      if (this.live(sourceGuard, now) === -1) return 'missing';
    }
    if (guard?.copyFrom !== undefined) {
      const copies = this.copiesFor(guard, sets, removes, now);
      if (copies === undefined) return 'changed';
      if (copies.length > 0) sets = [...sets, ...copies];
    }

    // Validate everything first, so that a bad entry cannot leave half a batch applied.
    const expiries = new Array<number>(sets.length);
    const joined = new Array<string>(sets.length);
    for (let i = 0; i < sets.length; i++) {
      const write = sets[i]!;
      this.checkData(write.id, write.data);
      joined[i] = joinTags(write.id, write.tags);
      expiries[i] = expiryAt(write.id, write.lifetime, now);
    }
    // Undefined: the guard keeps its expiry (a created one never expires).
    let guardExpires: number | undefined;
    let guardTags = '';
    if (guard !== undefined) {
      assertGuardFence(guard);
      guardTags = joinTags(guard.id, guard.tags);
      if (guard.lifetime !== undefined) guardExpires = expiryAt(guard.id, guard.lifetime, now);
    }
    for (const { id, data } of batch.mustMatch ?? NO_MATCHES) {
      const slot = this.live(id, now);
      if (slot === -1 || this.data[slot] !== data) return 'changed';
    }
    // Unlocked: only while nobody holds or awaits the group's lock, with a fresh fence from it.
    let fence = guard?.fence ?? 0;
    if (guard?.unlocked === true) {
      const drawn = this.locks!.drawFenceIfFree(groupOf(guard.id));
      if (drawn === undefined) return 'locked';
      fence = drawn;
    }
    for (const id of batch.mustExist ?? NO_IDS) {
      if (this.live(id, now) === -1) return 'missing';
    }

    // Before the guard may be created: a refused write leaves nothing behind.
    if (guard?.maxEntries !== undefined && this.groupCountAfter(guard, sets, removes, now) > guard.maxEntries) return 'full';

    if (guard !== undefined) {
      const current = this.live(guard.id, now);
      if (current === -1) {
        if (guard.create !== true) return 'missing';
        // An expired guard entry counts as missing and is replaced.
        this.store(guard.id, String(fence), guardTags, guardExpires ?? 0);
      } else if (Number(this.data[current]) > fence) {
        return 'fenced';
      }
    }

    for (let i = 0; i < sets.length; i++) {
      const write = sets[i]!;
      this.store(write.id, write.data, joined[i]!, expiries[i]!);
    }
    for (const id of removes) {
      const slot = this.find(id);
      if (slot !== -1) this.delete(slot);
    }

    if (guard !== undefined) {
      // Keeps the guard's tags, and its lifetime unless one was given (also when the batch itself
      // set it); a batch that removed the guard entry (a destroy) leaves it removed. Memory has
      // no native expiry: the group's other entries stay until flushByTag or collectGarbage.
      const slot = this.find(guard.id);
      if (slot !== -1) {
        this.data[slot] = String(fence);
        if (guardExpires !== undefined) this.setExpiry(slot, guardExpires);
      }
    }
    return 'ok';
  }

  /**
   * `WriteGuard.copyFrom`: the live entries of group `copyFrom` (but its guard) as sets under the
   * guard's group, unless `sets` or `removes` name them; undefined when one cannot be copied as
   * such (an expiry or a tag of its own, or not an id of the group).
   */
  private copiesFor(
    guard: WriteGuard,
    sets: readonly BackendWrite[],
    removes: readonly string[],
    now: number,
  ): BackendWrite[] | undefined {
    const from = guard.copyFrom!;
    const group = groupOf(guard.id);
    if (guard.create !== true || guard.unlocked === true || from.includes('.') || from === group) {
      throw InvalidArgumentException.fromStore(
        `WriteGuard.copyFrom needs a creating guard (create: true, not unlocked) and another group (an id without "."), got "${from}" for guard "${guard.id}".`,
      );
    }
    const guardSuffix = guard.id.slice(group.length);
    const named = new Set<string>(removes);
    for (const write of sets) named.add(write.id);
    const copies: BackendWrite[] = [];
    for (const slot of this.membersOf(from)) {
      if (this.isExpired(slot, now)) continue;
      const id = this.idOf(slot);
      if (id.charCodeAt(from.length) !== 46 || !id.startsWith(from)) return undefined;
      const suffix = id.slice(from.length);
      if (suffix === guardSuffix) continue;
      const target = group + suffix;
      if (named.has(target)) continue;
      if (this.tags[slot] !== from || this.expires[slot] !== 0) return undefined;
      copies.push({ id: target, data: this.data[slot]!, tags: [group] });
    }
    return copies;
  }

  /**
   * Live entries of the guard's group (carrying the group's own tag, the guard not counted) once
   * `sets` and `removes` were applied. O(group + batch).
   */
  private groupCountAfter(guard: WriteGuard, sets: readonly BackendWrite[], removes: readonly string[], now: number): number {
    const group = groupOf(guard.id);
    const uncounted = guard.uncountedPrefix === undefined ? undefined : `${group}.${guard.uncountedPrefix}`;
    const ids = new Set<string>();
    for (const slot of this.membersOf(group)) if (!this.isExpired(slot, now)) ids.add(this.idOf(slot));
    for (const write of sets) if (write.tags?.includes(group) === true) ids.add(write.id);
    for (const id of removes) ids.delete(id);
    ids.delete(guard.id);
    if (uncounted === undefined) return ids.size;
    let count = 0;
    for (const id of ids) if (!id.startsWith(uncounted)) count++;
    return count;
  }

  async flush(): Promise<void> {
    this.clear();
  }

  /** Removes every entry carrying `tag`, expired ones included; counts only the live ones. */
  async flushByTag(tag: string, order?: WriteOrder): Promise<number> {
    return order === undefined
      ? this.flushByTagNow(tag)
      : this.inOrder(
          order,
          () => this.flushByTagNow(tag),
          () => true,
          0,
        );
  }

  /**
   * Runs a write honouring `order`: every step here is synchronous, so prerequisites issued
   * before it have settled already (no wait); only a prerequisite of another backend may
   * still be open, and is waited for.
   */
  private async inOrder<T>(order: WriteOrder, run: () => T, applied: (result: T) => boolean, skipped: T): Promise<T> {
    const after = order.after ?? NO_TICKETS;
    if (after.some((ticket) => ticket.outcome === undefined)) await Promise.all(after.map((ticket) => ticket.applied));
    if (after.some((ticket) => ticket.outcome !== true)) {
      order.ticket?.settle(false);
      return skipped;
    }
    try {
      const result = run();
      order.ticket?.settle(applied(result));
      return result;
    } catch (error) {
      order.ticket?.settle(false);
      throw error;
    }
  }

  private flushByTagNow(tag: string): number {
    const now = Date.now();
    let removed = 0;
    // `membersOf` answers a snapshot, so deleting while going through it is safe.
    for (const slot of this.membersOf(tag)) {
      if (!this.isExpired(slot, now)) removed++;
      this.delete(slot);
    }
    return removed;
  }

  async findIdentifiersByTag(tag: string): Promise<string[]> {
    const now = Date.now();
    const result: string[] = [];
    for (const slot of this.membersOf(tag)) {
      if (!this.isExpired(slot, now)) result.push(this.idOf(slot));
    }
    return result;
  }

  async collectGarbage(limit?: number): Promise<BackendEntry[]> {
    const max = gcLimit(limit);
    const now = Date.now();
    const collected: BackendEntry[] = [];
    while (collected.length < max && this.heap.peekKey() <= now) {
      const slot = this.heap.peekSlot();
      collected.push({ id: this.idOf(slot), data: this.data[slot]! });
      this.delete(slot);
    }
    return collected;
  }

  /** Drops every entry; the backend stays usable. */
  async close(): Promise<void> {
    this.clear();
  }

  /** Sizes of the internal structures (a read-only snapshot, O(1)), e.g. to watch memory use. */
  stats(): MemoryBackendStats {
    return { entries: this.entryCount, tags: this.tagCount, expiryIndex: this.heap.size };
  }

  /**
   * Estimated bytes per structure (see {@link MemoryBackendUsage}); O(entries + tags), for
   * benchmarks and diagnostics, not for a hot path. `share(id)`, when given, splits the entry
   * figures but the ids (data, tag strings, slots, id index) into named shares, e.g. by kind of
   * entry.
   */
  memoryUsage(share?: (id: string) => string): MemoryBackendUsage & { readonly shares: Record<string, number> } {
    const shares: Record<string, number> = {};
    let ids = 0;
    let data = 0;
    let tagStrings = 0;
    const seenTags = new Set<string>();
    const seenSuffixes = new Set<string>();
    const slotBytes =
      (8 * 3 * this.ids.length + this.expires.byteLength + this.relative.byteLength) / Math.max(1, this.entryCount);
    const idCellBytes = (8 * this.idIndex.capacity) / Math.max(1, this.entryCount);
    for (let slot = 0; slot < this.ids.length; slot++) {
      const id = this.ids[slot];
      if (id === undefined) continue;
      const own = stringBytes(this.data[slot]!);
      // A shared suffix is counted once (the tag it follows is counted with the tags).
      if (this.relative[slot] === 0) ids += stringBytes(id);
      else if (!seenSuffixes.has(id)) {
        seenSuffixes.add(id);
        ids += stringBytes(id);
      }
      data += stringBytes(this.data[slot]!);
      const tags = this.tags[slot]!;
      // A lone tag is the group's string, shared by its members: counted once.
      let tagBytes = 0;
      if (tags !== '' && !seenTags.has(tags)) {
        if (!tags.includes(TAG_SEPARATOR)) seenTags.add(tags);
        tagBytes = stringBytes(tags);
      }
      tagStrings += tagBytes;
      if (share !== undefined) {
        const name = share(this.idOf(slot));
        shares[name] = (shares[name] ?? 0) + own + tagBytes + slotBytes + idCellBytes;
      }
    }
    let groups = 8 * 2 * this.groupTags.length;
    for (const members of this.groupMembers) if (members !== undefined) groups += 120 + 4 * members.capacity;
    const slots = 8 * 3 * this.ids.length + this.expires.byteLength + this.relative.byteLength + 8 * this.freeSlots.length;
    const idIndex = 8 * this.idIndex.capacity;
    const tagIndex = 8 * this.tagIndex.capacity + groups;
    const expiryIndex = 12 * this.heap.capacity + 4 * this.heap.slotCapacity;
    return {
      ids,
      data,
      tagStrings,
      slots,
      idIndex,
      tagIndex,
      expiryIndex,
      total: ids + data + tagStrings + slots + idIndex + tagIndex + expiryIndex,
      shares,
    };
  }

  // ---- slots ----------------------------------------------------------------------------

  /** The slot of `id`, expired or not; -1 if it is not stored. */
  private find(id: string): number {
    const hash = SlotIndex.hash(id);
    for (let cell = this.idIndex.first(hash); cell !== -1; cell = this.idIndex.next(hash, cell)) {
      const slot = this.idIndex.value(cell);
      if (this.hasId(slot, id)) return slot;
    }
    return -1;
  }

  private hasId(slot: number, id: string): boolean {
    const stored = this.ids[slot]!;
    if (this.relative[slot] === 0) return stored === id;
    const tag = this.tags[slot]!;
    return id.length === tag.length + stored.length && id.startsWith(tag) && id.endsWith(stored);
  }

  /** The entry's id (a rope for a relative one: built for the caller, not stored). */
  private idOf(slot: number): string {
    return this.relative[slot] === 0 ? this.ids[slot]! : this.tags[slot]! + this.ids[slot]!;
  }

  /**
   * Stores the id of a new entry (or one whose tags change): relative to its lone tag when the
   * id continues that tag with `.`, the suffix shared through `suffixes`; else the flat id.
   */
  private storeId(slot: number, id: string, tags: string): void {
    const tagged =
      tags !== '' &&
      id.length > tags.length + 1 &&
      id.length - tags.length <= MAX_SHARED_SUFFIX &&
      id.charCodeAt(tags.length) === 46 &&
      id.startsWith(tags) &&
      !tags.includes(TAG_SEPARATOR);
    if (!tagged) {
      this.ids[slot] = flatten(id);
      this.relative[slot] = 0;
      return;
    }
    const suffix = id.slice(tags.length);
    let shared = this.suffixes.get(suffix);
    if (shared === undefined) {
      shared = flatten(suffix);
      if (this.suffixes.size < MAX_SHARED_SUFFIXES) this.suffixes.set(shared, shared);
    }
    this.ids[slot] = shared;
    this.relative[slot] = 1;
  }

  /** The slot of `id` if it exists and has not expired at `now`, else -1. */
  private live(id: string, now: number): number {
    const slot = this.find(id);
    return slot === -1 || this.isExpired(slot, now) ? -1 : slot;
  }

  private isExpired(slot: number, now: number): boolean {
    const expires = this.expires[slot]!;
    return expires !== 0 && expires <= now;
  }

  private checkData(id: string, data: string): void {
    assertEntryData(id, data);
    if (data.length > this.maxEntryBytes) {
      // The id embeds the storage id: the message goes to the log, the client learns the size problem only.
      throw SessionLimitExceededException.refusedByStore(
        `Cannot store cache entry "${id}": its data is ${data.length} characters, more than the ` +
          `memory backend's maxEntryBytes (${this.maxEntryBytes}), which bounds memory per entry. ` +
          `Store less data under one key, or raise maxEntryBytes.`,
      );
    }
  }

  /** Creates or overwrites an entry (data, joined tags and expiry); arguments are already valid. */
  private store(id: string, data: string, tags: string, expires: number): void {
    let slot = this.find(id);
    if (slot === -1) {
      slot = this.allocate();
      this.tags[slot] = tags;
      this.storeId(slot, id, tags);
      this.data[slot] = flatten(data);
      this.idIndex.insert(SlotIndex.hash(id), slot);
      this.entryCount++;
      this.addTags(slot);
    } else {
      this.data[slot] = flatten(data);
      // Re-setting the same tags is the common case (a session touched again): skip the index.
      if (this.tags[slot] !== tags) {
        this.removeTags(slot);
        // A relative id depends on the tag: re-derive it from the full id.
        this.tags[slot] = tags;
        this.storeId(slot, id, tags);
        this.addTags(slot);
      }
    }
    this.setExpiry(slot, expires);
  }

  private setExpiry(slot: number, expires: number): void {
    if (this.expires[slot] === expires) return;
    this.expires[slot] = expires;
    if (expires === 0) this.heap.delete(slot);
    else this.heap.set(slot, expires);
  }

  private allocate(): number {
    const reused = this.freeSlots.pop();
    if (reused !== undefined) return reused;
    const slot = this.ids.length;
    this.ids.push(undefined);
    this.data.push('');
    this.tags.push('');
    if (slot >= this.expires.length) {
      const expires = new Float64Array(this.expires.length * 2);
      expires.set(this.expires);
      this.expires = expires;
      const relative = new Uint8Array(this.expires.length);
      relative.set(this.relative);
      this.relative = relative;
    }
    return slot;
  }

  /** Removes an entry with its tag memberships and its expiry record; the slot is reused. */
  private delete(slot: number): void {
    this.idIndex.delete(SlotIndex.hash(this.idOf(slot)), slot);
    this.removeTags(slot);
    this.heap.delete(slot);
    this.ids[slot] = undefined;
    this.relative[slot] = 0;
    this.data[slot] = '';
    this.tags[slot] = '';
    this.expires[slot] = 0;
    this.freeSlots.push(slot);
    this.entryCount--;
    // Nothing left: give the columns back (a backend that held a million entries once stays small).
    if (this.entryCount === 0) this.clear();
  }

  private clear(): void {
    this.ids = [];
    this.relative = new Uint8Array(MIN_SLOTS);
    this.suffixes.clear();
    this.data = [];
    this.tags = [];
    this.expires = new Float64Array(MIN_SLOTS);
    this.freeSlots = [];
    this.entryCount = 0;
    this.idIndex.clear();
    this.tagIndex.clear();
    this.groupTags = [];
    this.groupMembers = [];
    this.freeGroups = [];
    this.tagCount = 0;
    this.heap.clear();
  }

  // ---- tags -----------------------------------------------------------------------------

  /** Whether the entry in `slot` carries `tag`. */
  private hasTag(slot: number, tag: string): boolean {
    const tags = this.tags[slot]!;
    if (tags === tag) return true;
    if (tags.length <= tag.length) return false;
    for (let at = tags.indexOf(tag); at !== -1; at = tags.indexOf(tag, at + 1)) {
      const end = at + tag.length;
      if ((at === 0 || tags.charCodeAt(at - 1) === 0) && (end === tags.length || tags.charCodeAt(end) === 0)) return true;
    }
    return false;
  }

  /**
   * One pass over the index cells with `hash`: the group cell of `tag` if it has one (then the
   * member cells with this hash belong to other tags), else `tag`'s member cells' slots, without
   * `except` and without repeats (two tags of one entry may share a hash, and then the entry
   * has a cell for each, alike).
   */
  private scanTag(tag: string, hash: number, except: number): { group: number; lone: number[] } {
    const lone: number[] = [];
    for (let cell = this.tagIndex.first(hash); cell !== -1; cell = this.tagIndex.next(hash, cell)) {
      const value = this.tagIndex.value(cell);
      if (value < 0) {
        if (this.groupTags[~value] === tag) return { group: cell, lone: [] };
      } else if (value !== except && !lone.includes(value) && this.hasTag(value, tag)) {
        lone.push(value);
      }
    }
    return { group: -1, lone };
  }

  /** The slots carrying `tag`, a snapshot. */
  private membersOf(tag: string): readonly number[] {
    const { group, lone } = this.scanTag(tag, SlotIndex.hash(tag), -1);
    return group === -1 ? lone : this.groupMembers[~this.tagIndex.value(group)]!.toArray();
  }

  private addTags(slot: number): void {
    const tags = this.tags[slot]!;
    if (tags === '') return;
    if (!tags.includes(TAG_SEPARATOR)) {
      this.addMember(slot, tags);
      return;
    }
    for (const tag of tags.split(TAG_SEPARATOR)) this.addMember(slot, tag);
  }

  /**
   * Adds `slot` (whose tags name `tag` already) to `tag`'s members: a cell of its own while the
   * tag has up to SMALL_GROUP members (no object, the tag text is read from the members), then
   * one group cell with a SlotSet.
   */
  private addMember(slot: number, tag: string): void {
    const hash = SlotIndex.hash(tag);
    const { group, lone } = this.scanTag(tag, hash, slot);
    if (group !== -1) {
      const g = ~this.tagIndex.value(group);
      this.groupMembers[g]!.add(slot);
      this.shareTag(slot, this.groupTags[g]!);
      return;
    }
    if (lone.length === 0) this.tagCount++;
    for (const other of lone) this.shareTag(slot, this.tags[other]!);
    if (lone.length < SMALL_GROUP) {
      this.tagIndex.insert(hash, slot);
      return;
    }
    // Too many members for cells: they move into a group (their cells go; alike cells of a
    // colliding tag stay, one per tag).
    for (const other of lone) this.tagIndex.delete(hash, other);
    const g = this.freeGroups.pop() ?? this.groupTags.length;
    const shared = flatten(tag);
    this.groupTags[g] = shared;
    this.groupMembers[g] = new SlotSet([...lone, slot]);
    this.tagIndex.insert(hash, ~g);
  }

  /** An entry whose only tag is `shared` points at that string, so the members of a tag share one copy. */
  private shareTag(slot: number, shared: string): void {
    if (this.tags[slot] === shared) this.tags[slot] = shared;
  }

  private removeTags(slot: number): void {
    const tags = this.tags[slot]!;
    if (tags === '') return;
    if (!tags.includes(TAG_SEPARATOR)) {
      this.removeMember(slot, tags);
      return;
    }
    for (const tag of tags.split(TAG_SEPARATOR)) this.removeMember(slot, tag);
  }

  /** Removes `slot` (whose tags still name `tag`) from `tag`'s members. */
  private removeMember(slot: number, tag: string): void {
    const hash = SlotIndex.hash(tag);
    const { group, lone } = this.scanTag(tag, hash, slot);
    if (group === -1) {
      this.tagIndex.delete(hash, slot);
      // Empty tags are dropped so that tags that are gone (e.g. of destroyed sessions) cost nothing.
      if (lone.length === 0) this.tagCount--;
      return;
    }
    const g = ~this.tagIndex.value(group);
    const members = this.groupMembers[g]!;
    if (!members.delete(slot) || members.size > SMALL_GROUP / 2) return;
    // Small again: back to a cell per member, the group is freed.
    this.tagIndex.deleteAt(group);
    for (const member of members.toArray()) this.tagIndex.insert(hash, member);
    this.groupTags[g] = undefined;
    this.groupMembers[g] = undefined;
    this.freeGroups.push(g);
  }
}

/** The group of an id: the text before its first `.` (all of it without one). */
function groupOf(id: string): string {
  const dot = id.indexOf('.');
  return dot < 0 ? id : id.slice(0, dot);
}

/**
 * The stored form of an entry's tags: '' for none, the tag itself for one, else the distinct
 * tags joined by NUL (one string instead of an array of strings).
 * @throws InvalidArgumentException for an empty tag or one containing NUL.
 */
function joinTags(id: string, tags: readonly string[] | undefined): string {
  if (tags === undefined || tags.length === 0) return '';
  for (const tag of tags) {
    if (typeof tag !== 'string' || tag.length === 0 || tag.includes(TAG_SEPARATOR)) {
      const shown = typeof tag === 'string' ? JSON.stringify(tag.slice(0, 80)) : typeof tag;
      throw InvalidArgumentException.fromStore(
        `Invalid tag ${shown} for cache entry "${id}": tags must be non-empty and contain no NUL character.`,
      );
    }
  }
  if (tags.length === 1) return flatten(tags[0]!);
  const distinct = tags.filter((tag, i) => tags.indexOf(tag) === i);
  return flatten(distinct.join(TAG_SEPARATOR));
}

/** V8's size of a flat string: a 16-byte header, then 1 byte a character (2 if any is above U+00FF), rounded up to 8. */
function stringBytes(text: string): number {
  // eslint-disable-next-line no-control-regex
  const wide = /[^\u0000-\u00ff]/.test(text);
  return (16 + text.length * (wide ? 2 : 1) + 7) & ~7;
}
