/** WebSocket close code sent to a `ws` client whose session ended (4000-4999 are the application's). */
export const SESSION_ENDED_CLOSE_CODE = 4401;
/** Close reason that goes with `SESSION_ENDED_CLOSE_CODE`. */
export const SESSION_ENDED_CLOSE_REASON = 'Session ended';

type Headers = Readonly<Record<string, string | string[] | undefined>>;

/**
 * What the session layer needs of one WebSocket connection, whatever library carries it
 * (socket.io, `ws`, graphql-ws over `ws`). Read by shape, so the core imports none of them.
 */
export interface SocketTransport {
  /** Headers of the handshake (the HTTP upgrade or socket.io's first request). */
  readonly headers: Headers;
  /** Client address as the socket sees it (no trust-proxy handling: see README "WebSocket gateways"). */
  readonly ip: string | undefined;
  /** Ends the connection because its session ended. */
  close(): void;
  /** Tells the client that a message failed, in the shape of Nest's `exception` event. */
  sendError(message: string): void;
  /** Runs `listener` once when the connection closes, whoever closes it. */
  onClose(listener: () => void): void;
}

interface EventSource {
  once(event: string, listener: () => void): unknown;
}
interface SocketIoSocketLike extends EventSource {
  readonly handshake: { readonly headers: Headers; readonly address?: string };
  disconnect(close?: boolean): unknown;
  emit(event: string, data: unknown): unknown;
}
interface WsSocketLike extends EventSource {
  readonly readyState: number;
  close(code?: number, reason?: string): void;
  send(data: string): void;
}
interface UpgradeRequestLike {
  readonly headers: Headers;
  readonly socket?: { readonly remoteAddress?: string };
}

const WS_OPEN = 1;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function isSocketIoSocket(client: unknown): client is SocketIoSocketLike {
  return isObject(client) && isObject(client.handshake) && typeof client.disconnect === 'function';
}

function isWsSocket(client: unknown): client is WsSocketLike {
  return isObject(client) && typeof client.readyState === 'number' && typeof client.send === 'function';
}

function isUpgradeRequest(request: unknown): request is UpgradeRequestLike {
  return isObject(request) && isObject(request.headers);
}

/**
 * The transport of a socket.io socket, or of a `ws` socket with the upgrade request it came
 * with (what `ws` passes to its `connection` listener); undefined for anything else.
 */
export function socketTransportOf(client: unknown, request?: unknown): SocketTransport | undefined {
  if (isSocketIoSocket(client)) {
    return {
      headers: client.handshake.headers,
      ip: client.handshake.address,
      close: () => void client.disconnect(true),
      sendError: (message) => void client.emit('exception', { status: 'error', message }),
      onClose: (listener) => void client.once('disconnect', listener),
    };
  }
  if (isWsSocket(client) && isUpgradeRequest(request)) {
    return {
      headers: request.headers,
      ip: request.socket?.remoteAddress,
      close: () => client.close(SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_CLOSE_REASON),
      sendError: (message) => {
        if (client.readyState === WS_OPEN)
          client.send(JSON.stringify({ event: 'exception', data: { status: 'error', message } }));
      },
      onClose: (listener) => void client.once('close', listener),
    };
  }
  return undefined;
}
