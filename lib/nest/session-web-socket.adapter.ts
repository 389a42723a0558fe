import type { INestApplicationContext, WebSocketAdapter, WsMessageHandler } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { SessionSocketRegistry } from './session-socket.registry.js';
import { socketTransportOf } from './session-socket.transport.js';

/** Options of `SessionWebSocketAdapter`. */
export interface SessionWebSocketAdapterOptions {
  /**
   * Milliseconds between two checks of the sessions of all open sockets (one batched look-up
   * per check). A socket whose session ends on another instance, or expires, is closed within
   * this time; ends seen by this instance close it at once. @default 1000
   */
  checkInterval?: number;
}

type Callback = (...args: unknown[]) => unknown;

/**
 * Gives WebSocket gateways the session: wraps the adapter the app uses (socket.io's
 * `IoAdapter`, `ws`'s `WsAdapter`, or a subclass such as a Redis adapter):
 *
 * ```ts
 * app.useWebSocketAdapter(new SessionWebSocketAdapter(app, new IoAdapter(app)));
 * ```
 *
 * The session named by the handshake's cookie is resolved once per connection; every message
 * then runs (guards, interceptors, pipes and handler) with a fresh session of that id as the
 * current session, committed when the handler settles; a socket whose session ends is
 * disconnected (see `SessionSocketRegistry`). Other methods are the wrapped adapter's.
 *
 * @throws InvalidArgumentException when the app has no `SessionModule`.
 */
export class SessionWebSocketAdapter<TServer = unknown, TClient = unknown, TOptions = unknown> implements WebSocketAdapter<
  TServer,
  TClient,
  TOptions
> {
  private readonly registry: SessionSocketRegistry;

  constructor(
    app: INestApplicationContext,
    private readonly inner: WebSocketAdapter<TServer, TClient, TOptions>,
    options: SessionWebSocketAdapterOptions = {},
  ) {
    try {
      this.registry = app.get(SessionSocketRegistry, { strict: false });
    } catch {
      throw new InvalidArgumentException(
        'SessionWebSocketAdapter needs SessionModule: import SessionModule.forRoot() in the application module.',
      );
    }
    if (options.checkInterval !== undefined) {
      if (!Number.isFinite(options.checkInterval) || options.checkInterval < 10) {
        throw new InvalidArgumentException(
          `Invalid checkInterval ${String(options.checkInterval)}: use a number of milliseconds >= 10.`,
        );
      }
      this.registry.checkInterval = options.checkInterval;
    }
  }

  create(port: number, options?: TOptions): TServer {
    return this.inner.create(port, options);
  }

  bindClientConnect(server: TServer, callback: Callback): unknown {
    return this.inner.bindClientConnect(server, (...args: unknown[]) => {
      const [client, request] = args;
      const transport = socketTransportOf(client, request);
      if (transport !== undefined && typeof client === 'object' && client !== null) this.registry.connect(client, transport);
      return callback(...args);
    });
  }

  bindClientDisconnect(client: TClient, callback: Callback): unknown {
    return this.inner.bindClientDisconnect?.(client, callback);
  }

  closeClient(client: TClient): unknown {
    return this.inner.closeClient?.(client);
  }

  bindMessageHandlers(client: TClient, handlers: WsMessageHandler[], transform: (data: unknown) => Observable<unknown>): unknown {
    const wrapped = handlers.map((handler): WsMessageHandler => ({
      ...handler,
      callback: (...args: unknown[]) => this.registry.handle(client, () => (handler.callback as Callback)(...args)),
    }));
    return this.inner.bindMessageHandlers(client, wrapped, transform);
  }

  close(server: TServer): unknown {
    return this.inner.close(server);
  }

  /** Called by Nest on shutdown (not part of the `WebSocketAdapter` interface). */
  async dispose(): Promise<void> {
    await (this.inner as { dispose?: () => Promise<void> | void }).dispose?.();
  }

  /** Nest sets the app's `forceCloseConnections` on its adapter; the wrapped one gets it. */
  set forceCloseConnections(value: boolean | undefined) {
    (this.inner as { forceCloseConnections?: boolean }).forceCloseConnections = value;
  }

  get forceCloseConnections(): boolean | undefined {
    return (this.inner as { forceCloseConnections?: boolean }).forceCloseConnections;
  }
}
