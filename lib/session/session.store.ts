import { VariableFrontend } from '../cache/variable.frontend.js';
import { RandomIdGenerator } from './random-id.generator.js';
import { SessionBagRegistry } from '../bags/session-bag.registry.js';
import type { BackendWrite, WriteResult } from '../cache/taggable-backend.interface.js';
import { SessionError } from '../errors/session.error.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { SessionDestroyedException } from '../errors/session-destroyed.exception.js';
import { LockException } from '../errors/lock.exception.js';
import { SessionLimitExceededException } from '../errors/session-limit-exceeded.exception.js';
import type { LockOptions, SessionLock } from '../locking/session-locker.interface.js';
import { SessionEventBus } from './session-events.js';
import type { ResolvedSessionOptions } from './session-module.options.js';
import type { SessionMetadata } from './session-metadata.interface.js';
import { handleOf, handleTag, type MetadataKey } from './session-key.js';

/** Cache tag carried by every metadata entry (Flow tags them all the same way). */
export const ALL_SESSIONS_TAG = 'session';
/** Prefix of custom session tags in the metadata cache, so they never clash with internal tags. */
const CUSTOM_TAG_PREFIX = 'tag-';
/** Prefix of the metadata cache tag naming a session's storage id (never shown to clients). */
const STORAGE_OWNER_PREFIX = 'storage-';
/** Storage-key prefix of bag entries (SessionBagSet), not counted as data keys. */
const BAG_KEY_PREFIX = '~';
/** Storage-entry suffix of the write guard; `~` cannot occur in a user key. */
const GUARD_SUFFIX = '.~guard';

/** What one commit writes; built by the `CommitPlanner` from a snapshot of the session's changes. */
export interface CommitPlan {
  /** Key the metadata is written under (`metadataKeyOf` the session id; a new one after renewal). */
  readonly metadataKey: MetadataKey;
  /** Metadata to write, or undefined when only data changed. */
  readonly metadata?: SessionMetadata;
  /** Create the session (first write): metadata first, then storage with a creating guard. */
  readonly create: boolean;
  /** Changed data: serialized value, or null for a removed key. */
  readonly changes: ReadonlyMap<string, string | null>;
  /** Metadata keys whose entries are removed (ids renewed away). */
  readonly retiredKeys: readonly string[];
}

/**
 * The session persistence layer: a metadata cache (one entry per session) and a storage cache (one entry per data key)
 * plus the locker. It knows the data model and the write protocol; the Session above it
 * knows the API and dirty tracking; the caches below know nothing about sessions.
 *
 * Ids are hashed at rest: the store never sees a session id, only its metadata key
 * (`metadataKeyOf(id)`, session-key.ts), and every metadata index (all sessions, custom tags,
 * storage owners, handles) lists keys. A copy of the store holds no working cookie.
 */
export class SessionStore {
  readonly metadataCache: VariableFrontend;
  readonly storageCache: VariableFrontend;
  /** Lifecycle events of this store's sessions (`SessionManager.events$`). */
  readonly events = new SessionEventBus();

  constructor(
    readonly options: ResolvedSessionOptions,
    /** Bags every session offers (from `forRoot({ bags })` and `forFeature`). */
    readonly bags: SessionBagRegistry = new SessionBagRegistry(),
  ) {
    // Metadata is an internal, trusted structure: plain JSON is faster than the value serializer.
    this.metadataCache = new VariableFrontend(options.metadataBackend, JSON_SERIALIZER);
    this.storageCache = new VariableFrontend(options.storageBackend, options.serializer);
  }

  /** Private storage ids: 128 random bits, pooled (one randomBytes call per id is slow). */
  private readonly storageIds = new RandomIdGenerator(16);

  /** A new private storage id (never sent to clients). */
  newStorageId(): string {
    return this.storageIds.generate();
  }

  /** Cache tag of a custom session tag in the metadata cache. */
  static customTag(tag: string): string {
    return CUSTOM_TAG_PREFIX + tag;
  }

