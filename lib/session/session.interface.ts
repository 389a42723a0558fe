import type { SessionData, SessionLockState } from './session-data.interface.js';
import type { SessionBagInterface } from '../bags/session-bag.interface.js';
import type { MetadataBag } from '../bags/metadata.bag.js';

/**
 * The session of the current request (or a remote session from `SessionManager`), with Neos
 * Flow's API, Symfony's storage names and Aerys' explicit locking. Inject it with
 * `@Inject(SessionInterface)` into any provider or controller (they stay singletons), or take
 * it as a handler parameter with `@CurrentSession()`.
 *
 * Values are copied when stored: change an object you got from `getData` and `putData` it
 * again to keep the change.
 */
export interface SessionInterface {
  /** Whether the session was started or resumed in this request. */
  isStarted(): boolean;
  /** Whether this is a session loaded by `SessionManager` rather than the current request's. */
  isRemote(): boolean;
  /** Starts a new session if none is started; no I/O (an anonymous session is stored once it has data). */
  start(): void;
  /** Whether the request carries the cookie of a live session (not expired, not destroyed). */
  canBeResumed(): Promise<boolean>;
  /**
   * Resumes the session named by the request's cookie; answers its last-activity time (ms), or
   * `undefined` when there is none to resume. Called automatically before your handler runs.
   */
  resume(): Promise<number | undefined>;
  /**
   * The public session id (the cookie value): a credential.
   * @throws SessionNotStartedException, OperationNotSupportedException (a remote session found
   *   by a listing, tag or user: the store keeps only a digest of its id; use `getHandle()`)
   */
  getId(): string;
  /**
   * A short, non-secret digest naming the session in listings (`SessionInfo.handle`), events
   * and logs, and for `SessionManager.getSessionByHandle()`; never a working cookie. Changes
   * with the id. @throws SessionNotStartedException
   */
  getHandle(): string;
  /**
   * Gives the session a new id (fixation defence, e.g. after login) keeping its data; the old
   * id is dead once the request commits. Costs O(1) whatever the data size.
   * @throws SessionNotStartedException, OperationNotSupportedException (remote sessions)
   */
  renewId(): string;
  /** @throws SessionNotStartedException, InvalidArgumentException (bad key) */
  getData<K extends keyof SessionData & string>(key: K): Promise<SessionData[K] | undefined>;
  /** @throws SessionNotStartedException, InvalidArgumentException (bad key) */
  hasKey(key: string): Promise<boolean>;
  /**
   * Stores a value (serialized now, written at commit).
   * @throws SessionNotStartedException, InvalidArgumentException (bad key),
   *   DataNotSerializableException (functions, symbols, class instances, cycles)
   */
  putData<K extends keyof SessionData & string>(key: K, value: SessionData[K]): Promise<void>;
  /** Removes a key. @throws SessionNotStartedException, InvalidArgumentException */
  removeData(key: string): Promise<void>;
  /** All data of the session as a plain object. @throws SessionNotStartedException */
  getAllData(): Promise<Partial<SessionData>>;
  /** Removes all data (Symfony `clear`); tags, user binding and id stay. @throws SessionNotStartedException */
  clear(): Promise<void>;
  /** Last activity time in ms since the epoch. @throws SessionNotStartedException */
  getLastActivityTimestamp(): number;
  /** Tags the session (Flow). @throws SessionNotStartedException, InvalidArgumentException (not a valid tag) */
  addTag(tag: string): Promise<void>;
  /** @throws SessionNotStartedException, InvalidArgumentException */
  removeTag(tag: string): Promise<void>;
  /** @throws SessionNotStartedException */
  getTags(): string[];
  /** Marks the session active now, bypassing the update grace period. @throws SessionNotStartedException */
  touch(): Promise<void>;
  /** Writes pending changes now and ends the session for this request (Flow `close`). */
  close(): Promise<void>;
  /** Destroys the session now (data, metadata, tags) and expires the cookie. @throws SessionNotStartedException */
  destroy(reason?: string): Promise<void>;
  /** Cookie name (Symfony `getName`). */
  getName(): string;
  /** Sets the cookie name for this request, before the session starts. @throws InvalidArgumentException */
  setName(name: string): void;
  /**
   * Symfony `regenerate`/`migrate`: a new id; with `destroy` also a new storage so nothing of
   * the old session remains addressable. `lifetime` (seconds) sets the session lifetime.
   * @throws SessionNotStartedException, OperationNotSupportedException (remote sessions)
   */
  regenerate(destroy?: boolean, lifetime?: number): Promise<boolean>;
  /** Writes pending changes now (under the session lock) and releases a lock taken by `open()`. */
  save(): Promise<void>;

