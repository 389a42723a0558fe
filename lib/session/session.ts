import { settleAll } from './settle-all.js';
import { assertIdentifier } from '../cache/identifier.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { SessionLimitExceededException } from '../errors/session-limit-exceeded.exception.js';
import { OperationNotSupportedException } from '../errors/operation-not-supported.exception.js';
import { SessionDestroyedException } from '../errors/session-destroyed.exception.js';
import { SessionNotStartedException } from '../errors/session-not-started.exception.js';
import type { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import type { LockOptions } from '../locking/session-locker.interface.js';
import { MetadataBag } from '../bags/metadata.bag.js';
import type { SessionBagInterface } from '../bags/session-bag.interface.js';
import type { SessionData, SessionLockState } from './session-data.interface.js';
import type { SessionInterface } from './session.interface.js';
import type { SessionMetadata } from './session-metadata.interface.js';
import type { SessionStore } from './session.store.js';
import { userTag } from './user-tag.js';
import { ipLockAllows, ipLockValueFor } from './ip-lock.js';
import { checkUserId } from './session-user-id.js';
import { isCookieName } from './cookie-name.js';
import { SessionChangeSet } from './session-change-set.js';
import { SessionBagSet } from './session-bag-set.js';
import { SessionLockControl } from './session-lock-control.js';
import { CommitPlanner } from './commit-planner.js';
import { SessionCommitter, type CommitTarget } from './session.committer.js';
import { SessionState, type Mutable } from './session-state.js';
import { NOT_LOCAL } from './session-stored-data.js';
import type { SessionCookieFacts } from './session-cookie-facts.js';
import { SessionValueCodec } from './session-value.codec.js';
import { StorageMover } from './storage-move.js';
import { handleOf, metadataKeyOf, type MetadataKey } from './session-key.js';
import { assertKeyCount } from './session-key-count.js';
import { deviceFactsOf } from './device-facts.js';
import { SessionCap } from './session-cap.js';

/** Where a session comes from. */
export interface SessionOrigin {
  /** Candidate ids from the request's cookies, well-formed ones only, in header order. */
  readonly cookieIds: readonly string[];
  /** Cookie name. */
  readonly cookieName: string;
  /** Remote sessions (SessionManager) write through on every change. */
  readonly remote?: boolean;
  /** Client address as the HTTP framework sees it (for the IP lock and the device list). */
  readonly clientIp?: string;
  /** The request's User-Agent header (for the device list; truncated when stored). */
  readonly userAgent?: string;
}

/** A promise rejected with `error`, as an async method's throw would give. */
async function rejection(error: unknown): Promise<never> {
  throw error;
}

/** The parts of a session that hold no per-request state, built once per store. */
interface SharedParts {
  readonly codec: SessionValueCodec;
  readonly planner: CommitPlanner;
  readonly mover: StorageMover;
  readonly committer: SessionCommitter;
}

const sharedParts = new WeakMap<SessionStore, SharedParts>();

function sharedPartsOf(store: SessionStore): SharedParts {
  let parts = sharedParts.get(store);
  if (parts === undefined) {
    const planner = new CommitPlanner(store.options.updateGracePeriod, store.options.inactivityTimeout);
    const mover = new StorageMover(store);
    parts = {
      codec: new SessionValueCodec(store.storageCache, store.options.maxEntryBytes),
      planner,
      mover,
      committer: new SessionCommitter(store, planner, mover, new SessionCap(store)),
    };
    sharedParts.set(store, parts);
  }
  return parts;
}

/**
 * A session: the facade over its parts. It keeps the lifecycle (start, resume, renew,
 * destroy) and the API's checks; what this request knows of the session (id, metadata, the
 * data read so far) is its `SessionState`, what changed lives in a `SessionChangeSet`, the
 * bags in a `SessionBagSet`, the Aerys lock states in a `SessionLockControl`; what a commit
 * writes is decided by the `CommitPlanner` and carried out by the `SessionCommitter`. One
 * instance per request (or per remote session); never shared between requests. All
 * persistence goes through the store; the cookie is the HTTP layer's business.
 */
export class Session implements SessionInterface {
  private readonly state: SessionState;
  private cookieName: string;
  private resumeAttempt: Promise<number | undefined> | undefined;
  /** Why this session cannot be used in this request (see `markUnavailable`). */
  private unavailable: StoreUnavailableException | undefined;
  /** What changed since the last commit (created on first use: most requests change nothing). */
  private changeSet: SessionChangeSet | undefined;
  private readonly locks = new SessionLockControl();
  /** The bags (created on first use). */
  private bagSet: SessionBagSet | undefined;
  private readonly planner: CommitPlanner;
  private readonly codec: SessionValueCodec;
  private readonly mover: StorageMover;
  private readonly committer: SessionCommitter;
  /** What the committer gets of this session (see `commit`). */
  private commitTarget: CommitTarget | undefined;

  constructor(
    private readonly store: SessionStore,
    private readonly origin: SessionOrigin,
  ) {
    this.state = new SessionState(store);
    this.cookieName = origin.cookieName;
    // Stateless parts, shared by every session of the store: a request that never touches its
    // session (most anonymous ones) allocates as little as possible.
    const shared = sharedPartsOf(store);
    this.codec = shared.codec;
    this.planner = shared.planner;
    this.mover = shared.mover;
    this.committer = shared.committer;
  }

  private get changes(): SessionChangeSet {
    return (this.changeSet ??= new SessionChangeSet());
  }

  private get bags(): SessionBagSet {
    return (this.bagSet ??= new SessionBagSet(
      this.store.bags,
      this.codec,
      this.store.storageCache,
      this.store.options.maxKeysPerSession,
    ));
  }

  /**
   * Builds a started session from stored metadata (used by resume and by SessionManager), known
   * by its public `id`, or, found by a listing, by its metadata key only (`{ key }`: then
   * `getId()` throws, see there).
   */
  static fromMetadata(
    store: SessionStore,
    address: string | { readonly key: MetadataKey },
    metadata: SessionMetadata,
    origin: SessionOrigin,
  ): Session {
    const session = new Session(store, origin);
    if (typeof address === 'string') session.state.adopt(address, metadataKeyOf(address), metadata);
    else session.state.adopt(undefined, address.key, metadata);
    return session;
  }

  // ---- lifecycle -------------------------------------------------------------------------

  isStarted(): boolean {
    this.assertAvailable();
    return this.state.started;
  }

  isRemote(): boolean {
    return this.origin.remote === true;
  }

  start(): void {
    this.assertAvailable();
    this.locks.assertNotPending('start the session');
    if (this.state.started) return;
    const now = Date.now();
    const id = this.store.options.idGenerator.generate();
    const metadata: Mutable<SessionMetadata> = {
      storageId: this.store.newStorageId(),
      createdAt: now,
      lastActivity: now,
      tags: [],
    };
    const ipLock = this.ipLockValue();
    if (ipLock !== undefined) metadata.ipLock = ipLock;
    this.state.startNew(id, metadata);
  }

  async canBeResumed(): Promise<boolean> {
    this.assertAvailable();
    if (this.state.started && this.state.storedId !== undefined) return true;
    for (const id of this.origin.cookieIds) {
      const metadata = await this.store.loadMetadata(metadataKeyOf(id));
      if (metadata !== undefined && this.ipAllowed(metadata)) return true;
    }
    return false;
  }

  resume(): Promise<number | undefined> {
    this.locks.assertNotPending('resume the session');
    if (this.state.started) return Promise.resolve(this.state.metadata?.lastActivity);
    this.resumeAttempt ??= this.doResume();
    return this.resumeAttempt;
  }

  /**
   * @internal `resume()` done before this returns, where the store reads synchronously (the
   * memory backends): the HTTP layer then hands the handler a resumed session without a promise
   * chain. Answers false, having done nothing, when the store cannot (or a resume has begun).
   * @throws what `resume()` rejects with.
   */
  resumeSync(): boolean {
    if (this.state.started || this.resumeAttempt !== undefined || !this.store.readsSync) return false;
    this.locks.assertNotPending('resume the session');
    let lastActivity: number | undefined;
    for (const id of this.origin.cookieIds) {
      const key = metadataKeyOf(id);
      const entry = this.store.loadMetadataEntrySync(key);
      if (this.adoptLive(id, key, entry?.metadata)) {
        this.state.resumedEntry = entry;
        lastActivity = entry!.metadata.lastActivity;
        break;
      }
    }
    this.resumeAttempt = Promise.resolve(lastActivity);
    return true;
  }

  private async doResume(): Promise<number | undefined> {
    for (const id of this.origin.cookieIds) {
      const key = metadataKeyOf(id);
      const entry = await this.store.loadMetadataEntry(key);
      if (this.adoptLive(id, key, entry?.metadata)) {
        this.state.resumedEntry = entry;
        return entry!.metadata.lastActivity;
      }
    }
    // A cookie that names no live session is replaced or cleared by the next write.
    return undefined;
  }

  /** Adopts the session `id` names if it is live and allowed here; answers whether it did. */
  private adoptLive(id: string, key: MetadataKey, metadata: SessionMetadata | undefined): boolean {
    // A session locked to another client address is treated as no session (IP lock).
    if (metadata === undefined || !this.ipAllowed(metadata)) return false;
    this.state.adopt(id, key, metadata);
    this.lockUnlockedSession();
    return true;
  }

  /**
   * The HTTP layer's resume before the handler failed because the store is down: the request
   * goes on, and only code that uses the session fails. From now on every method that needs
   * the session's state or the store throws `error` (the sync getters such as `isStarted()`,
   * `getId()`, `getTags()`, `isNew()`, `getUserId()` too: they cannot answer without the
   * metadata, and a guess such as "not started" would let `start()` replace a live session),
   * and `resume()` rejects with it. What needs neither (`getName()`, `getLockState()`,
   * `getCookieFacts()`, `isIdle()`) still answers; `commit()` writes nothing, since nothing
   * could change, so the response carries no Set-Cookie.
   */
  markUnavailable(error: StoreUnavailableException): void {
    this.unavailable = error;
    const failed = Promise.reject(error);
    failed.catch(() => undefined);
    this.resumeAttempt = failed;
  }

  /** @throws StoreUnavailableException after `markUnavailable`. */
  private assertAvailable(): void {
    if (this.unavailable !== undefined) throw this.unavailable;
  }

  /**
   * The public id (the cookie value). A remote session found by a listing, a tag or a user
   * (`SessionManager.getActiveSessions()`, `getSessionsByTag()`, `getSessionsForUser()`,
   * `getSessionByHandle()`) has none: the store keeps only a digest of the id, so this throws
   * `OperationNotSupportedException`; use `getHandle()` to name it.
   */
  getId(): string {
    this.requireStarted('get the session id');
    if (this.state.id === undefined) {
      throw OperationNotSupportedException.create(
        'getId()',
        'this remote session was found by a listing, and the store keeps only a digest of session ids; name it by getHandle()',
      );
    }
    return this.state.id;
  }

  /**
   * The session's handle: a short, non-secret digest of its id for listings, events, logs and
   * "revoke this device" (`SessionManager.destroySessionByHandle`); never a working cookie.
   * It changes when the id does (renewal, login).
   */
  getHandle(): string {
    this.requireStarted('get the session handle');
    return handleOf(this.state.currentKey());
  }

  /** @internal The metadata key the session is stored under (undefined until stored). */
  getStoredKey(): MetadataKey | undefined {
    return this.state.started ? this.state.storedId : undefined;
  }

  renewId(): string {
    this.requireLocal('renewId()');
    this.requireStarted('renew the session id');
    this.locks.assertNotPending('renew the session id');
    if (this.state.storedId !== undefined) this.changes.retireId(this.state.storedId);
    this.state.id = this.store.options.idGenerator.generate();
    return this.state.id;
  }

  async regenerate(destroy = false, lifetime?: number): Promise<boolean> {
    this.requireLocal('regenerate()');
    if (!this.state.started) this.start();
    this.locks.assertNotPending('regenerate the session');
    if (lifetime !== undefined) this.setTTL(lifetime);
    // With `destroy`, nothing of the old storage stays addressable once committed (StorageMover).
    if (destroy) this.mover.request(this.changes, this.meta().storageId, this.state.storedId !== undefined);
    this.renewId();
    return true;
  }

  async close(): Promise<void> {
    if (!this.state.started) return;
    await this.save();
    this.state.started = false;
  }

  async destroy(reason?: string): Promise<void> {
    this.requireStarted('destroy the session');
    this.locks.assertNotPending('destroy the session');
    const meta = this.meta();
    const handle = handleOf(this.state.storedId ?? this.state.currentKey());
    const ids = [...this.changes.retiredIds];
    if (this.state.storedId !== undefined) ids.push(this.state.storedId);
    if (ids.length > 0) {
      const held = this.locks.held;
      const lock = held ?? (await this.store.lock(meta.storageId));
      try {
        // Under the lock: an id renewed away (or destroyed, expired) meanwhile no longer owns the
        // storage, which a renewal keeps for the live id: flushing it would empty a live session.
        // A held lock may have expired and been overtaken: its fence is checked (a fresh one is current).
        if (this.state.storedId === undefined || (await this.store.loadMetadata(this.state.storedId)) !== undefined)
          await this.store.destroy(
            ids,
            meta.storageId,
            held === undefined || this.state.storedId === undefined ? undefined : held.fence,
          );
      } finally {
        this.locks.detach();
        // The session is gone or the error is the caller's; a failed release only leaves the
        // lock to expire (lock.ttl), it must not hide the outcome of the destroy.
        await lock.release().catch(() => false);
      }
      this.store.events.emit({ type: 'destroyed', handle, reason, remote: this.isRemote(), timestamp: Date.now() });
    }
    this.reset();
    this.state.client.destroyed = true;
    this.state.client.idIssued = false;
    this.state.client.metadataWritten = false;
  }

  // ---- data ------------------------------------------------------------------------------

  // `| undefined` is needed for keys declared by declaration merging (see session.interface.ts).
  getData<K extends keyof SessionData & string>(key: K): Promise<SessionData[K] | undefined> {
    // Answered without an async step where the value is known or read synchronously (memory);
    // errors still reject, as from an async method.
    try {
      const local = this.localValue(key, 'read session data');
      if (local !== NOT_LOCAL) return Promise.resolve(local === undefined ? undefined : this.codec.decode<SessionData[K]>(local));
    } catch (error) {
      return rejection(error);
    }
    return this.rawValue(key, 'read session data').then((raw) => (raw === undefined ? undefined : this.codec.decode(raw)));
  }

  async hasKey(key: string): Promise<boolean> {
    return (await this.rawValue(key, 'read session data')) !== undefined;
  }

  async putData<K extends keyof SessionData & string>(key: K, value: SessionData[K]): Promise<void> {
    this.requireStarted('store session data');
    this.locks.assertNotPending('store session data');
    assertIdentifier(key, 'session key');
    const raw = this.codec.encode(key, value);
    const counted = this.assertRoomForKey(key);
    if (counted !== undefined) await counted;
    this.changes.put(key, raw);
    await this.writeThrough();
  }

  /**
   * `maxKeysPerSession`: a key the session does not hold yet must fit. Answers synchronously
   * when the answer is known (the key is held, or all data is loaded); otherwise the data is
   * loaded first (one read, once per request).
   * @throws SessionLimitExceededException
   */
  private assertRoomForKey(key: string): Promise<void> | undefined {
    const change = this.changes.valueOf(key);
    if (typeof change === 'string') return undefined;
    const loaded = this.state.data.loaded;
    if (loaded === undefined) {
      // A backend that counts the entries in its write enforces the cap there (SessionStore): no read.
      if (this.store.capsKeysInWrite) return undefined;
      if (change === undefined && this.state.data.holdsSingle(key)) return undefined;
      return this.loadedData().then((data) => assertKeyCount(data, this.changes, key, this.store.options.maxKeysPerSession));
    }
    assertKeyCount(loaded, this.changes, key, this.store.options.maxKeysPerSession);
    return undefined;
  }

  async removeData(key: string): Promise<void> {
    this.requireStarted('remove session data');
    this.locks.assertNotPending('remove session data');
    assertIdentifier(key, 'session key');
    this.changes.put(key, null);
    await this.writeThrough();
  }

  async getAllData(): Promise<Partial<SessionData>> {
    this.requireStarted('read session data');
    this.locks.assertNotPending('read session data');
    const result: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const [key, raw] of await this.currentRaw()) result[key] = this.codec.decode(raw);
    return result;
  }

  async clear(): Promise<void> {
    this.requireStarted('clear the session');
    this.locks.assertNotPending('clear the session');
    for (const key of (await this.currentRaw()).keys()) this.changes.put(key, null);
    await this.writeThrough();
  }

  /**
   * Data as it stands with pending changes applied (serialized values). Internal keys
   * (bags, starting with `~`) are left out.
   */
  private async currentRaw(): Promise<Map<string, string>> {
    const merged = new Map(await this.loadedData());
    for (const [key, value] of this.changes.data) {
      if (value === null) merged.delete(key);
      else merged.set(key, value);
    }
    for (const key of merged.keys()) if (key.startsWith('~')) merged.delete(key);
    return merged;
  }

  /**
   * The raw value of `key` as far as it is known without waiting: a change, or what the stored
   * data knows (`SessionStoredData.peek`); else `NOT_LOCAL`.
   */
  private localValue(key: string, operation: string): string | undefined | typeof NOT_LOCAL {
    this.requireStarted(operation);
    this.locks.assertNotPending(operation);
    assertIdentifier(key, 'session key');
    const change = this.changeSet?.valueOf(key);
    if (change !== undefined) return change ?? undefined;
    return this.state.data.peek(key, this.state.storedStorageId);
  }

  // Not async: the read's promise is handed on as it is, without a step of its own.
  private rawValue(key: string, operation: string): Promise<string | undefined> {
    const local = this.localValue(key, operation);
    // One key before the whole session is needed: one plain read of that key (a GET on Redis)
    // instead of loading every entry.
    return local === NOT_LOCAL ? this.state.data.read(this.meta().storageId, key) : Promise.resolve(local);
  }

  private loadedData(): Promise<Map<string, string>> {
    return this.state.data.loadAll(this.state.storedStorageId);
  }

  // ---- metadata --------------------------------------------------------------------------

  getLastActivityTimestamp(): number {
    return this.meta('get the last activity').lastActivity;
  }

  async addTag(tag: string): Promise<void> {
    assertIdentifier(tag, 'session tag');
    const meta = this.meta('tag the session');
    this.locks.assertNotPending('tag the session');
    if (!meta.tags.includes(tag)) {
      // maxTagsPerSession counts custom tags: the user tag of bindToUser is the module's own.
      const own = meta.userId === undefined ? undefined : userTag(meta.userId);
      const max = this.store.options.maxTagsPerSession;
      if (meta.tags.filter((t) => t !== own).length >= max) throw SessionLimitExceededException.tooManyTags(tag, max);
    }
    if (!meta.tags.includes(tag)) meta.tags = [...meta.tags, tag];
    this.changes.addTag(tag);
    await this.writeThrough();
  }

  async removeTag(tag: string): Promise<void> {
    assertIdentifier(tag, 'session tag');
    const meta = this.meta('untag the session');
    this.locks.assertNotPending('untag the session');
    meta.tags = meta.tags.filter((t) => t !== tag);
    this.changes.removeTag(tag);
    await this.writeThrough();
  }

  getTags(): string[] {
    return [...this.meta('get the session tags').tags];
  }

  async touch(): Promise<void> {
    this.meta('touch the session');
    this.locks.assertNotPending('touch the session');
    this.changes.requestTouch();
    await this.writeThrough();
  }

  getName(): string {
    return this.cookieName;
  }

  setName(name: string): void {
    if (this.state.started)
      throw new InvalidArgumentException('The session name (cookie name) cannot change after the session has started.');
    if (!isCookieName(name))
      throw new InvalidArgumentException(`Invalid session name ${JSON.stringify(name)}: use cookie token characters.`);
    this.cookieName = name;
  }

  setTTL(seconds: number): void {
    if (!Number.isFinite(seconds) || seconds <= 0)
      throw new InvalidArgumentException(`Invalid session lifetime ${seconds}: use a number of seconds > 0.`);
    const meta = this.meta('set the session lifetime');
    meta.lifetime = seconds;
    this.changes.setField('lifetime', seconds);
  }

  isNew(): boolean {
    this.assertAvailable();
    return this.state.storedId === undefined;
  }

  isAnonymous(): boolean {
    this.assertAvailable();
    return this.state.metadata?.userId === undefined;
  }

  getUserId(): string | undefined {
    this.assertAvailable();
    return this.state.metadata?.userId;
  }

  bindToUser(userId: string): void {
    checkUserId(userId);
    this.requireLocal('bindToUser()');
    if (!this.state.started) this.start();
    const meta = this.meta();
    if (meta.userId !== undefined && meta.userId !== userId) {
      const old = userTag(meta.userId);
      meta.tags = meta.tags.filter((t) => t !== old);
      this.changes.removeTag(old);
    }
    meta.userId = userId;
    this.changes.setField('userId', userId);
    // A login restarts the absolute lifetime and is an authentication (getAuthenticatedAt).
    const now = Date.now();
    this.setMetaField(meta, 'boundAt', now);
    this.setMetaField(meta, 'authenticatedAt', now);
    this.recordDevice(meta, true);
    const ipLock = this.ipLockValue();
    if (ipLock !== undefined && meta.ipLock !== ipLock) {
      meta.ipLock = ipLock;
      this.changes.setField('ipLock', ipLock);
    }
    const tag = userTag(userId);
    if (!meta.tags.includes(tag)) meta.tags = [...meta.tags, tag];
    this.changes.addTag(tag);
    // Fixation defence: a new id and a new storage id, in the same commit. A session never
    // stored has neither to give up: nobody but this request knows its id.
    if (this.mover.request(this.changes, meta.storageId, this.state.storedId !== undefined)) this.renewId();
  }

  /**
   * Records that the user has just proved who they are again (re-entered a password, a second
   * factor): `getAuthenticatedAt()` answers now, which `@RequireFreshSession()` checks. Login
   * (`bindToUser`) does this too. Does not extend the absolute lifetime.
   * @throws SessionNotStartedException, OperationNotSupportedException (remote sessions)
   */
  markAuthenticated(): void {
    this.requireLocal('markAuthenticated()');
    const meta = this.meta('mark the session authenticated');
    this.locks.assertNotPending('mark the session authenticated');
    this.setMetaField(meta, 'authenticatedAt', Date.now());
  }

  /** When the user last logged in or `markAuthenticated()` was called (epoch ms); undefined if never. */
  getAuthenticatedAt(): number | undefined {
    this.assertAvailable();
    return this.state.started ? this.state.metadata?.authenticatedAt : undefined;
  }

  private setMetaField<F extends 'boundAt' | 'authenticatedAt' | 'userAgent' | 'clientAddress'>(
    meta: Mutable<SessionMetadata>,
    field: F,
    value: SessionMetadata[F],
  ): void {
    meta[field] = value;
    this.changes.setField(field, value);
  }

  /**
   * The device facts of this request's client (user agent, address prefix) onto the metadata:
   * all of them at login (`replace`), else only those that are known and changed, so that a
   * metadata write that happens anyway refreshes them without costing a write of its own.
   */
  private recordDevice(meta: Mutable<SessionMetadata>, replace: boolean): void {
    if (this.isRemote()) return;
    const facts = deviceFactsOf(this.origin.userAgent, this.origin.clientIp, this.store.options.ipLock);
    for (const field of ['userAgent', 'clientAddress'] as const) {
      const value = facts[field];
      if (meta[field] !== value && (replace || value !== undefined)) this.setMetaField(meta, field, value);
    }
  }

  isPermanent(): boolean {
    this.assertAvailable();
    return this.state.metadata?.permanent === true;
  }

  setPermanent(permanent: boolean): void {
    const meta = this.meta('make the session permanent');
    meta.permanent = permanent;
    this.changes.setField('permanent', permanent);
  }

  // ---- bags (Symfony) --------------------------------------------------------------------

  /**
   * Registers a bag instance for this session only (module-wide bags come from the
   * `bags` option and `SessionModule.forFeature`).
   * @throws InvalidArgumentException for a bad storage key or a taken name.
   */
  registerBag(bag: SessionBagInterface): void {
    this.bags.register(bag);
  }

  /**
   * A bag by name, loaded on first use in this request (starts the session if needed; a new
   * session is stored only once something is in it). `'attributes'` is the session's own
   * data (the same as `getData`/`putData`).
   * @throws InvalidArgumentException naming the registered bags when `name` is unknown.
   */
  async getBag<T = SessionBagInterface>(name: string): Promise<T> {
    this.locks.assertNotPending('use a session bag');
    if (!this.state.started) this.start();
    if (name === 'attributes') {
      await this.loadedData();
      return this.bags.attributes(() => this.state.data.loaded ?? new Map<string, string>(), this.changes) as T;
    }
    if (name === 'metadata') return this.getMetadataBag() as T;
    return (await this.bags.get(name, () => this.loadedData())) as T;
  }

  /** Symfony's metadata bag: created, last used, lifetime; costs no storage entry. */
  getMetadataBag(): MetadataBag {
    this.meta('get the metadata bag');
    return new MetadataBag({
      metadata: () => this.meta(),
      cookieLifetime: () => this.cookieLifetimeOf(this.meta()) ?? 0,
      updateThreshold: () => this.planner.graceOf(this.meta()),
      stampNew: (lifetime) => {
        const createdAt = Date.now();
        this.meta().createdAt = createdAt;
        this.changes.setField('createdAt', createdAt);
        if (lifetime !== undefined) this.setTTL(lifetime);
      },
    });
  }

  // ---- locking (Aerys) -------------------------------------------------------------------

  getLockState(): SessionLockState {
    return this.locks.getState();
  }

  /** `open()` with explicit lock options (used by `@SessionLock()`). */
  async open(options?: Partial<LockOptions>): Promise<void> {
    this.locks.assertNotPending('open the session');
    if (this.locks.getState() === 'locked') return;
    if (!this.state.started) {
      await this.resume();
      // resume() may have started it (the compiler keeps the narrowing across the await).
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      if (!this.state.started) this.start();
    }
    const meta = this.meta();
    await this.locks.acquire(this.store.lock(meta.storageId, options));
    if (this.state.storedId === undefined) return;
    try {
      // The new fence goes onto the guard before the re-read: a holder whose lock expired (an
      // older fence) can no longer write what this holder would not see and then overwrite.
      // Both are sent in one tick (one round trip); the store applies them in that order.
      const held = this.locks.held;
      if (held === undefined) await this.reload();
      // Both settle before a failure is handled: reload() resets the session when it finds it gone.
      else await settleAll([this.store.assertCurrent(meta.storageId, held.fence), this.reload()]);
    } catch (error) {
      await this.locks.release();
      throw error;
    }
  }

  async read(): Promise<void> {
    this.locks.assertNotPending('read the session');
    if (this.state.storedId === undefined) return;
    await this.reload();
  }

  async unlock(): Promise<void> {
    await this.locks.settle();
    await this.discardAndReread();
  }

  async save(): Promise<void> {
    this.locks.assertNotPending('save the session');
    try {
      await this.commit();
    } catch (error) {
      // Aerys: a failed save reloads the old contents; the caller gets the error.
      await this.discardAndReread();
      throw error;
    }
    await this.locks.release();
  }

  /** Releases a lock still held when the request ends (never left behind). */
  async dispose(): Promise<void> {
    await this.locks.release();
  }

  // ---- commit (used by the HTTP layer, save() and remote sessions) -----------------------

  /**
   * What the client must learn about the session id, as facts: the HTTP layer turns them into
   * Set-Cookie (also before the commit, for headers that go out first).
   */
  getCookieFacts(): SessionCookieFacts {
    const meta = this.state.started ? this.state.metadata : undefined;
    return {
      id: this.state.id,
      idIssued: this.state.client.idIssued,
      idIssuePending:
        meta !== undefined && this.planner.issuesId(this.changes, meta, this.state.storedId !== undefined, Date.now()),
      destroyed: this.state.client.destroyed,
      metadataWritten: this.state.client.metadataWritten,
      permanent: this.state.metadata?.permanent === true,
      cookieLifetime: this.state.metadata === undefined ? undefined : this.cookieLifetimeOf(this.state.metadata),
    };
  }

  /**
   * True when a commit would write nothing and no lock is held or pending: the HTTP layer
   * then finishes the response without waiting for anything (the common anonymous and
   * read-only requests) unless a cookie must be sent. Conservative: a bag used in the
   * request makes it false.
   */
  isIdle(): boolean {
    if (!this.locks.isIdle()) return false;
    if (!this.state.started || this.state.metadata === undefined) return true;
    if (this.bagSet?.isInUse() === true) return false;
    return this.planner.decide(this.changes, this.state.metadata, this.state.storedId !== undefined, Date.now()) === undefined;
  }

  /**
   * Writes what changed (see `SessionCommitter.commit`): a snapshot of the changes, then
   * acknowledged, so that a change made while the commit is in flight is kept for the next.
   */
  commit(): Promise<void> {
    return this.committer.commit((this.commitTarget ??= this.lendToCommitter()));
  }

  /** What the committer reads and advances of this session; made on the first commit and kept. */
  private lendToCommitter(): CommitTarget {
    return {
      state: this.state,
      changes: this.changes,
      bags: () => this.bagSet,
      locks: this.locks,
      recordDevice: (meta) => {
        this.recordDevice(meta, false);
      },
      evict: (key, metadata) =>
        Session.fromMetadata(this.store, { key }, metadata, { cookieIds: [], cookieName: this.cookieName, remote: true }).destroy(
          'evicted',
        ),
    };
  }

  /**
   * Seconds the session's cookie lives: a permanent session's as long as its inactivity
   * timeout, otherwise the configured `cookie.lifetime`; undefined = a browser-session cookie.
   */
  private cookieLifetimeOf(meta: SessionMetadata): number | undefined {
    if (meta.permanent) return this.store.timeoutOf(meta);
    const lifetime = this.store.options.cookie.lifetime;
    return lifetime > 0 ? lifetime : undefined;
  }

  /**
   * IP-lock value of this request's client (`UNKNOWN_ADDRESS_LOCK` when its address is unknown:
   * the lock fails closed); undefined when the lock is off or for remote sessions.
   */
  private ipLockValue(): string | undefined {
    const lock = this.store.options.ipLock;
    return lock === undefined || this.isRemote() ? undefined : ipLockValueFor(this.origin.clientIp, lock);
  }

  /**
   * A session stored before the IP lock was enabled has no lock value: the first request that
   * resumes it locks it to its own client (written by this request's commit).
   */
  private lockUnlockedSession(): void {
    const meta = this.state.metadata;
    if (meta === undefined || meta.ipLock !== undefined) return;
    const ipLock = this.ipLockValue();
    if (ipLock === undefined) return;
    meta.ipLock = ipLock;
    this.changes.setField('ipLock', ipLock);
  }

  /** Whether this request's client may resume a session with `metadata` (IP lock). */
  private ipAllowed(metadata: SessionMetadata): boolean {
    return this.isRemote() || ipLockAllows(metadata.ipLock, this.origin.clientIp, this.store.options.ipLock);
  }

  // ---- helpers ---------------------------------------------------------------------------

  private async writeThrough(): Promise<void> {
    if (this.isRemote()) await this.commit();
  }

  /**
   * Aerys `unlock()`, a failed `save()`: forgets this request's changes (data, tags, fields,
   * user, bags; a pending storage move) and releases the lock, then reads the session again.
   * The same for a session never stored: its metadata goes back to what `start()` made.
   */
  private async discardAndReread(): Promise<void> {
    this.changes.discard();
    this.bagSet?.discard();
    await this.locks.release();
    if (this.state.storedId !== undefined) {
      await this.reload().catch(() => undefined);
    } else if (this.state.started && this.state.metadata !== undefined) {
      const { storageId, createdAt, lastActivity } = this.state.metadata;
      this.state.metadata = { storageId, createdAt, lastActivity, tags: [] };
      const ipLock = this.ipLockValue();
      if (ipLock !== undefined) this.state.metadata.ipLock = ipLock;
    }
  }

  private async reload(): Promise<void> {
    const meta = this.meta();
    // Metadata and data in one round trip: the storage id is this session's own (a move by
    // another request retires this key, so the metadata read then finds nothing).
    const [fresh, data] = await Promise.all([this.store.loadMetadata(this.state.storedId!), this.store.loadData(meta.storageId)]);
    if (fresh === undefined) {
      this.reset();
      throw SessionDestroyedException.create('read the session');
    }
    // Local tag and field changes stay on top of the fresh state.
    this.state.metadata = { ...this.planner.merge(fresh, this.changes, fresh.lastActivity), storageId: meta.storageId };
    this.state.resumedEntry = undefined;
    this.state.data.replace(data);
    // Bag changes of this request stay on top of the fresh data, like data changes.
    this.bagSet?.rebase(data);
  }

  private reset(): void {
    this.changes.reset();
    this.bagSet?.discard();
    this.state.reset();
  }

  private meta(operation?: string): Mutable<SessionMetadata> {
    this.assertAvailable();
    if (!this.state.started || this.state.metadata === undefined) {
      throw SessionNotStartedException.create(operation ?? 'use the session');
    }
    return this.state.metadata;
  }

  private requireStarted(operation: string): void {
    this.assertAvailable();
    if (!this.state.started || (this.state.id === undefined && this.state.storedId === undefined))
      throw SessionNotStartedException.create(operation);
  }

  private requireLocal(operation: string): void {
    if (this.isRemote()) {
      throw OperationNotSupportedException.create(
        operation,
        'a remote session belongs to another client; destroy it instead, its owner gets a new id on the next login',
      );
    }
  }
}