  /**
   * Cache tag that every metadata entry pointing at a storage id carries, so GC can tell
   * whether storage is still referenced (by an id renewed while the old entry's removal
   * failed) before it flushes it.
   */
  static storageOwnerTag(storageId: string): string {
    return STORAGE_OWNER_PREFIX + storageId;
  }

  /** Inactivity timeout of a session in seconds. */
  timeoutOf(metadata: SessionMetadata): number {
    return metadata.lifetime ?? this.options.inactivityTimeout;
  }

  /**
   * Epoch ms at which the session expires unless used again: its inactivity expiry, or its
   * absolute end (`absoluteTimeout` after its last login, else after its creation) if sooner.
   */
  expiresAt(metadata: SessionMetadata): number {
    const inactive = metadata.lastActivity + this.timeoutOf(metadata) * 1000;
    const absolute = this.options.absoluteTimeout;
    if (absolute <= 0) return inactive;
    return Math.min(inactive, (metadata.boundAt ?? metadata.createdAt) + absolute * 1000);
  }

  /** Expired by inactivity or by the absolute lifetime: never resumed, listed or found again. */
  isExpired(metadata: SessionMetadata, now: number = Date.now()): boolean {
    return now >= this.expiresAt(metadata);
  }

  /** The metadata of a live session, or undefined for unknown, destroyed or expired sessions. */
  async loadMetadata(key: MetadataKey): Promise<SessionMetadata | undefined> {
    const metadata = await this.metadataCache.get<SessionMetadata>(key);
    if (metadata === undefined || this.isExpired(metadata)) return undefined;
    return metadata;
  }

  /**
   * The metadata key and metadata of the live session with `handle` (O(1): every metadata
   * entry carries its handle's tag), or undefined. A handle is not a credential: callers
   * decide who may act on it.
   */
  async findByHandle(handle: string): Promise<{ key: MetadataKey; metadata: SessionMetadata } | undefined> {
    const now = Date.now();
    for (const entry of await this.metadataCache.getRawByTag(handleTag(handle))) {
      const metadata = this.metadataCache.decode<SessionMetadata>(entry.data);
      // The tag is the key's group, so a carrier is this handle's key (a collision of 96 bits aside).
      if (handleOf(entry.id) === handle && !this.isExpired(metadata, now)) return { key: entry.id as MetadataKey, metadata };
    }
    return undefined;
  }

  /** One data entry of a session (serialized), or undefined. */
  loadValue(storageId: string, key: string): Promise<string | undefined> {
    return this.storageCache.getRaw(`${storageId}.${key}`);
  }

  /** All data entries of a session (serialized values by key), in one backend call. */
  async loadData(storageId: string): Promise<Map<string, string>> {
    const entries = await this.storageCache.getRawByTag(storageId);
    const data = new Map<string, string>();
    const offset = storageId.length + 1;
    for (const entry of entries) {
      if (entry.id.endsWith(GUARD_SUFFIX)) continue;
      data.set(entry.id.slice(offset), entry.data);
    }
    return data;
  }

  /**
   * Takes the session's lock (keyed by the storage id, which survives id renewal).
   * @throws LockTimeoutException, StoreUnavailableException
   */
  async lock(storageId: string, options?: Partial<LockOptions>): Promise<SessionLock> {
    try {
      return await this.options.locker.acquire(storageId, {
        waitTimeout: options?.waitTimeout ?? this.options.lock.waitTimeout,
        ttl: options?.ttl ?? this.options.lock.ttl,
      });
    } catch (error) {
      if (error instanceof SessionError) throw error;
      throw StoreUnavailableException.create('acquire lock', error);
    }
  }

