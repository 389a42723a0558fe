import type { Session } from '../session/session.js';
import type { SessionContext } from '../session/session.context.js';
import type { MetadataKey } from '../session/session-key.js';
import type { SocketTransport } from './session-socket.transport.js';

/** Property under which a socket carries its `SessionSocketConnection`. */
export const SESSION_SOCKET_KEY: unique symbol = Symbol('nest-session.socket');
/** Property under which a GraphQL context of a WebSocket operation carries its socket (`GraphQLSessions`). */
export const SESSION_SOCKET_CONTEXT_KEY: unique symbol = Symbol('nest-session.graphql-socket');

/**
 * One WebSocket connection as the session layer sees it: which session it speaks for (resolved
 * once from the handshake, then followed when one of its messages creates or renews it), and
 * how many of its messages are being handled. Owned by `SessionSocketRegistry`.
 */
export class SessionSocketConnection {
  /** The public id of the connection's session; undefined = none (yet). */
  id: string | undefined;
  /** `metadataKeyOf(id)`, what the registry checks and indexes. */
  key: MetadataKey | undefined;
  /** `handleOf(key)`, what session events name. */
  handle: string | undefined;
  /** Ids from the handshake while they could not be resolved (the store was down). */
  candidates: readonly string[] = [];
  /** Messages of this connection being handled now. */
  inflight = 0;
  /** The session may have ended while messages were in flight: check again when they settle. */
  recheck = false;
  /** Ended (its session ended, or the socket closed); never reused. */
  closed = false;
  /** Settles when the handshake's session has been resolved; messages wait for it. */
  ready: Promise<void> = Promise.resolve();

  constructor(
    readonly transport: SocketTransport,
    private readonly context: SessionContext,
  ) {}

  /** The session of the message being handled (what `@CurrentSession()` gives in a gateway). */
  current(): Session | undefined {
    return this.context.current();
  }

  /** The ids a message's session is resumed from. */
  idsForMessage(): readonly string[] {
    return this.id === undefined ? this.candidates : [this.id];
  }
}

/** The connection a socket carries, if the session layer knows it. */
export function socketConnectionOf(client: unknown): SessionSocketConnection | undefined {
  if (typeof client !== 'object' || client === null) return undefined;
  const connection = (client as { [SESSION_SOCKET_KEY]?: unknown })[SESSION_SOCKET_KEY];
  return connection instanceof SessionSocketConnection ? connection : undefined;
}
