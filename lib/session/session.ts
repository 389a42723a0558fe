import { randomBytes } from 'node:crypto';
import { assertIdentifier } from '../cache/identifier.js';
import { DataNotSerializableException } from '../errors/data-not-serializable.exception.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { LockException } from '../errors/lock.exception.js';
import { OperationNotSupportedException } from '../errors/operation-not-supported.exception.js';
import { SessionDestroyedException } from '../errors/session-destroyed.exception.js';
import { SessionNotStartedException } from '../errors/session-not-started.exception.js';
import type { LockOptions, SessionLock } from '../locking/session-locker.interface.js';
import type { SessionData, SessionLockState } from './session-data.interface.js';
import type { SessionInterface } from './session.interface.js';
import type { SessionMetadata } from './session-metadata.interface.js';
import type { CommitPlan, SessionStore } from './session.store.js';
import { userTag } from './user-tag.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** What the HTTP layer must do with the cookie after a commit. */
export type CookieAction =
  | { readonly kind: 'none' }
  | { readonly kind: 'set'; readonly id: string; readonly maxAge?: number }
  | { readonly kind: 'clear' };

/** Where a session comes from. */
export interface SessionOrigin {
  /** Candidate ids from the request's cookies, well-formed ones only, in header order. */
  readonly cookieIds: readonly string[];
  /** Cookie name. */
  readonly cookieName: string;
  /** Remote sessions (SessionManager) write through on every change. */
  readonly remote?: boolean;
}

/**
 * A session: state machine, dirty tracking, tags, locking. One instance per request (or per
 * remote session); never shared between requests. All persistence goes through the store.
 */
export class Session implements SessionInterface {
  private started = false;
  private id: string | undefined;
  /** Id the metadata is stored under; undefined until first stored. */
  private storedId: string | undefined;
  private metadata: Mutable<SessionMetadata> | undefined;
  /** Stored data (serialized), loaded lazily on first data access. */
  private data: Map<string, string> | undefined;
  /** Pending changes: serialized value, or null for removal. */
  private readonly changes = new Map<string, string | null>();
  private readonly addedTags = new Set<string>();
  private readonly removedTags = new Set<string>();
  /** Metadata fields changed locally (besides tags), merged onto fresh metadata at commit. */
  private readonly changedFields = new Set<'userId' | 'permanent' | 'lifetime' | 'ipLock'>();
  private touchRequested = false;
  private readonly retiredIds: string[] = [];
  /** Old storage id to flush after `regenerate(true)`. */
  private retiredStorageId: string | undefined;
  private cookie: CookieAction = { kind: 'none' };
  private cookieName: string;
  private resumeAttempt: Promise<number | undefined> | undefined;
  private lockState: SessionLockState = 'unlocked';
  private heldLock: SessionLock | undefined;
  private pendingLock: Promise<SessionLock> | undefined;

  constructor(
    private readonly store: SessionStore,
    private readonly origin: SessionOrigin,
  ) {
    this.cookieName = origin.cookieName;
  }

  /** Builds a started session from stored metadata (used by resume and by SessionManager). */
  static fromMetadata(store: SessionStore, id: string, metadata: SessionMetadata, origin: SessionOrigin): Session {
    const session = new Session(store, origin);
    session.adopt(id, metadata);
    return session;
  }

  // ---- lifecycle -------------------------------------------------------------------------

  isStarted(): boolean {
    return this.started;
  }

  isRemote(): boolean {
    return this.origin.remote === true;
  }

  start(): void {
    this.assertNotPending('start the session');
    if (this.started) return;
    const now = Date.now();
    this.id = this.store.options.idGenerator.generate();
    this.metadata = { storageId: newStorageId(), createdAt: now, lastActivity: now, tags: [] };
    this.storedId = undefined;
    this.data = new Map();
    this.started = true;
  }

  async canBeResumed(): Promise<boolean> {
    if (this.started && this.storedId !== undefined) return true;
    for (const id of this.origin.cookieIds) {
      if ((await this.store.loadMetadata(id)) !== undefined) return true;
    }
    return false;
  }

  resume(): Promise<number | undefined> {
    this.assertNotPending('resume the session');
    if (this.started) return Promise.resolve(this.metadata?.lastActivity);
    this.resumeAttempt ??= this.doResume();
    return this.resumeAttempt;
  }

