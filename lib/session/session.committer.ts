import { SessionDestroyedException } from '../errors/session-destroyed.exception.js';
import type { SessionLock } from '../locking/session-locker.interface.js';
import type { SessionMetadata } from './session-metadata.interface.js';
import type { SessionStore } from './session.store.js';
import type { SessionChanges } from './session-change-set.js';
import type { SessionBagSet } from './session-bag-set.js';
import type { CommitDecision, CommitPlanner } from './commit-planner.js';
import type { PreparedStorageMove, StorageMover } from './storage-move.js';
import type { SessionCap } from './session-cap.js';
import type { SessionState } from './session-state.js';
import { recordDevice } from './session-origin.js';
import { handleOf, type MetadataKey } from './session-key.js';
import { settleAll } from './settle-all.js';

/**
 * Destroys the stored session `key` as a remote session (`destroy('evicted')`) named like the
 * evicting one; `Session` provides it, which this file cannot import (it imports this one).
 */
export type RemoteDestroyer = (key: MetadataKey, metadata: SessionMetadata, cookieName: string) => Promise<void>;

/**
 * Carries out a session's commit: it picks the cheapest safe way to write what the
 * `CommitPlanner` decided (a lock-free write where the store checks locks itself, else under
 * the session lock, held or taken for a short critical section), does the reads that must
 * happen under that lock, writes, and then advances the session's state and emits the events.
 * It holds no per-request state: one committer serves every session of a store.
 */
export class SessionCommitter {
  constructor(
    private readonly store: SessionStore,
    private readonly planner: CommitPlanner,
    private readonly mover: StorageMover,
    private readonly cap: SessionCap,
    private readonly destroyRemote: RemoteDestroyer,
  ) {}

