import type { Cache } from 'cache-manager';
import { checkedGuard, checkedMustExist, checkedWrite, gcLimit, secondsOption } from '../cache/backend-arguments.js';
import { assertCacheIdentifier } from '../cache/identifier.js';
import { expiryAt } from '../cache/lifetime.js';
import { attemptStore } from '../cache/store-failure.js';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { OperationNotSupportedException } from '../errors/operation-not-supported.exception.js';
import type {
  BackendEntry,
  BackendWrite,
  TaggableBackend,
  WriteBatch,
  WriteGuard,
  WriteResult,
} from '../cache/taggable-backend.interface.js';

/*
 * A TaggableBackend over any cache-manager v7 `Cache` (Keyv stores: memory, Redis, Valkey,
 * SQLite, ...). cache-manager offers get/set/delete with TTLs and nothing else, so this backend
 * keeps its own indexes as ordinary entries of the same store:
 *
 *   P|e|<id>       an entry: { d: data, t: tags, x: expiry epoch ms or 0 }
 *   P|t|<tag>      a tag index: the ids carrying the tag (no TTL; pruned when read, see below)
 *   P|x|<n>        an expiry bucket: ids whose expiry falls into bucket n (n = expiry / bucket length)
 *   P|x|cursor     the first bucket garbage collection has not finished with
 *
 * Lifetimes become store TTLs in milliseconds plus `safetyTtlMargin`, so an expired entry stays
 * stored (invisible) until garbage collection hands it over, and the store drops it if GC never
 * runs. Buckets get TTLs that outlive their records. Tag indexes have no TTL (one that expired
 * before a member would silently lose that membership, and keeping it longer would rewrite the
 * index on every write); readers prune members that are gone, and GC, `remove()` and
 * `flushByTag()` take memberships out, so only tags that are never read again keep leftovers.
 * A guard lifetime (`WriteGuard.lifetime`) also rewrites the group's members with the guard's
 * TTL (one more read and O(members) writes per such write), so a session's data outlives its
 * guard by at most the margin; the group's tag index keeps no TTL.
 *
 * What it cannot guarantee, unlike RedisBackend:
 * - No atomicity. `write()` reads the guard and the old entries, then writes entries and indexes
 *   in separate store calls (about 3 round trips). A guard or `mustExist` check is check-then-set, and tag
 *   indexes and buckets are read-modify-write. An in-process mutex per key (entries first, then
 *   indexes, each in sorted order) serialises this within ONE process only: two processes
 *   sharing the store can both pass a guard, and concurrent index updates can lose a membership
 *   (an entry then is not found by tag, or not handed over by GC; its TTL still removes it). A
 *   crash between calls can leave half a batch. Use RedisBackend for several processes.
 * - `getByTag()`/`findIdentifiersByTag()` take 2 round trips (index, then entries), not 1.
 * - A tag index is one value: a write that adds or removes a member rewrites the whole list, so
 *   for a tag carried by very many entries (e.g. "all sessions") that costs O(members), not O(1).
 *   Writes that keep an entry's tags do not touch its indexes.
 * - Garbage collection is O(expired) only up to bucket granularity: it reads every bucket from
 *   its cursor to now (at most `safetyTtlMargin` worth of buckets; older ones have expired in the
 *   store) and the records in them, including entries of the current bucket that have not
 *   expired yet and records left behind by entries whose lifetime changed. Run it on one
 *   instance at a time (two concurrent runs may hand over the same entry twice).
 * - Store errors surface as StoreUnavailableException only when they reach this backend:
 *   cache-manager swallows read errors and Keyv (and some adapters) swallow errors unless
 *   `throwOnErrors` is set. The backend listens to the `error` events of the cache's Keyv stores
 *   and to cache-manager's error events, and fails an operation when an error was reported while
 *   it ran; an error of an unrelated concurrent operation on the same store can fail it too. An
 *   adapter that neither throws nor emits hides its failures (they read as missing entries):
 *   create such Keyvs with `throwOnErrors: true`.
 * - `flush()` needs stores that can list their keys (Keyv `iterator`: memory, Redis, SQL, Mongo)
 *   and costs O(keys in the store). Keyv's iterator strips a namespace only up to its first `:`,
 *   so a Keyv namespace containing `:` makes `flush()` find nothing.
 * - Its entries are JSON-serialised by Keyv, so data is copied through JSON on every call.
 */

