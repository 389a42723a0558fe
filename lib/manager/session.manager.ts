import { Inject, Injectable, Logger, type BeforeApplicationShutdown } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { assertIdentifier } from '../cache/identifier.js';
import type { BackendEntry } from '../cache/taggable-backend.interface.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { LockTimeoutException } from '../errors/lock-timeout.exception.js';
import type { SessionLock } from '../locking/session-locker.interface.js';
import { SessionContext } from '../session/session.context.js';
import type { SessionInterface } from '../session/session.interface.js';
import { Session } from '../session/session.js';
import { checkUserId } from '../session/session-user-id.js';
import type { SessionMetadata } from '../session/session-metadata.interface.js';
import { ALL_SESSIONS_TAG, SessionStore } from '../session/session.store.js';
import { userTag } from '../session/user-tag.js';
import { handleOf, isHandle, metadataKeyOf, type MetadataKey } from '../session/session-key.js';
import type { RequestGarbageCollector } from './request-garbage-collector.interface.js';
import type { SessionEvent } from '../session/session-events.js';
import { SessionNotAuthenticatedException } from '../errors/session-not-authenticated.exception.js';
import { SessionNotFoundException } from '../errors/session-not-found.exception.js';

/** Sessions loaded per backend round trip when iterating. */
const DEFAULT_PAGE_SIZE = 100;
/** Key of the cluster-wide GC lock in the configured locker (session lock keys never start with `~`). */
const GC_LOCK_KEY = '~gc';
/** The GC lock expires by itself after this long if its holder dies; it is extended per batch. */
const GC_LOCK_TTL_MS = 60_000;
/** Expired sessions taken from the backend at a time within one run. */
const GC_BATCH = 100;
/** Destroy-by-tag repeats its lookup to catch sessions renewed (new id, same tag) meanwhile. */
const DESTROY_PASSES = 3;

/**
 * What `listSessions()` answers per session: its metadata, never its data, storage id or id
 * (the store keeps only a digest of each id; an id is the cookie value, a credential).
 */
export interface SessionInfo {
  /**
   * A short, non-secret name of the session (a digest of its id, never a working cookie): show
   * it, log it, and act on it with `getSessionByHandle()` / `destroySessionByHandle()`
   * ("revoke this device"). It changes when the session's id is renewed (e.g. on login).
   */
  readonly handle: string;
  /** Epoch ms. */
  readonly createdAt: number;
  /** Epoch ms. */
  readonly lastActivity: number;
  /**
   * Epoch ms at which the session expires unless it is used again (the sooner of its inactivity
   * expiry and its absolute end, `absoluteTimeout`).
   */
  readonly expiresAt: number;
  /** Custom tags, including the `user-...` tag of a user-bound session. */
  readonly tags: readonly string[];
  readonly userId?: string;
  readonly permanent: boolean;
  /** Epoch ms of the last login or `markAuthenticated()`; absent for a session never authenticated. */
  readonly authenticatedAt?: number;
  /** The device's user agent (at most 200 characters), recorded at login and refreshed with the metadata. */
  readonly userAgent?: string;
  /** The device's address as an IP-lock prefix (`203.0.113.7`, `2001:db8:0:1::/64`), like `userAgent`. */
  readonly clientAddress?: string;
}

/** One of the current user's sessions (`SessionManager.listUserSessions()`, "my devices"). */
export interface UserSessionInfo extends SessionInfo {
  /** True for the session of the request that asked. */
  readonly current: boolean;
}

/**
 * Sessions seen from outside a request (Flow's `SessionManager`): admin tooling, jobs, "log out
 * everywhere". Sessions it answers are **remote**: every change is written through at once
 * (under the session's lock), and `renewId()`/`regenerate()`/`bindToUser()` throw
 * `OperationNotSupportedException` because the id belongs to another client.
 *
 * Costs follow what is touched, never the total number of sessions: look-ups by tag are
 * O(matches) (loaded in pages), garbage collection is O(expired).
 */