  /**
   * Writes what changed, under the session lock (the held one, or a short critical section).
   * Does nothing (no I/O) when nothing changed and the grace period has not passed; a new
   * anonymous session without data, tags or user is not stored at all. It writes a snapshot
   * of the changes and then acknowledges it: a change made while it is in flight is kept
   * for the next commit.
   */
  async commit(state: SessionState): Promise<void> {
    if (!state.started || state.metadata === undefined) return;
    const bagSet = state.bagsInUse;
    const changes = state.changes;
    const locks = state.locks;
    const changedBags = bagSet === undefined ? [] : bagSet.collectChanges(changes);
    const meta = state.metadata;
    const now = Date.now();
    const decision = this.planner.decide(changes, meta, state.storedId !== undefined, now);
    if (decision === undefined) return;
    if (decision.writeMetadata && meta.userId !== undefined)
      recordDevice(state.origin, this.store.options.ipLock, meta, changes, false);
    let snapshot = changes.snapshot();
    const sessionKey = state.currentKey();
    const storageId = meta.storageId;

    // A data-only commit of a stored session on a store whose backend checks locks in its
    // write: one atomic step while nobody holds the lock, no lock round trips. Bags merge
    // onto what is stored, which needs the lock; so do metadata writes (merged onto a fresh copy).
    if (
      locks.held === undefined &&
      !decision.create &&
      !decision.writeMetadata &&
      changedBags.length === 0 &&
      !this.mover.isPending(snapshot) &&
      this.store.writesUnlocked
    ) {
      if (await this.store.writeUnlocked(storageId, this.planner.plan(sessionKey, decision, snapshot, undefined))) {
        this.afterCommit(state, decision, sessionKey, undefined, snapshot);
        return;
      }
      // Held by another request: queue for the lock like any commit.
    }

    // A new session's storage id has never left this request, so nobody can contend for it:
    // it is written without a lock (fence 0 is below every fence a locker hands out later).
    // A storage move runs under the lock of the storage it leaves (still `storageId`).
    // A commit that writes metadata (tags, fields, a touch, a renewal, a storage move: login,
    // regenerate(true)) while nobody holds the lock, on a store that can check the metadata and
    // move storage inside one atomic call: that call instead of the lock, the reads under it, the
    // write and the release. It applies only while nobody holds the lock and the metadata is
    // still what this request resumed (so what is built on it loses nothing); else nothing is
    // written and the commit runs under the lock below.
    const resumed = state.resumedEntry;
    if (
      resumed !== undefined &&
      locks.held === undefined &&
      !decision.create &&
      decision.writeMetadata &&
      changedBags.length === 0 &&
      (snapshot.retiredIds.length === 0 || (snapshot.retiredIds.length === 1 && snapshot.retiredIds[0] === state.storedId)) &&
      (this.store.options.maxSessionsPerUser <= 0 || !snapshot.fields.has('userId')) &&
      this.store.commitsUnlocked
    ) {
      const merged = this.planner.merge(resumed.metadata, snapshot, now);
      if (this.mover.isPending(snapshot)) {
        const to = this.store.newStorageId();
        const metadata = { ...merged, storageId: to };
        if (
          await this.store.moveUnlocked(storageId, to, this.planner.plan(sessionKey, decision, snapshot, metadata), resumed.raw)
        ) {
          meta.storageId = to;
          this.afterCommit(state, decision, sessionKey, metadata, snapshot);
          return;
        }
      } else {
        const metadata = { ...merged, storageId };
        if (
          await this.store.commitMetadataUnlocked(
            storageId,
            this.planner.plan(sessionKey, decision, snapshot, metadata),
            resumed.raw,
          )
        ) {
          this.afterCommit(state, decision, sessionKey, metadata, snapshot);
          return;
        }
      }
    }

    let lock = locks.held;
    // The fresh metadata and the storage reads (bags, a move's copy) are independent reads
    // under the lock: they go out in the same tick.
    const reads = (fence: number | undefined) =>
      settleAll([
        this.metadataToWrite(state, decision, meta, snapshot, now),
        this.readStorageForCommit(state, storageId, snapshot, changedBags, decision, fence),
      ]);
    let early: ReturnType<typeof reads> | undefined;
    if (lock === undefined && !decision.create) {
      if (changedBags.length === 0) {
        // Where the store allows, the reads ride behind the lock's acquire (one round trip, not
        // two); the move's guard check, whose fence is not known yet, then goes into the write.
        const taken = await this.store.lockWith(storageId, () => reads(undefined));
        lock = taken.lock;
        early = taken.reads;
      } else lock = await this.store.lock(storageId);
    }
    let userLock: SessionLock | undefined;
    try {
      // A login takes its user's lock for the session cap (maxSessionsPerUser) until it has written.
      userLock = await this.admitLogin(state, snapshot);
      const [fresh, storage] = await (early ?? reads(lock?.fence ?? 0));
      snapshot = storage.snapshot;
      const move = storage.move;
      // A move always writes metadata (it changes it): metadataToWrite answered it or threw.
      const metadata = move === undefined || fresh === undefined ? fresh : { ...fresh, storageId: move.to };
      const plan = this.planner.plan(sessionKey, decision, snapshot, metadata, move?.entries);
      // The fresh storage of a move, like a new session's, is known to nobody yet: fence 0. The
      // old storage is flushed once the old id is gone, beside the new metadata's write.
      await this.store.write(
        move?.to ?? storageId,
        plan,
        move === undefined ? (lock?.fence ?? 0) : 0,
        move === undefined ? undefined : { from: move.from, fence: lock?.fence ?? 0, checked: move.checked },
      );
      if (move !== undefined) this.movedTo(state, move);
      this.afterCommit(state, decision, sessionKey, metadata, snapshot);
    } finally {
      // A short commit lock is released without waiting for the reply: the response need not
      // wait a round trip for it, and a release that fails leaves the lock to expire (lock.ttl).
      if (lock !== undefined && lock !== locks.held) void lock.release().catch(() => false);
      if (userLock !== undefined) void userLock.release().catch(() => false);
    }
  }

  /**
   * When `changes` bind the session to a user: the session cap's admission (see `SessionCap`),
   * evicting through remote sessions; undefined when they bind none or the cap is off.
   */
  private async admitLogin(state: SessionState, changes: SessionChanges): Promise<SessionLock | undefined> {
    const userId = changes.fields.get('userId');
    if (typeof userId !== 'string' || this.store.options.maxSessionsPerUser <= 0) return undefined;
    const own = state.storedId === undefined ? [...changes.retiredIds] : [...changes.retiredIds, state.storedId];
    return this.cap.admit(userId, own, (key, metadata) => this.destroyRemote(key, metadata, state.cookieName));
  }

