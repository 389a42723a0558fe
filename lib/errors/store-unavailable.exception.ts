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
}
