import { SessionError } from './session.error.js';

/** Thrown when the session store (cache backend or locker) cannot be reached. HTTP: 503. */
export class StoreUnavailableException extends SessionError {
  static override readonly httpStatus: number = 503;
  static create(operation: string, cause: unknown): StoreUnavailableException {
    const why = cause instanceof Error ? cause.message : String(cause);
    const error = new this(
      `The session store is unavailable (${operation}: ${why}). This request's session changes may not have been saved (a commit is applied whole or not at all); retry later.`,
    );
    Object.defineProperty(error, 'cause', { value: cause });
    return error;
  }
}
