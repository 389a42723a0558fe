import { AsyncLocalStorage } from 'node:async_hooks';
import { SessionOutsideRequestException } from '../errors/session-outside-request.exception.js';
import type { Session } from './session.js';

/**
 * "The current session" of the request being handled, carried by AsyncLocalStorage so that
 * singletons can reach it without `Scope.REQUEST` (which would make every injecting class
 * request-scoped and cost 25-65% throughput). One instance per SessionModule; no global state.
 */
export class SessionContext {
  private readonly storage = new AsyncLocalStorage<Session>();
  /** Why HTTP requests do not run in the context (option `asyncContext`); undefined = they do. */
  private offForHttp: string | undefined;

  /**
   * Whether HTTP requests run in the context. On Node 20, AsyncLocalStorage installs promise
   * hooks that cost every promise of the process (about 45% of the instructions of an anonymous
   * Fastify request), so SessionModule turns it off at boot when nothing can read it.
   */
  get runsHttpRequests(): boolean {
    return this.offForHttp === undefined;
  }

  /** HTTP requests stop running in the context; `reason` goes into the error of a later `require()`. */
  turnOffForHttp(reason: string): void {
    this.offForHttp = reason;
  }

  /** Runs `fn` with `session` as the current session (never `enterWith`: it leaks into later work). */
  run<R>(session: Session, fn: () => R): R {
    return this.storage.run(session, fn);
  }

  current(): Session | undefined {
    return this.storage.getStore();
  }

  /** Whether a request (or WebSocket message, GraphQL operation) is being handled; never throws. */
  has(): boolean {
    return this.storage.getStore() !== undefined;
  }

  /** @throws SessionOutsideRequestException when no request is being handled. */
  require(operation: string): Session {
    const session = this.storage.getStore();
    if (session === undefined) throw SessionOutsideRequestException.create(operation, this.offForHttp);
    return session;
  }
}
