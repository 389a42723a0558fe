import { ServerResponse, type IncomingMessage } from 'node:http';
import { Session } from '../session/session.js';
import type { SessionStore } from '../session/session.store.js';
import type { SessionHttpHandler } from './session-http.handler.js';
import type { SessionResponseHeader } from './session-response-headers.js';
import { SESSION_REQUEST_KEY } from '../session/session-request.key.js';

/** The parts of an Express request the adapter reads (`secure` and `ip` honour `trust proxy`). */
interface ExpressRequest extends IncomingMessage {
  secure?: boolean;
  ip?: string;
  [SESSION_REQUEST_KEY]?: Session;
}

type Next = (error?: unknown) => void;
type EndArgs = Parameters<ServerResponse['end']>;
type End = (this: ServerResponse, ...args: EndArgs) => ServerResponse;
type WriteHead = (this: ServerResponse, ...args: unknown[]) => ServerResponse;

/**
 * The HTTP handler of each store whose sessions the response hooks finish (one per
 * SessionModule; weak, so a closed app's handler goes with its store).
 */
const handlers = new WeakMap<SessionStore, SessionHttpHandler>();

/**
 * Express middleware: resumes the session before the route runs (inside AsyncLocalStorage
 * where something reads it), and holds back `res.end` until the commit has finished so the
 * Set-Cookie header (or a 503) goes out with the response on every path: normal return, thrown
 * exception, `@Res()`, guard rejection and 404. For responses streamed before `end`, the
 * cookie is set when the headers are written and the commit completes before the stream ends.
 *
 * The hold-back lives on `http.ServerResponse.prototype` (installed once per process, see
 * `installResponseHooks`), not on each response: Express gives every request's objects a new
 * prototype, so each own property a middleware adds to `res` costs V8 a map migration (two
 * wrappers took ~4% of an anonymous Express request's instructions, counted with callgrind). The middleware
 * only attaches the session to `req`, where the hooks find it through `res.req`. A response
 * that already carries an `end` of its own (a middleware before this one wrapped it, e.g.
 * compression) or is not an `http.ServerResponse` gets per-response wrappers, so that the
 * session is still committed before anything an earlier wrapper does.
 */
export function createExpressSessionMiddleware(handler: SessionHttpHandler) {
  installResponseHooks();
  handlers.set(handler.store, handler);
  const context = handler.context;
  const proceed = (req: ExpressRequest, res: ServerResponse, next: Next, session: Session): void => {
    req[SESSION_REQUEST_KEY] = session;
    const covered = res instanceof ServerResponse;
    if (!covered || Object.prototype.hasOwnProperty.call(res, 'end')) hookResponse(res, req, session, handler, !covered);
    if (context.runsHttpRequests) context.run(session, next);
    else next();
  };
  return function sessionMiddleware(req: ExpressRequest, res: ServerResponse, next: Next): void {
    let begun: Session | Promise<Session>;
    try {
      // Plain values (an object literal with getters costs more than Express's getters); the
      // protocol is read only when a cookie is written.
      begun = handler.begin({
        cookieHeader: req.headers.cookie,
        ip: req.ip,
        userAgent: req.headers['user-agent'],
        idHeader: handler.idHeaderOf(req.headers),
      });
    } catch (error) {
      fail(res, handler, error);
      return;
    }
    if (begun instanceof Session) proceed(req, res, next, begun);
    else
      begun.then(
        (session) => proceed(req, res, next, session),
        (error: unknown) => fail(res, handler, error),
      );
  };
}

function fail(res: ServerResponse, handler: SessionHttpHandler, error: unknown): void {
  const answer = handler.answerFor(error);
  res.statusCode = answer.status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.end(answer.body);
}

/** The session's headers besides Set-Cookie (`SessionHttpHandler.responseHeaders`). */
function setSessionHeaders(res: ServerResponse, headers: readonly SessionResponseHeader[]): void {
  for (const header of headers) if (!header.unlessSet || !res.hasHeader(header.name)) res.setHeader(header.name, header.value);
}

function isSecure(req: ExpressRequest): boolean {
  return req.secure === true;
}

/** The handler of a session still attached to its request (not finishing yet), if this copy of the module runs it. */
function handlerOf(session: Session | undefined): SessionHttpHandler | undefined {
  return session === undefined ? undefined : handlers.get(session.store);
}

/** Headers written before end() (streaming): the cookie the commit will make valid. */
function predictHeaders(res: ServerResponse, session: Session, handler: SessionHttpHandler, secure: boolean): void {
  const cookie = handler.predictCookie(session, secure);
  if (cookie !== undefined) res.appendHeader('set-cookie', cookie);
  setSessionHeaders(res, handler.responseHeaders(session, true));
}

