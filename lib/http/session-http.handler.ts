import { Logger } from '@nestjs/common';
import { SessionError } from '../errors/session.error.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { Session } from '../session/session.js';
import type { SessionContext } from '../session/session.context.js';
import type { SessionStore } from '../session/session.store.js';
import type { RequestGarbageCollector } from '../manager/request-garbage-collector.interface.js';
import { readSessionCookies, serializeSessionCookie } from './session-cookie.js';
import { cookieAfterCommit, cookieBeforeCommit, type CookieAction } from './session-cookie.policy.js';
import type { LegacySessionTakeover } from './legacy-session.takeover.js';
import { readSessionIdHeader } from './session-id-header.js';
import { sessionResponseHeaders, type SessionResponseHeader } from './session-response-headers.js';

/** What the adapters know about a request, framework-neutral. */
export interface HttpRequestInfo {
  readonly cookieHeader: string | string[] | undefined;
  /** Client address as the framework sees it. */
  readonly ip: string | undefined;
  /** The User-Agent header (for the device list, `SessionManager.listUserSessions()`). */
  readonly userAgent?: string | undefined;
  /** The value of the `idHeader` (see `SessionHttpHandler.idHeaderOf`); undefined = not sent. */
  readonly idHeader?: string | string[] | undefined;
}

/** An error turned into an HTTP answer. */
export interface HttpErrorAnswer {
  readonly status: number;
  readonly body: string;
}

/**
 * The one commit routine under both HTTP adapters: resume from the cookie before the handler,
 * commit and compute Set-Cookie before the response headers go out.
 *
 * Resume is eager, its failure is not (issue 11, "lazy resume"). The metadata read still runs
 * before the handler, because the session's synchronous getters (`isStarted()`, `getId()`,
 * `getTags()`, `isNew()`, `getUserId()`, ...) must answer from the first line of a handler
 * (`if (!session.isStarted())` is the usual opening) and cannot wait for a read; a truly lazy
 * resume would change that API. But when that read fails because the store is down
 * (`StoreUnavailableException`), the request is not failed: the session is marked unavailable
 * (`Session.markUnavailable`), the handler runs, and only code that uses the session (any
 * getter, `start()`, data, bags, `@SessionLock()`, `@CurrentSession()` calls) throws that
 * error, which Nest answers with the generic 503. A route that never touches the session
 * (a health check, a 404, static content) answers normally, and its response carries no
 * Set-Cookie (an untouched session commits nothing). Each request starts over, so nothing is
 * left to recover once the store is back. Any other resume error still fails the request.
 */
export class SessionHttpHandler {
  private readonly logger = new Logger('SessionHttp');
  /** Sessions of requests in header mode (option `idHeader`); any other request is in cookie mode. */
  private readonly headerMode = new WeakSet<Session>();

  constructor(
    /** The store whose sessions this handler begins and finishes. */
    readonly store: SessionStore,
    readonly context: SessionContext,
    private readonly gc?: RequestGarbageCollector,
    /** Takes express-session users over (option `legacy`); absent when it is off. */
    private readonly legacy?: LegacySessionTakeover,
  ) {}

  /**
   * Creates the request's session and resumes it when the request carries a well-formed
   * cookie (then asynchronously). Unknown, expired or malformed ids are never adopted. A
   * store that cannot be read leaves the session unavailable instead of failing the request
   * (see the class comment); the failure is logged once per request, without the id.
   * @throws any other resume failure (as a rejection).
   */
  begin(request: HttpRequestInfo): Session | Promise<Session> {
    const options = this.store.options;
    // Header mode: the id comes from the header only, whatever cookies the request carries.
    const fromHeader = options.idHeader === undefined ? undefined : readSessionIdHeader(request.idHeader, this.isValidId);
    const ids = fromHeader ?? readSessionCookies(request.cookieHeader, options.cookie.name, this.isValidId);
    const session = new Session(this.store, {
      cookieIds: ids,
      cookieName: options.cookie.name,
      clientIp: request.ip,
      userAgent: request.userAgent,
    });
    if (fromHeader !== undefined) this.headerMode.add(session);
    // No cookie, no I/O: answered synchronously so anonymous requests wait for nothing.
    if (ids.length === 0)
      return this.legacy === undefined || fromHeader !== undefined ? session : this.takeOverLegacy(session, request);
    // An in-process store answers at once: no promise chain before the handler.
    try {
      if (session.resumeSync()) return session;
    } catch (error) {
      if (!(error instanceof StoreUnavailableException)) throw error;
      this.unavailable(session, error, ids);
      return session;
    }
    return session.resume().then(
      () => session,
      (error: unknown) => {
        if (!(error instanceof StoreUnavailableException)) throw error;
        this.unavailable(session, error, ids);
        return session;
      },
    );
  }

  /** The store could not be read: the request goes on without its session (see the class comment). */
  private unavailable(session: Session, error: StoreUnavailableException, ids: readonly string[]): void {
    session.markUnavailable(error);
    this.logger.warn(
      `${withoutIds(error.message, ids)} The request goes on without its session; code that uses it fails with this error (503).`,
    );
  }

