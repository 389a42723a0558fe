import { SessionError } from './session.error.js';

/** Thrown by operations that need a started session (Flow: `SessionNotStartedException`). */
export class SessionNotStartedException extends SessionError {
  static create(operation: string): SessionNotStartedException {
    return new this(
      `Cannot ${operation}: the session has not been started. Call session.start() first, ` +
        `or check session.isStarted() before using it.`,
    );
  }
}