/** Options of {@link CacheManagerBackend}. */
export interface CacheManagerBackendOptions {
  /**
   * A cache-manager v7 cache (`createCache({ stores: [new Keyv(...)] })`), never closed by the
   * backend. Its default `ttl` does not apply: entries without lifetime are stored without TTL.
   * Prefer Keyvs created with `throwOnErrors: true`, so no store failure can read as a miss.
   */
  cache: Cache;
  /**
   * Prepended to every key, so several backends (e.g. the metadata and the storage cache) can
   * share one cache. It must not contain `|`.
   * @default 'sess:'
   */
  prefix?: string;
  /**
   * Seconds added to an entry's lifetime for the store's TTL, so garbage collection can still
   * find expired entries and hand them over; the store drops them after the margin.
   * @default 3600
   */
  safetyTtlMargin?: number;
  /**
   * Width of an expiry bucket in seconds: garbage collection reads whole buckets, so it may touch
   * entries that expire up to this much later than now.
   * @default 60
   */
  expiryBucketSeconds?: number;
}

/** The options as a JavaScript caller may pass them: the constructor checks what the types above promise. */
type UntypedCacheManagerBackendOptions = Omit<CacheManagerBackendOptions, 'cache' | 'prefix'> & {
  cache?: Partial<Cache> | null;
  prefix?: unknown;
};

/** What an entry key holds. */
interface StoredEntry {
  /** data */
  readonly d: string;
  /** tags */
  readonly t: readonly string[];
  /** expiry epoch ms, 0 = never */
  readonly x: number;
}

/** Store TTL (ms) the entries of a guarded group get at least, and the members to rewrite with it. */
interface Retention {
  readonly group: string;
  readonly ttl: number;
  readonly refresh: readonly string[];
}

interface CacheWrite {
  key: string;
  value: unknown;
  ttl: number;
}

const DEFAULT_PREFIX = 'sess:';
const DEFAULT_SAFETY_TTL_MARGIN = 3600;
const DEFAULT_BUCKET_SECONDS = 60;
const FLUSH_BATCH = 500;
const NO_TAGS: readonly string[] = Object.freeze([]);
const NO_WRITES: readonly BackendWrite[] = Object.freeze([]);

/**
 * Cache backend over a cache-manager v7 `Cache`, for stores RedisBackend does not cover. Weaker
 * than RedisBackend: see the comment at the top of this file for what it cannot guarantee.
 */
export class CacheManagerBackend implements TaggableBackend {
  readonly name = 'cache-manager';

  private readonly cache: Cache;
  private readonly prefix: string;
  private readonly marginMs: number;
  private readonly bucketMs: number;
  private readonly mutex = new KeyedMutex();
  /**
   * Keyv answers `getMany` on a store without one by single gets whose errors it drops silently;
   * single gets through cache-manager at least report them, so such stores are read key by key.
   */
  private readonly readKeyByKey: boolean;
  /** Store errors reported through events so far; an operation fails if it moved while it ran. */
  private errorCount = 0;
  private lastError: unknown;
  private readonly onStoreError = (error: unknown): void => {
    this.errorCount++;
    this.lastError = error;
  };
  private readonly onCacheEvent = (data: { error?: unknown }): void => {
    if (data.error !== undefined) this.onStoreError(data.error);
  };

