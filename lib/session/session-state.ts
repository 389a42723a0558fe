import type { SessionMetadata } from './session-metadata.interface.js';
import type { SessionStore } from './session.store.js';
import { metadataKeyOf, type MetadataKey } from './session-key.js';
import { SessionStoredData } from './session-stored-data.js';

export type Mutable<T> = { -readonly [K in keyof T]: T[K] };

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
 * What one request knows of its session: whether it is started, its id and the key it is
 * stored under, its metadata and data as this request sees them, and what happened to the
 * client's id. `Session` changes it through its API and `SessionCommitter` once a write has
 * landed; it holds no pending change (that is the `SessionChangeSet`).
 */
export class SessionState {
  started = false;
  /** The public id (cookie value); undefined for a remote session found by key (a listing). */
  id: string | undefined;
  /**
   * Metadata key (`metadataKeyOf` the id, session-key.ts) the session is stored under; undefined
   * until first stored. The store knows sessions by this key only (ids are hashed at rest).
   */
  storedId: MetadataKey | undefined;
  metadata: Mutable<SessionMetadata> | undefined;
  /**
   * The metadata entry as this request resumed it, while the local metadata is built on it:
   * what a storage move without the lock requires unchanged (`SessionStore.moveUnlocked`).
   * Undefined once the metadata was written or read again.
   */
  resumedEntry: ResumedEntry | undefined;
  /** The stored data read so far (lazily). */
  readonly data: SessionStoredData;
  readonly client: ClientIdHistory = { idIssued: false, destroyed: false, metadataWritten: false };
  /** The last id `currentKey()` digested, and its key. */
  private keyOfId: { readonly id: string; readonly key: MetadataKey } | undefined;

  constructor(store: SessionStore) {
    this.data = new SessionStoredData(store);
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
  startNew(id: string, metadata: Mutable<SessionMetadata>): void {
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

  /** No session (destroyed, or gone from the store). */
  reset(): void {
    this.started = false;
    this.id = undefined;
    this.storedId = undefined;
    this.metadata = undefined;
    this.resumedEntry = undefined;
    this.data.forget();
  }
}
