import { SessionNotStartedException } from '../errors/session-not-started.exception.js';
import type { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import type { MutableSessionMetadata, SessionMetadata } from './session-metadata.interface.js';
import type { SessionStore } from './session.store.js';
import type { SessionOrigin } from './session-origin.js';
import { metadataKeyOf, type MetadataKey } from './session-key.js';
import { SessionStoredData } from './session-stored-data.js';
import { NO_CHANGES, SessionChangeSet, type SessionChanges } from './session-change-set.js';
import { SessionBagSet } from './session-bag-set.js';
import { SessionLockControl } from './session-lock-control.js';
import type { SessionValueCodec } from './session-value.codec.js';

/** The metadata entry as a request resumed it: `raw` as stored, `metadata` decoded. */
export interface ResumedEntry {
  readonly raw: string;
  readonly metadata: SessionMetadata;
}

/** What happened to the client's id in this request; reported as `SessionCookieFacts`. */
export interface ClientIdHistory {
  idIssued: boolean;
  destroyed: boolean;
  metadataWritten: boolean;
}

/**
 * Everything one request holds of its session: whether it is started, its id and the key it is
 * stored under, its metadata and data as this request sees them, what happened to the client's
 * id, and the parts that keep state of their own (the change set, the bags, the lock). `Session`
 * changes it through its API; the stateless `SessionReader` and `SessionCommitter` bring it in
 * from the store and write it out. Keeping it in one object lets them share no per-request
 * state with the facade but this.
 */
export class SessionState {
  started = false;
  /** The cookie name (`setName()` may change it before the session starts). */
  cookieName: string;
  /** The public id (cookie value); undefined for a remote session found by key (a listing). */
  id: string | undefined;
  /**
   * Metadata key (`metadataKeyOf` the id, session-key.ts) the session is stored under; undefined
   * until first stored. The store knows sessions by this key only (ids are hashed at rest).
   */
  storedId: MetadataKey | undefined;
  metadata: MutableSessionMetadata | undefined;
  /**
   * The metadata entry as this request resumed it, while the local metadata is built on it:
   * what a storage move without the lock requires unchanged (`SessionStore.moveUnlocked`).
   * Undefined once the metadata was written or read again.
   */
  resumedEntry: ResumedEntry | undefined;
  /** Why this session cannot be used in this request (see `Session.markUnavailable`). */
  unavailable: StoreUnavailableException | undefined;
  /** The stored data read so far (lazily). */
  readonly data: SessionStoredData;
  readonly client: ClientIdHistory = { idIssued: false, destroyed: false, metadataWritten: false };
  readonly locks = new SessionLockControl();
  /** What changed since the last commit (created on first use: most requests change nothing). */
  private changeSet: SessionChangeSet | undefined;
  /** The bags (created on first use). */
  private bagSet: SessionBagSet | undefined;
  /** The last id `currentKey()` digested, and its key. */
  private keyOfId: { readonly id: string; readonly key: MetadataKey } | undefined;

  constructor(
    private readonly store: SessionStore,
    readonly origin: SessionOrigin,
    private readonly codec: SessionValueCodec,
  ) {
    this.cookieName = origin.cookieName;
    this.data = new SessionStoredData(store);
  }

  get changes(): SessionChangeSet {
    return (this.changeSet ??= new SessionChangeSet());
  }

  /** The change set if anything was changed yet (no allocation for a lookup). */
  get changesIfAny(): SessionChangeSet | undefined {
    return this.changeSet;
  }

  /** What changed, for a look only: an empty view until something changes (a read-only request allocates no change set). */
  get changesSoFar(): SessionChanges {
    return this.changeSet ?? NO_CHANGES;
  }

  /** The bags, created on first use. */
  get bags(): SessionBagSet {
    return (this.bagSet ??= new SessionBagSet(
      this.store.bags,
      this.codec,
      this.store.storageCache,
      this.store.options.maxKeysPerSession,
    ));
  }

  /** The bags if any were used in this request. */
  get bagsInUse(): SessionBagSet | undefined {
    return this.bagSet;
  }

  /** Whether the session is a remote one (SessionManager), which writes through on every change. */
  get remote(): boolean {
    return this.origin.remote === true;
  }

  /** @throws StoreUnavailableException after `Session.markUnavailable`. */
  assertAvailable(): void {
    if (this.unavailable !== undefined) throw this.unavailable;
  }

  /**
   * The metadata of the started session.
   * @throws StoreUnavailableException after `Session.markUnavailable`; SessionNotStartedException naming `operation`.
   */
  meta(operation?: string): MutableSessionMetadata {
    this.assertAvailable();
    if (!this.started || this.metadata === undefined) {
      throw SessionNotStartedException.create(operation ?? 'use the session');
    }
    return this.metadata;
  }

  /** The metadata key of the current id (the stored one for a session known by key only). */
  currentKey(): MetadataKey {
    if (this.id === undefined) return this.storedId!;
    // Two SHA-256 digests per key: a commit asks several times for the same id.
    if (this.keyOfId?.id !== this.id) this.keyOfId = { id: this.id, key: metadataKeyOf(this.id) };
    return this.keyOfId.key;
  }

  /** The storage id of a stored session; undefined for one never stored (it has no data to read). */
  get storedStorageId(): string | undefined {
    return this.storedId === undefined ? undefined : this.metadata!.storageId;
  }

  /** A new session with `id` and `metadata`, not stored yet (so it has no data). */
  startNew(id: string, metadata: MutableSessionMetadata): void {
    this.id = id;
    this.metadata = metadata;
    this.storedId = undefined;
    this.data.startEmpty();
    this.started = true;
  }

  /** The stored session `key` (with public `id`, if known) and its `metadata`; its data is read on demand. */
  adopt(id: string | undefined, key: MetadataKey, metadata: SessionMetadata): void {
    this.id = id;
    this.storedId = key;
    if (id !== undefined) this.keyOfId = { id, key };
    this.metadata = { ...metadata, tags: [...metadata.tags] };
    this.resumedEntry = undefined;
    this.data.forget();
    this.started = true;
  }

  /** No session (destroyed, or gone from the store): nothing known, nothing changed. */
  reset(): void {
    this.changes.reset();
    this.bagSet?.discard();
    this.started = false;
    this.id = undefined;
    this.storedId = undefined;
    this.metadata = undefined;
    this.resumedEntry = undefined;
    this.data.forget();
  }
}