  /** @throws InvalidOptionException for a missing cache, a prefix with `|` or bad numbers. */
  constructor(options: CacheManagerBackendOptions) {
    const untyped = (options as UntypedCacheManagerBackendOptions | null | undefined) ?? {};
    const given = untyped.cache;
    if (given === undefined || given === null || typeof given.mget !== 'function' || !Array.isArray(given.stores)) {
      throw InvalidOptionException.create('cacheManager.cache', 'must be a cache-manager v7 Cache (createCache())');
    }
    const cache = options.cache;
    const prefix = untyped.prefix ?? DEFAULT_PREFIX;
    if (typeof prefix !== 'string' || prefix.includes('|')) {
      throw InvalidOptionException.create('cacheManager.prefix', `must be a string without "|", got ${JSON.stringify(prefix)}`);
    }
    this.cache = cache;
    this.prefix = prefix;
    this.readKeyByKey = cache.stores.some((store) => typeof (store.store as { getMany?: unknown }).getMany !== 'function');
    this.marginMs =
      secondsOption('cacheManager.safetyTtlMargin', options.safetyTtlMargin ?? DEFAULT_SAFETY_TTL_MARGIN, true) * 1000;
    this.bucketMs =
      secondsOption('cacheManager.expiryBucketSeconds', options.expiryBucketSeconds ?? DEFAULT_BUCKET_SECONDS, false) * 1000;

    for (const store of cache.stores) store.on('error', this.onStoreError);
    cache.on('get', this.onCacheEvent);
    cache.on('mget', this.onCacheEvent);
  }

  /** @throws StoreUnavailableException when the store fails. */
  async get(id: string): Promise<string | undefined> {
    return this.attempt('get', async () => live(await this.read(this.entryKey(id)), Date.now())?.d);
  }

  /** One `mget`. @throws StoreUnavailableException when the store fails. */
  async getMany(ids: readonly string[]): Promise<(string | undefined)[]> {
    if (ids.length === 0) return [];
    return this.attempt('getMany', async () => {
      const values = await this.readMany(ids.map((id) => this.entryKey(id)));
      const now = Date.now();
      return values.map((value) => live(value, now)?.d);
    });
  }

  /** Two round trips (index, entries); prunes stale memberships. @throws StoreUnavailableException when the store fails. */
  async getByTag(tag: string): Promise<BackendEntry[]> {
    return this.attempt('getByTag', async () => {
      const found = await this.members(tag);
      return found.map(([id, entry]) => ({ id, data: entry.d }));
    });
  }

  /** @throws StoreUnavailableException when the store fails. */
  async has(id: string): Promise<boolean> {
    return (await this.get(id)) !== undefined;
  }

  /**
   * @throws InvalidArgumentException for a bad id, tag, lifetime or data (nothing is stored).
   * @throws StoreUnavailableException when the store fails.
   */
  async set(id: string, data: string, tags?: readonly string[], lifetime?: number): Promise<void> {
    await this.write({ sets: [{ id, data, tags: tags ?? NO_TAGS, lifetime }] });
  }

  /** @throws StoreUnavailableException when the store fails. */
  async remove(id: string): Promise<boolean> {
    return this.attempt('remove', () =>
      this.mutex.run([this.entryKey(id)], async () => {
        const entry = asEntry(await this.read(this.entryKey(id)));
        if (entry === undefined) return false;
        await this.applyIndexes(Date.now(), new Map([[id, entry]]), new Map([[id, undefined]]));
        return isLive(entry, Date.now());
      }),
    );
  }

