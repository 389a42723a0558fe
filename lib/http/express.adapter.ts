import type { IncomingMessage, ServerResponse } from 'node:http';
import { Session } from '../session/session.js';
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

/**
 * Express middleware: resumes the session before the route runs (inside AsyncLocalStorage),
 * and holds back `res.end` until the commit has finished so the Set-Cookie header (or a 503)
 * goes out with the response on every path: normal return, thrown exception, `@Res()`, guard
 * rejection and 404. For responses streamed before `end`, the cookie is set when the headers
 * are written and the commit completes before the stream ends.
 */
export function createExpressSessionMiddleware(handler: SessionHttpHandler) {
  const context = handler.context;
  return function sessionMiddleware(req: ExpressRequest, res: ServerResponse, next: Next): void {
    // Plain values, read once: an object literal with getters costs more than Express's getters.
    const secure = req.secure === true;
    const proceed = (session: Session): void => {
      req[SESSION_REQUEST_KEY] = session;
      hookResponse(res, session, handler, secure);
      if (context.runsHttpRequests) context.run(session, next);
      else next();
    };
    let begun: Session | Promise<Session>;
    try {
      begun = handler.begin({
        cookieHeader: req.headers.cookie,
        secure,
        ip: req.ip,
        userAgent: req.headers['user-agent'],
        idHeader: handler.idHeaderOf(req.headers),
      });
    } catch (error) {
      fail(res, handler, error);
      return;
    }
    if (begun instanceof Session) proceed(begun);
    else begun.then(proceed, (error: unknown) => fail(res, handler, error));
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

function hookResponse(res: ServerResponse, session: Session, handler: SessionHttpHandler, secure: boolean): void {
  const originalEnd = res.end.bind(res);
  const originalWriteHead = res.writeHead.bind(res);
  let finishing = false;

  // Headers written before end() (streaming): send the cookie the commit will make valid.
  res.writeHead = function writeHead(this: ServerResponse, ...args: unknown[]) {
    if (!finishing && !res.headersSent) {
      const cookie = handler.predictCookie(session, secure);
      if (cookie !== undefined) res.appendHeader('set-cookie', cookie);
      setSessionHeaders(res, handler.responseHeaders(session, true));
    }
    return (originalWriteHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  };

  res.end = function end(this: ServerResponse, ...args: EndArgs): ServerResponse {
    if (finishing) return (originalEnd as (...a: EndArgs) => ServerResponse).apply(this, args);
    finishing = true;
    // Nothing to write and no cookie: end now, without waiting a tick.
    if (handler.finishIfIdle(session)) return (originalEnd as (...a: EndArgs) => ServerResponse).apply(this, args);
    // Typed, so TypeScript does not take `!streamed` below as proof that `res.headersSent` is still false.
    const streamed: boolean = res.headersSent;
    handler.finish(session, secure).then(
      (cookie) => {
        if (!streamed && !res.headersSent) {
          if (cookie !== undefined) res.appendHeader('set-cookie', cookie);
          setSessionHeaders(res, handler.responseHeaders(session));
        }
        (originalEnd as (...a: EndArgs) => ServerResponse).apply(res, args);
      },
      (error: unknown) => {
        const answer = handler.answerFor(error);
        if (res.headersSent) {
          (originalEnd as (...a: EndArgs) => ServerResponse).apply(res, args);
          return;
        }
        for (const name of res.getHeaderNames()) res.removeHeader(name);
        res.statusCode = answer.status;
        res.setHeader('content-type', 'application/json; charset=utf-8');
        res.setHeader('content-length', Buffer.byteLength(answer.body));
        (originalEnd as (chunk: string) => ServerResponse).call(res, answer.body);
      },
    );
    return res;
  } as ServerResponse['end'];

  // No 'close' listener per request: a handler whose client went away still ends the response
  // (Node accepts end() on a closed socket), which commits and releases; a handler that never
  // ends leaves its lock to expire after lock.ttl.
}