  // Aerys locking
  /** `unlocked`, `locked` (after `open()`) or `pending` (while `open()` waits). */
  getLockState(): SessionLockState;
  /**
   * Takes the session lock and then reads fresh data, for a read-modify-write that no other
   * request can interleave with; `save()` writes and unlocks, `unlock()` discards.
   * @throws LockTimeoutException (HTTP 423), LockException (already pending), SessionDestroyedException
   */
  open(): Promise<void>;
  /** Re-reads the stored data without locking (pending changes stay on top). */
  read(): Promise<void>;
  /** Discards pending changes, releases the lock and re-reads. Allowed while pending. */
  unlock(): Promise<void>;
  /** Sets this session's lifetime (seconds of inactivity before it expires; also the Max-Age of a permanent session's cookie). */
  setTTL(seconds: number): void;

  // TYPO3 user sessions
  /** True until the session has been stored (TYPO3 `isNew`). */
  isNew(): boolean;
  /** Whether the session is bound to no user. */
  isAnonymous(): boolean;
  /** The bound user's id, or undefined. */
  getUserId(): string | undefined;
  /**
   * Binds the session to a user: renews the id (fixation defence) and tags it by user so
   * `SessionManager.destroySessionsForUser()` finds it. Starts the session if needed.
   * @throws InvalidArgumentException (empty user id), OperationNotSupportedException (remote sessions)
   */
  bindToUser(userId: string): void;
  /**
   * Records that the user has just authenticated again (re-entered a password, a second factor;
   * ASVS 7.5.1): `getAuthenticatedAt()` answers now. `bindToUser()` does it too. Does not extend
   * the absolute lifetime (`absoluteTimeout`).
   * @throws SessionNotStartedException, OperationNotSupportedException (remote sessions)
   */
  markAuthenticated(): void;
  /**
   * When the user last logged in (`bindToUser`) or `markAuthenticated()` was called, in ms since
   * the epoch; undefined for a session that never was. `@RequireFreshSession(maxAgeSeconds)` checks it.
   */
  getAuthenticatedAt(): number | undefined;
  /** Whether the session gets a time-based cookie. */
  isPermanent(): boolean;
  // Symfony bags
  /** Registers a bag for this session only. @throws InvalidArgumentException (bad storage key, taken name) */
  registerBag(bag: SessionBagInterface): void;
  /**
   * A bag by name, loaded on first use in the request (`'flashes'` by default, `'attributes'`
   * for the session's own data, `'metadata'`, and every registered bag). Starts the session.
   * @throws InvalidArgumentException naming the registered bags when the name is unknown.
   */
  getBag<T = SessionBagInterface>(name: string): Promise<T>;
  /** Created / last used / lifetime of the session. @throws SessionNotStartedException */
  getMetadataBag(): MetadataBag;

  /** Makes the session permanent (time-based cookie, Max-Age = its lifetime) or not. @throws SessionNotStartedException */
  setPermanent(permanent: boolean): void;
}

/** Injection token of the current request's session: `@Inject(SessionInterface) session: SessionInterface`. */
export const SessionInterface = Symbol('SessionInterface');