  /**
   * Check-then-set, not atomic (see the top of this file): serialised per key within this
   * process only.
   * @throws InvalidArgumentException for a bad id, tag, lifetime, data or fence (nothing is written).
   * @throws StoreUnavailableException when the store fails (part of the batch may be written).
   */
  async write(batch: WriteBatch, guard?: WriteGuard): Promise<WriteResult> {
    const sets = batch.sets ?? NO_WRITES;
    const removes = batch.removes ?? NO_TAGS;
    if (sets.length === 0 && removes.length === 0 && guard === undefined) return 'ok';

    // Validate everything first: a bad entry must not leave half a batch applied.
    const now = Date.now();
    const planned: Array<[string, StoredEntry]> = [];
    for (const write of sets) {
      const tags = [...new Set(checkedWrite(write))];
      planned.push([write.id, { d: write.data, t: tags, x: expiryAt(write.id, write.lifetime, now) }]);
    }
    removes.forEach((id) => assertCacheIdentifier(id, 'cache entry identifier'));
    const mustExist = checkedMustExist(batch.mustExist);
    if (guard !== undefined) checkedGuard(guard);
    const guardExpiry = guard?.lifetime === undefined ? undefined : expiryAt(guard.id, guard.lifetime, now);

    return this.attempt('write', async () => {
      // A new guard lifetime refreshes the store TTL of the guard's whole group (best effort:
      // members are listed before the mutex, so one added concurrently by another process can
      // keep its older TTL).
      const group = guard === undefined ? '' : groupOf(guard.id);
      const groupMembers = guardExpiry === undefined || group === '' ? [] : asIds(await this.read(this.tagKey(group)));
      const ids = [
        ...new Set([...(guard ? [guard.id] : []), ...mustExist, ...planned.map(([id]) => id), ...removes, ...groupMembers]),
      ];
      const keys = ids.map((id) => this.entryKey(id));
      return this.mutex.run(keys, async () => {
        const current = await this.readMany(keys);
        const before = new Map<string, StoredEntry | undefined>();
        ids.forEach((id, i) => before.set(id, asEntry(current[i])));
        const after = new Map(before);

        for (const id of mustExist) {
          const stored = before.get(id);
          if (stored === undefined || !isLive(stored, now)) return 'missing';
        }
        if (guard !== undefined) {
          const stored = before.get(guard.id);
          if (stored === undefined || !isLive(stored, now)) {
            if (guard.create !== true) return 'missing';
            // An expired guard entry counts as missing and is replaced.
            after.set(guard.id, { d: String(guard.fence), t: [...new Set(guard.tags ?? NO_TAGS)], x: guardExpiry ?? 0 });
          } else if (Number(stored.d) > guard.fence) {
            return 'fenced';
          }
        }
        for (const [id, entry] of planned) after.set(id, entry);
        for (const id of removes) after.set(id, undefined);
        let retention: Retention | undefined;
        if (guard !== undefined) {
          // Keeps the guard's tags (and its lifetime unless one is given); a batch that removed
          // it (a destroy) wins.
          const entry = after.get(guard.id);
          if (entry !== undefined) {
            after.set(guard.id, { ...entry, d: String(guard.fence), x: guardExpiry ?? entry.x });
            const until = guardExpiry ?? entry.x;
            if (until !== 0 && group !== '') retention = { group, ttl: until + this.marginMs - now, refresh: groupMembers };
          }
        }
        await this.applyIndexes(now, before, after, undefined, undefined, retention);
        return 'ok';
      });
    });
  }

  /**
   * Removes every key of this backend (its prefix) from every store of the cache, listing them
   * with Keyv's `iterator`. O(keys in the store).
   * @throws OperationNotSupportedException when a store cannot list its keys.
   * @throws StoreUnavailableException when the store fails.
   */
  async flush(): Promise<void> {
    for (const store of this.cache.stores) {
      if (typeof store.iterator !== 'function') {
        throw OperationNotSupportedException.create(
          'CacheManagerBackend.flush()',
          'a Keyv store of the cache cannot list its keys (no iterator); use flushByTag(), or clear the store yourself',
        );
      }
    }
    const marker = `${this.prefix}|`;
    await this.attempt('flush', async () => {
      const keys = new Set<string>();
      for (const store of this.cache.stores) {
        for await (const [key] of store.iterator!(undefined) as AsyncGenerator<[string, unknown]>) {
          if (typeof key === 'string' && key.startsWith(marker)) keys.add(key);
        }
      }
      const all = [...keys];
      for (let i = 0; i < all.length; i += FLUSH_BATCH) await this.checked(() => this.cache.mdel(all.slice(i, i + FLUSH_BATCH)));
    });
  }