  /**
   * What a commit under the lock reads from the storage: the bags' merges onto the stored
   * entries (while a move is pending they merge onto the old storage, where the data still is),
   * then a pending move's copy of the old storage.
   */
  private async readStorageForCommit(
    state: SessionState,
    storageId: string,
    snapshot: SessionChanges,
    changedBags: Parameters<SessionBagSet['merge']>[1],
    decision: CommitDecision,
    /** The lock's fence, for the move's guard check; undefined: not known yet (the write checks it). */
    fence: number | undefined,
  ): Promise<{ snapshot: SessionChanges; move: PreparedStorageMove | undefined }> {
    if (changedBags.length > 0 && state.storedId !== undefined) {
      snapshot = state.changes.amend(snapshot, await state.bags.merge(storageId, changedBags));
    }
    const moving = state.storedId !== undefined && this.mover.isPending(snapshot) && decision.writeMetadata;
    return { snapshot, move: moving ? await this.mover.prepare(storageId, snapshot, fence) : undefined };
  }

  /**
   * The metadata a commit writes: the local copy in full (a first write), fresh metadata with
   * this request's changes on top (also for a storage move: a session destroyed meanwhile is
   * not brought back), or none.
   */
  private async metadataToWrite(
    state: SessionState,
    decision: CommitDecision,
    local: SessionMetadata,
    changes: SessionChanges,
    now: number,
  ): Promise<SessionMetadata | undefined> {
    if (decision.create) return { ...local, lastActivity: now };
    if (!decision.writeMetadata) return undefined;
    const fresh = await this.store.loadMetadata(state.storedId!);
    if (fresh !== undefined) return this.planner.merge(fresh, changes, now);
    if (decision.metadataChanged) throw SessionDestroyedException.create('save the session');
    // Only a touch is lost; data writes are still guarded by the storage guard.
    return undefined;
  }

  /** After a committed storage move: the session lives in the new storage, whose entries this commit wrote in full. */
  private movedTo(state: SessionState, move: PreparedStorageMove): void {
    if (state.metadata !== undefined) state.metadata.storageId = move.to;
    state.data.replace(new Map(move.entries));
  }

  /** The state after `written` was stored under `sessionKey` (with `metadata`, if written). */
  private afterCommit(
    state: SessionState,
    decision: CommitDecision,
    sessionKey: MetadataKey,
    metadata: SessionMetadata | undefined,
    written: SessionChanges,
  ): void {
    const changes = state.changes;
    // Retired entries are metadata keys (see Session.renewId()).
    const previousIds = [...new Set(written.retiredIds)];
    const bound = written.fields.get('userId');
    state.data.acknowledge(written.data);
    state.bagsInUse?.acknowledge(written);
    changes.acknowledge(written);
    state.storedId = sessionKey;
    if (metadata !== undefined) state.resumedEntry = undefined;
    // Renewed while the commit was in flight: the id just written dies with the next commit.
    if (state.id !== undefined && state.currentKey() !== sessionKey) changes.retireId(sessionKey);
    if (metadata !== undefined && state.metadata !== undefined) {
      // Changes made while the commit was in flight stay on top of what was written.
      state.metadata = {
        ...this.planner.merge(metadata, changes, metadata.lastActivity),
        storageId: state.metadata.storageId,
      };
    }
    if (decision.create) state.client.destroyed = false;
    if (decision.create || previousIds.length > 0) state.client.idIssued = true;
    if (metadata !== undefined) state.client.metadataWritten = true;
    this.emitCommitEvents(
      handleOf(sessionKey),
      decision.create ? metadata : undefined,
      previousIds,
      typeof bound === 'string' ? bound : undefined,
    );
  }

  private emitCommitEvents(
    handle: string,
    created: SessionMetadata | undefined,
    previousKeys: readonly string[],
    boundUser: string | undefined,
  ): void {
    const events = this.store.events;
    const timestamp = Date.now();
    if (created !== undefined) events.emit({ type: 'started', handle, userId: created.userId, timestamp });
    if (previousKeys.length > 0) events.emit({ type: 'renewed', handle, previousHandles: previousKeys.map(handleOf), timestamp });
    if (boundUser !== undefined) events.emit({ type: 'userBound', handle, userId: boundUser, timestamp });
  }
}
