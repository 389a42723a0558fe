import type { SessionMetadata } from './session-metadata.interface.js';

/** Metadata fields (besides tags) that a request can change; merged onto fresh metadata at commit. */
export type MetadataField =
  'userId' | 'permanent' | 'lifetime' | 'ipLock' | 'createdAt' | 'boundAt' | 'authenticatedAt' | 'userAgent' | 'clientAddress';

/** The value a changed metadata field was given (undefined = the field is removed). */
export type MetadataFieldValue = SessionMetadata[MetadataField];

/**
 * A read-only view of what changed in a session: what the live change set holds, or a
 * snapshot of it taken when a commit starts.
 */
export interface SessionChanges {
  /** Changed data entries: serialized value, or null for a removed key. */
  readonly data: ReadonlyMap<string, string | null>;
  /** Tags added (and not removed again) since the last commit. */
  readonly addedTags: ReadonlySet<string>;
  /** Tags removed (and not added again) since the last commit. */
  readonly removedTags: ReadonlySet<string>;
  /** Changed metadata fields and their new values. */
  readonly fields: ReadonlyMap<MetadataField, MetadataFieldValue>;
  /** `touch()` was called: last activity is rewritten even within the grace period. */
  readonly touch: boolean;
  /** Metadata keys of ids renewed away: their entries are removed by the commit. */
  readonly retiredIds: readonly string[];
  /**
   * Storage id the next commit moves the data away from (`regenerate(true)`, login; see
   * `StorageMover`): copied under a fresh storage id, then flushed. Until then the session
   * still lives in it.
   */
  readonly retiredStorageId: string | undefined;
}

/** No change at all: what a session that has changed nothing shows (shared, never written to). */
export const NO_CHANGES: SessionChanges = Object.freeze({
  data: new Map<string, string | null>(),
  addedTags: new Set<string>(),
  removedTags: new Set<string>(),
  fields: new Map<MetadataField, MetadataFieldValue>(),
  touch: false,
  retiredIds: Object.freeze([]),
  retiredStorageId: undefined,
});

/** Whether `changes` touch the metadata entry (tags, fields, renewal, a new storage id). */
export function changesMetadata(changes: SessionChanges): boolean {
  return (
    changes.addedTags.size > 0 ||
    changes.removedTags.size > 0 ||
    changes.fields.size > 0 ||
    changes.retiredIds.length > 0 ||
    changes.retiredStorageId !== undefined
  );
}

/**
 * What changed in a session since its last successful commit. A commit writes a
 * `snapshot()` (an immutable copy) and then `acknowledge`s it: only what the snapshot held,
 * and still holds the same value, is forgotten, so a change made while the commit was in
 * flight stays for the next commit instead of being lost.
 */
export class SessionChangeSet implements SessionChanges {
  private readonly values = new Map<string, string | null>();
  private readonly added = new Set<string>();
  private readonly removed = new Set<string>();
  private readonly changedFields = new Map<MetadataField, MetadataFieldValue>();
  private touchRequested = false;
  private readonly retired: string[] = [];
  private retiredStorage: string | undefined;

  get data(): ReadonlyMap<string, string | null> {
    return this.values;
  }
  get addedTags(): ReadonlySet<string> {
    return this.added;
  }
  get removedTags(): ReadonlySet<string> {
    return this.removed;
  }
  get fields(): ReadonlyMap<MetadataField, MetadataFieldValue> {
    return this.changedFields;
  }
  get touch(): boolean {
    return this.touchRequested;
  }
  get retiredIds(): readonly string[] {
    return this.retired;
  }
  get retiredStorageId(): string | undefined {
    return this.retiredStorage;
  }

  // ---- recording -------------------------------------------------------------------------

  /** Records a data entry's new serialized value, or its removal (`null`). */
  put(key: string, raw: string | null): void {
    this.values.set(key, raw);
  }

  /** The pending change of `key`: a serialized value, null (removed) or undefined (unchanged). */
  valueOf(key: string): string | null | undefined {
    return this.values.get(key);
  }

