import { SESSION_SOCKET_CONTEXT_KEY } from './session-socket.connection.js';
import type { SessionSocketRegistry } from './session-socket.registry.js';
import { socketTransportOf, type SocketTransport } from './session-socket.transport.js';

/** A GraphQL field resolver, declared as a method so graphql's own resolver types are accepted. */
type FieldResolver = {
  resolve(source: unknown, args: unknown, context: unknown, info: { readonly fieldName: string }): unknown;
}['resolve'];

interface FieldLike {
  resolve?: FieldResolver;
  subscribe?: FieldResolver;
}
interface ObjectTypeLike {
  getFields(): Readonly<Record<string, FieldLike>>;
}

/** The parts of a `GraphQLSchema` `transformSchema` touches (no import of graphql). */
export interface GraphQLSchemaLike {
  getQueryType(): ObjectTypeLike | null | undefined;
  getMutationType(): ObjectTypeLike | null | undefined;
  getSubscriptionType(): ObjectTypeLike | null | undefined;
}

/** What graphql-ws (`graphql-ws/use/ws`) passes to its `context` option: `ctx.extra` holds the socket and upgrade request. */
export interface GraphQLWsContextLike {
  readonly extra: { readonly socket: unknown; readonly request: unknown };
}

/** The context a WebSocket operation's resolvers get: the socket, for the session layer. */
export interface GraphQLSocketContext {
  readonly [SESSION_SOCKET_CONTEXT_KEY]: object;
}

/** Marks fields already wrapped (a schema transformed twice stays wrapped once). */
const WRAPPED: unique symbol = Symbol('nest-session.graphql-wrapped');

/**
 * The session in GraphQL:
 *
 * - Queries and mutations over HTTP need nothing from here: they run inside the HTTP request,
 *   so the injected `SessionInterface` works, and `@CurrentSession()` finds the session when
 *   the GraphQL context carries the request (`context: ({ req }) => ({ req })` for Apollo, the
 *   default of Nest's Mercurius driver). The response commits as for any route.
 * - Subscriptions (and operations) over WebSockets get the connection's session like a
 *   gateway: `apolloContext` (Apollo's `context`, used for graphql-ws too) or
 *   `mercuriusContext` (Mercurius' `subscription: { context }`) registers the connection, its
 *   session resolved once from the upgrade request's cookie; `transformSchema` makes every
 *   root field's resolver, a subscription's `subscribe` (its set-up) and `resolve` (each
 *   event) its own unit of work with a fresh session of that id, committed when it settles.
 *   The socket is closed when its session ends.
 *
 * Nested field resolvers of an event's payload run after its unit of work: resolve what needs
 * the session in the subscription field's own `resolve`.
 */
export class GraphQLSessions {
  constructor(private readonly sockets: SessionSocketRegistry) {}

  /**
   * Apollo's `context` option, which Nest's Apollo driver uses for HTTP (`{ req, res }`) and for
   * graphql-ws (its context argument, with `extra`): `{ req, res }` for HTTP, the socket for a
   * WebSocket operation (see `graphqlWsContext`). Spread it into your own context if you have one.
   */
  readonly apolloContext = (ctx: {
    readonly req?: unknown;
    readonly res?: unknown;
    readonly extra?: GraphQLWsContextLike['extra'];
  }): GraphQLSocketContext | { readonly req: unknown; readonly res: unknown } =>
    ctx.extra === undefined ? { req: ctx.req, res: ctx.res } : this.graphqlWsContext({ extra: ctx.extra });

  /** graphql-ws `context` option: registers the connection; the context carries its socket. */
  readonly graphqlWsContext = (ctx: GraphQLWsContextLike): GraphQLSocketContext => {
    const { socket, request } = ctx.extra;
    this.register(socket, request);
    return { [SESSION_SOCKET_CONTEXT_KEY]: socket as object };
  };

  /** Mercurius `subscription.context` option (called with the socket and the upgrade's Fastify request). */
  readonly mercuriusContext = (socket: unknown, request: unknown): GraphQLSocketContext => {
    this.register(socket, request);
    return { [SESSION_SOCKET_CONTEXT_KEY]: socket as object };
  };

  /**
   * Nest's `transformSchema` option: wraps the root fields' resolvers (queries, mutations,
   * subscriptions) so that over a WebSocket each runs as a unit of work of the connection's
   * session. Over HTTP they run as they are. Answers the same schema.
   */
  readonly transformSchema = <S extends GraphQLSchemaLike>(schema: S): S => {
    for (const type of [schema.getQueryType(), schema.getMutationType()]) {
      for (const field of Object.values(type?.getFields() ?? {})) this.wrap(field, 'resolve');
    }
    for (const field of Object.values(schema.getSubscriptionType()?.getFields() ?? {})) {
      this.wrap(field, 'subscribe');
      this.wrap(field, 'resolve');
    }
    return schema;
  };

  private register(socket: unknown, request: unknown): void {
    const transport = socketTransportOf(socket, request);
    if (transport === undefined || typeof socket !== 'object' || socket === null) return;
    // A GraphQL protocol has no room for a foreign message: failures become GraphQL errors.
    const quiet: SocketTransport = { ...transport, sendError: () => undefined };
    this.sockets.connect(socket, quiet);
  }

  private wrap(field: FieldLike & { [WRAPPED]?: Set<string> }, which: 'resolve' | 'subscribe'): void {
    const wrapped = (field[WRAPPED] ??= new Set());
    if (wrapped.has(which)) return;
    wrapped.add(which);
    // No `resolve` means graphql's default: the payload's property of the field's name.
    const original: FieldResolver = field[which] ?? defaultResolver;
    const sockets = this.sockets;
    field[which] = function sessionResolver(this: unknown, source, args, context, info) {
      const socket = (context as Partial<GraphQLSocketContext> | null | undefined)?.[SESSION_SOCKET_CONTEXT_KEY];
      if (socket === undefined) return original.call(this, source, args, context, info);
      return sockets.handle(socket, () => original.call(this, source, args, context, info), 'throw');
    };
  }
}

function defaultResolver(source: unknown, _args: unknown, _context: unknown, info: { readonly fieldName: string }): unknown {
  if (typeof source !== 'object' || source === null) return undefined;
  const value = (source as Record<string, unknown>)[info.fieldName];
  return typeof value === 'function' ? (value as () => unknown).call(source) : value;
}