  /** Removes expired carriers of the tag too, but counts only live ones. @throws StoreUnavailableException when the store fails. */
  async flushByTag(tag: string): Promise<number> {
    return this.attempt('flushByTag', async () => {
      const members = asIds(await this.read(this.tagKey(tag)));
      if (members.length === 0) return 0;
      const keys = members.map((id) => this.entryKey(id));
      return this.mutex.run(keys, async () => {
        const now = Date.now();
        const entries = await this.readMany(keys);
        const before = new Map<string, StoredEntry | undefined>();
        const after = new Map<string, StoredEntry | undefined>();
        let removed = 0;
        members.forEach((id, i) => {
          const entry = asEntry(entries[i]);
          if (entry === undefined || !entry.t.includes(tag)) return;
          before.set(id, entry);
          after.set(id, undefined);
          if (isLive(entry, now)) removed++;
        });
        // Members that were stale leave the index too.
        const stale = members.filter((id) => !before.has(id));
        await this.applyIndexes(now, before, after, new Map([[tag, stale]]));
        return removed;
      });
    });
  }

  /** Two round trips (index, entries). @throws StoreUnavailableException when the store fails. */
  async findIdentifiersByTag(tag: string): Promise<string[]> {
    return this.attempt('findIdentifiersByTag', async () => (await this.members(tag)).map(([id]) => id));
  }

  /**
   * Reads the expiry buckets from the cursor to now, hands over the expired entries (oldest
   * first, at most `limit`) and removes them with their index records.
   * @throws InvalidArgumentException for a negative or NaN limit.
   * @throws StoreUnavailableException when the store fails.
   */
  async collectGarbage(limit?: number): Promise<BackendEntry[]> {
    const max = gcLimit(limit);
    return this.attempt('collectGarbage', () =>
      this.mutex.run([this.cursorKey()], async () => {
        const now = Date.now();
        const nowBucket = Math.floor(now / this.bucketMs);
        // Buckets older than the margin have expired in the store together with their entries.
        const oldest = nowBucket - Math.ceil(this.marginMs / this.bucketMs) - 1;
        const cursor = await this.read(this.cursorKey());
        const first = Math.min(nowBucket, Math.max(oldest, typeof cursor === 'number' ? cursor : oldest));
        const bucketNumbers: number[] = [];
        for (let n = first; n <= nowBucket; n++) bucketNumbers.push(n);
        const buckets = (await this.readMany(bucketNumbers.map((n) => this.bucketKey(n)))).map(asIds);

        const candidates = [...new Set(buckets.flat())];
        const keys = candidates.map((id) => this.entryKey(id));
        return this.mutex.run(keys, async () => {
          const entries = await this.readMany(keys);
          const expired: Array<[string, StoredEntry]> = [];
          const current = new Map<string, StoredEntry | undefined>();
          candidates.forEach((id, i) => {
            const entry = asEntry(entries[i]);
            current.set(id, entry);
            if (entry !== undefined && entry.x !== 0 && entry.x <= now) expired.push([id, entry]);
          });
          expired.sort(([a, x], [b, y]) => x.x - y.x || (a < b ? -1 : a > b ? 1 : 0));
          const taken = expired.slice(0, max);

          const before = new Map<string, StoredEntry | undefined>(taken);
          const after = new Map<string, StoredEntry | undefined>(taken.map(([id]) => [id, undefined]));
          // Records to drop per bucket: collected entries and records of entries that are gone
          // or now expire in another bucket; what stays is not due yet or over the limit.
          const dropped = new Map<number, string[]>();
          let nextCursor = nowBucket;
          bucketNumbers.forEach((n, i) => {
            const drop: string[] = [];
            let keeps = false;
            for (const id of buckets[i]!) {
              const entry = current.get(id);
              if (entry === undefined || before.has(id) || entry.x === 0 || this.bucketOf(entry.x) !== n) drop.push(id);
              else keeps = true;
            }
            if (drop.length > 0) dropped.set(n, drop);
            if (keeps) nextCursor = Math.min(nextCursor, n);
          });
          await this.applyIndexes(now, before, after, undefined, dropped);
          await this.checked(() => this.cache.set(this.cursorKey(), nextCursor, this.marginMs + this.bucketMs));
          return taken.map(([id, entry]) => ({ id, data: entry.d }));
        });
      }),
    );
  }

  /** Stops listening to the cache's events; the cache itself belongs to the caller. */
  async close(): Promise<void> {
    for (const store of this.cache.stores) store.off('error', this.onStoreError);
    this.cache.off('get', this.onCacheEvent);
    this.cache.off('mget', this.onCacheEvent);
  }