  /**
   * Writes a commit plan under the session lock held by the caller, whose fencing number is
   * `fence` (0 for a new session, which nobody else can know yet). Order:
   * 1. Renewal of an existing session: first the guarded storage write (the changed data, or the
   *    guard alone when no data changed), so that a commit whose lock expired and was overtaken
   *    (`fenced`), or whose session is gone (`missing`), fails before anything else is touched;
   *    then the retired keys are removed, and at least one must have existed (else the session
   *    was destroyed or expired); then the new metadata. The old id dies before the new one is
   *    published: a failure in between leaves the client logged out, never with two valid ids.
   *    (A metadata-only renewal therefore costs 3 round trips instead of 2.)
   * 2. New sessions (and `regenerate(true)`'s new storage): retired keys removed first (as in 1),
   *    then metadata, then data with a creating guard.
   * 3. Other existing sessions: data guarded by the lock's fence (a destroyed or expired session's
   *    guard is gone, so nothing is written back), then the metadata, only if its entry is
   *    still live. A metadata-only commit writes the guard alone first (2 round trips), so a
   *    fenced or destroyed session's commit writes nothing at all.
   * Every metadata write gives the storage guard the session's remaining lifetime, so the
   * guard (and, natively, every storage entry) lives exactly as long as the session.
   * @throws SessionDestroyedException when the session was destroyed or expired meanwhile.
   * @throws LockException when a newer lock holder has written (this lock expired).
   * @throws StoreUnavailableException when a store fails (see step 1 for what is left).
   */
  async write(storageId: string, plan: CommitPlan, fence: number, afterRetire?: () => Promise<void>): Promise<void> {
    const lifetime = plan.metadata === undefined ? undefined : this.remainingSeconds(plan.metadata);
    if (plan.retiredKeys.length > 0 && !plan.create) {
      // The fence (and the session's existence) is checked before the old id dies.
      await this.writeStorage(storageId, plan, fence, lifetime);
      await this.removeRetired(plan.retiredKeys);
      if (plan.metadata) await this.writeMetadata(plan.metadataKey, plan.metadata, lifetime!, false);
      return;
    }
    if (plan.create && plan.metadata && plan.retiredKeys.length > 0) {
      // A move (login, regenerate(true)): the old id dies first, with the fresh storage written
      // in the same tick (nobody can know it yet); then the new metadata is published, with
      // `afterRetire` (the old storage's flush) beside it. A failure in between leaves the
      // client logged out, its data in an unreachable storage that expires.
      const storage = this.writeStorage(storageId, plan, fence, lifetime);
      const [retired] = await Promise.allSettled([this.removeRetired(plan.retiredKeys), storage]);
      if (retired.status === 'rejected') throw retired.reason;
      await storage;
      // The flush's first script goes out in this tick too; the commit does not wait for its
      // index clean-up (a failed flush leaves the old entries to their native lifetime).
      void afterRetire?.();
      await this.writeMetadata(plan.metadataKey, plan.metadata, lifetime!, false);
      return;
    }
    if (plan.retiredKeys.length > 0) await this.removeRetired(plan.retiredKeys);
    if (plan.create && plan.metadata) {
      // A fresh storage id and a fresh id: nothing can refuse either write, so both go out in
      // one tick (one round trip), the storage first. If one fails the client gets no cookie;
      // the metadata is then taken back (best effort, else it expires unreachable).
      const results = await Promise.allSettled([
        this.writeStorage(storageId, plan, fence, lifetime),
        this.writeMetadata(plan.metadataKey, plan.metadata, lifetime!, false),
      ]);
      const failed = results.find((result) => result.status === 'rejected');
      if (failed !== undefined) {
        if (results[1].status === 'fulfilled') void this.metadataCache.remove(plan.metadataKey).catch(() => false);
        throw failed.reason;
      }
      await afterRetire?.();
      return;
    }
    // The metadata entry of an existing session must still be live to be rewritten.
    const conditional = !plan.create;
    if (plan.changes.size > 0 || plan.create || plan.metadata) {
      // Also for a metadata-only commit (the guard alone is written, to refresh its lifetime):
      // the guard write goes first, so that a commit that is fenced off (its lock expired and a
      // later holder wrote) or whose session is gone writes no metadata either. Sent together,
      // the metadata would land while the commit reported LockException (a lost update).
      await this.writeStorage(storageId, plan, fence, lifetime);
      if (!plan.create && plan.metadata) await this.writeMetadata(plan.metadataKey, plan.metadata, lifetime!, conditional);
    }
  }

