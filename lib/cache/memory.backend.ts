import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { SessionLimitExceededException } from '../errors/session-limit-exceeded.exception.js';
import { assertEntryData, assertGuardFence, gcLimit } from './backend-arguments.js';
import { expiryAt } from './lifetime.js';
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
}

/** Sizes of the backend's internal structures, for tests and monitoring. */
export interface MemoryBackendStats {
  /** Stored entries, expired ones not yet collected included. */
  readonly entries: number;
  /** Tags that at least one entry carries. */
  readonly tags: number;
  /**
   * Records in the expiry heap, stale ones (left by overwrites and removals) included; never
   * more than twice the live entries with a lifetime, plus 64.
   */
  readonly expiryIndex: number;
}

const DEFAULT_MAX_ENTRY_BYTES = 1024 * 1024;
const NO_TAGS: readonly string[] = Object.freeze([]);
/** `expires` of a removed entry, so that its leftover expiry records are recognised as stale. */
const REMOVED = -1;
/** Stale expiry records tolerated beyond 2x the live ones before the index is compacted. */
const COMPACTION_SLACK = 64;

/** No tags, one tag (a plain string, to save an array per entry), or several. */
type Tags = string | readonly string[];

/**
 * The members of one tag. Most tags have one or two members (a session's storage tag, its
 * storage-owner tag), so small groups are kept as the entry itself or a short array and only
 * groups above SMALL_GROUP become a Set: about 300 bytes less per session.
 */
type Members = Entry | Entry[] | Set<Entry>;
const SMALL_GROUP = 8;

/** A tag's members to read (no copy for arrays and sets: do not remove while iterating). */
function iterate(members: Members): Iterable<Entry> {
  return members instanceof Entry ? [members] : members;
}

/** A snapshot of a tag's members, safe to iterate while they are removed. */
function membersOf(members: Members | undefined): readonly Entry[] {
  if (members === undefined) return [];
  if (members instanceof Entry) return [members];
  return Array.isArray(members) ? [...members] : [...members];
}

/**
 * One stored entry. A class (not object literals) so that every entry shares one hidden class
 * and stays small; it is updated in place on overwrite, so the tag sets and the expiry heap can
 * hold it by reference.
 */
class Entry {
  constructor(
    readonly id: string,
    public data: string,
    public tags: Tags,
    /** Epoch ms at which the entry expires; 0 = never; REMOVED once removed. */
    public expires: number,
    /** Compaction round that last kept a record of this entry (de-duplicates records). */
    public mark: number,
  ) {}
}

/**
 * The default cache backend: everything in this process's memory, nothing to set up. Suits a
 * single node; use the Redis backend when several processes share sessions.
 *
 * - Tag look-ups and `flushByTag` cost O(matches): a tag index (tag -> entries) is kept beside
 *   the entries, and every entry knows its tags so its memberships go with it.
 * - `collectGarbage` costs O(expired) (amortised; log n per heap step): entries with a lifetime
 *   have a record in a binary min-heap ordered by expiry time. Overwriting an entry with a new
 *   expiry appends a new record and leaves the old one behind as stale (recognised because the
 *   entry's expiry no longer matches it). A session touched on every request gets an expiry
 *   later than all others, so its new record settles at the heap's end in O(1). Stale records
 *   are skipped when they surface, and the heap is compacted in O(n) once they outnumber the
 *   live ones twice, which bounds its memory however often entries are re-set.
 * - An expired entry is invisible to every read at once, but stays stored until
 *   `collectGarbage` (or an overwrite, `remove`, `flushByTag`, `flush`) removes it. Reads do not
 *   delete it on purpose: `collectGarbage` hands expired entries to the caller so it can clean
 *   up what they referenced (e.g. the data of an expired session), and an entry deleted on read
 *   would never be handed over.
 * - Every operation is synchronous inside, so `write()` is atomic within the process.
 * - It owns no timers: garbage collection is driven by the caller (the GC scheduler).
 */
export class MemoryBackend implements TaggableBackend {
  readonly name = 'memory';
  /** Guarded writes honour `WriteGuard.maxEntries` (counted in the same synchronous step). */
  readonly capsGroupEntries = true;

  private readonly maxEntryBytes: number;
  private readonly entries = new Map<string, Entry>();
  private readonly tagIndex = new Map<string, Members>();
  /**
   * The expiry min-heap as two parallel arrays (expiry ms, entry), so a record costs no object
   * of its own and the key comparisons run over an unboxed array of doubles.
   */
  private heapKeys: number[] = [];
  private heapEntries: Entry[] = [];
  /** Live entries that have a lifetime, i.e. how many heap records are not stale. */
  private expiring = 0;
  private compactions = 0;