@Injectable()
export class SessionManager implements RequestGarbageCollector, BeforeApplicationShutdown {
  private readonly logger = new Logger('SessionManager');
  private readonly running = new Set<Promise<number>>();
  private closed = false;

  /**
   * Lifecycle events of all sessions of this module: started, renewed, destroyed (with reason),
   * expired (collected), userBound, and one `gc` event per GC run. Emitted synchronously after
   * the store write they report; subscribers must not throw. Completes on app shutdown.
   */
  readonly events$: Observable<SessionEvent>;

  constructor(
    @Inject(SessionStore) private readonly store: SessionStore,
    @Inject(SessionContext) private readonly context: SessionContext,
  ) {
    this.events$ = store.events.events$;
  }

  /**
   * The session of the request being handled (the same object `@CurrentSession()` gives).
   * @throws SessionOutsideRequestException outside a request.
   */
  getCurrentSession(): SessionInterface {
    return this.context.require('get the current session');
  }

  /**
   * Whether there is a current session to use, i.e. whether the injected `SessionInterface`
   * works here: true while an HTTP request, a WebSocket message (`SessionWebSocketAdapter`) or
   * a GraphQL operation is handled, false in cron jobs, queues, scripts and unwrapped gateways.
   * Never throws: for guards, interceptors and services that run in several contexts.
   */
  hasCurrentSession(): boolean {
    return this.context.has();
  }

  /**
   * A remote session by its public id; `undefined` for unknown, malformed, destroyed or expired
   * ids. When it is the current request's own session, its `destroy()` destroys it through the
   * request's session, so that the response expires the cookie.
   */
  async getSession(id: string): Promise<SessionInterface | undefined> {
    if (typeof id !== 'string' || !this.store.options.idGenerator.isValid(id)) return undefined;
    const key = metadataKeyOf(id);
    const current = await this.currentStoredAs(key);
    const metadata = await this.store.loadMetadata(key);
    if (metadata === undefined) return undefined;
    const session = this.remote(id, metadata);
    if (current !== undefined) session.destroy = (reason?: string) => current.destroy(reason);
    return session;
  }

  /**
   * A remote session by its handle (`SessionInfo.handle`, `getHandle()`, events); `undefined`
   * for unknown, malformed, destroyed or expired handles. O(1). Its `getId()` throws (the store
   * keeps no id); everything else works as for `getSession()`, including ending the current
   * request's own session through it. A handle is no credential: check that the caller may act
   * on the session (e.g. that its `getUserId()` is theirs) before changing or destroying it.
   */
  async getSessionByHandle(handle: string): Promise<SessionInterface | undefined> {
    if (!isHandle(handle)) return undefined;
    const found = await this.store.findByHandle(handle);
    if (found === undefined) return undefined;
    const current = await this.currentStoredAs(found.key);
    const session = this.remote({ key: found.key }, found.metadata);
    if (current !== undefined) session.destroy = (reason?: string) => current.destroy(reason);
    return session;
  }

  /**
   * "Revoke this device": destroys the session with `handle` (under its lock) and answers
   * whether there was one. Same checks as `getSessionByHandle()` are the caller's.
   * @throws LockTimeoutException, StoreUnavailableException
   */
  async destroySessionByHandle(handle: string, reason?: string): Promise<boolean> {
    const session = await this.getSessionByHandle(handle);
    if (session === undefined) return false;
    await session.destroy(reason);
    return true;
  }

  /**
   * Every live session as a remote session, loaded `pageSize` at a time. The ids are listed
   * once at the start (a few dozen bytes each); sessions destroyed or expired meanwhile are
   * skipped, sessions started meanwhile are not included.
   */
  getActiveSessions(pageSize = DEFAULT_PAGE_SIZE): AsyncIterable<SessionInterface> {
    return this.sessions(ALL_SESSIONS_TAG, checkPageSize(pageSize));
  }