  private async doResume(): Promise<number | undefined> {
    for (const id of this.origin.cookieIds) {
      const metadata = await this.store.loadMetadata(id);
      if (metadata === undefined) continue;
      this.adopt(id, metadata);
      return metadata.lastActivity;
    }
    // A cookie that names no live session is replaced or cleared by the next write.
    return undefined;
  }

  private adopt(id: string, metadata: SessionMetadata): void {
    this.id = id;
    this.storedId = id;
    this.metadata = { ...metadata, tags: [...metadata.tags] };
    this.data = undefined;
    this.started = true;
  }

  getId(): string {
    this.requireStarted('get the session id');
    return this.id!;
  }

  renewId(): string {
    this.requireLocal('renewId()');
    this.requireStarted('renew the session id');
    this.assertNotPending('renew the session id');
    if (this.storedId !== undefined && !this.retiredIds.includes(this.storedId)) this.retiredIds.push(this.storedId);
    this.id = this.store.options.idGenerator.generate();
    return this.id;
  }

  async regenerate(destroy = false, lifetime?: number): Promise<boolean> {
    this.requireLocal('regenerate()');
    if (!this.started) this.start();
    this.assertNotPending('regenerate the session');
    if (lifetime !== undefined) this.setTTL(lifetime);
    if (destroy && this.storedId !== undefined) {
      // Move every value to a new storage id so nothing of the old one stays addressable.
      const data = await this.loadedData();
      for (const [key, value] of data) if (!this.changes.has(key)) this.changes.set(key, value);
      const meta = this.meta();
      this.retiredStorageId = meta.storageId;
      meta.storageId = newStorageId();
      this.data = new Map();
      // Committed like a new session: metadata in full, then the new storage with a creating guard.
      this.renewId();
      return true;
    }
    this.renewId();
    return true;
  }

  async close(): Promise<void> {
    if (!this.started) return;
    await this.save();
    this.started = false;
  }

  async destroy(reason?: string): Promise<void> {
    this.requireStarted('destroy the session');
    this.assertNotPending('destroy the session');
    void reason; // reported through SessionManager events
    const meta = this.meta();
    const ids = [...this.retiredIds];
    if (this.storedId !== undefined) ids.push(this.storedId);
    if (ids.length > 0) {
      const lock = this.heldLock ?? (await this.store.lock(meta.storageId));
      try {
        await this.store.destroy(ids, meta.storageId);
      } finally {
        this.heldLock = undefined;
        this.lockState = 'unlocked';
        await lock.release();
      }
    }
    this.reset();
    this.cookie = { kind: 'clear' };
  }

  // ---- data ------------------------------------------------------------------------------

  async getData<K extends keyof SessionData & string>(key: K): Promise<SessionData[K] | undefined> {
    const raw = await this.rawValue(key, 'read session data');
    return raw === undefined ? undefined : this.store.storageCache.decode<SessionData[K]>(raw);
  }

  async hasKey(key: string): Promise<boolean> {
    return (await this.rawValue(key, 'read session data')) !== undefined;
  }

  async putData<K extends keyof SessionData & string>(key: K, value: SessionData[K]): Promise<void> {
    this.requireStarted('store session data');
    this.assertNotPending('store session data');
    assertIdentifier(key, 'session key');
    let serialized: string;
    try {
      serialized = this.store.storageCache.encode(value);
    } catch (error) {
      throw DataNotSerializableException.create(key, (error as Error).message);
    }
    this.changes.set(key, serialized);
    await this.writeThrough();
  }

  async removeData(key: string): Promise<void> {
    this.requireStarted('remove session data');
    this.assertNotPending('remove session data');
    assertIdentifier(key, 'session key');
    this.changes.set(key, null);
    await this.writeThrough();
  }