  /**
   * Removes the metadata entries of renewed-away ids; at least one must have existed.
   * @throws SessionDestroyedException when none did (the session was destroyed or expired).
   */
  private async removeRetired(keys: readonly string[]): Promise<void> {
    const existed = await Promise.all(keys.map((key) => this.metadataCache.remove(key)));
    if (!existed.includes(true)) throw SessionDestroyedException.create('renew the session id');
  }

  /**
   * Removes a session: its metadata entries (by metadata key) and every storage entry (incl. the
   * guard). With `fence` (the fencing number of the lock the caller destroys under), the guard is
   * checked first: a holder whose lock expired and was overtaken by a later writer must not
   * flush what that writer stored. A guard already gone does not stop the destroy.
   * @throws LockException when a newer lock holder has written (nothing is removed).
   */
  async destroy(metadataKeys: readonly string[], storageId: string, fence?: number): Promise<void> {
    if (fence !== undefined) {
      const result = await this.storageCache.write({}, { id: storageId + GUARD_SUFFIX, fence });
      if (result === 'fenced') {
        throw new LockException(
          'The session lock expired before the destroy and another request has written since; ' +
            'the session was not destroyed. Raise lock.ttl or shorten the locked section.',
        );
      }
    }
    await Promise.all([...metadataKeys.map((key) => this.metadataCache.remove(key)), this.storageCache.flushByTag(storageId)]);
  }

  /**
   * Seconds the session has left from now (exact to the millisecond, at least 1 ms): the store
   * lifetime, so that backends expire it natively at the sooner of its inactivity and absolute ends.
   */
  private remainingSeconds(metadata: SessionMetadata): number {
    return Math.max(0.001, (this.expiresAt(metadata) - Date.now()) / 1000);
  }

  /**
   * Whether the storage backend enforces `maxKeysPerSession` inside its guarded write (it
   * counts the storage's entries in the same atomic step: Redis), so `putData` of a key the
   * request has not seen need not read the session's keys first.
   */
  get capsKeysInWrite(): boolean {
    return this.options.storageBackend.capsGroupEntries === true;
  }

  /** The cap on a storage's data keys a guarded write passes (bag entries, `~`, and the guard are not counted), or none. */
  private maxEntries(): number | undefined {
    return this.capsKeysInWrite ? this.options.maxKeysPerSession : undefined;
  }

  /**
   * Whether `writeUnlocked` can commit without taking the session lock: the storage backend
   * checks this store's locker's locks inside its guarded write (Redis from
   * `createRedisSessionStores`), so the commit is one round trip instead of three.
   */
  get writesUnlocked(): boolean {
    const checked = this.options.storageBackend.checksLocksOf;
    return checked !== undefined && checked === this.options.locker;
  }

  /**
   * Writes a data-only plan (no metadata, no move, no renewal) of an existing session without
   * holding its lock, in one atomic step that applies only while nobody holds the lock and draws
   * a fresh fence from it (an older holder whose lock expired is fenced off, as after an acquire).
   * Answers false, having written nothing, when the lock is held: the caller then queues for it.
   * @throws SessionDestroyedException when the session was destroyed or expired meanwhile.
   * @throws LockException when a newer fence has written (clock trouble; see RedisLocker).
   * @throws StoreUnavailableException when the store fails (nothing was written).
   */
  async writeUnlocked(storageId: string, plan: CommitPlan): Promise<boolean> {
    const result = await this.storageCache.write(this.storageBatch(storageId, plan), {
      id: storageId + GUARD_SUFFIX,
      fence: 0,
      unlocked: true,
      maxEntries: this.maxEntries(),
      uncountedPrefix: BAG_KEY_PREFIX,
    });
    if (result === 'locked') return false;
    assertWritten(result, plan, this.options.maxKeysPerSession);
    return true;
  }

  /** The changed data entries under the storage guard; `lifetime` (seconds) refreshes the guard's. */
  private async writeStorage(storageId: string, plan: CommitPlan, fence: number, lifetime: number | undefined): Promise<void> {
    const result = await this.storageCache.write(this.storageBatch(storageId, plan), {
      id: storageId + GUARD_SUFFIX,
      fence,
      create: plan.create,
      tags: [storageId],
      lifetime,
      maxEntries: this.maxEntries(),
      uncountedPrefix: BAG_KEY_PREFIX,
    });
    assertWritten(result, plan, this.options.maxKeysPerSession);
  }

