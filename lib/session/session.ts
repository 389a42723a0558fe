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
import { ipLockAllows, ipLockValue } from './ip-lock.js';
import { SessionAttributes } from '../bags/session-attributes.js';
import { MetadataBag } from '../bags/metadata.bag.js';
import { assertStorageKey } from '../bags/session-bag.registry.js';
import type { SessionBagInterface } from '../bags/session-bag.interface.js';

/** Storage-key prefix of bag entries; `~` cannot occur in a user key. */
const BAG_PREFIX = '~bag:';

interface BagSlot {
  readonly bag: SessionBagInterface;
  initialized: boolean;
  /** Serialized data as loaded (or last written); undefined = no entry. */
  storedRaw: string | undefined;
}

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
  /** Client address as the HTTP framework sees it (for the IP lock). */
  readonly clientIp?: string;
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
  /** Stored data (serialized), loaded lazily when all of it is needed. */
  private data: Map<string, string> | undefined;
  /** Keys read one at a time before `data` was loaded (undefined value = not stored). */
  private singles: Map<string, string | undefined> | undefined;
  /** Pending changes: serialized value, or null for removal. */
  private readonly changes = new Map<string, string | null>();
  private readonly addedTags = new Set<string>();
  private readonly removedTags = new Set<string>();
  /** Metadata fields changed locally (besides tags), merged onto fresh metadata at commit. */
  private readonly changedFields = new Set<'userId' | 'permanent' | 'lifetime' | 'ipLock' | 'createdAt'>();
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
  private readonly bags = new Map<string, BagSlot>();
  private attributes: SessionAttributes | undefined;

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
    this.metadata = { storageId: this.store.newStorageId(), createdAt: now, lastActivity: now, tags: [] };
    const ipLock = this.ipLockValue();
    if (ipLock !== undefined) this.metadata.ipLock = ipLock;
    this.storedId = undefined;
    this.data = new Map();
    this.started = true;
  }

  async canBeResumed(): Promise<boolean> {
    if (this.started && this.storedId !== undefined) return true;
    for (const id of this.origin.cookieIds) {
      const metadata = await this.store.loadMetadata(id);
      if (metadata !== undefined && this.ipAllowed(metadata)) return true;
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
      // A session locked to another client address is treated as no session (IP lock).
      if (metadata === undefined || !this.ipAllowed(metadata)) continue;
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
    this.singles = undefined;
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
      meta.storageId = this.store.newStorageId();
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
    const meta = this.meta();
    const sessionId = this.storedId ?? this.id!;
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
      this.store.events.emit({ type: 'destroyed', sessionId, reason, remote: this.isRemote(), timestamp: Date.now() });
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
    this.changes.set(key, this.encodeValue(key, value));
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
    if (this.data !== undefined) return this.data.get(key);
    if (this.storedId === undefined) return undefined;
    // One key before the whole session is needed: one plain read of that key (a GET on Redis)
    // instead of loading every entry.
    const singles = (this.singles ??= new Map());
    if (singles.has(key)) return singles.get(key);
    const raw = await this.store.loadValue(this.meta().storageId, key);
    if (this.data === undefined) singles.set(key, raw);
    return raw;
  }

  private async loadedData(): Promise<Map<string, string>> {
    if (this.data === undefined) {
      this.singles = undefined;
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
    const ipLock = this.ipLockValue();
    if (ipLock !== undefined && meta.ipLock !== ipLock) {
      meta.ipLock = ipLock;
      this.changedFields.add('ipLock');
    }
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

  // ---- bags (Symfony) --------------------------------------------------------------------

  /**
   * Registers a bag instance for this session only (module-wide bags come from the
   * `bags` option and `SessionModule.forFeature`).
   * @throws InvalidArgumentException for a bad storage key or a taken name.
   */
  registerBag(bag: SessionBagInterface): void {
    assertStorageKey(bag);
    const name = bag.getName();
    if (name === 'attributes' || name === 'metadata' || this.bags.has(name) || this.store.bags.names().includes(name)) {
      throw new InvalidArgumentException(`A session bag named "${name}" is already registered.`);
    }
    this.bags.set(name, { bag, initialized: false, storedRaw: undefined });
  }

  /**
   * A bag by name, loaded on first use in this request (starts the session if needed; a new
   * session is stored only once something is in it). `'attributes'` is the session's own
   * data (the same as `getData`/`putData`).
   * @throws InvalidArgumentException naming the registered bags when `name` is unknown.
   */
  async getBag<T = SessionBagInterface>(name: string): Promise<T> {
    this.assertNotPending('use a session bag');
    if (!this.started) this.start();
    if (name === 'attributes') {
      await this.loadedData();
      return (this.attributes ??= new SessionAttributes(this.attributeSource())) as T;
    }
    if (name === 'metadata') return this.getMetadataBag() as T;
    let slot = this.bags.get(name);
    if (slot === undefined) {
      const bag = this.store.bags.create(name);
      if (bag === undefined) {
        const known = ['attributes', 'metadata', ...this.store.bags.names(), ...this.bags.keys()];
        throw new InvalidArgumentException(`There is no session bag named "${name}". Registered bags: ${known.join(', ')}.`);
      }
      slot = { bag, initialized: false, storedRaw: undefined };
      this.bags.set(name, slot);
    }
    if (!slot.initialized) {
      const raw = (await this.loadedData()).get(BAG_PREFIX + slot.bag.getStorageKey());
      slot.bag.initialize(raw === undefined ? undefined : this.store.storageCache.decode(raw));
      slot.storedRaw = raw;
      slot.initialized = true;
    }
    return slot.bag as T;
  }

  /** Symfony's metadata bag: created, last used, lifetime; costs no storage entry. */
  getMetadataBag(): MetadataBag {
    this.meta('get the metadata bag');
    return new MetadataBag({
      metadata: () => this.meta(),
      cookieLifetime: () => this.cookieMaxAge(this.meta()) ?? 0,
      updateThreshold: () => this.store.options.updateGracePeriod,
      stampNew: (lifetime) => {
        this.meta().createdAt = Date.now();
        this.changedFields.add('createdAt');
        if (lifetime !== undefined) this.setTTL(lifetime);
      },
    });
  }

  private attributeSource() {
    const data = (): Map<string, string> => this.data ?? new Map();
    const current = (key: string): string | undefined => {
      const change = this.changes.get(key);
      return change !== undefined ? (change ?? undefined) : data().get(key);
    };
    return {
      keys: (): string[] => {
        const keys = new Set([...data().keys()].filter((k) => !k.startsWith('~')));
        for (const [key, value] of this.changes) {
          if (key.startsWith('~')) continue;
          if (value === null) keys.delete(key);
          else keys.add(key);
        }
        return [...keys];
      },
      has: (key: string): boolean => current(key) !== undefined,
      read: (key: string): unknown => {
        const raw = current(key);
        return raw === undefined ? undefined : this.store.storageCache.decode(raw);
      },
      write: (key: string, value: unknown): void => {
        assertIdentifier(key, 'session key');
        this.changes.set(key, this.encodeValue(key, value));
      },
      delete: (key: string): void => {
        assertIdentifier(key, 'session key');
        this.changes.set(key, null);
      },
    };
  }

  /** Bags whose storable data differs from what is stored become pending changes. */
  private collectBagChanges(): SessionBagInterface[] {
    const changed: SessionBagInterface[] = [];
    for (const slot of this.bags.values()) {
      if (!slot.initialized) continue;
      const raw = this.bagRaw(slot.bag);
      if (raw === (slot.storedRaw ?? null)) continue;
      this.changes.set(BAG_PREFIX + slot.bag.getStorageKey(), raw);
      changed.push(slot.bag);
    }
    return changed;
  }

  /** Under the lock: re-apply this request's bag changes onto data another request stored meanwhile. */
  private async mergeBags(storageId: string, changed: SessionBagInterface[]): Promise<void> {
    const mergeable = changed.filter((bag) => typeof bag.merge === 'function');
    if (mergeable.length === 0 || this.storedId === undefined) return;
    const fresh = await this.store.storageCache.getMany(mergeable.map((bag) => `${storageId}.${BAG_PREFIX}${bag.getStorageKey()}`));
    mergeable.forEach((bag, i) => {
      const slot = this.bags.get(bag.getName())!;
      if (fresh[i] === slot.storedRaw) return;
      bag.merge!(fresh[i] === undefined ? undefined : this.store.storageCache.decode(fresh[i]!));
      this.changes.set(BAG_PREFIX + bag.getStorageKey(), this.bagRaw(bag));
    });
  }

  private bagRaw(bag: SessionBagInterface): string | null {
    const storable = bag.getStorableData();
    return storable === undefined ? null : this.encodeValue(`${BAG_PREFIX}${bag.getStorageKey()}`, storable);
  }

  private encodeValue(key: string, value: unknown): string {
    try {
      return this.store.storageCache.encode(value);
    } catch (error) {
      throw DataNotSerializableException.create(key, (error as Error).message);
    }
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
   * True when a commit would write nothing, no lock is held or pending and no cookie must be
   * sent: the HTTP layer then finishes the response without waiting for anything (the common
   * anonymous and read-only requests). Conservative: a bag used in the request makes it false.
   */
  isIdle(): boolean {
    if (this.heldLock !== undefined || this.lockState !== 'unlocked' || this.cookie.kind !== 'none') return false;
    if (!this.started || this.metadata === undefined) return true;
    if (this.changes.size > 0) return false;
    for (const slot of this.bags.values()) if (slot.initialized) return false;
    const meta = this.metadata;
    if (this.storedId === undefined) return meta.tags.length === 0 && meta.userId === undefined;
    return (
      this.addedTags.size === 0 && this.removedTags.size === 0 && this.changedFields.size === 0 &&
      this.retiredIds.length === 0 && this.retiredStorageId === undefined && !this.touchRequested &&
      Date.now() - meta.lastActivity < this.store.options.updateGracePeriod * 1000
    );
  }

  /**
   * Writes what changed, under the session lock (the held one, or a short critical section).
   * Does nothing (no I/O) when nothing changed and the grace period has not passed; a new
   * anonymous session without data, tags or user is not stored at all.
   */
  async commit(): Promise<void> {
    if (!this.started || this.metadata === undefined) return;
    const changedBags = this.collectBagChanges();
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

    // A new session's storage id has never left this request, so nobody can contend for it:
    // it is written without a lock (fence 0 is below every fence a locker hands out later).
    const lock = this.heldLock ?? (create ? undefined : await this.store.lock(meta.storageId));
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
      if (changedBags.length > 0) await this.mergeBags(meta.storageId, changedBags);
      const plan: CommitPlan = {
        sessionId: this.id!,
        metadata,
        create: create || this.retiredStorageId !== undefined,
        changes: this.changes,
        retiredIds: this.retiredIds,
      };
      await this.store.write(meta.storageId, plan, lock?.fence ?? 0);
      if (this.retiredStorageId !== undefined) {
        await this.store.destroy([], this.retiredStorageId);
      }
      this.afterCommit(metadata, create);
    } finally {
      // A short commit lock is released without waiting for the reply: the response need not
      // wait a round trip for it, and a release that fails leaves the lock to expire (lock.ttl).
      if (lock !== undefined && lock !== this.heldLock) void lock.release().catch(() => false);
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
    const previousIds = [...new Set(this.retiredIds)];
    const boundUser = this.changedFields.has('userId') ? this.metadata?.userId : undefined;
    const data = this.data;
    const singles = this.singles;
    for (const [key, value] of this.changes) {
      if (data !== undefined) {
        if (value === null) data.delete(key);
        else data.set(key, value);
      } else if (singles !== undefined) {
        singles.set(key, value ?? undefined);
      }
    }
    if (written !== undefined) this.metadata = { ...written, tags: [...written.tags] };
    for (const slot of this.bags.values()) {
      const change = this.changes.get(BAG_PREFIX + slot.bag.getStorageKey());
      if (change !== undefined) slot.storedRaw = change ?? undefined;
    }
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
    this.emitCommitEvents(created, previousIds, boundUser);
  }

  private emitCommitEvents(created: boolean, previousIds: readonly string[], boundUser: string | undefined): void {
    const events = this.store.events;
    const sessionId = this.id!;
    const timestamp = Date.now();
    if (created) events.emit({ type: 'started', sessionId, userId: this.metadata?.userId, timestamp });
    if (previousIds.length > 0) events.emit({ type: 'renewed', sessionId, previousIds, timestamp });
    if (boundUser !== undefined) events.emit({ type: 'userBound', sessionId, userId: boundUser, timestamp });
  }

  /** IP-lock value of this request's client; undefined when the lock is off or for remote sessions. */
  private ipLockValue(): string | undefined {
    const lock = this.store.options.ipLock;
    return lock === undefined || this.isRemote() ? undefined : ipLockValue(this.origin.clientIp, lock);
  }

  /** Whether this request's client may resume a session with `metadata` (IP lock). */
  private ipAllowed(metadata: SessionMetadata): boolean {
    return this.isRemote() || ipLockAllows(metadata.ipLock, this.origin.clientIp, this.store.options.ipLock);
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
    // Bags are re-initialized from the fresh data on their next getBag().
    for (const slot of this.bags.values()) slot.initialized = false;
    const fresh = await this.store.loadMetadata(this.storedId!);
    if (fresh === undefined) {
      this.reset();
      throw SessionDestroyedException.create('read the session');
    }
    const meta = this.meta();
    // Local tag and field changes stay on top of the fresh state.
    this.metadata = { ...this.merge(fresh, fresh.lastActivity), storageId: meta.storageId };
    this.singles = undefined;
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
    this.singles = undefined;
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


