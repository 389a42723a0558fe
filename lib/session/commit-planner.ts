import type { MutableSessionMetadata, SessionMetadata } from './session-metadata.interface.js';
import type { CommitPlan } from './session.store.js';
import type { MetadataKey } from './session-key.js';
import { changesMetadata, type SessionChanges } from './session-change-set.js';

/** What a commit of some changes has to write; see `CommitPlanner.decide`. */
export interface CommitDecision {
  /** The session was never stored: this is its first write, without a lock. */
  readonly create: boolean;
  /**
   * The storage is written as new, with a creating guard, and the metadata before it: a first
   * write (the metadata from the local copy), or a move to a fresh storage id after
   * `regenerate(true)` or a login (the fresh entry with this request's changes on top).
   */
  readonly replace: boolean;
  /** Tags, fields or ids changed: a session that vanished meanwhile fails the commit. */
  readonly metadataChanged: boolean;
  /** The metadata entry is written: it changed, a touch was requested or the grace period is over. */
  readonly writeMetadata: boolean;
}

/**
 * Decides what a commit writes; no I/O. A stored session rewrites its metadata (last
 * activity) at most once per update grace period unless something else changed (TYPO3);
 * a new anonymous session is stored only once it holds data, tags or a user.
 */
export class CommitPlanner {
  /**
   * @param updateGracePeriod seconds within which an unchanged session's last activity is not rewritten.
   * @param inactivityTimeout seconds a session without its own lifetime lives without activity.
   */
  constructor(
    private readonly updateGracePeriod: number,
    private readonly inactivityTimeout: number = Number.POSITIVE_INFINITY,
  ) {}

  /**
   * The grace period (seconds) of a session with `metadata`: the module's, but at most half
   * its lifetime, so that a session used more often than that never expires while in use
   * (a `setTTL()` at or below the module's grace period would otherwise expire it).
   */
  graceOf(metadata: SessionMetadata): number {
    return Math.min(this.updateGracePeriod, (metadata.lifetime ?? this.inactivityTimeout) / 2);
  }

  /**
   * What committing `changes` at `now` writes for a session with the local `metadata`,
   * stored before or not; undefined when it writes nothing at all (no I/O).
   */
  decide(changes: SessionChanges, metadata: SessionMetadata, stored: boolean, now: number): CommitDecision | undefined {
    const create = !stored;
    if (create && changes.data.size === 0 && metadata.tags.length === 0 && metadata.userId === undefined) return undefined;
    const graceOver = now - metadata.lastActivity >= this.graceOf(metadata) * 1000;
    const metadataChanged = create || changesMetadata(changes);
    const writeMetadata = metadataChanged || changes.touch || graceOver;
    if (changes.data.size === 0 && !writeMetadata) return undefined;
    return { create, replace: create || changes.retiredStorageId !== undefined, metadataChanged, writeMetadata };
  }

  /** Whether committing `changes` stores the session under an id its client does not hold yet (created or renewed). */
  issuesId(changes: SessionChanges, metadata: SessionMetadata, stored: boolean, now: number): boolean {
    return changes.retiredIds.length > 0 || this.decide(changes, metadata, stored, now)?.create === true;
  }

  /**
   * The plan the store writes: `changes` (a snapshot) under `metadataKey`, with `metadata`
   * (undefined when only data is written). `data` replaces the snapshot's data entries when
   * a storage move writes every entry of the session.
   */
  plan(
    metadataKey: MetadataKey,
    decision: CommitDecision,
    changes: SessionChanges,
    metadata: SessionMetadata | undefined,
    data: ReadonlyMap<string, string | null> = changes.data,
  ): CommitPlan {
    // The change set's retired ids are metadata keys (Session.renewId retires the stored key).
    return { metadataKey, metadata, create: decision.replace, changes: data, retiredKeys: changes.retiredIds };
  }

  /**
   * This request's tag and field changes on top of `fresh` metadata (another request may have
   * written it since this one loaded it), with `lastActivity`.
   */
  merge(fresh: SessionMetadata, changes: SessionChanges, lastActivity: number): SessionMetadata {
    const tags = new Set(fresh.tags);
    for (const tag of changes.removedTags) tags.delete(tag);
    for (const tag of changes.addedTags) tags.add(tag);
    const merged: MutableSessionMetadata = { ...fresh, tags: [...tags], lastActivity };
    for (const [field, value] of changes.fields) {
      if (value === undefined) Reflect.deleteProperty(merged, field);
      else (merged as Record<string, unknown>)[field] = value;
    }
    return merged;
  }
}