  /** Live entries carrying `tag`, pruning memberships that are stale. */
  private async members(tag: string): Promise<Array<[string, StoredEntry]>> {
    const members = asIds(await this.read(this.tagKey(tag)));
    if (members.length === 0) return [];
    const entries = await this.readMany(members.map((id) => this.entryKey(id)));
    const now = Date.now();
    const found: Array<[string, StoredEntry]> = [];
    const stale: string[] = [];
    members.forEach((id, i) => {
      const entry = asEntry(entries[i]);
      if (entry === undefined || !entry.t.includes(tag)) stale.push(id);
      else if (isLive(entry, now)) found.push([id, entry]);
    });
    if (stale.length > 0) await this.applyIndexes(now, new Map(), new Map(), new Map([[tag, stale]]));
    return found;
  }

  /**
   * Writes the entries that differ between `before` and `after` (undefined = deleted) and updates
   * the tag indexes and expiry buckets to match, under the per-process index locks. Also drops
   * the given stale index members and bucket records.
   */
  private async applyIndexes(
    now: number,
    before: ReadonlyMap<string, StoredEntry | undefined>,
    after: ReadonlyMap<string, StoredEntry | undefined>,
    staleMembers?: ReadonlyMap<string, readonly string[]>,
    staleRecords?: ReadonlyMap<number, readonly string[]>,
    retention?: Retention,
  ): Promise<void> {
    const tagAdds = new Map<string, Set<string>>();
    const tagRemoves = new Map<string, Set<string>>();
    const bucketAdds = new Map<number, Set<string>>();
    const writes: CacheWrite[] = [];
    const deletes = new Set<string>();

    for (const [id, next] of after) {
      const previous = before.get(id);
      const kept = retention !== undefined && next !== undefined && next.t.includes(retention.group);
      if (next === previous && !(kept && retention.refresh.includes(id))) continue;
      const key = this.entryKey(id);
      const ttl = next === undefined || next.x === 0 ? 0 : next.x + this.marginMs - now;
      if (next === undefined) deletes.add(key);
      // An entry of a guarded group lives in the store at least as long as its guard.
      else writes.push({ key, value: next, ttl: kept && (ttl === 0 || ttl < retention.ttl) ? retention.ttl : ttl });
      if (next === previous) continue;
      const previousTags = previous?.t ?? NO_TAGS;
      const nextTags = next?.t ?? NO_TAGS;
      for (const tag of previousTags) {
        if (!nextTags.includes(tag)) getOrCreate(tagRemoves, tag, () => new Set()).add(id);
      }
      for (const tag of nextTags) {
        if (!previousTags.includes(tag)) getOrCreate(tagAdds, tag, () => new Set()).add(id);
      }
      if (next !== undefined && next.x !== 0 && next.x !== previous?.x) {
        getOrCreate(bucketAdds, this.bucketOf(next.x), () => new Set()).add(id);
      }
    }
    for (const [tag, ids] of staleMembers ?? []) {
      const set = getOrCreate(tagRemoves, tag, () => new Set());
      ids.forEach((id) => set.add(id));
    }

    const tags = [...new Set([...tagAdds.keys(), ...tagRemoves.keys()])];
    const bucketNumbers = [...new Set([...bucketAdds.keys(), ...(staleRecords?.keys() ?? [])])];
    const indexKeys = [...tags.map((tag) => this.tagKey(tag)), ...bucketNumbers.map((n) => this.bucketKey(n))];

    await this.mutex.run(indexKeys, async () => {
      const stored = indexKeys.length === 0 ? [] : await this.readMany(indexKeys);
      tags.forEach((tag, i) => {
        const ids = new Set(asIds(stored[i]));
        for (const id of tagRemoves.get(tag) ?? []) ids.delete(id);
        for (const id of tagAdds.get(tag) ?? []) ids.add(id);
        const key = this.tagKey(tag);
        if (ids.size === 0) deletes.add(key);
        else writes.push({ key, value: [...ids], ttl: 0 });
      });
      bucketNumbers.forEach((n, i) => {
        const ids = new Set(asIds(stored[tags.length + i]));
        for (const id of staleRecords?.get(n) ?? []) ids.delete(id);
        for (const id of bucketAdds.get(n) ?? []) ids.add(id);
        const key = this.bucketKey(n);
        if (ids.size === 0) deletes.add(key);
        else writes.push({ key, value: [...ids], ttl: (n + 1) * this.bucketMs + this.marginMs - now });
      });
      // Same tick: the store can pipeline both (Keyv's Redis adapter sends mset as one MULTI).
      await Promise.all([
        writes.length > 0 ? this.checked(() => this.cache.mset(writes)) : undefined,
        deletes.size > 0 ? this.checked(() => this.cache.mdel([...deletes])) : undefined,
      ]);
    });
  }