  private storageBatch(storageId: string, plan: CommitPlan): { sets: BackendWrite[]; removes: string[] } {
    const sets: BackendWrite[] = [];
    const removes: string[] = [];
    for (const [key, value] of plan.changes) {
      const id = `${storageId}.${key}`;
      if (value === null) removes.push(id);
      else sets.push({ id, data: value, tags: [storageId] });
    }
    return { sets, removes };
  }

  /**
   * Flushes the storage of sessions whose write guard has expired (its lifetime is the
   * session's) and that no metadata entry references any more: data left behind when a garbage
   * collection removed a session's metadata but failed to flush its storage. O(expired) through
   * the storage backend's expiry index; at most `limit` guards. Answers how many were flushed.
   * @throws StoreUnavailableException when a store fails (the rest is retried by the next run).
   */
  async collectOrphanedStorage(limit: number): Promise<number> {
    let flushed = 0;
    for (const entry of await this.storageCache.collectGarbage(limit)) {
      if (!entry.id.endsWith(GUARD_SUFFIX)) continue;
      const storageId = entry.id.slice(0, -GUARD_SUFFIX.length);
      const owners = await this.metadataCache.findIdentifiersByTag(SessionStore.storageOwnerTag(storageId));
      if (owners.length > 0) continue;
      await this.storageCache.flushByTag(storageId);
      flushed++;
    }
    return flushed;
  }

  /**
   * Checks, with a guard-only write, that the session stored under `storageId` still exists and
   * that `fence` is still current: what a storage move does before it copies the old storage, so
   * that a holder whose lock expired cannot carry stale data over a later holder's writes.
   * @throws SessionDestroyedException, LockException as `write()`.
   */
  async assertCurrent(storageId: string, fence: number): Promise<void> {
    assertWritten(await this.storageCache.write({}, { id: storageId + GUARD_SUFFIX, fence }));
  }

  /**
   * The metadata entry, living `lifetime` seconds; `conditional`: only if the entry is still
   * live (an existing session), so that no commit can bring back a destroyed or expired one.
   * Tagged with its handle's tag too (`findByHandle`).
   * @throws SessionDestroyedException when a conditional write finds the entry gone.
   */
  private async writeMetadata(
    key: MetadataKey,
    metadata: SessionMetadata,
    lifetime: number,
    conditional: boolean,
  ): Promise<void> {
    const tags = [ALL_SESSIONS_TAG, SessionStore.storageOwnerTag(metadata.storageId), handleTag(handleOf(key))];
    for (const tag of metadata.tags) tags.push(SessionStore.customTag(tag));
    const result = await this.metadataCache.write({
      sets: [{ id: key, data: this.metadataCache.encode(metadata), tags, lifetime }],
      mustExist: conditional ? [key] : undefined,
    });
    if (result !== 'ok') throw SessionDestroyedException.create('save the session');
  }
}

/** Turns a refused storage write into the error the caller's request answers with. */
function assertWritten(result: WriteResult, plan?: CommitPlan, maxKeys = 0): void {
  if (result === 'full') {
    const added = [...(plan?.changes ?? new Map<string, string | null>())].find(([, value]) => value !== null)?.[0] ?? '';
    throw SessionLimitExceededException.tooManyKeys(added, maxKeys);
  }
  if (result === 'missing') throw SessionDestroyedException.create('save the session');
  // Only unlocked writes can answer 'locked', and writeUnlocked handles it before this.
  if (result === 'locked') throw new LockException('The session lock was held by another request; nothing was written.');
  if (result === 'fenced') {
    throw new LockException(
      'The session lock expired before the commit and another request has written since; ' +
        'these changes were discarded. Raise lock.ttl or shorten the locked section.',
    );
  }
}

const JSON_SERIALIZER = {
  serialize: (value: unknown): string => JSON.stringify(value),
  deserialize: (data: string): unknown => JSON.parse(data),
};
