import { Logger, type BeforeApplicationShutdown } from '@nestjs/common';
import { isObservable, Observable, type Subscription } from 'rxjs';
import { SessionError } from '../errors/session.error.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { readSessionCookies } from '../http/session-cookie.js';
import { readSessionIdHeader } from '../http/session-id-header.js';
import type { RequestGarbageCollector } from '../manager/request-garbage-collector.interface.js';
import type { SessionEvent } from '../session/session-events.js';
import { handleOf, metadataKeyOf, type MetadataKey } from '../session/session-key.js';
import type { SessionMetadata } from '../session/session-metadata.interface.js';
import type { SessionContext } from '../session/session.context.js';
import { Session } from '../session/session.js';
import type { SessionStore } from '../session/session.store.js';
import { SESSION_SOCKET_KEY, SessionSocketConnection, socketConnectionOf } from './session-socket.connection.js';
import type { SocketTransport } from './session-socket.transport.js';

/** How often the sessions of all open sockets are checked, by default (ms). */
export const DEFAULT_SOCKET_CHECK_INTERVAL = 1000;
/** Metadata keys per `getMany` of one check; the batches of a check go out together. */
const CHECK_BATCH = 500;

/**
 * The sessions of WebSocket connections (gateways through `SessionWebSocketAdapter`,
 * graphql-ws subscriptions through `graphqlWsSessions`):
 *
 * - A connection's session is resolved once, from the handshake's cookie (or the id header
 *   when `idHeader` is set and the handshake carries it).
 * - Each message is its own unit of work, like an HTTP request: a fresh `Session` for that id,
 *   resumed before the handler (and its guards and interceptors) runs inside the same request
 *   context as HTTP, so the injected `SessionInterface`, `@CurrentSession()` and
 *   `@SessionLock()` work; its changes are committed when the handler settles, before the
 *   acknowledgement goes out. So messages count as activity under the same grace-period rules.
 * - A connection whose session ends is closed: at once when this instance sees it end
 *   (`SessionManager.events$`: destroyed, renewed away, collected), and otherwise (another
 *   instance on a shared store, expiry) within `checkInterval`: one check per interval looks
 *   up the sessions of all open connections with one `getMany` (O(connections), one round
 *   trip per 500 sessions, sent together).
 */
export class SessionSocketRegistry implements BeforeApplicationShutdown {
  private readonly logger = new Logger('SessionSockets');
  private readonly byKey = new Map<MetadataKey, Set<SessionSocketConnection>>();
  private readonly byHandle = new Map<string, Set<SessionSocketConnection>>();
  private readonly subscription: Subscription;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private checkFailing = false;
  private shutDown = false;
  private interval = DEFAULT_SOCKET_CHECK_INTERVAL;

  constructor(
    private readonly store: SessionStore,
    private readonly context: SessionContext,
    private readonly gc?: RequestGarbageCollector,
  ) {
    this.subscription = store.events.events$.subscribe((event) => this.onEvent(event));
  }

  /** Milliseconds between two checks of all open connections' sessions. @default 1000 */
  get checkInterval(): number {
    return this.interval;
  }

  set checkInterval(ms: number) {
    this.interval = ms;
    if (this.timer !== undefined) {
      this.stopTimer();
      this.startTimer();
    }
  }

  /** Open connections that speak for a session (for tests and metrics). */
  get size(): number {
    let count = 0;
    for (const set of this.byKey.values()) count += set.size;
    return count;
  }

  /**
   * Registers a new connection (once per socket: a second call answers the first connection)
   * and starts resolving its session from the handshake; messages wait for that.
   */
  connect(client: object, transport: SocketTransport): SessionSocketConnection {
    const known = socketConnectionOf(client);
    if (known !== undefined) return known;
    const connection = new SessionSocketConnection(transport, this.context);
    (client as { [SESSION_SOCKET_KEY]?: SessionSocketConnection })[SESSION_SOCKET_KEY] = connection;
    transport.onClose(() => this.forget(connection));
    connection.ready = this.resolve(connection);
    return connection;
  }

  /**
   * Handles one message of `client`: `invoke` (Nest's whole pipeline for the handler) runs
   * with the message's session as the current session, which is committed when it settles
   * (an Observable result: when it completes, errors or is unsubscribed). When the session
   * cannot be resumed or committed, the client gets an `exception` event with a generic message
   * instead of the result (`failures: 'report'`), or the error is thrown (`'throw'`: GraphQL
   * answers it as a GraphQL error).
   */
  async handle(client: unknown, invoke: () => unknown, failures: 'report' | 'throw' = 'report'): Promise<unknown> {
    const connection = socketConnectionOf(client);
    if (connection === undefined) return invoke();
    await connection.ready;
    connection.inflight++;
    let session: Session;
    try {
      session = await this.begin(connection);
    } catch (error) {
      connection.inflight--;
      if (failures === 'throw') throw error;
      this.report(connection, error);
      return undefined;
    }
    let result: unknown;
    try {
      result = await this.context.run(session, invoke);
    } catch (error) {
      // Nest's WsProxy answers handler errors itself; this is only what escapes it.
      await this.finish(connection, session);
      throw error;
    }
    if (isObservable(result)) return this.finishAfter(connection, session, result);
    if (failures === 'throw') {
      await this.finish(connection, session, true);
      return result;
    }
    return (await this.finish(connection, session)) ? result : undefined;
  }

