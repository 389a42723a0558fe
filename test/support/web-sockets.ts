import type { INestApplication } from '@nestjs/common';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';

/** Starts the app on a free local port and answers its base URL (http://127.0.0.1:PORT). */
export async function listenLocally(app: INestApplication): Promise<string> {
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  return `http://127.0.0.1:${address.port}`;
}

function cookieHeaders(cookieName: string, cookie: string | undefined): Record<string, string> {
  return cookie === undefined ? {} : { cookie: `${cookieName}=${cookie}` };
}

/** A connected socket.io client (WebSocket transport, the cookie in the handshake). Close it with `disconnect()`. */
export function connectSocketIo(url: string, cookie?: string, cookieName = 'sid'): Promise<Socket> {
  const socket = io(url, {
    transports: ['websocket'],
    extraHeaders: cookieHeaders(cookieName, cookie),
    reconnection: false,
    forceNew: true,
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (error) => {
      socket.disconnect();
      reject(error);
    });
  });
}

/** Resolves with the milliseconds until `socket` is disconnected by the server; rejects after `within` ms. */
export function serverDisconnect(socket: Socket, within: number): Promise<number> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the socket was not disconnected within ${within} ms`)), within);
    socket.once('disconnect', (reason) => {
      clearTimeout(timer);
      if (reason === 'io server disconnect') resolve(Date.now() - started);
      else reject(new Error(`disconnected for another reason: ${reason}`));
    });
  });
}

/** A `ws` client speaking Nest's WsAdapter protocol: `{event, data}` out, the handler's result back. */
export class WsClient {
  private readonly answers: Array<(value: unknown) => void> = [];
  readonly exceptions: unknown[] = [];
  readonly closed: Promise<{ code: number; reason: string; at: number }>;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (raw: Buffer) => {
      const message = JSON.parse(raw.toString()) as unknown;
      if (typeof message === 'object' && message !== null && (message as { event?: unknown }).event === 'exception') {
        this.exceptions.push((message as { data: unknown }).data);
        this.answers.shift()?.({ exception: (message as { data: unknown }).data });
        return;
      }
      this.answers.shift()?.(message);
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString(), at: Date.now() })),
    );
  }

  static connect(url: string, cookie?: string, cookieName = 'sid', path = '/'): Promise<WsClient> {
    const socket = new WebSocket(url.replace(/^http/, 'ws') + path, { headers: cookieHeaders(cookieName, cookie) });
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(new WsClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Sends one message and answers the next message the server sends (answers come in order here). */
  request(event: string, data?: unknown): Promise<unknown> {
    return new Promise((resolve) => {
      this.answers.push(resolve);
      this.socket.send(JSON.stringify({ event, data }));
    });
  }

  /** Resolves with the milliseconds until the server closes the socket; rejects after `within` ms. */
  async closedWithin(within: number): Promise<{ code: number; reason: string; ms: number }> {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`the socket was not closed within ${within} ms`)), within);
    });
    try {
      const closed = await Promise.race([this.closed, timeout]);
      return { code: closed.code, reason: closed.reason, ms: closed.at - started };
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.socket.terminate();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