  /** A request with a signed legacy cookie (option `legacy`) gets its legacy session; any other, none. */
  private takeOverLegacy(session: Session, request: HttpRequestInfo): Session | Promise<Session> {
    const sid = this.legacy!.legacyId(request.cookieHeader);
    if (sid === undefined) return session;
    // A parallel request took it over: this one gets that session, as if it had sent its cookie.
    const follow = (id: string) =>
      new Session(this.store, {
        cookieIds: [id],
        cookieName: this.store.options.cookie.name,
        clientIp: request.ip,
        userAgent: request.userAgent,
      });
    return this.legacy!.takeOver(session, sid, follow).catch((error: unknown) => {
      if (!(error instanceof StoreUnavailableException)) throw error;
      session.markUnavailable(error);
      this.logger.warn(`${withoutIds(error.message, [sid])} The request goes on without its session (503 where it is used).`);
      return session;
    });
  }

  private readonly isValidId = (id: string): boolean => this.store.options.idGenerator.isValid(id);

  /**
   * Finishes an idle session (nothing to write and no lock, see `Session.isIdle`, and no
   * cookie to send) synchronously and answers true; answers false when `finish` must run.
   */
  finishIfIdle(session: Session): boolean {
    if (!session.isIdle() || cookieAfterCommit(session.getCookieFacts()).kind !== 'none') return false;
    if (this.legacy?.mustExpireCookie(session) === true) return false;
    this.maybeCollectGarbage();
    return true;
  }
  /**
   * Commits the session and answers the Set-Cookie value to send, if any. Any lock still
   * held is released, whatever happens.
   */
  async finish(session: Session, secure: boolean): Promise<string | string[] | undefined> {
    const instrumentation = this.store.options.instrumentation;
    const started = instrumentation?.commit === undefined ? 0 : performance.now();
    try {
      await session.commit();
      instrumentation?.commit?.(performance.now() - started, 'ok');
    } catch (error) {
      instrumentation?.commit?.(performance.now() - started, 'error', (error as { name?: string } | null)?.name ?? 'Error');
      throw error;
    } finally {
      await session.dispose();
    }
    this.maybeCollectGarbage();
    return this.cookieHeader(session, cookieAfterCommit(session.getCookieFacts()), secure);
  }

  private maybeCollectGarbage(): void {
    if (this.gc?.isGarbageCollectionDue()) {
      // Fire and forget: runs once the response has gone out, never delaying it.
      const gc = this.gc;
      setImmediate(() => void gc.collectGarbage().catch(() => undefined));
    }
  }

  /**
   * The `idHeader` value of a request's headers (Node's lower-case names), for
   * `HttpRequestInfo.idHeader`; undefined when the option is off or the header absent.
   */
  idHeaderOf(headers: Readonly<Record<string, string | string[] | undefined>>): string | string[] | undefined {
    const name = this.store.options.idHeader;
    return name === undefined ? undefined : headers[name];
  }

  /**
   * Headers besides Set-Cookie the response carries once `finish` has run (`predicted`: for
   * headers that go out before the commit): `Cache-Control: no-store` when an id is handed out
   * or expired, the id header in header mode, `Clear-Site-Data` (see `sessionResponseHeaders`).
   */
  responseHeaders(session: Session, predicted = false): readonly SessionResponseHeader[] {
    const facts = session.getCookieFacts();
    const action = predicted ? cookieBeforeCommit(facts) : cookieAfterCommit(facts);
    return sessionResponseHeaders(action, this.headerMode.has(session) ? 'header' : 'cookie', this.store.options);
  }

  private cookieHeader(session: Session, action: CookieAction, secure: boolean): string | string[] | undefined {
    // Header mode never gets a cookie: its id travels in the id header (responseHeaders).
    if (this.headerMode.has(session)) return undefined;
    const ours = this.sessionCookie(session, action, secure);
    // A taken-over legacy session's response also expires the legacy cookie (unless it has our
    // cookie's name: then our Set-Cookie replaces it).
    if (this.legacy?.mustExpireCookie(session) !== true || this.legacy.options.cookie.name === session.getName()) return ours;
    const expiry = this.legacy.expiryCookie(secure);
    return ours === undefined ? expiry : [ours, expiry];
  }

  private sessionCookie(session: Session, action: CookieAction, secure: boolean): string | undefined {
    const cookie = this.store.options.cookie;
    if (action.kind === 'set') return serializeSessionCookie(cookie, session.getName(), action.id, action.maxAge, secure);
    if (action.kind === 'clear') return serializeSessionCookie(cookie, session.getName(), undefined, undefined, secure);
    return undefined;
  }

  /** Set-Cookie for headers that go out before the commit (streamed responses). */
  predictCookie(session: Session, secure: boolean): string | string[] | undefined {
    return this.cookieHeader(session, cookieBeforeCommit(session.getCookieFacts()), secure);
  }

  /** Status and JSON body for an error raised by `begin` or `finish`. */
  answerFor(error: unknown): HttpErrorAnswer {
    if (error instanceof SessionError) {
      // The same body Nest's exception layer sends (generic for a 500 in production), logged once for >= 500.
      return { status: error.httpStatus, body: JSON.stringify(error.getResponse()) };
    }
    this.logger.error(`Session handling failed: ${(error as { stack?: string } | null | undefined)?.stack ?? String(error)}`);
    return {
      status: 500,
      body: JSON.stringify({ statusCode: 500, error: 'Internal Server Error', message: 'Session handling failed.' }),
    };
  }
}

/** `message` with every candidate id of the request blanked out: ids never reach the log. */
function withoutIds(message: string, ids: readonly string[]): string {
  let clean = message;
  for (const id of ids) clean = clean.split(id).join('<id>');
  return clean;
}
