import type { Session } from '../session/session.js';
import type { SessionHttpHandler } from './session-http.handler.js';
import { SESSION_REQUEST_KEY } from './session-request.key.js';

/** The parts of Fastify's request, reply and instance the adapter uses (no runtime import). */
interface FastifyRequestLike {
  headers: Record<string, string | string[] | undefined>;
  protocol: string;
  ip: string;
  [SESSION_REQUEST_KEY]?: Session;
}
interface FastifyReplyLike {
  code(status: number): FastifyReplyLike;
  header(name: string, value: string): FastifyReplyLike;
  send(payload: unknown): FastifyReplyLike;
}
type Done = (error?: Error) => void;
export interface FastifyInstanceLike {
  addHook(name: 'onRequest', hook: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown>): unknown;
  addHook(name: 'preHandler', hook: (request: FastifyRequestLike, reply: FastifyReplyLike, done: Done) => void): unknown;
  addHook(name: 'onSend', hook: (request: FastifyRequestLike, reply: FastifyReplyLike, payload: unknown) => Promise<unknown>): unknown;
  addHook(name: 'onRequestAbort', hook: (request: FastifyRequestLike) => Promise<void>): unknown;
}

/**
 * Fastify hooks: `onRequest` resumes the session; `preHandler` runs the handler inside
 * AsyncLocalStorage (after body parsing, whose stream events would lose the context);
 * `onSend`, which runs for every reply including `@Res()`, 404s and errors, commits and sets
 * the cookie through the reply (a raw `setHeader` can be dropped by Fastify).
 */
export function installFastifySessionHooks(instance: FastifyInstanceLike, handler: SessionHttpHandler): void {
  instance.addHook('onRequest', async (request, reply) => {
    try {
      request[SESSION_REQUEST_KEY] = await handler.begin({
        cookieHeader: request.headers.cookie,
        secure: request.protocol === 'https',
        ip: request.ip,
      });
    } catch (error) {
      const answer = handler.answerFor(error);
      return reply.code(answer.status).header('content-type', 'application/json; charset=utf-8').send(answer.body);
    }
    return undefined;
  });

  instance.addHook('preHandler', (request, _reply, done) => {
    const session = request[SESSION_REQUEST_KEY];
    if (session === undefined) done();
    else handler.context.run(session, done);
  });

  instance.addHook('onSend', async (request, reply, payload) => {
    const session = request[SESSION_REQUEST_KEY];
    if (session === undefined) return payload;
    request[SESSION_REQUEST_KEY] = undefined;
    try {
      const cookie = await handler.finish(session, request.protocol === 'https');
      if (cookie !== undefined) reply.header('set-cookie', cookie);
      return payload;
    } catch (error) {
      const answer = handler.answerFor(error);
      reply.code(answer.status).header('content-type', 'application/json; charset=utf-8');
      return answer.body;
    }
  });

  instance.addHook('onRequestAbort', async (request) => {
    await request[SESSION_REQUEST_KEY]?.dispose();
  });
}
