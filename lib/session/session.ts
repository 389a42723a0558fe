import { settleAll } from './settle-all.js';
import { assertIdentifier } from '../cache/identifier.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { SessionLimitExceededException } from '../errors/session-limit-exceeded.exception.js';
import { OperationNotSupportedException } from '../errors/operation-not-supported.exception.js';
import { SessionNotStartedException } from '../errors/session-not-started.exception.js';
import type { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import type { LockOptions } from '../locking/session-locker.interface.js';
import { MetadataBag } from '../bags/metadata.bag.js';
import type { SessionBagInterface } from '../bags/session-bag.interface.js';
import type { SessionData, SessionLockState } from './session-data.interface.js';
import type { SessionInterface } from './session.interface.js';
import type { MutableSessionMetadata, SessionMetadata } from './session-metadata.interface.js';
import type { SessionStore } from './session.store.js';
import { userTag } from './user-tag.js';
import { checkUserId } from './session-user-id.js';
import { isCookieName } from './cookie-name.js';
import { CommitPlanner } from './commit-planner.js';
import { SessionCommitter } from './session.committer.js';
import { SessionReader } from './session.reader.js';
import { SessionState } from './session-state.js';
import { originIpLock, recordDevice, type SessionOrigin } from './session-origin.js';
import { NOT_LOCAL } from './session-stored-data.js';
import type { SessionCookieFacts } from './session-cookie-facts.js';
import { SessionValueCodec } from './session-value.codec.js';
import { StorageMover } from './storage-move.js';
import { handleOf, metadataKeyOf, type MetadataKey } from './session-key.js';
import { SessionCap } from './session-cap.js';

export type { SessionOrigin } from './session-origin.js';

/** A promise rejected with `error`, as an async method's throw would give. */
async function rejection(error: unknown): Promise<never> {
  throw error;
}

/** The parts of a session that hold no per-request state, built once per store. */
interface SharedParts {
  readonly codec: SessionValueCodec;
  readonly planner: CommitPlanner;
  readonly mover: StorageMover;
  readonly reader: SessionReader;
  readonly committer: SessionCommitter;
}

const sharedParts = new WeakMap<SessionStore, SharedParts>();

function sharedPartsOf(store: SessionStore): SharedParts {
  let parts = sharedParts.get(store);
  if (parts === undefined) {
    const planner = new CommitPlanner(store.options.updateGracePeriod, store.options.inactivityTimeout);
    const mover = new StorageMover(store);
    // The session cap evicts a user's other sessions as remote sessions.
    const destroyRemote = (key: MetadataKey, metadata: SessionMetadata, cookieName: string) =>
      Session.fromMetadata(store, { key }, metadata, { cookieIds: [], cookieName, remote: true }).destroy('evicted');
    parts = {
      codec: new SessionValueCodec(store.storageCache, store.options.maxEntryBytes),
      planner,
      mover,
      reader: new SessionReader(store, planner),
      committer: new SessionCommitter(store, planner, mover, new SessionCap(store), destroyRemote),
    };
    sharedParts.set(store, parts);
  }
  return parts;
}

/**
 * A session: the facade over its parts. It holds the API and its checks and decides the
 * lifecycle (start, resume, renew, destroy); everything the request holds of the session (id,
 * metadata, the data read so far, the change set, the bags, the Aerys lock states) is its
 * `SessionState`. The stateless parts work on that state: the `SessionReader` brings it in from
 * the store, the `CommitPlanner` decides what a commit writes and the `SessionCommitter` writes
 * it. One instance per request (or per remote session); never shared between requests. All
 * persistence goes through the store; the cookie is the HTTP layer's business.
 */
export class Session implements SessionInterface {
  private readonly state: SessionState;
  private resumeAttempt: Promise<number | undefined> | undefined;
  private readonly planner: CommitPlanner;
  private readonly codec: SessionValueCodec;
  private readonly mover: StorageMover;
  private readonly reader: SessionReader;
  private readonly committer: SessionCommitter;

  constructor(
    /** @internal The store the session lives in (the Express response hooks find its HTTP handler by it). */
    readonly store: SessionStore,
    origin: SessionOrigin,
  ) {
    // Stateless parts, shared by every session of the store: a request that never touches its
    // session (most anonymous ones) allocates as little as possible.
    const shared = sharedPartsOf(store);
    this.codec = shared.codec;
    this.planner = shared.planner;
    this.mover = shared.mover;
    this.reader = shared.reader;
    this.committer = shared.committer;
    this.state = new SessionState(store, origin, shared.codec);
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
    this.state.assertAvailable();
    return this.state.started;
  }

  isRemote(): boolean {
    return this.state.remote;
  }

  start(): void {
    this.state.assertAvailable();
    this.state.locks.assertNotPending('start the session');
    if (this.state.started) return;
    const now = Date.now();
    const id = this.store.options.idGenerator.generate();
    const metadata: MutableSessionMetadata = {
      storageId: this.store.newStorageId(),
      createdAt: now,
      lastActivity: now,
      tags: [],
    };
    const ipLock = originIpLock(this.state.origin, this.store.options.ipLock);
    if (ipLock !== undefined) metadata.ipLock = ipLock;
    this.state.startNew(id, metadata);
  }

  async canBeResumed(): Promise<boolean> {
    this.state.assertAvailable();
    if (this.state.started && this.state.storedId !== undefined) return true;
    for (const id of this.state.origin.cookieIds) {
      const metadata = await this.store.loadMetadata(metadataKeyOf(id));
      if (metadata !== undefined && this.reader.mayResume(this.state, metadata)) return true;
    }
    return false;
  }

  resume(): Promise<number | undefined> {
    this.state.locks.assertNotPending('resume the session');
    if (this.state.started) return Promise.resolve(this.state.metadata?.lastActivity);
    this.resumeAttempt ??= this.reader.resume(this.state);
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
    this.state.locks.assertNotPending('resume the session');
    this.resumeAttempt = Promise.resolve(this.reader.resumeSync(this.state));
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
    this.state.unavailable = error;
    const failed = Promise.reject(error);
    failed.catch(() => undefined);
    this.resumeAttempt = failed;
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
    this.state.locks.assertNotPending('renew the session id');
    if (this.state.storedId !== undefined) this.state.changes.retireId(this.state.storedId);
    this.state.id = this.store.options.idGenerator.generate();
    return this.state.id;
  }

  async regenerate(destroy = false, lifetime?: number): Promise<boolean> {
    this.requireLocal('regenerate()');
    if (!this.state.started) this.start();
    this.state.locks.assertNotPending('regenerate the session');
    if (lifetime !== undefined) this.setTTL(lifetime);
    // With `destroy`, nothing of the old storage stays addressable once committed (StorageMover).
    if (destroy) this.mover.request(this.state.changes, this.state.meta().storageId, this.state.storedId !== undefined);
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
    this.state.locks.assertNotPending('destroy the session');
    const meta = this.state.meta();
    const handle = handleOf(this.state.storedId ?? this.state.currentKey());
    const ids = [...this.state.changes.retiredIds];
    if (this.state.storedId !== undefined) ids.push(this.state.storedId);
    if (ids.length > 0) {
      const held = this.state.locks.held;
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
        this.state.locks.detach();
        // The session is gone or the error is the caller's; a failed release only leaves the
        // lock to expire (lock.ttl), it must not hide the outcome of the destroy.
        await lock.release().catch(() => false);
      }
      this.store.events.emit({ type: 'destroyed', handle, reason, remote: this.isRemote(), timestamp: Date.now() });
    }
    this.state.reset();
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
    this.state.locks.assertNotPending('store session data');
    assertIdentifier(key, 'session key');
    const raw = this.codec.encode(key, value);
    const counted = this.state.data.assertRoomFor(key, this.state.changes, this.state.storedStorageId);
    if (counted !== undefined) await counted;
    this.state.changes.put(key, raw);
    await this.writeThrough();
  }

  async removeData(key: string): Promise<void> {
    this.requireStarted('remove session data');
    this.state.locks.assertNotPending('remove session data');
    assertIdentifier(key, 'session key');
    this.state.changes.put(key, null);
    await this.writeThrough();
  }

  async getAllData(): Promise<Partial<SessionData>> {
    this.requireStarted('read session data');
    this.state.locks.assertNotPending('read session data');
    const result: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const [key, raw] of await this.state.data.withChanges(this.state.changes, this.state.storedStorageId))
      result[key] = this.codec.decode(raw);
    return result;
  }

  async clear(): Promise<void> {
    this.requireStarted('clear the session');
    this.state.locks.assertNotPending('clear the session');
    for (const key of (await this.state.data.withChanges(this.state.changes, this.state.storedStorageId)).keys())
      this.state.changes.put(key, null);
    await this.writeThrough();
  }

  /**
   * The raw value of `key` as far as it is known without waiting: a change, or what the stored
   * data knows (`SessionStoredData.peek`); else `NOT_LOCAL`.
   */
  private localValue(key: string, operation: string): string | undefined | typeof NOT_LOCAL {
    this.requireStarted(operation);
    this.state.locks.assertNotPending(operation);
    assertIdentifier(key, 'session key');
    const change = this.state.changesIfAny?.valueOf(key);
    if (change !== undefined) return change ?? undefined;
    return this.state.data.peek(key, this.state.storedStorageId);
  }

  // Not async: the read's promise is handed on as it is, without a step of its own.
  private rawValue(key: string, operation: string): Promise<string | undefined> {
    const local = this.localValue(key, operation);
    // One key before the whole session is needed: one plain read of that key (a GET on Redis)
    // instead of loading every entry.
    return local === NOT_LOCAL ? this.state.data.read(this.state.meta().storageId, key) : Promise.resolve(local);
  }

  private loadedData(): Promise<Map<string, string>> {
    return this.state.data.loadAll(this.state.storedStorageId);
  }

  // ---- metadata --------------------------------------------------------------------------

  getLastActivityTimestamp(): number {
    return this.state.meta('get the last activity').lastActivity;
  }

  async addTag(tag: string): Promise<void> {
    assertIdentifier(tag, 'session tag');
    const meta = this.state.meta('tag the session');
    this.state.locks.assertNotPending('tag the session');
    if (!meta.tags.includes(tag)) {
      // maxTagsPerSession counts custom tags: the user tag of bindToUser is the module's own.
      const own = meta.userId === undefined ? undefined : userTag(meta.userId);
      const max = this.store.options.maxTagsPerSession;
      if (meta.tags.filter((t) => t !== own).length >= max) throw SessionLimitExceededException.tooManyTags(tag, max);
    }
    if (!meta.tags.includes(tag)) meta.tags = [...meta.tags, tag];
    this.state.changes.addTag(tag);
    await this.writeThrough();
  }

  async removeTag(tag: string): Promise<void> {
    assertIdentifier(tag, 'session tag');
    const meta = this.state.meta('untag the session');
    this.state.locks.assertNotPending('untag the session');
    meta.tags = meta.tags.filter((t) => t !== tag);
    this.state.changes.removeTag(tag);
    await this.writeThrough();
  }

  getTags(): string[] {
    return [...this.state.meta('get the session tags').tags];
  }

  async touch(): Promise<void> {
    this.state.meta('touch the session');
    this.state.locks.assertNotPending('touch the session');
    this.state.changes.requestTouch();
    await this.writeThrough();
  }

  getName(): string {
    return this.state.cookieName;
  }

  setName(name: string): void {
    if (this.state.started)
      throw new InvalidArgumentException('The session name (cookie name) cannot change after the session has started.');
    if (!isCookieName(name))
      throw new InvalidArgumentException(`Invalid session name ${JSON.stringify(name)}: use cookie token characters.`);
    this.state.cookieName = name;
  }

  setTTL(seconds: number): void {
    if (!Number.isFinite(seconds) || seconds <= 0)
      throw new InvalidArgumentException(`Invalid session lifetime ${seconds}: use a number of seconds > 0.`);
    const meta = this.state.meta('set the session lifetime');
    meta.lifetime = seconds;
    this.state.changes.setField('lifetime', seconds);
  }

  isNew(): boolean {
    this.state.assertAvailable();
    return this.state.storedId === undefined;
  }

  isAnonymous(): boolean {
    this.state.assertAvailable();
    return this.state.metadata?.userId === undefined;
  }

  getUserId(): string | undefined {
    this.state.assertAvailable();
    return this.state.metadata?.userId;
  }

  bindToUser(userId: string): void {
    checkUserId(userId);
    this.requireLocal('bindToUser()');
    if (!this.state.started) this.start();
    const meta = this.state.meta();
    if (meta.userId !== undefined && meta.userId !== userId) {
      const old = userTag(meta.userId);
      meta.tags = meta.tags.filter((t) => t !== old);
      this.state.changes.removeTag(old);
    }
    meta.userId = userId;
    this.state.changes.setField('userId', userId);
    // A login restarts the absolute lifetime and is an authentication (getAuthenticatedAt).
    const now = Date.now();
    this.setMetaField(meta, 'boundAt', now);
    this.setMetaField(meta, 'authenticatedAt', now);
    recordDevice(this.state.origin, this.store.options.ipLock, meta, this.state.changes, true);
    const ipLock = originIpLock(this.state.origin, this.store.options.ipLock);
    if (ipLock !== undefined && meta.ipLock !== ipLock) {
      meta.ipLock = ipLock;
      this.state.changes.setField('ipLock', ipLock);
    }
    const tag = userTag(userId);
    if (!meta.tags.includes(tag)) meta.tags = [...meta.tags, tag];
    this.state.changes.addTag(tag);
    // Fixation defence: a new id and a new storage id, in the same commit. A session never
    // stored has neither to give up: nobody but this request knows its id.
    if (this.mover.request(this.state.changes, meta.storageId, this.state.storedId !== undefined)) this.renewId();
  }

  /**
   * Records that the user has just proved who they are again (re-entered a password, a second
   * factor): `getAuthenticatedAt()` answers now, which `@RequireFreshSession()` checks. Login
   * (`bindToUser`) does this too. Does not extend the absolute lifetime.
   * @throws SessionNotStartedException, OperationNotSupportedException (remote sessions)
   */
  markAuthenticated(): void {
    this.requireLocal('markAuthenticated()');
    const meta = this.state.meta('mark the session authenticated');
    this.state.locks.assertNotPending('mark the session authenticated');
    this.setMetaField(meta, 'authenticatedAt', Date.now());
  }

  /** When the user last logged in or `markAuthenticated()` was called (epoch ms); undefined if never. */
  getAuthenticatedAt(): number | undefined {
    this.state.assertAvailable();
    return this.state.started ? this.state.metadata?.authenticatedAt : undefined;
  }

  private setMetaField<F extends 'boundAt' | 'authenticatedAt'>(
    meta: MutableSessionMetadata,
    field: F,
    value: SessionMetadata[F],
  ): void {
    meta[field] = value;
    this.state.changes.setField(field, value);
  }

  isPermanent(): boolean {
    this.state.assertAvailable();
    return this.state.metadata?.permanent === true;
  }

  setPermanent(permanent: boolean): void {
    const meta = this.state.meta('make the session permanent');
    meta.permanent = permanent;
    this.state.changes.setField('permanent', permanent);
  }

  // ---- bags (Symfony) --------------------------------------------------------------------

  /**
   * Registers a bag instance for this session only (module-wide bags come from the
   * `bags` option and `SessionModule.forFeature`).
   * @throws InvalidArgumentException for a bad storage key or a taken name.
   */
  registerBag(bag: SessionBagInterface): void {
    this.state.bags.register(bag);
  }

  /**
   * A bag by name, loaded on first use in this request (starts the session if needed; a new
   * session is stored only once something is in it). `'attributes'` is the session's own
   * data (the same as `getData`/`putData`).
   * @throws InvalidArgumentException naming the registered bags when `name` is unknown.
   */
  async getBag<T = SessionBagInterface>(name: string): Promise<T> {
    this.state.locks.assertNotPending('use a session bag');
    if (!this.state.started) this.start();
    if (name === 'attributes') {
      await this.loadedData();
      return this.state.bags.attributes(() => this.state.data.loaded ?? new Map<string, string>(), this.state.changes) as T;
    }
    if (name === 'metadata') return this.getMetadataBag() as T;
    return (await this.state.bags.get(name, () => this.loadedData())) as T;
  }

  /** Symfony's metadata bag: created, last used, lifetime; costs no storage entry. */
  getMetadataBag(): MetadataBag {
    this.state.meta('get the metadata bag');
    return new MetadataBag({
      metadata: () => this.state.meta(),
      cookieLifetime: () => this.cookieLifetimeOf(this.state.meta()) ?? 0,
      updateThreshold: () => this.planner.graceOf(this.state.meta()),
      stampNew: (lifetime) => {
        const createdAt = Date.now();
        this.state.meta().createdAt = createdAt;
        this.state.changes.setField('createdAt', createdAt);
        if (lifetime !== undefined) this.setTTL(lifetime);
      },
    });
  }

  // ---- locking (Aerys) -------------------------------------------------------------------

  getLockState(): SessionLockState {
    return this.state.locks.getState();
  }

  /** `open()` with explicit lock options (used by `@SessionLock()`). */
  async open(options?: Partial<LockOptions>): Promise<void> {
    this.state.locks.assertNotPending('open the session');
    if (this.state.locks.getState() === 'locked') return;
    if (!this.state.started) {
      await this.resume();
      // resume() may have started it (the compiler keeps the narrowing across the await).
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      if (!this.state.started) this.start();
    }
    const meta = this.state.meta();
    await this.state.locks.acquire(this.store.lock(meta.storageId, options));
    if (this.state.storedId === undefined) return;
    try {
      // The new fence goes onto the guard before the re-read: a holder whose lock expired (an
      // older fence) can no longer write what this holder would not see and then overwrite.
      // Both are sent in one tick (one round trip); the store applies them in that order.
      const held = this.state.locks.held;
      if (held === undefined) await this.reader.reload(this.state);
      // Both settle before a failure is handled: reload() resets the session when it finds it gone.
      else await settleAll([this.store.assertCurrent(meta.storageId, held.fence), this.reader.reload(this.state)]);
    } catch (error) {
      await this.state.locks.release();
      throw error;
    }
  }

  async read(): Promise<void> {
    this.state.locks.assertNotPending('read the session');
    if (this.state.storedId === undefined) return;
    await this.reader.reload(this.state);
  }

  async unlock(): Promise<void> {
    await this.state.locks.settle();
    await this.reader.discardAndReread(this.state);
  }

  async save(): Promise<void> {
    this.state.locks.assertNotPending('save the session');
    try {
      await this.commit();
    } catch (error) {
      // Aerys: a failed save reloads the old contents; the caller gets the error.
      await this.reader.discardAndReread(this.state);
      throw error;
    }
    await this.state.locks.release();
  }

  /** Releases a lock still held when the request ends (never left behind). */
  async dispose(): Promise<void> {
    await this.state.locks.release();
  }

  // ---- commit (used by the HTTP layer, save() and remote sessions) -----------------------

  /**
   * What the client must learn about the session id, as facts: the HTTP layer turns them into
   * Set-Cookie (also before the commit, for headers that go out first).
   */
  /**
   * @internal The client does not hold this resumed session's id yet (a legacy takeover's
   * parallel request): the response sets the cookie as for a new session.
   */
  issueIdToClient(): void {
    this.state.client.idIssued = true;
  }

  getCookieFacts(): SessionCookieFacts {
    const meta = this.state.started ? this.state.metadata : undefined;
    return {
      id: this.state.id,
      idIssued: this.state.client.idIssued,
      idIssuePending:
        meta !== undefined && this.planner.issuesId(this.state.changesSoFar, meta, this.state.storedId !== undefined, Date.now()),
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
    if (!this.state.locks.isIdle()) return false;
    if (!this.state.started || this.state.metadata === undefined) return true;
    if (this.state.bagsInUse?.isInUse() === true) return false;
    return (
      this.planner.decide(this.state.changesSoFar, this.state.metadata, this.state.storedId !== undefined, Date.now()) ===
      undefined
    );
  }

  /**
   * Writes what changed (see `SessionCommitter.commit`): a snapshot of the changes, then
   * acknowledged, so that a change made while the commit is in flight is kept for the next.
   */
  commit(): Promise<void> {
    return this.committer.commit(this.state);
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

  // ---- helpers ---------------------------------------------------------------------------

  private async writeThrough(): Promise<void> {
    if (this.isRemote()) await this.commit();
  }

  private requireStarted(operation: string): void {
    this.state.assertAvailable();
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