  /**
   * The live sessions carrying `tag`, loaded `pageSize` at a time; O(matches).
   * @throws InvalidArgumentException for an invalid tag (at once, not on iteration).
   */
  getSessionsByTag(tag: string, pageSize = DEFAULT_PAGE_SIZE): AsyncIterable<SessionInterface> {
    assertIdentifier(tag, 'session tag');
    return this.sessions(SessionStore.customTag(tag), checkPageSize(pageSize));
  }

  /** The live sessions bound to a user (`bindToUser`). @throws InvalidArgumentException */
  async getSessionsForUser(userId: string): Promise<SessionInterface[]> {
    const sessions: SessionInterface[] = [];
    for await (const session of this.sessions(SessionStore.customTag(userTag(checkUserId(userId))), DEFAULT_PAGE_SIZE)) {
      sessions.push(session);
    }
    return sessions;
  }

  /**
   * Metadata of the live sessions (all, those carrying `tag`, or those bound to `userId`),
   * `pageSize` at a time, without loading session objects: for admin listings.
   * @throws InvalidArgumentException for an invalid tag, user id or page size, or both a tag and a user.
   */
  listSessions(options: { tag?: string; userId?: string; pageSize?: number } = {}): AsyncIterable<SessionInfo> {
    let cacheTag = ALL_SESSIONS_TAG;
    if (options.tag !== undefined && options.userId !== undefined) {
      throw new InvalidArgumentException('listSessions() takes a tag or a userId, not both.');
    }
    if (options.tag !== undefined) {
      assertIdentifier(options.tag, 'session tag');
      cacheTag = SessionStore.customTag(options.tag);
    }
    if (options.userId !== undefined) cacheTag = SessionStore.customTag(userTag(checkUserId(options.userId)));
    return this.infos(cacheTag, checkPageSize(options.pageSize ?? DEFAULT_PAGE_SIZE));
  }

  /**
   * Destroys every session carrying `tag` (each under its own lock, briefly) and answers how
   * many were destroyed. Looks again afterwards (up to 3 passes) for sessions that got a new id
   * meanwhile, so none escapes by being renewed during the call. Called from a request whose
   * own session is among them, that session is destroyed as by `Session.destroy()`: the
   * response expires its cookie and the request writes nothing back (also when it renewed its
   * id earlier in the same request: it is recognised by the key it is stored under).
   * @throws the first failure (e.g. `LockTimeoutException` when a session stayed locked longer
   *   than `lock.waitTimeout`) after destroying all others; call again to retry.
   */
  async destroySessionsByTag(tag: string, reason?: string): Promise<number> {
    assertIdentifier(tag, 'session tag');
    return this.destroyTagged(SessionStore.customTag(tag), reason);
  }

  /**
   * "Log out everywhere" (e.g. on a password change): destroys every session bound to the user.
   * Same guarantees and errors as `destroySessionsByTag`.
   */
  async destroySessionsForUser(userId: string, reason?: string): Promise<number> {
    return this.destroyTagged(SessionStore.customTag(userTag(checkUserId(userId))), reason);
  }

  /**
   * "My devices" (ASVS 7.5.2): the sessions of the user the current request's session is bound
   * to, most recently active first, with their device facts and `current: true` on the
   * caller's own. Handles only, never ids. O(sessions of that user).
   * @throws SessionNotAuthenticatedException (401) when the request's session is bound to no user.
   * @throws SessionOutsideRequestException outside a request; StoreUnavailableException.
   */
  async listUserSessions(): Promise<UserSessionInfo[]> {
    const { session, userId } = await this.currentUser('list your sessions');
    const key = session.getStoredKey();
    const own = key === undefined ? undefined : handleOf(key);
    const sessions: UserSessionInfo[] = [];
    for await (const info of this.infos(SessionStore.customTag(userTag(userId)), DEFAULT_PAGE_SIZE)) {
      if (info.userId === userId) sessions.push({ ...info, current: info.handle === own });
    }
    return sessions.sort((a, b) => b.lastActivity - a.lastActivity);
  }

