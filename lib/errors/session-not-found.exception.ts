import { SessionError } from './session.error.js';

/**
 * Thrown when a handle names none of the caller's own live sessions
 * (`SessionManager.destroyUserSession`): unknown, expired, already ended, or another user's,
 * which is answered the same way so a handle reveals nothing. HTTP: 404.
 */
export class SessionNotFoundException extends SessionError {
  static override readonly httpStatus: number = 404;
  static create(): SessionNotFoundException {
    return new this('No such session among your sessions: it may have ended already; list your sessions again.');
  }
}
