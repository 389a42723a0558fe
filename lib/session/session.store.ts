import { VariableFrontend } from '../cache/variable.frontend.js';
import { RandomIdGenerator } from './random-id.generator.js';
import { SessionBagRegistry } from '../bags/session-bag.registry.js';
import type { BackendWrite } from '../cache/taggable-backend.interface.js';
import { SessionError } from '../errors/session.error.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { SessionDestroyedException } from '../errors/session-destroyed.exception.js';
import { LockException } from '../errors/lock.exception.js';
import type { LockOptions, SessionLock } from '../locking/session-locker.interface.js';
import { SessionEventBus } from './session-events.js';
import type { ResolvedSessionOptions } from './session-module.options.js';
import type { SessionMetadata } from './session-metadata.interface.js';

/** Cache tag carried by every metadata entry (Flow tags them all the same way). */
export const ALL_SESSIONS_TAG = 'session';
/** Prefix of custom session tags in the metadata cache, so they never clash with internal tags. */
const CUSTOM_TAG_PREFIX = 'tag-';
/** Prefix of the metadata cache tag naming a session's storage id (never shown to clients). */
const STORAGE_OWNER_PREFIX = 'storage-';
/** Storage-entry suffix of the write guard; `~` cannot occur in a user key. */
const GUARD_SUFFIX = '.~guard';

/** What one commit writes; built by the `CommitPlanner` from a snapshot of the session's changes. */
export interface CommitPlan {
  /** Id the metadata is written under (a new id after renewal). */
  readonly sessionId: string;
  /** Metadata to write, or undefined when only data changed. */
  readonly metadata?: SessionMetadata;
  /** Create the session (first write): metadata first, then storage with a creating guard. */
  readonly create: boolean;
  /** Changed data: serialized value, or null for a removed key. */
  readonly changes: ReadonlyMap<string, string | null>;
  /** Ids whose metadata entries are removed (renewed away). */
  readonly retiredIds: readonly string[];
}

/**
 * The session persistence layer: a metadata cache and a storage cache (DESIGN.md section 3)
 * plus the locker. It knows the data model and the write protocol; the Session above it
 * knows the API and dirty tracking; the caches below know nothing about sessions.
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

  isExpired(metadata: SessionMetadata, now: number = Date.now()): boolean {
    return now - metadata.lastActivity >= this.timeoutOf(metadata) * 1000;
  }

  /** The metadata of a live session, or undefined for unknown, destroyed or expired ids. */
  async loadMetadata(sessionId: string): Promise<SessionMetadata | undefined> {
    const metadata = await this.metadataCache.get<SessionMetadata>(sessionId);
    if (metadata === undefined || this.isExpired(metadata)) return undefined;
    return metadata;
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
   * 1. Renewal: the retired ids are removed first, and at least one must have existed (else the
   *    session was destroyed or expired: nothing is written). A failure after this step leaves
   *    the client logged out, never with two valid ids.
   * 2. New sessions (and `regenerate(true)`'s new storage): metadata, then data with a creating guard.
   * 3. Existing sessions: data guarded by the lock's fence (a destroyed or expired session's
   *    guard is gone, so nothing is written back), then the metadata, only if its entry is
   *    still live (a renewed id's entry is new). A metadata-only commit sends both in one tick.
   * Every metadata write gives the storage guard the session's remaining lifetime, so the
   * guard (and, natively, every storage entry) lives exactly as long as the session.
   * @throws SessionDestroyedException when the session was destroyed or expired meanwhile.
   * @throws LockException when a newer lock holder has written (this lock expired).
   * @throws StoreUnavailableException when a store fails (see step 1 for what is left).
   */
  async write(storageId: string, plan: CommitPlan, fence: number): Promise<void> {
    if (plan.retiredIds.length > 0) {
      const existed = await Promise.all(plan.retiredIds.map((id) => this.metadataCache.remove(id)));
      if (!existed.includes(true)) throw SessionDestroyedException.create('renew the session id');
    }
    const lifetime = plan.metadata === undefined ? undefined : this.remainingSeconds(plan.metadata);
    if (plan.create && plan.metadata) await this.writeMetadata(plan.sessionId, plan.metadata, lifetime!, false);
    // The metadata entry of an existing, not renewed session must still be live to be rewritten.
    const conditional = !plan.create && plan.retiredIds.length === 0;
    if (plan.changes.size > 0 || plan.create) {
      await this.writeStorage(storageId, plan, fence, lifetime);
      if (!plan.create && plan.metadata) await this.writeMetadata(plan.sessionId, plan.metadata, lifetime!, conditional);
    } else if (plan.metadata) {
      // Only the guard's lifetime to refresh: one round trip with the metadata.
      await Promise.all([
        this.writeStorage(storageId, plan, fence, lifetime),
        this.writeMetadata(plan.sessionId, plan.metadata, lifetime!, conditional),
      ]);
    }
  }

  /** Removes a session: its metadata entry and every storage entry (incl. the guard). */
  async destroy(sessionIds: readonly string[], storageId: string): Promise<void> {
    await Promise.all([...sessionIds.map((id) => this.metadataCache.remove(id)), this.storageCache.flushByTag(storageId)]);
  }

  /** Seconds the session has left from now (exact to the millisecond, at least 1 ms). */
  private remainingSeconds(metadata: SessionMetadata): number {
    return Math.max(0.001, (metadata.lastActivity + this.timeoutOf(metadata) * 1000 - Date.now()) / 1000);
  }

  /** The changed data entries under the storage guard; `lifetime` (seconds) refreshes the guard's. */
  private async writeStorage(storageId: string, plan: CommitPlan, fence: number, lifetime: number | undefined): Promise<void> {
    const sets: BackendWrite[] = [];
    const removes: string[] = [];
    for (const [key, value] of plan.changes) {
      const id = `${storageId}.${key}`;
      if (value === null) removes.push(id);
      else sets.push({ id, data: value, tags: [storageId] });
    }
    const result = await this.storageCache.write(
      { sets, removes },
      { id: storageId + GUARD_SUFFIX, fence, create: plan.create, tags: [storageId], lifetime },
    );
    if (result === 'missing') throw SessionDestroyedException.create('save the session');
    if (result === 'fenced') {
      throw new LockException(
        'The session lock expired before the commit and another request has written since; ' +
          'these changes were discarded. Raise lock.ttl or shorten the locked section.',
      );
    }
  }

  /**
   * The metadata entry, living `lifetime` seconds; `conditional`: only if the entry is still
   * live (an existing session), so that no commit can bring back a destroyed or expired one.
   * @throws SessionDestroyedException when a conditional write finds the entry gone.
   */
  private async writeMetadata(
    sessionId: string,
    metadata: SessionMetadata,
    lifetime: number,
    conditional: boolean,
  ): Promise<void> {
    const tags = [ALL_SESSIONS_TAG, SessionStore.storageOwnerTag(metadata.storageId)];
    for (const tag of metadata.tags) tags.push(SessionStore.customTag(tag));
    const result = await this.metadataCache.write({
      sets: [{ id: sessionId, data: this.metadataCache.encode(metadata), tags, lifetime }],
      mustExist: conditional ? [sessionId] : undefined,
    });
    if (result !== 'ok') throw SessionDestroyedException.create('save the session');
  }
}

const JSON_SERIALIZER = {
  serialize: (value: unknown): string => JSON.stringify(value),
  deserialize: (data: string): unknown => JSON.parse(data),
};