  /**
   * Ends one of the current user's own sessions by its handle (from `listUserSessions()`); the
   * current one too, whose response then expires the cookie.
   * @param reason of the `destroyed` event. @default 'revoked'
   * @throws SessionNotFoundException (404) when the handle names none of the user's live
   *   sessions (unknown, ended, or another user's: nothing happens to that one).
   * @throws SessionNotAuthenticatedException (401), SessionOutsideRequestException,
   *   LockTimeoutException, StoreUnavailableException
   */
  async destroyUserSession(handle: string, reason = 'revoked'): Promise<void> {
    const { userId } = await this.currentUser('end one of your sessions');
    const session = await this.getSessionByHandle(handle);
    if (session === undefined || session.getUserId() !== userId) throw SessionNotFoundException.create();
    await session.destroy(reason);
  }

  /**
   * "Log out other devices" (ASVS 7.4.3, e.g. after a password change): ends every session of
   * the current user except the current one, and answers how many. Same guarantees as
   * `destroySessionsForUser`.
   * @param reason of the `destroyed` events. @default 'revoked'
   * @throws SessionNotAuthenticatedException (401), SessionOutsideRequestException, and the
   *   errors of `destroySessionsByTag`.
   */
  async destroyOtherSessions(reason = 'revoked'): Promise<number> {
    const { session, userId } = await this.currentUser('end your other sessions');
    return this.destroyTagged(SessionStore.customTag(userTag(userId)), reason, session.getStoredKey() ?? null);
  }

  /**
   * One garbage collection run: removes up to `garbageCollection.maximumPerRun` expired
   * sessions (metadata, tag memberships, every data entry) and answers how many. O(expired).
   * Answers 0 at once when another run (in any app instance sharing the locker) holds the GC lock.
   * @throws StoreUnavailableException when the store fails (also logged as a warning).
   */
  async collectGarbage(): Promise<number> {
    if (this.closed) return 0;
    const run = this.runGarbageCollection();
    this.running.add(run);
    try {
      return await run;
    } finally {
      this.running.delete(run);
    }
  }

  /** Rolls `garbageCollection.probability` for one request (used by the HTTP layer). */
  isGarbageCollectionDue(): boolean {
    const probability = this.store.options.garbageCollection.probability;
    return !this.closed && probability > 0 && Math.random() * 100 < probability;
  }

  /**
   * Waits for GC runs in flight, so the backends are not closed under them; no new runs start.
   * Then completes `events$` (events of requests still finishing are dropped).
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.running]);
    this.store.events.complete();
  }

  // ---- internals -------------------------------------------------------------------------

  /** A remote session known by its public id, or (from a listing) by its metadata key only. */
  private remote(address: string | { readonly key: MetadataKey }, metadata: SessionMetadata): Session {
    return Session.fromMetadata(this.store, address, metadata, {
      cookieIds: [],
      cookieName: this.store.options.cookie.name,
      remote: true,
    });
  }

  /**
   * Live sessions with a cache tag, a page at a time: with a backend that pages its tag index
   * (`findIdentifiersByTagPage`), one index page and one `getMany` per page (O(page) in the
   * store; the ids already yielded are remembered to drop a rare repeat); else the key list
   * (O(matches)) first, then `getMany` per page. Entries gone or expired since the listing are
   * skipped. Listings know metadata keys only, never ids.
   */
  private async *pages(cacheTag: string, pageSize: number): AsyncGenerator<Array<readonly [MetadataKey, SessionMetadata]>> {
    const cache = this.store.metadataCache;
    if (cache.pagesTags()) {
      // O(page) per step on backends that page their tag index; `seen` drops the rare repeat.
      const seen = new Set<string>();
      let cursor: string | undefined;
      do {
        const step = await cache.findIdentifiersByTagPage(cacheTag, cursor, pageSize);
        cursor = step.cursor;
        const fresh = step.ids.filter((id) => !seen.has(id) && (seen.add(id), true));
        for (let offset = 0; offset < fresh.length; offset += pageSize) {
          const page = await this.page(fresh.slice(offset, offset + pageSize));
          if (page.length > 0) yield page;
        }
      } while (cursor !== undefined);
      return;
    }
    const ids = await cache.findIdentifiersByTag(cacheTag);
    for (let offset = 0; offset < ids.length; offset += pageSize) {
      const page = await this.page(ids.slice(offset, offset + pageSize));
      if (page.length > 0) yield page;
    }
  }

