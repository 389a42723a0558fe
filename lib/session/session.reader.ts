import { SessionDestroyedException } from '../errors/session-destroyed.exception.js';
import type { SessionMetadata } from './session-metadata.interface.js';
import type { SessionStore } from './session.store.js';
import type { CommitPlanner } from './commit-planner.js';
import type { SessionState } from './session-state.js';
import { originIpLock, originMayResume } from './session-origin.js';
import { metadataKeyOf, type MetadataKey } from './session-key.js';

/**
 * Brings a session in from the store: the resume (the first session the request's cookies
 * name that is live and that this client may resume), and the reads again under this
 * request's changes (Aerys `open()`, `unlock()`, a failed `save()`). The counterpart of the
 * `SessionCommitter`, which writes it out. It holds no per-request state: one reader serves
 * every session of a store.
 */
export class SessionReader {
  constructor(
    private readonly store: SessionStore,
    private readonly planner: CommitPlanner,
  ) {}

  /** Resumes the session the origin's cookies name, if any; answers its last activity. */
  async resume(state: SessionState): Promise<number | undefined> {
    for (const id of state.origin.cookieIds) {
      const key = metadataKeyOf(id);
      const entry = await this.store.loadMetadataEntry(key);
      if (this.adoptLive(state, id, key, entry?.metadata)) {
        state.resumedEntry = entry;
        return entry!.metadata.lastActivity;
      }
    }
    // A cookie that names no live session is replaced or cleared by the next write.
    return undefined;
  }

  /** `resume` where the store reads synchronously (the memory backends). */
  resumeSync(state: SessionState): number | undefined {
    for (const id of state.origin.cookieIds) {
      const key = metadataKeyOf(id);
      const entry = this.store.loadMetadataEntrySync(key);
      if (this.adoptLive(state, id, key, entry?.metadata)) {
        state.resumedEntry = entry;
        return entry!.metadata.lastActivity;
      }
    }
    return undefined;
  }

  /** Whether the origin's client may resume a session with `metadata` (IP lock). */
  mayResume(state: SessionState, metadata: SessionMetadata): boolean {
    return originMayResume(state.origin, metadata, this.store.options.ipLock);
  }

  /**
   * Reads metadata and data again; this request's changes stay on top.
   * @throws SessionDestroyedException (the session is then reset) when it is gone.
   */
  async reload(state: SessionState): Promise<void> {
    const meta = state.meta();
    // Metadata and data in one round trip: the storage id is this session's own (a move by
    // another request retires this key, so the metadata read then finds nothing).
    const [fresh, data] = await Promise.all([this.store.loadMetadata(state.storedId!), this.store.loadData(meta.storageId)]);
    if (fresh === undefined) {
      state.reset();
      throw SessionDestroyedException.create('read the session');
    }
    // Local tag and field changes stay on top of the fresh state.
    state.metadata = { ...this.planner.merge(fresh, state.changes, fresh.lastActivity), storageId: meta.storageId };
    state.resumedEntry = undefined;
    state.data.replace(data);
    // Bag changes of this request stay on top of the fresh data, like data changes.
    state.bagsInUse?.rebase(data);
  }

  /**
   * Aerys `unlock()`, a failed `save()`: forgets this request's changes (data, tags, fields,
   * user, bags; a pending storage move) and releases the lock, then reads the session again.
   * The same for a session never stored: its metadata goes back to what `start()` made.
   */
  async discardAndReread(state: SessionState): Promise<void> {
    state.changes.discard();
    state.bagsInUse?.discard();
    await state.locks.release();
    if (state.storedId !== undefined) {
      await this.reload(state).catch(() => undefined);
    } else if (state.started && state.metadata !== undefined) {
      const { storageId, createdAt, lastActivity } = state.metadata;
      state.metadata = { storageId, createdAt, lastActivity, tags: [] };
      const ipLock = originIpLock(state.origin, this.store.options.ipLock);
      if (ipLock !== undefined) state.metadata.ipLock = ipLock;
    }
  }

  /** Adopts the session `id` names if it is live and allowed here; answers whether it did. */
  private adoptLive(state: SessionState, id: string, key: MetadataKey, metadata: SessionMetadata | undefined): boolean {
    // A session locked to another client address is treated as no session (IP lock).
    if (metadata === undefined || !this.mayResume(state, metadata)) return false;
    state.adopt(id, key, metadata);
    this.lockUnlockedSession(state);
    return true;
  }

  /**
   * A session stored before the IP lock was enabled has no lock value: the first request that
   * resumes it locks it to its own client (written by this request's commit).
   */
  private lockUnlockedSession(state: SessionState): void {
    const meta = state.metadata;
    if (meta === undefined || meta.ipLock !== undefined) return;
    const ipLock = originIpLock(state.origin, this.store.options.ipLock);
    if (ipLock === undefined) return;
    meta.ipLock = ipLock;
    state.changes.setField('ipLock', ipLock);
  }
}
