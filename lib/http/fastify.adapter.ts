import { Session } from '../session/session.js';
import type { SessionHttpHandler } from './session-http.handler.js';
import { SESSION_REQUEST_KEY } from '../session/session-request.key.js';

/** The parts of Fastify's request, reply and instance the adapter uses (no runtime import). */
interface FastifyRequestLike {
  headers: Record<string, string | string[] | undefined>;
  /** Node's request, which Nest middleware on Fastify gets. */
  raw: { [SESSION_MOUNTED]?: boolean };
  protocol: string;
  ip: string;
  [SESSION_REQUEST_KEY]?: Session;
}
interface FastifyReplyLike {
  code(status: number): FastifyReplyLike;
  header(name: string, value: string | string[]): FastifyReplyLike;
  hasHeader(name: string): boolean;
  send(payload: unknown): FastifyReplyLike;
}
type Done = (error?: Error) => void;
export interface FastifyInstanceLike {
  addHook(
    name: 'onRequest' | 'preHandler',
    hook: (request: FastifyRequestLike, reply: FastifyReplyLike, done: Done) => void,
  ): unknown;
  addHook(
    name: 'onSend',
    hook: (
      request: FastifyRequestLike,
      reply: FastifyReplyLike,
      payload: unknown,
      done: (error: Error | null, payload?: unknown) => void,
    ) => void,
  ): unknown;
  addHook(name: 'onRequestAbort', hook: (request: FastifyRequestLike) => Promise<void>): unknown;
}

/**
 * Fastify hooks: `onRequest` resumes the session; `preHandler` runs the handler inside
 * AsyncLocalStorage (after body parsing, whose stream events would lose the context), when
 * something reads it (`SessionContext.runsHttpRequests`, decided before the hooks are installed);
 * `onSend`, which runs for every reply including `@Res()`, 404s and errors, commits and sets
 * the cookie through the reply (a raw `setHeader` can be dropped by Fastify).
 */
export function installFastifySessionHooks(
  instance: FastifyInstanceLike,
  handler: SessionHttpHandler,
  /** `'every-request'` (option `autoMount: true`) or only requests `SessionMiddleware` marked. */
  routes: 'every-request' | 'marked' = 'every-request',
): void {
  const context = handler.context;
  // Callback-style hooks: an anonymous or read-only request passes them synchronously,
  // without the promise an async hook costs on every request.
  if (routes === 'every-request') {
    instance.addHook('onRequest', (request, reply, done) => resume(handler, request, reply, done));
    // Only when something reads the async context (option `asyncContext`): a hook costs every request.
    if (context.runsHttpRequests) {
      instance.addHook('preHandler', (request, _reply, done) => {
        const session = request[SESSION_REQUEST_KEY];
        if (session === undefined) done();
        else context.run(session, done);
      });
    }
  } else {
    // Nest middleware runs in Fastify's onRequest (middie) with the raw request: it marks the
    // request, and the session resumes here, where Fastify's `ip` and `protocol` are at hand.
    instance.addHook('preHandler', (request, reply, done) => {
      if (request.raw[SESSION_MOUNTED] !== true) {
        done();
        return;
      }
      resume(handler, request, reply, () => {
        const session = request[SESSION_REQUEST_KEY];
        if (session !== undefined && context.runsHttpRequests) context.run(session, done);
        else done();
      });
    });
  }

  instance.addHook('onSend', (request, reply, payload, done) => {
    const session = request[SESSION_REQUEST_KEY];
    if (session === undefined) {
      done(null, payload);
      return;
    }
    request[SESSION_REQUEST_KEY] = undefined;
    if (handler.finishIfIdle(session)) {
      done(null, payload);
      return;
    }
    handler.finish(session, request.protocol === 'https').then(
      (cookie) => {
        if (cookie !== undefined) reply.header('set-cookie', cookie);
        for (const header of handler.responseHeaders(session))
          if (!header.unlessSet || !reply.hasHeader(header.name)) reply.header(header.name, header.value);
        done(null, payload);
      },
      (error: unknown) => {
        const answer = handler.answerFor(error);
        reply.code(answer.status).header('content-type', 'application/json; charset=utf-8');
        done(null, answer.body);
      },
    );
  });

  instance.addHook('onRequestAbort', async (request) => {
    await request[SESSION_REQUEST_KEY]?.dispose();
  });
}

/** Set on the raw request by `markForSession` (`SessionMiddleware` on Fastify, option `autoMount: false`). */
const SESSION_MOUNTED = Symbol('nest-session:mounted');

/** Marks a raw Fastify request for the session hooks (`installFastifySessionHooks(..., 'marked')`). */
export function markForSession(raw: object): void {
  (raw as { [SESSION_MOUNTED]?: boolean })[SESSION_MOUNTED] = true;
}

/** Resumes the request's session (see `SessionHttpHandler.begin`), then calls `done`; a failure answers the request. */
function resume(handler: SessionHttpHandler, request: FastifyRequestLike, reply: FastifyReplyLike, done: () => void): void {
  let begun: Session | Promise<Session>;
  try {
    const userAgent = request.headers['user-agent'];
    begun = handler.begin({
      cookieHeader: request.headers.cookie,
      // Plain values: an object literal with getters made anonymous requests about 40% slower.
      ip: request.ip,
      userAgent: typeof userAgent === 'string' ? userAgent : undefined,
      idHeader: handler.idHeaderOf(request.headers),
    });
  } catch (error) {
    fail(handler, reply, error);
    return;
  }
  if (begun instanceof Session) {
    request[SESSION_REQUEST_KEY] = begun;
    done();
    return;
  }
  // The closures only on this path: an anonymous request (answered synchronously) allocates none.
  begun.then(
    (session) => {
      request[SESSION_REQUEST_KEY] = session;
      done();
    },
    (error: unknown) => fail(handler, reply, error),
  );
}

/** Answers the request with the error a resume failed with. */
function fail(handler: SessionHttpHandler, reply: FastifyReplyLike, error: unknown): void {
  const answer = handler.answerFor(error);
  reply.code(answer.status).header('content-type', 'application/json; charset=utf-8').send(answer.body);
}