  /** One `getMany` of metadata keys: the live sessions among them. */
  private async page(pageIds: readonly string[]): Promise<Array<readonly [MetadataKey, SessionMetadata]>> {
    const cache = this.store.metadataCache;
    const raw = await cache.getMany(pageIds);
    const now = Date.now();
    const page: Array<readonly [MetadataKey, SessionMetadata]> = [];
    for (let i = 0; i < pageIds.length; i++) {
      const data = raw[i];
      if (data === undefined) continue;
      const metadata = cache.decode<SessionMetadata>(data);
      if (!this.store.isExpired(metadata, now)) page.push([pageIds[i]! as MetadataKey, metadata]);
    }
    return page;
  }

  private async *sessions(cacheTag: string, pageSize: number): AsyncGenerator<SessionInterface> {
    for await (const page of this.pages(cacheTag, pageSize)) {
      for (const [key, metadata] of page) yield this.remote({ key }, metadata);
    }
  }

  private async *infos(cacheTag: string, pageSize: number): AsyncGenerator<SessionInfo> {
    for await (const page of this.pages(cacheTag, pageSize)) {
      for (const [key, m] of page) {
        yield {
          handle: handleOf(key),
          createdAt: m.createdAt,
          lastActivity: m.lastActivity,
          expiresAt: this.store.expiresAt(m),
          tags: [...m.tags],
          ...(m.userId === undefined ? {} : { userId: m.userId }),
          permanent: m.permanent === true,
          ...(m.authenticatedAt === undefined ? {} : { authenticatedAt: m.authenticatedAt }),
          ...(m.userAgent === undefined ? {} : { userAgent: m.userAgent }),
          ...(m.clientAddress === undefined ? {} : { clientAddress: m.clientAddress }),
        };
      }
    }
  }

  /**
   * The current request's session if it is stored under `key` (resumed first if the request has
   * not used it yet), so that destroying it can end it as `Session.destroy()` does.
   */
  private async currentStoredAs(key: MetadataKey): Promise<Session | undefined> {
    const current = this.context.current();
    if (current === undefined || current.isRemote()) return undefined;
    if (!current.isStarted()) await current.resume().catch(() => undefined);
    return this.isStoredAs(current, key) ? current : undefined;
  }

  /**
   * The current request's session and the user it is bound to (resumed first if needed).
   * @throws SessionOutsideRequestException, SessionNotAuthenticatedException
   */
  private async currentUser(operation: string): Promise<{ session: Session; userId: string }> {
    const session = this.context.require(operation);
    if (!session.isStarted()) await session.resume();
    const userId = session.isStarted() ? session.getUserId() : undefined;
    if (userId === undefined) throw SessionNotAuthenticatedException.create(operation);
    return { session, userId };
  }

  /** `spare`: a metadata key left alone (the caller's own session; null = none). */
  private async destroyTagged(cacheTag: string, reason: string | undefined, spare?: MetadataKey | null): Promise<number> {
    let destroyed = 0;
    const current = this.context.current();
    if (current !== undefined && !current.isRemote() && !current.isStarted()) await current.resume().catch(() => undefined);
    for (let pass = 1; ; pass++) {
      let found = 0;
      const failures: unknown[] = [];
      for await (const all of this.pages(cacheTag, DEFAULT_PAGE_SIZE)) {
        const page = spare === undefined ? all : all.filter(([key]) => key !== spare);
        found += page.length;
        const results = await Promise.allSettled(
          page.map(([key, metadata]) =>
            // The request's own session ends through itself: its response expires the cookie,
            // and a lock it holds is used rather than waited for.
            current !== undefined && this.isStoredAs(current, key)
              ? current.destroy(reason)
              : this.remote({ key }, metadata).destroy(reason),
          ),
        );
        for (const result of results) {
          if (result.status === 'fulfilled') destroyed++;
          else failures.push(result.reason);
        }
      }
      if (found === 0) return destroyed;
      if (pass === DESTROY_PASSES) {
        if (failures.length === 0) return destroyed;
        this.logger.warn(`${failures.length} session(s) could not be destroyed (${describe(failures[0])}); ${destroyed} were.`);
        throw failures[0];
      }
    }
  }

