import { SessionError } from './session.error.js';

/**
 * Thrown when writing to a session that was destroyed (or expired) by someone else since it was
 * read: its changes are dropped on purpose so a slow request cannot bring a logged-out session
 * back. HTTP: 409.
 */
export class SessionDestroyedException extends SessionError {
  static override readonly httpStatus: number = 409;
  static create(operation: string): SessionDestroyedException {
    return new this(
      `Cannot ${operation}: the session was destroyed or expired by another request since it was read; ` +
        `its changes were discarded. Start a new session.`,
    );
  }
}
