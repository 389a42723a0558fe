import type { ExecutionContext } from '@nestjs/common';
import { SESSION_REQUEST_KEY } from '../session/session-request.key.js';
import type { Session } from '../session/session.js';
import { SESSION_SOCKET_CONTEXT_KEY, socketConnectionOf } from './session-socket.connection.js';

type WithSession = { [SESSION_REQUEST_KEY]?: Session } | undefined | null;

/** The GraphQL context's way to the session: the HTTP request (Apollo: `req`, Mercurius: `req`, `reply.request`) or the operation's socket. */
interface GraphQLContextLike {
  readonly req?: WithSession;
  readonly request?: WithSession;
  readonly reply?: { readonly request?: WithSession } | null;
  readonly [SESSION_SOCKET_CONTEXT_KEY]?: unknown;
}

/**
 * The session of the request, message or GraphQL operation a guard, interceptor or parameter
 * decorator runs for: HTTP (the request's), `ws` (the message's, through
 * `SessionWebSocketAdapter`), `graphql` (the HTTP request's from the GraphQL context, or a
 * graphql-ws operation's). Undefined when the session layer does not cover it.
 */
export function sessionOfExecution(context: ExecutionContext): Session | undefined {
  const type = context.getType<string>();
  if (type === 'ws') return socketConnectionOf(context.switchToWs().getClient<unknown>())?.current();
  if (type === 'graphql')
    return sessionOfGraphQLContext(context.getArgByIndex<GraphQLContextLike | null | undefined>(2) ?? undefined);
  // The request is the first argument (what switchToHttp().getRequest() answers, without the
  // three closures `switchToHttp()` creates on every call: @CurrentSession() runs per request).
  return context.getArgByIndex<WithSession>(0)?.[SESSION_REQUEST_KEY];
}

function sessionOfGraphQLContext(ctx: GraphQLContextLike | undefined): Session | undefined {
  if (ctx === undefined) return undefined;
  const socket = ctx[SESSION_SOCKET_CONTEXT_KEY];
  // A WebSocket operation: the session of the event or operation being resolved (GraphQLSessions).
  if (socket !== undefined) return socketConnectionOf(socket)?.current();
  return ctx.req?.[SESSION_REQUEST_KEY] ?? ctx.request?.[SESSION_REQUEST_KEY] ?? ctx.reply?.request?.[SESSION_REQUEST_KEY];
}