  private isStoredAs(session: Session, key: MetadataKey): boolean {
    return !session.isRemote() && session.isStarted() && !session.isNew() && session.getStoredKey() === key;
  }

  private async runGarbageCollection(): Promise<number> {
    const started = performance.now();
    let lock: SessionLock;
    try {
      lock = await this.store.lock(GC_LOCK_KEY, { waitTimeout: 0, ttl: GC_LOCK_TTL_MS });
    } catch (error) {
      if (error instanceof LockTimeoutException) {
        this.logger.debug('Garbage collection skipped: another run holds the GC lock.');
        return 0;
      }
      this.logger.warn(`Garbage collection failed: ${describe(error)}`);
      throw error;
    }
    const maximum = this.store.options.garbageCollection.maximumPerRun;
    let removed = 0;
    let orphaned = 0;
    try {
      while (removed < maximum) {
        const wanted = Math.min(GC_BATCH, maximum - removed);
        const batch = await this.store.metadataCache.collectGarbage(wanted);
        removed += batch.length;
        const results = await Promise.allSettled(batch.map((entry) => this.removeExpired(entry)));
        orphaned += results.filter((r) => r.status === 'rejected').length;
        if (batch.length < wanted) break;
        if (!(await lock.extend(GC_LOCK_TTL_MS))) {
          this.logger.warn('Garbage collection stopped early: its lock expired (the store is slow); the next run continues.');
          break;
        }
      }
      // Data an earlier run could not flush (it removed the metadata, then failed): found by its
      // expired write guard, which lives as long as the session did.
      const recovered = await this.store.collectOrphanedStorage(Math.min(GC_BATCH, maximum));
      if (recovered > 0) this.logger.log(`Garbage collection removed the leftover data of ${recovered} expired session(s).`);
    } catch (error) {
      this.logger.warn(`Garbage collection failed after removing ${removed} expired session(s): ${describe(error)}`);
      throw error;
    } finally {
      await lock.release().catch(() => false);
    }
    if (orphaned > 0) {
      this.logger.warn(
        `Garbage collection could not remove the data of ${orphaned} expired session(s); it stays stored but unreachable.`,
      );
    }
    this.store.events.emit({ type: 'gc', removed, durationMs: performance.now() - started, timestamp: Date.now() });
    return removed;
  }

  /** Removes the data of a session whose metadata the backend has just collected. */
  private async removeExpired(entry: BackendEntry): Promise<void> {
    let metadata: Partial<SessionMetadata> | undefined;
    try {
      metadata = this.store.metadataCache.decode<Partial<SessionMetadata>>(entry.data);
    } catch {
      metadata = undefined;
    }
    const storageId = metadata?.storageId;
    if (typeof storageId === 'string' && storageId.length > 0) {
      // Another live id may share this storage (a renewal whose removal of the old id failed):
      // then the data is still in use and only the expired id goes.
      const owners = await this.store.metadataCache.findIdentifiersByTag(SessionStore.storageOwnerTag(storageId));
      if (owners.length === 0) await this.store.storageCache.flushByTag(storageId);
    }
    this.store.events.emit({ type: 'expired', handle: handleOf(entry.id), userId: metadata?.userId, timestamp: Date.now() });
  }
}

function checkPageSize(pageSize: number): number {
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) {
    throw new InvalidArgumentException(`Invalid page size ${String(pageSize)}: use a whole number >= 1.`);
  }
  return pageSize;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
