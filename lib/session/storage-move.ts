import type { SessionChangeSet, SessionChanges } from './session-change-set.js';
import type { SessionStore } from './session.store.js';

/** A storage move prepared by a commit: where the data goes and what it starts with. */
export interface PreparedStorageMove {
  /** The storage id the data leaves (flushed once the commit has written). */
  readonly from: string;
  /** The fresh storage id (never seen by anybody before this commit). */
  readonly to: string;
  /** Every entry the new storage starts with (serialized): the old entries with this commit's changes on top. */
  readonly entries: ReadonlyMap<string, string>;
  /** Whether the guard of `from` was checked with the lock's fence before the copy was read. */
  readonly checked: boolean;
}

/**
 * Moving a session's data to a fresh storage id, the fixation defence of `regenerate(true)`
 * and of login (`bindToUser`), in one place.
 *
 * `request()` only records the old storage id on the change set; until a commit carries the
 * move out the session keeps reading and writing the old storage (bags merge onto it too), so
 * discarding the changes (`unlock()`, a failed `save()`) undoes the move and leaves the old id
 * and its data as they were. The commit, under the old storage's lock: `prepare()` copies the
 * old entries as they are now, with the commit's changes on top, for a fresh storage id that
 * the store creates like a new session's (metadata under the renewed id, a creating guard);
 * the same write chain (`SessionStore.write`) removes the old id and flushes the old storage,
 * guard included, so a request still in flight under the old id reads nothing and its writes
 * are refused (SessionDestroyedException). A commit that fails leaves whatever reached the new
 * storage alone (if the write did land, that copy is what the renewed id points at); the
 * change set keeps the move for a retry, or `discard()` drops it.
 */
export class StorageMover {
  constructor(private readonly store: SessionStore) {}

  /**
   * Records a move of the data away from `storageId` for the next commit. A session never
   * stored has nothing to move: neither its id nor its storage id has left this request.
   * Answers whether a move was recorded.
   */
  request(changes: SessionChangeSet, storageId: string, stored: boolean): boolean {
    if (!stored) return false;
    changes.retireStorage(storageId);
    return true;
  }

  /** Whether a commit of `changes` moves the data to a fresh storage id. */
  isPending(changes: SessionChanges): boolean {
    return changes.retiredStorageId !== undefined;
  }

  /**
   * Under the lock of `from` (whose fencing number is `fence`): the entries of `from` as they
   * are now with `written` (the commit's snapshot) on top, for a fresh storage id. With a
   * `fence`, the guard is checked first, so a holder whose lock expired cannot copy its stale
   * changes over what a later holder wrote; without (reads sent beside the lock's acquire,
   * before its fence was known), the commit's write chain checks it (`checked: false`).
   * @throws LockException when a newer lock holder has written; SessionDestroyedException
   *   when the session is gone.
   */
  async prepare(from: string, written: SessionChanges, fence: number | undefined): Promise<PreparedStorageMove> {
    // One round trip: the guard check and the read share the old storage's slot (and
    // connection), so Redis runs them in this order; a refused check discards the read.
    const [, entries] = await Promise.all([
      fence === undefined ? undefined : this.store.assertCurrent(from, fence),
      this.store.loadData(from),
    ]);
    for (const [key, raw] of written.data) {
      if (raw === null) entries.delete(key);
      else entries.set(key, raw);
    }
    return { from, to: this.store.newStorageId(), entries, checked: fence !== undefined };
  }
}