  constructor(options: MemoryBackendOptions = {}) {
    const max = options.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES;
    if (typeof max !== 'number' || Number.isNaN(max) || max <= 0) {
      throw new InvalidArgumentException(
        `MemoryBackend option "maxEntryBytes" must be a positive number (or Infinity), got ${String(max)}.`,
      );
    }
    this.maxEntryBytes = max;
  }

  async get(id: string): Promise<string | undefined> {
    const entry = this.live(id, Date.now());
    return entry === undefined ? undefined : entry.data;
  }

  async getMany(ids: readonly string[]): Promise<(string | undefined)[]> {
    const now = Date.now();
    const result = new Array<string | undefined>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      result[i] = this.live(ids[i]!, now)?.data;
    }
    return result;
  }

  async getByTag(tag: string): Promise<BackendEntry[]> {
    const result: BackendEntry[] = [];
    const members = this.tagIndex.get(tag);
    if (members === undefined) return result;
    const now = Date.now();
    for (const entry of iterate(members)) {
      if (!isExpired(entry, now)) result.push({ id: entry.id, data: entry.data });
    }
    return result;
  }

  async has(id: string): Promise<boolean> {
    return this.live(id, Date.now()) !== undefined;
  }

  async set(id: string, data: string, tags?: readonly string[], lifetime?: number): Promise<void> {
    this.checkData(id, data);
    const expires = expiryAt(id, lifetime, Date.now());
    this.store(id, data, tags, expires);
  }

  async remove(id: string): Promise<boolean> {
    const entry = this.entries.get(id);
    if (entry === undefined) return false;
    const existed = !isExpired(entry, Date.now());
    this.delete(entry);
    return existed;
  }

  async write(batch: WriteBatch, guard?: WriteGuard): Promise<WriteResult> {
    const sets = batch.sets ?? NO_WRITES;
    const removes = batch.removes ?? NO_TAGS;
    const now = Date.now();

    // Validate everything first, so that a bad entry cannot leave half a batch applied.
    const expiries = new Array<number>(sets.length);
    for (let i = 0; i < sets.length; i++) {
      const write = sets[i]!;
      this.checkData(write.id, write.data);
      expiries[i] = expiryAt(write.id, write.lifetime, now);
    }
    // Undefined: the guard keeps its expiry (a created one never expires).
    let guardExpires: number | undefined;
    if (guard !== undefined) {
      assertGuardFence(guard);
      if (guard.lifetime !== undefined) guardExpires = expiryAt(guard.id, guard.lifetime, now);
    }
    for (const id of batch.mustExist ?? NO_TAGS) {
      if (this.live(id, now) === undefined) return 'missing';
    }

    // Before the guard may be created: a refused write leaves nothing behind.
    if (guard?.maxEntries !== undefined && this.groupCountAfter(guard, sets, removes, now) > guard.maxEntries) return 'full';

    if (guard !== undefined) {
      const current = this.live(guard.id, now);
      if (current === undefined) {
        if (guard.create !== true) return 'missing';
        // An expired guard entry counts as missing and is replaced.
        this.store(guard.id, String(guard.fence), guard.tags, guardExpires ?? 0);
      } else if (Number(current.data) > guard.fence) {
        return 'fenced';
      }
    }

    for (let i = 0; i < sets.length; i++) {
      const write = sets[i]!;
      this.store(write.id, write.data, write.tags, expiries[i]!);
    }
    for (const id of removes) {
      const entry = this.entries.get(id);
      if (entry !== undefined) this.delete(entry);
    }

    if (guard !== undefined) {
      // Keeps the guard's tags, and its lifetime unless one was given (also when the batch itself
      // set it); a batch that removed the guard entry (a destroy) leaves it removed. Memory has
      // no native expiry: the group's other entries stay until flushByTag or collectGarbage.
      const entry = this.entries.get(guard.id);
      if (entry !== undefined) {
        if (guardExpires === undefined) entry.data = String(guard.fence);
        else this.store(guard.id, String(guard.fence), tagList(entry.tags), guardExpires);
      }
    }
    return 'ok';
  }

  /**
   * Live entries of the guard's group (carrying the group's own tag, the guard not counted) once
   * `sets` and `removes` were applied. O(group + batch).
   */
  private groupCountAfter(guard: WriteGuard, sets: readonly BackendWrite[], removes: readonly string[], now: number): number {
    const dot = guard.id.indexOf('.');
    const group = dot < 0 ? guard.id : guard.id.slice(0, dot);
    const uncounted = guard.uncountedPrefix === undefined ? undefined : `${group}.${guard.uncountedPrefix}`;
    const ids = new Set<string>();
    const members = this.tagIndex.get(group);
    if (members !== undefined) for (const entry of iterate(members)) if (!isExpired(entry, now)) ids.add(entry.id);
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
  async flushByTag(tag: string): Promise<number> {
    const members = this.tagIndex.get(tag);
    if (members === undefined) return 0;
    const now = Date.now();
    let removed = 0;
    // `delete` mutates the members (and drops the tag when it empties): iterate a snapshot.
    for (const entry of membersOf(members)) {
      if (!isExpired(entry, now)) removed++;
      this.delete(entry);
    }
    return removed;
  }

  async findIdentifiersByTag(tag: string): Promise<string[]> {
    const result: string[] = [];
    const members = this.tagIndex.get(tag);
    if (members === undefined) return result;
    const now = Date.now();
    for (const entry of iterate(members)) {
      if (!isExpired(entry, now)) result.push(entry.id);
    }
    return result;
  }

  async collectGarbage(limit?: number): Promise<BackendEntry[]> {
    const max = gcLimit(limit);
    const now = Date.now();
    const collected: BackendEntry[] = [];
    while (collected.length < max && this.heapKeys.length > 0 && this.heapKeys[0]! <= now) {
      const expires = this.heapKeys[0]!;
      const entry = this.heapEntries[0]!;
      this.heapPop();
      // A stale record (the entry was re-set or removed since) is just dropped.
      if (entry.expires !== expires) continue;
      collected.push({ id: entry.id, data: entry.data });
      this.delete(entry);
    }
    return collected;
  }

  /** Drops every entry; the backend stays usable. */
  async close(): Promise<void> {
    this.clear();
  }

  /**
   * Sizes of the internal structures (a read-only snapshot), e.g. to watch memory use.
   * `expiryIndex` counts heap records, stale ones included: never more than twice the live
   * entries that have a lifetime, plus 64.
   */
  stats(): MemoryBackendStats {
    return { entries: this.entries.size, tags: this.tagIndex.size, expiryIndex: this.heapKeys.length };
  }

  /** The entry if it exists and has not expired at `now`. */
  private live(id: string, now: number): Entry | undefined {
    const entry = this.entries.get(id);
    return entry === undefined || isExpired(entry, now) ? undefined : entry;
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

  /** Creates or overwrites an entry (data, tags and expiry); arguments are already valid. */
  private store(id: string, data: string, tags: readonly string[] | undefined, expires: number): void {
    let entry = this.entries.get(id);
    if (entry === undefined) {
      entry = new Entry(id, data, toTags(tags), 0, 0);
      this.entries.set(id, entry);
      this.addTags(entry);
    } else {
      entry.data = data;
      // Re-setting the same tags is the common case (a session touched again): skip the index.
      if (!sameTags(entry.tags, tags)) {
        this.removeTags(entry);
        entry.tags = toTags(tags);
        this.addTags(entry);
      }
      // Same expiry: its heap record is still the valid one.
      if (entry.expires === expires) return;
      if (entry.expires !== 0) {
        entry.expires = expires;
        this.expiryDropped();
      }
    }
    entry.expires = expires;
    if (expires !== 0) {
      this.expiring++;
      this.heapPush(expires, entry);
    }
  }

  /** Removes an entry with its tag memberships; its expiry record turns stale. */
  private delete(entry: Entry): void {
    this.entries.delete(entry.id);
    this.removeTags(entry);
    const hadExpiry = entry.expires !== 0;
    entry.expires = REMOVED;
    // A stale heap record may still point here: do not let it keep the data alive.
    entry.data = '';
    entry.tags = NO_TAGS;
    if (hadExpiry) this.expiryDropped();
  }

  /**
   * Called when an entry's heap record has turned stale (its entry was removed or lost its
   * expiry). Keeps the heap within 2x the live records plus a slack even without new pushes.
   */
  private expiryDropped(): void {
    this.expiring--;
    if (this.heapKeys.length > 2 * this.expiring + COMPACTION_SLACK) this.compact();
  }

  private clear(): void {
    this.entries.clear();
    this.tagIndex.clear();
    this.heapKeys = [];
    this.heapEntries = [];
    this.expiring = 0;
  }

  private addTags(entry: Entry): void {
    const tags = entry.tags;
    if (typeof tags === 'string') {
      this.addMember(tags, entry);
    } else {
      for (const tag of tags) this.addMember(tag, entry);
    }
  }

  private addMember(tag: string, entry: Entry): void {
    const members = this.tagIndex.get(tag);
    if (members === undefined) {
      this.tagIndex.set(tag, entry);
    } else if (members instanceof Entry) {
      if (members !== entry) this.tagIndex.set(tag, [members, entry]);
    } else if (Array.isArray(members)) {
      if (members.includes(entry)) return;
      if (members.length < SMALL_GROUP) members.push(entry);
      else this.tagIndex.set(tag, new Set([...members, entry]));
    } else {
      members.add(entry);
    }
  }

  private removeTags(entry: Entry): void {
    const tags = entry.tags;
    if (typeof tags === 'string') {
      this.removeMember(tags, entry);
    } else {
      for (const tag of tags) this.removeMember(tag, entry);
    }
  }

  private removeMember(tag: string, entry: Entry): void {
    const members = this.tagIndex.get(tag);
    if (members === undefined) return;
    // Empty groups are dropped so that tags that are gone (e.g. of destroyed sessions) cost nothing.
    if (members instanceof Entry) {
      if (members === entry) this.tagIndex.delete(tag);
    } else if (Array.isArray(members)) {
      const i = members.indexOf(entry);
      if (i === -1) return;
      members.splice(i, 1);
      if (members.length === 1) this.tagIndex.set(tag, members[0]!);
    } else {
      members.delete(entry);
      if (members.size === 0) this.tagIndex.delete(tag);
      else if (members.size <= SMALL_GROUP / 2) this.tagIndex.set(tag, [...members]);
    }
  }

  private heapPush(expires: number, entry: Entry): void {
    // `expiring` already counts `entry`: after the push the heap holds at most
    // 2 * expiring + COMPACTION_SLACK records.
    if (this.heapKeys.length >= 2 * this.expiring + COMPACTION_SLACK) this.compact();
    const keys = this.heapKeys;
    const entries = this.heapEntries;
    let index = keys.length;
    keys.push(expires);
    entries.push(entry);
    // Sift up; for the usual "expires later than everything" this stops at once.
    while (index > 0) {
      const parent = (index - 1) >> 1;
      const parentKey = keys[parent]!;
      if (parentKey <= expires) break;
      keys[index] = parentKey;
      entries[index] = entries[parent]!;
      index = parent;
    }
    keys[index] = expires;
    entries[index] = entry;
  }

  /** Removes the root record. */
  private heapPop(): void {
    const lastKey = this.heapKeys.pop()!;
    const lastEntry = this.heapEntries.pop()!;
    if (this.heapKeys.length > 0) this.siftDown(0, lastKey, lastEntry);
  }

  /** Places the record (key, entry) into the hole at `index`, moving smaller children up. */
  private siftDown(index: number, key: number, entry: Entry): void {
    const keys = this.heapKeys;
    const entries = this.heapEntries;
    const length = keys.length;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= length) break;
      let childKey = keys[child]!;
      const right = child + 1;
      if (right < length) {
        const rightKey = keys[right]!;
        if (rightKey < childKey) {
          child = right;
          childKey = rightKey;
        }
      }
      if (childKey >= key) break;
      keys[index] = childKey;
      entries[index] = entries[child]!;
      index = child;
    }
    keys[index] = key;
    entries[index] = entry;
  }

  /**
   * Drops the stale records, and duplicates (an entry whose expiry went back to an earlier
   * value can have two records with the same key), then rebuilds the heap in O(n).
   */
  private compact(): void {
    const keys = this.heapKeys;
    const entries = this.heapEntries;
    // Stays a small integer; never 0, the mark of entries no compaction has seen yet.
    const round = (this.compactions = this.compactions >= 0x3fffffff ? 1 : this.compactions + 1);
    let kept = 0;
    for (let i = 0; i < keys.length; i++) {
      const entry = entries[i]!;
      if (entry.expires !== keys[i] || entry.mark === round) continue;
      entry.mark = round;
      keys[kept] = keys[i]!;
      entries[kept] = entry;
      kept++;
    }
    keys.length = kept;
    entries.length = kept;
    for (let i = (kept >> 1) - 1; i >= 0; i--) this.siftDown(i, keys[i]!, entries[i]!);
  }
}

const NO_WRITES: readonly BackendWrite[] = Object.freeze([]);

function isExpired(entry: Entry, now: number): boolean {
  return entry.expires !== 0 && entry.expires <= now;
}

/**
 * The stored form of tags: a private copy, so that a caller mutating its array later cannot
 * corrupt the tag index; a single tag is kept as the string itself.
 */
function toTags(tags: readonly string[] | undefined): Tags {
  if (tags === undefined || tags.length === 0) return NO_TAGS;
  return tags.length === 1 ? tags[0]! : tags.slice();
}

/** Stored tags as a list (for re-storing an entry with the tags it has). */
function tagList(tags: Tags): readonly string[] {
  return typeof tags === 'string' ? [tags] : tags;
}

function sameTags(current: Tags, next: readonly string[] | undefined): boolean {
  if (next === undefined || next.length === 0) return current === NO_TAGS;
  if (next.length === 1) return current === next[0];
  if (typeof current === 'string' || current.length !== next.length) return false;
  for (let i = 0; i < next.length; i++) {
    if (current[i] !== next[i]) return false;
  }
  return true;
}
