import { SessionError } from './session.error.js';

/** Thrown when the injected `SessionInterface` is used where no HTTP request is being handled. */
export class SessionOutsideRequestException extends SessionError {
  /** `contextOff`: why HTTP requests do not run in the async context (option `asyncContext`), if they do not. */
  static create(operation: string, contextOff?: string): SessionOutsideRequestException {
    if (contextOff !== undefined) {
      return new this(
        `Cannot ${operation}: HTTP requests do not run in the session's async context (${contextOff}). ` +
          `Inject SessionInterface or SessionManager through Nest's dependency injection (constructor or property), ` +
          `use @CurrentSession(), or set SessionModule's option asyncContext: true.`,
      );
    }
    return new this(
      `Cannot ${operation}: there is no current HTTP request. The injected SessionInterface only ` +
        `works while a request is handled (SessionModule's middleware must run for the route), and in ` +
        `WebSocket gateways once the adapter is wrapped: app.useWebSocketAdapter(new SessionWebSocketAdapter(app, new IoAdapter(app))). ` +
        `Outside a request (cron jobs, queues, scripts) use SessionManager.getSession(id); ` +
        `SessionManager.hasCurrentSession() tells, without throwing, whether there is a current session.`,
    );
  }
}
