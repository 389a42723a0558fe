import { Logger } from '@nestjs/common';
import { VariableFrontend } from '../cache/variable.frontend.js';
import { RandomIdGenerator } from './random-id.generator.js';
import { SessionBagRegistry } from '../bags/session-bag.registry.js';
import type { BackendWrite, WriteResult } from '../cache/taggable-backend.interface.js';
import { WriteTicket, type WriteOrder } from '../cache/write-ticket.js';
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
import { settleAll } from './settle-all.js';

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

/** The storage a commit's data leaves (`StorageMover`): flushed in the commit's write chain. */
export interface StorageMoveWrite {
  /** The old storage id. */
  readonly from: string;
  /** The fencing number of the lock held on `from`. */
  readonly fence: number;
  /** Whether the guard of `from` was already checked with `fence` when it was read. */
  readonly checked: boolean;
}

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
    return (await this.loadMetadataEntry(key))?.metadata;
  }

  /**
   * `loadMetadata` with the entry as stored (`raw`), which a commit can require unchanged
   * (`moveUnlocked`).
   */
  async loadMetadataEntry(key: MetadataKey): Promise<{ metadata: SessionMetadata; raw: string } | undefined> {
    return this.liveEntry(await this.metadataCache.getRaw(key));
  }

  /** Whether both caches read synchronously (in-process backends): see `loadMetadataEntrySync`. */
  get readsSync(): boolean {
    return this.metadataCache.readsSync() && this.storageCache.readsSync();
  }

  /** `loadMetadataEntry` answered synchronously; only when `readsSync`. */
  loadMetadataEntrySync(key: MetadataKey): { metadata: SessionMetadata; raw: string } | undefined {
    return this.liveEntry(this.metadataCache.getRawSync(key));
  }

  /** A metadata entry as read (`raw`) with its decoded metadata, or undefined when absent or expired. */
  private liveEntry(raw: string | undefined): { metadata: SessionMetadata; raw: string } | undefined {
    if (raw === undefined) return undefined;
    const metadata = this.metadataCache.decode<SessionMetadata>(raw);
    return this.isExpired(metadata) ? undefined : { metadata, raw };
  }

  /** `loadValue` answered synchronously; only when `readsSync`. */
  loadValueSync(storageId: string, key: string): string | undefined {
    return this.storageCache.getRawSync(`${storageId}.${key}`);
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
   * Whether a commit's reads can share the lock's round trip: both backends send on the
   * locker's connection, in order (`TaggableBackend.ordersAfterLocksOf`; a standalone Redis
   * from `createRedisSessionStores`).
   */
  get readsWithLock(): boolean {
    const locker = this.options.locker;
    return (
      this.options.metadataBackend.ordersAfterLocksOf === locker && this.options.storageBackend.ordersAfterLocksOf === locker
    );
  }

  /**
   * Takes the session's lock and sends `reads` right behind the acquire (one round trip where
   * `readsWithLock`). Answers the lock, and the reads' promise when they ran under it (the
   * lock was `immediate`); otherwise undefined: the caller reads again, now under the lock.
   * @throws as `lock()`.
   */
  async lockWith<T>(storageId: string, reads: () => Promise<T>): Promise<{ lock: SessionLock; reads: Promise<T> | undefined }> {
    if (!this.readsWithLock) return { lock: await this.lock(storageId), reads: undefined };
    const locking = this.lock(storageId);
    // Sent after the ACQUIRE (lock() sends it before returning): on one connection they run after it.
    const early = reads();
    // Whatever becomes of them, a rejection of reads that are dropped is not unhandled.
    early.catch(() => undefined);
    const lock = await locking;
    return { lock, reads: lock.immediate === true ? early : undefined };
  }

  /**
   * Writes a commit plan under the session lock held by the caller, whose fencing number is
   * `fence` (0 for a new session, which nobody else can know yet). The writes of one commit go
   * out as a chain (`WriteOrder`): each only if the ones it depends on applied. On a standalone
   * Redis the chain is one atomic script call (one round trip), on PostgreSQL one `batch`
   * statement, on memory one synchronous run; on other backends each step waits for the ones it
   * depends on, in the order below.
   * 1. Renewal of an existing session: first the guarded storage write (the changed data, or the
   *    guard alone when no data changed), so that a commit whose lock expired and was overtaken
   *    (`fenced`), or whose session is gone (`missing`), fails before anything else is touched;
   *    then the retired keys are removed, and at least one must have existed (else the session
   *    was destroyed or expired); then the new metadata. The old id dies before the new one is
   *    published: a failure in between leaves the client logged out, never with two valid ids.
   * 2. A storage move (`move`: login, `regenerate(true)`): the old storage's guard is checked
   *    with the lock's fence (unless the reads already did), the fresh storage is written like a
   *    new session's, the old id is removed (it must have existed), then the new metadata is
   *    published and the old storage flushed. Where the chain is one call, the old id's removal
   *    also waits for the fresh storage (a refused one, e.g. `full`, leaves the old id alive).
   * 3. New sessions: retired keys removed first (as in 1), then metadata and data with a
   *    creating guard, in one tick.
   * 4. Other existing sessions: data guarded by the lock's fence (a destroyed or expired session's
   *    guard is gone, so nothing is written back), then the metadata, only if its entry is
   *    still live. A metadata-only commit writes the guard alone first, so a fenced or
   *    destroyed session's commit writes no metadata either.
   * Every metadata write gives the storage guard the session's remaining lifetime, so the
   * guard (and, natively, every storage entry) lives exactly as long as the session.
   * @throws SessionDestroyedException when the session was destroyed or expired meanwhile.
   * @throws LockException when a newer lock holder has written (this lock expired).
   * @throws StoreUnavailableException when a store fails (see the steps for what is left).
   */
  async write(storageId: string, plan: CommitPlan, fence: number, move?: StorageMoveWrite): Promise<void> {
    const lifetime = plan.metadata === undefined ? undefined : this.remainingSeconds(plan.metadata);
    const single = plan.retiredKeys.length === 1;
    if (plan.retiredKeys.length > 0 && !plan.create) {
      if (!single) {
        // Several ids renewed away (rare: a renewal whose commit failed, renewed again): one step at a time.
        await this.writeStorage(storageId, plan, fence, lifetime);
        await this.removeRetired(plan.retiredKeys);
        if (plan.metadata) await this.writeMetadata(plan.metadataKey, plan.metadata, lifetime!, false);
        return;
      }
      const stored = new WriteTicket();
      const retired = new WriteTicket();
      const [, existed] = await settleAll([
        this.writeStorage(storageId, plan, fence, lifetime, { ticket: stored }),
        this.metadataCache.remove(plan.retiredKeys[0]!, { after: [stored], ticket: retired }),
        plan.metadata && this.writeMetadata(plan.metadataKey, plan.metadata, lifetime!, false, { after: [retired] }),
      ]);
      if (!existed) throw SessionDestroyedException.create('renew the session id');
      return;
    }
    if (plan.create && plan.metadata && plan.retiredKeys.length > 0 && move !== undefined) {
      await this.writeMove(storageId, plan, lifetime!, move);
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
      return;
    }
    if (plan.changes.size > 0 || plan.create || plan.metadata) {
      // Also for a metadata-only commit (the guard alone is written, to refresh its lifetime):
      // the metadata waits for the guard write, so that a commit that is fenced off (its lock
      // expired and a later holder wrote) or whose session is gone writes no metadata either.
      // Sent unchained, the metadata would land while the commit reported LockException.
      const stored = new WriteTicket();
      await settleAll([
        this.writeStorage(storageId, plan, fence, lifetime, { ticket: stored }),
        // The metadata entry of an existing session must still be live to be rewritten.
        !plan.create &&
          plan.metadata &&
          this.writeMetadata(plan.metadataKey, plan.metadata, lifetime!, true, { after: [stored] }),
      ]);
    }
  }

  /**
   * Step 2 of `write()`: a storage move's chain. The old storage's flush does not fail the
   * commit (the data is safe under the new id and nothing points at the old storage any more;
   * its entries are left for their store lifetime), and the commit does not wait for it.
   */
  private async writeMove(to: string, plan: CommitPlan, lifetime: number, move: StorageMoveWrite): Promise<void> {
    const native = this.options.storageBackend.ordersWrites === true && this.options.metadataBackend.ordersWrites === true;
    // In one call the check costs nothing and fences the flush too; else only when the reads did not check.
    const checked = native || !move.checked ? new WriteTicket() : undefined;
    const check =
      checked === undefined
        ? undefined
        : this.storageCache.write({}, { id: move.from + GUARD_SUFFIX, fence: move.fence }, { ticket: checked });
    const first = checked === undefined ? [] : [checked];
    const stored = new WriteTicket();
    const retired = new WriteTicket();
    const storage = this.writeStorage(to, plan, 0, lifetime, { after: first, ticket: stored });
    const removal = this.metadataCache.remove(plan.retiredKeys[0]!, {
      after: native ? [...first, stored] : first,
      ticket: retired,
    });
    const metadata = this.writeMetadata(plan.metadataKey, plan.metadata!, lifetime, false, { after: [retired, stored] });
    this.flushMovedFrom(move.from, retired);
    const [guard, , existed] = await settleAll([check, storage, removal, metadata]);
    if (guard !== undefined) assertWritten(guard);
    if (!existed) throw SessionDestroyedException.create('renew the session id');
  }

  /**
   * Whether commits that write metadata can go without the session lock (`commitMetadataUnlocked`,
   * `moveUnlocked`): both backends chain writes in one atomic call and check entries and move
   * groups there (`movesGroups`), and the storage backend checks this store's locks (a
   * standalone Redis from `createRedisSessionStores`, PostgreSQL from
   * `createPostgresSessionStores`, the default memory stores).
   */
  get commitsUnlocked(): boolean {
    const { storageBackend, metadataBackend } = this.options;
    return (
      this.writesUnlocked &&
      storageBackend.movesGroups === true &&
      metadataBackend.movesGroups === true &&
      storageBackend.ordersWrites === true &&
      metadataBackend.ordersWrites === true
    );
  }

  /**
   * A storage move (login, `regenerate(true)`) of a session nobody holds the lock of, in one
   * atomic call (`commitsUnlocked`): only while nobody holds the lock of `from` (checked inside
   * the copy where the storage backend `copiesUnlocked`; elsewhere by an unlocked write to `from`'s
   * guard, which draws a fresh fence), only if the metadata entry the plan retires still
   * holds exactly `expected` (what this request resumed: nobody has written it since, so the
   * plan's metadata, built on it, loses nothing), the fresh storage `to` starts with the entries
   * `from` holds at that moment (server-side, so no write to `from` is lost) with the plan's
   * changes on top; then the old id is removed, the new metadata published and `from` flushed,
   * as in `write()`'s storage move. Answers false, having written nothing (but, without
   * `copiesUnlocked`, the fresh fence on `from`'s guard), when the lock was held, the metadata had changed, or `from` holds an entry
   * that cannot be copied: the caller then moves under the lock.
   * @throws SessionDestroyedException when the session was destroyed or expired meanwhile.
   * @throws SessionLimitExceededException when the moved entries and the changes exceed `maxKeysPerSession`.
   * @throws StoreUnavailableException when a store fails.
   */
  async moveUnlocked(from: string, to: string, plan: CommitPlan, expected: string): Promise<boolean> {
    const retiredKey = plan.retiredKeys[0]!;
    const lifetime = this.remainingSeconds(plan.metadata!);
    // Where the engine checks the old storage's lock inside the copy (`copiesUnlocked`), no
    // separate check (it would draw a fence onto a guard the same call then flushes).
    const folded = this.options.storageBackend.copiesUnlocked === true;
    const checked = folded ? undefined : new WriteTicket();
    const matched = new WriteTicket();
    const stored = new WriteTicket();
    const retired = new WriteTicket();
    const check =
      checked && this.storageCache.write({}, { id: from + GUARD_SUFFIX, fence: 0, unlocked: true }, { ticket: checked });
    const match = this.metadataCache.write({ mustMatch: [{ id: retiredKey, data: expected }] }, undefined, { ticket: matched });
    const after = checked ? [checked, matched] : [matched];
    const storage = this.writeStorage(to, plan, 0, lifetime, { after, ticket: stored }, from, folded);
    const removal = this.metadataCache.remove(retiredKey, { after: [stored], ticket: retired });
    const metadata = this.writeMetadata(plan.metadataKey, plan.metadata!, lifetime, false, { after: [retired, stored] });
    this.flushMovedFrom(from, retired);
    const [guard, same, copied, existed] = await settleAll([check, match, storage, removal, metadata]);
    if (guard === 'locked' || same === 'changed' || copied === 'changed' || copied === 'locked') return false;
    if (guard !== undefined) assertWritten(guard);
    if (!existed) throw SessionDestroyedException.create('renew the session id');
    return true;
  }

  /**
   * A commit that writes metadata (tags, fields, a touch after the grace period, a renewal by
   * `renewId()`) of a session nobody holds the lock of, in one atomic call (`commitsUnlocked`):
   * only if the metadata entry still holds exactly `expected` (what this request resumed, under
   * the key the plan retires or, without a renewal, under `plan.metadataKey`), and only while
   * nobody holds the lock of `storageId` (the data changes and the guard's new lifetime are an
   * unlocked guarded write: a fresh fence is drawn); then, chained, the old id's removal and the
   * new metadata, as `write()` does under the lock. Answers false, having written nothing, when
   * the metadata had changed or the lock was held: the caller then commits under the lock.
   * @throws SessionDestroyedException when the session was destroyed or expired meanwhile.
   * @throws SessionLimitExceededException when the changes exceed `maxKeysPerSession`.
   * @throws StoreUnavailableException when a store fails.
   */
  async commitMetadataUnlocked(storageId: string, plan: CommitPlan, expected: string): Promise<boolean> {
    const retiredKey = plan.retiredKeys[0];
    const lifetime = this.remainingSeconds(plan.metadata!);
    const matched = new WriteTicket();
    const stored = new WriteTicket();
    const retired = new WriteTicket();
    const match = this.metadataCache.write({ mustMatch: [{ id: retiredKey ?? plan.metadataKey, data: expected }] }, undefined, {
      ticket: matched,
    });
    const storage = this.storageCache.write(
      this.storageBatch(storageId, plan),
      {
        id: storageId + GUARD_SUFFIX,
        fence: 0,
        unlocked: true,
        lifetime,
        maxEntries: this.maxEntries(),
        uncountedPrefix: BAG_KEY_PREFIX,
      },
      { after: [matched], ticket: stored },
    );
    const removal =
      retiredKey === undefined ? undefined : this.metadataCache.remove(retiredKey, { after: [stored], ticket: retired });
    const metadata = this.writeMetadata(plan.metadataKey, plan.metadata!, lifetime, retiredKey === undefined, {
      after: [retiredKey === undefined ? stored : retired],
    });
    const [same, written, existed] = await settleAll([match, storage, removal, metadata]);
    if (same === 'changed' || written === 'locked') return false;
    assertWritten(written, plan, this.options.maxKeysPerSession);
    if (retiredKey !== undefined && existed !== true) throw SessionDestroyedException.create('renew the session id');
    return true;
  }

  /**
   * The old storage of a move, flushed once the old id is gone (`retired`). Its failure does not
   * fail the commit (nothing points at that storage any more; its entries are left for their
   * store lifetime), and the commit does not wait for it.
   */
  private flushMovedFrom(from: string, retired: WriteTicket): void {
    void this.storageCache.flushByTag(from, { after: [retired] }).catch((error: unknown) => {
      new Logger('Session').warn(`A moved session's old storage could not be flushed: ${String(error)}`);
    });
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
  private async writeStorage(
    storageId: string,
    plan: CommitPlan,
    fence: number,
    lifetime: number | undefined,
    order?: WriteOrder,
    copyFrom?: string,
    copyUnlocked = false,
  ): Promise<WriteResult> {
    const result = await this.storageCache.write(
      this.storageBatch(storageId, plan),
      {
        id: storageId + GUARD_SUFFIX,
        fence,
        create: plan.create,
        tags: [storageId],
        lifetime,
        maxEntries: this.maxEntries(),
        uncountedPrefix: BAG_KEY_PREFIX,
        copyFrom,
        copyUnlocked: copyUnlocked || undefined,
      },
      order,
    );
    // Skipped: a prerequisite failed, and that failure is what the commit reports. Changed (and,
    // checked in the copy, locked): a move without the lock could not copy (`moveUnlocked` answers it).
    if (result === 'skipped' || result === 'changed' || (copyUnlocked && result === 'locked')) return result;
    assertWritten(result, plan, this.options.maxKeysPerSession);
    return result;
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
    order?: WriteOrder,
  ): Promise<void> {
    const tags = [ALL_SESSIONS_TAG, SessionStore.storageOwnerTag(metadata.storageId), handleTag(handleOf(key))];
    for (const tag of metadata.tags) tags.push(SessionStore.customTag(tag));
    const result = await this.metadataCache.write(
      {
        sets: [{ id: key, data: this.metadataCache.encode(metadata), tags, lifetime }],
        mustExist: conditional ? [key] : undefined,
      },
      undefined,
      order,
    );
    // Skipped: a prerequisite failed, and that failure is what the commit reports.
    if (result !== 'ok' && result !== 'skipped') throw SessionDestroyedException.create('save the session');
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