  /** Stops the checks; the WebSocket servers close the connections. */
  async beforeApplicationShutdown(): Promise<void> {
    this.shutDown = true;
    this.stopTimer();
    this.subscription.unsubscribe();
    await this.checking;
  }

  // ---- resolving and per-message sessions ------------------------------------------------

  private async resolve(connection: SessionSocketConnection): Promise<void> {
    const ids = this.handshakeIds(connection.transport);
    if (ids.length === 0) return;
    const session = this.newSession(connection, ids);
    try {
      await session.resume();
    } catch (error) {
      // The store is down: each message tries these ids again until one resolves.
      connection.candidates = ids;
      this.logger.warn(`A WebSocket connection's session could not be resolved yet: ${describe(error, ids)}`);
      return;
    }
    if (session.isStarted()) this.adopt(connection, session.getId());
  }

  /** Candidate ids of a handshake: the id header's (header mode, as for HTTP), else the cookie's. */
  private handshakeIds(transport: SocketTransport): string[] {
    const options = this.store.options;
    const isValid = (id: string): boolean => options.idGenerator.isValid(id);
    const fromHeader =
      options.idHeader === undefined ? undefined : readSessionIdHeader(transport.headers[options.idHeader], isValid);
    return fromHeader ?? readSessionCookies(transport.headers.cookie, options.cookie.name, isValid);
  }

  private newSession(connection: SessionSocketConnection, ids: readonly string[]): Session {
    const userAgent = connection.transport.headers['user-agent'];
    return new Session(this.store, {
      cookieIds: ids,
      cookieName: this.store.options.cookie.name,
      clientIp: connection.transport.ip,
      userAgent: typeof userAgent === 'string' ? userAgent : undefined,
    });
  }

  /** The message's session, resumed; a store that is down leaves it unavailable (as for HTTP). */
  private async begin(connection: SessionSocketConnection): Promise<Session> {
    const ids = connection.idsForMessage();
    const session = this.newSession(connection, ids);
    if (ids.length === 0) return session;
    try {
      await session.resume();
    } catch (error) {
      if (!(error instanceof StoreUnavailableException)) throw error;
      session.markUnavailable(error);
      this.logger.warn(`${describe(error, ids)} The message goes on without its session; code that uses it fails.`);
    }
    return session;
  }

  /**
   * Commits and releases; answers whether the commit succeeded (else the client was told, or
   * with `rethrow` the error is thrown once the connection is settled).
   */
  private async finish(connection: SessionSocketConnection, session: Session, rethrow = false): Promise<boolean> {
    let ok = true;
    let failure: unknown;
    try {
      await session.commit();
    } catch (error) {
      ok = false;
      if (rethrow) failure = error;
      else this.report(connection, error);
    } finally {
      await session.dispose().catch(() => undefined);
      connection.inflight--;
    }
    this.settle(connection, session);
    if (this.gc?.isGarbageCollectionDue()) {
      const gc = this.gc;
      setImmediate(() => void gc.collectGarbage().catch(() => undefined));
    }
    if (!ok && rethrow) throw failure;
    return ok;
  }

  /** An Observable result: values go out as they come; the commit runs when it ends. */
  private finishAfter(connection: SessionSocketConnection, session: Session, source: Observable<unknown>): Observable<unknown> {
    return new Observable<unknown>((subscriber) => {
      let finished: Promise<boolean> | undefined;
      const end = (): Promise<boolean> => (finished ??= this.finish(connection, session));
      const subscription = this.context.run(session, () =>
        source.subscribe({
          next: (value) => subscriber.next(value),
          error: (error: unknown) => void end().then(() => subscriber.error(error)),
          complete: () => void end().then(() => subscriber.complete()),
        }),
      );
      return () => {
        subscription.unsubscribe();
        void end();
      };
    });
  }

  /**
   * After a message: the connection follows its session to a new id (created or renewed by
   * the message), or ends when the session it spoke for is gone.
   */
  private settle(connection: SessionSocketConnection, session: Session): void {
    let id: string | undefined;
    try {
      id = session.isStarted() && !session.isNew() ? session.getId() : undefined;
    } catch {
      return; // unavailable (store down): nothing is known about the session
    }
    if (id !== undefined) {
      if (id !== connection.id) this.adopt(connection, id);
    } else if (connection.id !== undefined) {
      this.end(connection);
      return;
    }
    if (connection.recheck && connection.inflight === 0) {
      connection.recheck = false;
      void this.verify(connection);
    }
  }