  addTag(tag: string): void {
    this.removed.delete(tag);
    this.added.add(tag);
  }

  removeTag(tag: string): void {
    this.added.delete(tag);
    this.removed.add(tag);
  }

  /** Records a metadata field's new value (the local metadata holds the same value). */
  setField<F extends MetadataField>(field: F, value: SessionMetadata[F]): void {
    this.changedFields.set(field, value);
  }

  requestTouch(): void {
    this.touchRequested = true;
  }

  /** Marks a stored id as renewed away (once). */
  retireId(id: string): void {
    if (!this.retired.includes(id)) this.retired.push(id);
  }

  /** Records a move of the data away from `storageId` for the next commit (use `StorageMover.request`). */
  retireStorage(storageId: string): void {
    this.retiredStorage = storageId;
  }

  // ---- queries ---------------------------------------------------------------------------

  /** True when nothing at all is pending. */
  isEmpty(): boolean {
    return this.values.size === 0 && !this.touchRequested && !changesMetadata(this);
  }

  hasDataChanges(): boolean {
    return this.values.size > 0;
  }

  hasMetadataChanges(): boolean {
    return changesMetadata(this);
  }

  // ---- commit protocol -------------------------------------------------------------------

  /** An immutable copy of what a commit starting now writes. */
  snapshot(): SessionChanges {
    return Object.freeze({
      data: new Map(this.values),
      addedTags: new Set(this.added),
      removedTags: new Set(this.removed),
      fields: new Map(this.changedFields),
      touch: this.touchRequested,
      retiredIds: Object.freeze([...this.retired]),
      retiredStorageId: this.retiredStorage,
    });
  }

  /**
   * Records data entries computed during a commit (bags merged under the lock) and answers
   * `snapshot` with them, so that the commit writes them and acknowledging it clears them.
   */
  amend(snapshot: SessionChanges, entries: ReadonlyMap<string, string | null>): SessionChanges {
    if (entries.size === 0) return snapshot;
    const data = new Map(snapshot.data);
    for (const [key, raw] of entries) {
      this.values.set(key, raw);
      data.set(key, raw);
    }
    return Object.freeze({ ...snapshot, data });
  }

  /**
   * After `snapshot` was written: forgets every change it held that still has the value it
   * had then. A change made since (another value for a key, a tag removed again, a field set
   * again) stays pending.
   */
  acknowledge(snapshot: SessionChanges): void {
    for (const [key, raw] of snapshot.data) {
      if (this.values.has(key) && this.values.get(key) === raw) this.values.delete(key);
    }
    // A tag still in the same set has the state the commit wrote.
    for (const tag of snapshot.addedTags) this.added.delete(tag);
    for (const tag of snapshot.removedTags) this.removed.delete(tag);
    for (const [field, value] of snapshot.fields) {
      if (this.changedFields.has(field) && this.changedFields.get(field) === value) this.changedFields.delete(field);
    }
    if (snapshot.touch) this.touchRequested = false;
    for (const id of snapshot.retiredIds) {
      const index = this.retired.indexOf(id);
      if (index !== -1) this.retired.splice(index, 1);
    }
    if (snapshot.retiredStorageId !== undefined && this.retiredStorage === snapshot.retiredStorageId)
      this.retiredStorage = undefined;
  }

  /**
   * Forgets what was pending in data, tags, fields and touch, and a storage move (Aerys
   * `unlock()`, a failed save): the session stays in the storage it was loaded from, with
   * its data. Renewals stay pending (the id is still renewed by the next commit).
   */
  discard(): void {
    this.values.clear();
    this.added.clear();
    this.removed.clear();
    this.changedFields.clear();
    this.touchRequested = false;
    // A move kept without the copied values would publish an empty storage and flush the old one.
    this.retiredStorage = undefined;
  }

  /** Forgets everything, renewals included (the session was destroyed). */
  reset(): void {
    this.discard();
    this.retired.length = 0;
    this.retiredStorage = undefined;
  }
}