  async getAllData(): Promise<Partial<SessionData>> {
    this.requireStarted('read session data');
    this.assertNotPending('read session data');
    const result: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const [key, raw] of await this.currentRaw()) result[key] = this.store.storageCache.decode(raw);
    return result;
  }

  async clear(): Promise<void> {
    this.requireStarted('clear the session');
    this.assertNotPending('clear the session');
    for (const key of (await this.currentRaw()).keys()) this.changes.set(key, null);
    await this.writeThrough();
  }

  /**
   * Data as it stands with pending changes applied (serialized values). Internal keys
   * (bags, starting with `~`) are left out.
   */
  private async currentRaw(): Promise<Map<string, string>> {
    const merged = new Map(await this.loadedData());
    for (const [key, value] of this.changes) {
      if (value === null) merged.delete(key);
      else merged.set(key, value);
    }
    for (const key of merged.keys()) if (key.startsWith('~')) merged.delete(key);
    return merged;
  }

  private async rawValue(key: string, operation: string): Promise<string | undefined> {
    this.requireStarted(operation);
    this.assertNotPending(operation);
    assertIdentifier(key, 'session key');
    const change = this.changes.get(key);
    if (change !== undefined) return change ?? undefined;
    return (await this.loadedData()).get(key);
  }

  private async loadedData(): Promise<Map<string, string>> {
    if (this.data === undefined) {
      this.data = this.storedId === undefined ? new Map() : await this.store.loadData(this.meta().storageId);
    }
    return this.data;
  }

  // ---- metadata --------------------------------------------------------------------------

  getLastActivityTimestamp(): number {
    return this.meta('get the last activity').lastActivity;
  }

  async addTag(tag: string): Promise<void> {
    assertIdentifier(tag, 'session tag');
    const meta = this.meta('tag the session');
    this.assertNotPending('tag the session');
    if (!meta.tags.includes(tag)) meta.tags = [...meta.tags, tag];
    this.removedTags.delete(tag);
    this.addedTags.add(tag);
    await this.writeThrough();
  }

  async removeTag(tag: string): Promise<void> {
    assertIdentifier(tag, 'session tag');
    const meta = this.meta('untag the session');
    this.assertNotPending('untag the session');
    meta.tags = meta.tags.filter((t) => t !== tag);
    this.addedTags.delete(tag);
    this.removedTags.add(tag);
    await this.writeThrough();
  }

  getTags(): string[] {
    return [...this.meta('get the session tags').tags];
  }

  async touch(): Promise<void> {
    this.meta('touch the session');
    this.assertNotPending('touch the session');
    this.touchRequested = true;
    await this.writeThrough();
  }

  getName(): string {
    return this.cookieName;
  }

  setName(name: string): void {
    if (this.started) throw new InvalidArgumentException('The session name (cookie name) cannot change after the session has started.');
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) throw new InvalidArgumentException(`Invalid session name ${JSON.stringify(name)}: use cookie token characters.`);
    this.cookieName = name;
  }

  setTTL(seconds: number): void {
    if (!Number.isFinite(seconds) || seconds <= 0) throw new InvalidArgumentException(`Invalid session lifetime ${seconds}: use a number of seconds > 0.`);
    const meta = this.meta('set the session lifetime');
    meta.lifetime = seconds;
    this.changedFields.add('lifetime');
  }

  isNew(): boolean {
    return this.storedId === undefined;
  }

  isAnonymous(): boolean {
    return this.metadata?.userId === undefined;
  }

  getUserId(): string | undefined {
    return this.metadata?.userId;
  }

  bindToUser(userId: string): void {
    if (typeof userId !== 'string' || userId.length === 0 || userId.length > 1024) {
      throw new InvalidArgumentException('A user id must be a non-empty string of at most 1024 characters.');
    }
    this.requireLocal('bindToUser()');
    if (!this.started) this.start();
    const meta = this.meta();
    if (meta.userId !== undefined && meta.userId !== userId) {
      const old = userTag(meta.userId);
      meta.tags = meta.tags.filter((t) => t !== old);
      this.addedTags.delete(old);
      this.removedTags.add(old);
    }
    meta.userId = userId;
    this.changedFields.add('userId');
    const tag = userTag(userId);
    if (!meta.tags.includes(tag)) meta.tags = [...meta.tags, tag];
    this.removedTags.delete(tag);
    this.addedTags.add(tag);
    this.renewId();
  }

  isPermanent(): boolean {
    return this.metadata?.permanent === true;
  }

  setPermanent(permanent: boolean): void {
    const meta = this.meta('make the session permanent');
    meta.permanent = permanent;
    this.changedFields.add('permanent');
  }

  // ---- locking (Aerys) -------------------------------------------------------------------

  getLockState(): SessionLockState {
    return this.lockState;
  }

  /** `open()` with explicit lock options (used by `@SessionLock()`). */
  async open(options?: Partial<LockOptions>): Promise<void> {
    this.assertNotPending('open the session');
    if (this.lockState === 'locked') return;
    if (!this.started) {
      await this.resume();
      if (!this.started) this.start();
    }
    const meta = this.meta();
    this.lockState = 'pending';
    this.pendingLock = this.store.lock(meta.storageId, options);
    let lock: SessionLock;
    try {
      lock = await this.pendingLock;
    } catch (error) {
      this.lockState = 'unlocked';
      throw error;
    } finally {
      this.pendingLock = undefined;
    }
    this.heldLock = lock;
    this.lockState = 'locked';
    if (this.storedId === undefined) return;
    try {
      await this.reload();
    } catch (error) {
      await this.releaseLock();
      throw error;
    }
  }

  async read(): Promise<void> {
    this.assertNotPending('read the session');
    if (this.storedId === undefined) return;
    await this.reload();
  }

  async unlock(): Promise<void> {
    if (this.lockState === 'pending' && this.pendingLock) {
      try {
        this.heldLock = await this.pendingLock;
      } catch {
        /* the open() call reports its own failure */
      }
    }
    this.discardChanges();
    await this.releaseLock();
    if (this.storedId !== undefined) await this.reload().catch(() => undefined);
  }

  async save(): Promise<void> {
    this.assertNotPending('save the session');
    try {
      await this.commit();
    } catch (error) {
      // Aerys: a failed save reloads the old contents; the caller gets the error.
      this.discardChanges();
      await this.releaseLock();
      if (this.storedId !== undefined) await this.reload().catch(() => undefined);
      throw error;
    }
    await this.releaseLock();
  }

  // ---- commit (used by the HTTP layer, save() and remote sessions) -----------------------

  /**
   * The cookie a successful commit of the current state will need; for responses whose
   * headers go out before the commit (streaming).
   */
  predictCookieAction(): CookieAction {
    if (this.cookie.kind === 'clear' || !this.started || this.metadata === undefined) return this.cookie;
    const meta = this.metadata;
    const create = this.storedId === undefined && (this.changes.size > 0 || meta.tags.length > 0 || meta.userId !== undefined);
    if (create || this.retiredIds.length > 0) return { kind: 'set', id: this.id!, maxAge: this.cookieMaxAge(meta) };
    return this.cookie;
  }

  /** The cookie the HTTP layer must send after the last commit. */
  getCookieAction(): CookieAction {
    return this.cookie;
  }

  /**
   * Writes what changed, under the session lock (the held one, or a short critical section).
   * Does nothing (no I/O) when nothing changed and the grace period has not passed; a new
   * anonymous session without data, tags or user is not stored at all.
   */
  async commit(): Promise<void> {
    if (!this.started || this.metadata === undefined) return;
    const meta = this.metadata;
    const now = Date.now();
    const create = this.storedId === undefined;
    if (create && this.changes.size === 0 && meta.tags.length === 0 && meta.userId === undefined) return;
    const graceOver = now - meta.lastActivity >= this.store.options.updateGracePeriod * 1000;
    const metadataChanged =
      create || this.addedTags.size > 0 || this.removedTags.size > 0 || this.changedFields.size > 0 ||
      this.retiredIds.length > 0 || this.retiredStorageId !== undefined;
    const writeMetadata = metadataChanged || this.touchRequested || graceOver;
    if (this.changes.size === 0 && !writeMetadata) return;

    const lock = this.heldLock ?? (await this.store.lock(meta.storageId));
    try {
      let metadata: SessionMetadata | undefined;
      if (create || this.retiredStorageId !== undefined) {
        metadata = { ...meta, lastActivity: now };
      } else if (writeMetadata) {
        const fresh = await this.store.loadMetadata(this.storedId!);
        if (fresh === undefined) {
          if (metadataChanged) throw SessionDestroyedException.create('save the session');
          // Only a touch is lost; data writes below are still guarded by the storage guard.
        } else {
          metadata = this.merge(fresh, now);
        }
      }
      const plan: CommitPlan = {
        sessionId: this.id!,
        metadata,
        create: create || this.retiredStorageId !== undefined,
        changes: this.changes,
        retiredIds: this.retiredIds,
      };
      await this.store.write(meta.storageId, plan, lock);
      if (this.retiredStorageId !== undefined) {
        await this.store.destroy([], this.retiredStorageId);
      }
      this.afterCommit(metadata, create);
    } finally {
      if (lock !== this.heldLock) await lock.release().catch(() => false);
    }
  }

  private merge(fresh: SessionMetadata, now: number): SessionMetadata {
    const meta = this.meta();
    const tags = new Set(fresh.tags);
    for (const tag of this.removedTags) tags.delete(tag);
    for (const tag of this.addedTags) tags.add(tag);
    const merged: Mutable<SessionMetadata> = { ...fresh, tags: [...tags], lastActivity: now };
    for (const field of this.changedFields) {
      if (meta[field] === undefined) delete merged[field];
      else (merged as Record<string, unknown>)[field] = meta[field];
    }
    return merged;
  }

  private afterCommit(written: SessionMetadata | undefined, created: boolean): void {
    const renewed = this.retiredIds.length > 0;
    const data = this.data;
    if (data !== undefined) {
      for (const [key, value] of this.changes) {
        if (value === null) data.delete(key);
        else data.set(key, value);
      }
    }
    if (written !== undefined) this.metadata = { ...written, tags: [...written.tags] };
    this.storedId = this.id;
    this.changes.clear();
    this.addedTags.clear();
    this.removedTags.clear();
    this.changedFields.clear();
    this.retiredIds.length = 0;
    this.retiredStorageId = undefined;
    this.touchRequested = false;
    const meta = this.meta();
    // The cookie goes out when the id is new to the client, and on every metadata write of a
    // permanent session so its Max-Age slides with activity.
    if (created || renewed || (written !== undefined && meta.permanent)) {
      this.cookie = { kind: 'set', id: this.id!, maxAge: this.cookieMaxAge(meta) };
    }
  }

  private cookieMaxAge(meta: SessionMetadata): number | undefined {
    if (meta.permanent) return this.store.timeoutOf(meta);
    const lifetime = this.store.options.cookie.lifetime;
    return lifetime > 0 ? lifetime : undefined;
  }

  // ---- helpers ---------------------------------------------------------------------------

  private async writeThrough(): Promise<void> {
    if (this.isRemote()) await this.commit();
  }

  private async reload(): Promise<void> {
    const fresh = await this.store.loadMetadata(this.storedId!);
    if (fresh === undefined) {
      this.reset();
      throw SessionDestroyedException.create('read the session');
    }
    const meta = this.meta();
    // Local tag and field changes stay on top of the fresh state.
    this.metadata = { ...this.merge(fresh, fresh.lastActivity), storageId: meta.storageId };
    this.data = await this.store.loadData(meta.storageId);
  }

  private async releaseLock(): Promise<void> {
    const lock = this.heldLock;
    this.heldLock = undefined;
    this.lockState = 'unlocked';
    if (lock) await lock.release().catch(() => false);
  }

  /** Releases a lock still held when the request ends (never left behind). */
  async dispose(): Promise<void> {
    await this.releaseLock();
  }

  private discardChanges(): void {
    this.changes.clear();
    this.addedTags.clear();
    this.removedTags.clear();
    this.changedFields.clear();
    this.touchRequested = false;
  }

  private reset(): void {
    this.discardChanges();
    this.started = false;
    this.id = undefined;
    this.storedId = undefined;
    this.metadata = undefined;
    this.data = undefined;
    this.retiredIds.length = 0;
    this.retiredStorageId = undefined;
  }

  private meta(operation?: string): Mutable<SessionMetadata> {
    if (!this.started || this.metadata === undefined) {
      throw SessionNotStartedException.create(operation ?? 'use the session');
    }
    return this.metadata;
  }

  private requireStarted(operation: string): void {
    if (!this.started || this.id === undefined) throw SessionNotStartedException.create(operation);
  }

  private requireLocal(operation: string): void {
    if (this.isRemote()) {
      throw OperationNotSupportedException.create(operation, 'a remote session belongs to another client; destroy it instead, its owner gets a new id on the next login');
    }
  }

  private assertNotPending(operation: string): void {
    if (this.lockState === 'pending') {
      throw new LockException(`Cannot ${operation} while the session lock is pending: await open() first (only unlock() is allowed meanwhile).`);
    }
  }
}

function newStorageId(): string {
  return randomBytes(16).toString('base64url');
}