  private entryKey(id: string): string {
    return `${this.prefix}|e|${id}`;
  }

  private tagKey(tag: string): string {
    return `${this.prefix}|t|${tag}`;
  }

  private bucketKey(n: number): string {
    return `${this.prefix}|x|${n}`;
  }

  private cursorKey(): string {
    return `${this.prefix}|x|cursor`;
  }

  private bucketOf(expires: number): number {
    return Math.floor(expires / this.bucketMs);
  }

  private read(key: string): Promise<unknown> {
    return this.checked(() => this.cache.get<unknown>(key));
  }

  private readMany(keys: readonly string[]): Promise<unknown[]> {
    if (keys.length === 0) return Promise.resolve([]);
    if (this.readKeyByKey) return this.checked(() => Promise.all(keys.map((key) => this.cache.get<unknown>(key))));
    return this.checked(() => this.cache.mget<unknown>([...keys]));
  }

  /** Runs one store call and throws if it failed, also when the failure was only reported as an event. */
  private async checked<T>(call: () => Promise<T>): Promise<T> {
    const errorsBefore = this.errorCount;
    const result = await call();
    if (this.errorCount !== errorsBefore) throw reportedError(this.lastError);
    return result;
  }

  private attempt<T>(operation: string, work: () => Promise<T>): Promise<T> {
    return attemptStore(`cache-manager ${operation}`, work);
  }
}

/** A store error reported through an event, as an `Error`: an `Error` as it is, any other value as the `cause` of one. */
function reportedError(value: unknown): Error {
  return value instanceof Error ? value : new Error('the store reported an error', { cause: value });
}

/**
 * Per-key promise chains: `run` waits for every earlier holder of any of its keys. Keys are
 * taken in sorted order, and callers take entry keys before index keys and never the other way
 * round, so two runs cannot wait for each other. Within one process only.
 */
class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(keys: readonly string[], work: () => Promise<T>): Promise<T> {
    const releases: Array<() => void> = [];
    try {
      for (const key of [...new Set(keys)].sort()) releases.push(await this.acquire(key));
      return await work();
    } finally {
      for (const release of releases) release();
    }
  }

  private async acquire(key: string): Promise<() => void> {
    const previous = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous === undefined ? mine : previous.then(() => mine);
    this.tails.set(key, tail);
    if (previous !== undefined) await previous;
    return () => {
      release();
      // The last holder cleans up, so idle keys cost nothing.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }
}

/** The group of an id: the text before its first `.` (the slot-group rule of `TaggableBackend`). */
function groupOf(id: string): string {
  const dot = id.indexOf('.');
  return dot < 0 ? id : id.slice(0, dot);
}

function asEntry(value: unknown): StoredEntry | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const entry = value as StoredEntry;
  return typeof entry.d === 'string' && Array.isArray(entry.t) && typeof entry.x === 'number' ? entry : undefined;
}

function asIds(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((id): id is string => typeof id === 'string') : [];
}

function isLive(entry: StoredEntry, now: number): boolean {
  return entry.x === 0 || entry.x > now;
}

function live(value: unknown, now: number): StoredEntry | undefined {
  const entry = asEntry(value);
  return entry !== undefined && isLive(entry, now) ? entry : undefined;
}

function getOrCreate<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create();
    map.set(key, value);
  }
  return value;
}