/**
 * Ends the response once the session is committed (Set-Cookie, or the error's answer, set
 * first); the caller has detached the session from the request, so `end` reaches the socket.
 */
function finishThenEnd(
  res: ServerResponse,
  req: ExpressRequest,
  session: Session,
  handler: SessionHttpHandler,
  end: (args: EndArgs) => void,
  args: EndArgs,
): void {
  // Nothing to write and no cookie: end now, without waiting a tick.
  if (handler.finishIfIdle(session)) {
    end(args);
    return;
  }
  // Typed, so TypeScript does not take `!streamed` below as proof that `res.headersSent` is still false.
  const streamed: boolean = res.headersSent;
  const secure = isSecure(req);
  handler.finish(session, secure).then(
    (cookie) => {
      if (!streamed && !res.headersSent) {
        if (cookie !== undefined) res.appendHeader('set-cookie', cookie);
        setSessionHeaders(res, handler.responseHeaders(session));
      }
      end(args);
    },
    (error: unknown) => {
      const answer = handler.answerFor(error);
      if (res.headersSent) {
        end(args);
        return;
      }
      for (const name of res.getHeaderNames()) res.removeHeader(name);
      res.statusCode = answer.status;
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.setHeader('content-length', Buffer.byteLength(answer.body));
      end([answer.body] as unknown as EndArgs);
    },
  );
}

let hooksInstalled = false;

/**
 * Wraps `end` and `writeHead` of `http.ServerResponse.prototype`, once per process (per copy
 * of this module). Responses whose request carries no session of a live handler pass straight
 * through (a property read). `end` calls whatever `OutgoingMessage.prototype.end` is at the
 * time, so patches made there later (APM agents) still run.
 */
function installResponseHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const proto = ServerResponse.prototype as unknown as { end: End; writeHead: WriteHead };
  const parent = Object.getPrototypeOf(ServerResponse.prototype) as { end: End };
  const ownEnd = Object.prototype.hasOwnProperty.call(proto, 'end') ? proto.end : undefined;
  const superEnd = (res: ServerResponse, args: EndArgs): ServerResponse => (ownEnd ?? parent.end).apply(res, args);
  const previousWriteHead = proto.writeHead;

  proto.writeHead = function writeHead(this: ServerResponse, ...args: unknown[]): ServerResponse {
    const req = this.req as ExpressRequest | undefined;
    const session = req?.[SESSION_REQUEST_KEY];
    const handler = this.headersSent ? undefined : handlerOf(session);
    if (handler !== undefined) predictHeaders(this, session!, handler, isSecure(req!));
    return previousWriteHead.apply(this, args);
  };

  proto.end = function end(this: ServerResponse, ...args: EndArgs): ServerResponse {
    const req = this.req as ExpressRequest | undefined;
    const session = req?.[SESSION_REQUEST_KEY];
    const handler = handlerOf(session);
    if (handler === undefined) return superEnd(this, args);
    // Detached first: the deferred end (and a second end() call) passes straight through.
    req![SESSION_REQUEST_KEY] = undefined;
    finishThenEnd(this, req!, session!, handler, (a) => superEnd(this, a), args);
    return this;
  } as End;
}

/**
 * Per-response wrappers, for a response the prototype hooks do not cover first: one whose
 * `end` an earlier middleware wrapped (the commit must come before that wrapper's work), or
 * one that is not an `http.ServerResponse`.
 */
function hookResponse(
  res: ServerResponse,
  req: ExpressRequest,
  session: Session,
  handler: SessionHttpHandler,
  /** Not an `http.ServerResponse`: the prototype's writeHead hook does not run for it either. */
  foreign: boolean,
): void {
  const originalEnd = (res as unknown as { end: End }).end;
  if (foreign) {
    // The prototype's writeHead hook does not run for it: its own, until the end begins.
    const originalWriteHead = (res as unknown as { writeHead: WriteHead }).writeHead;
    (res as { writeHead: WriteHead }).writeHead = function writeHead(this: ServerResponse, ...args: unknown[]) {
      if (req[SESSION_REQUEST_KEY] === session && !res.headersSent) predictHeaders(res, session, handler, isSecure(req));
      return originalWriteHead.apply(this, args);
    };
  }
  res.end = function end(this: ServerResponse, ...args: EndArgs): ServerResponse {
    if (req[SESSION_REQUEST_KEY] !== session) return originalEnd.apply(this, args);
    req[SESSION_REQUEST_KEY] = undefined;
    finishThenEnd(res, req, session, handler, (a) => originalEnd.apply(res, a), args);
    return res;
  } as ServerResponse['end'];

  // No 'close' listener per request: a handler whose client went away still ends the response
  // (Node accepts end() on a closed socket), which commits and releases; a handler that never
  // ends leaves its lock to expire after lock.ttl.
}