  private report(connection: SessionSocketConnection, error: unknown): void {
    if (error instanceof SessionError) {
      if (error.httpStatus >= 500) this.logger.warn(error.message);
      connection.transport.sendError(error.publicMessage);
      return;
    }
    this.logger.error(
      `Session handling of a WebSocket message failed: ${(error as { stack?: string } | null)?.stack ?? String(error)}`,
    );
    connection.transport.sendError('Session handling failed.');
  }

  // ---- ending connections ----------------------------------------------------------------

  private onEvent(event: SessionEvent): void {
    if (event.type === 'destroyed' || event.type === 'expired') this.suspect(event.handle);
    else if (event.type === 'renewed') for (const handle of event.previousHandles) this.suspect(handle);
  }

  /** The session with `handle` is gone: its connections end (after their messages in flight). */
  private suspect(handle: string): void {
    const connections = this.byHandle.get(handle);
    if (connections === undefined) return;
    for (const connection of [...connections]) this.endOrRecheck(connection);
  }

  private endOrRecheck(connection: SessionSocketConnection): void {
    // A message in flight may have renewed the session itself: decided when it settles.
    if (connection.inflight > 0) connection.recheck = true;
    else this.end(connection);
  }

  /** Ends the connection if its session is no longer live. */
  private async verify(connection: SessionSocketConnection): Promise<void> {
    const key = connection.key;
    if (key === undefined || connection.closed) return;
    try {
      const live = (await this.store.loadMetadata(key)) !== undefined;
      if (!live && connection.key === key) this.endOrRecheck(connection);
    } catch {
      // The store is down: the periodic check tries again.
    }
  }

  /** Closes the connection (after the current tick, so an acknowledgement being sent goes first). */
  private end(connection: SessionSocketConnection): void {
    if (connection.closed) return;
    this.forget(connection);
    setImmediate(() => connection.transport.close());
  }

  private forget(connection: SessionSocketConnection): void {
    connection.closed = true;
    this.unindex(connection);
  }

  private adopt(connection: SessionSocketConnection, id: string): void {
    if (connection.closed) return;
    this.unindex(connection);
    const key = metadataKeyOf(id);
    connection.id = id;
    connection.key = key;
    connection.handle = handleOf(key);
    connection.candidates = [];
    add(this.byKey, key, connection);
    add(this.byHandle, connection.handle, connection);
    if (this.timer === undefined && !this.shutDown) this.startTimer();
  }

  private unindex(connection: SessionSocketConnection): void {
    if (connection.key !== undefined) remove(this.byKey, connection.key, connection);
    if (connection.handle !== undefined) remove(this.byHandle, connection.handle, connection);
    if (this.byKey.size === 0) this.stopTimer();
  }

  private startTimer(): void {
    this.timer = setInterval(() => {
      this.checking ??= this.checkAll().finally(() => (this.checking = undefined));
    }, this.interval);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One look-up of every open connection's session; connections of sessions gone end. */
  private async checkAll(): Promise<void> {
    const keys = [...this.byKey.keys()];
    if (keys.length === 0) return;
    const cache = this.store.metadataCache;
    let found: Array<string | undefined>;
    try {
      const batches: MetadataKey[][] = [];
      for (let offset = 0; offset < keys.length; offset += CHECK_BATCH) batches.push(keys.slice(offset, offset + CHECK_BATCH));
      found = (await Promise.all(batches.map((batch) => cache.getMany(batch)))).flat();
    } catch (error) {
      // Logged once per outage: an unreachable store is no reason to drop connections.
      if (!this.checkFailing) this.logger.warn(`WebSocket sessions could not be checked: ${describe(error, [])}`);
      this.checkFailing = true;
      return;
    }
    this.checkFailing = false;
    const now = Date.now();
    keys.forEach((key, i) => {
      const raw = found[i];
      if (raw !== undefined && !this.store.isExpired(cache.decode<SessionMetadata>(raw), now)) return;
      for (const connection of [...(this.byKey.get(key) ?? [])]) if (connection.key === key) this.endOrRecheck(connection);
    });
  }
}

function add<K>(index: Map<K, Set<SessionSocketConnection>>, key: K, connection: SessionSocketConnection): void {
  let set = index.get(key);
  if (set === undefined) index.set(key, (set = new Set()));
  set.add(connection);
}

function remove<K>(index: Map<K, Set<SessionSocketConnection>>, key: K, connection: SessionSocketConnection): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(connection);
  if (set.size === 0) index.delete(key);
}

/** An error's message with the connection's ids blanked out: ids never reach the log. */
function describe(error: unknown, ids: readonly string[]): string {
  let message = error instanceof Error ? error.message : String(error);
  for (const id of ids) message = message.split(id).join('<id>');
  return message;
}
