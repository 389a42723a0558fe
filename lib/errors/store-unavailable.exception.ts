import { SessionError } from './session.error.js';

/** Thrown when the session store (cache backend or locker) cannot be reached. HTTP: 503. */
export class StoreUnavailableException extends SessionError {
  static override readonly httpStatus: number = 503;
  static create(operation: string, cause: unknown): StoreUnavailableException {
    const why = cause instanceof Error ? cause.message : String(cause);
    // The driver's words go to the log only (they can name hosts, keys or ids); a client learns
    // only that the store is down.
    const error = new this(
      `The session store is unavailable (${operation}: ${why}); retry later. A commit is applied whole or not at all.`,
      'The session store is unavailable; retry later.',
    );
    Object.defineProperty(error, 'cause', { value: cause });
    return error;
  }

  /**
   * The store could not be reached while the application started (no request exists yet):
   * the message says what to check instead of talking about a request's changes.
   * @param operation what failed, e.g. `connect to redis://127.0.0.1:6379` (no password).
   */
  static atBoot(operation: string, cause: unknown): StoreUnavailableException {
    const why = cause instanceof Error ? cause.message : String(cause);
    const error = new this(
      `The session store could not be reached while the application started (${operation}: ${why}). ` +
        `Check that it runs and that its address and credentials are right; the application cannot start without it.`,
      'The session store is unavailable; retry later.',
    );
    Object.defineProperty(error, 'cause', { value: cause });
    return error;
  }
}
