import { SessionError } from './session.error.js';

/**
 * Thrown by operations that need a session bound to a user (`SessionManager.listUserSessions()`,
 * `@RequireFreshSession()`) when the request has none. HTTP: 401.
 */
export class SessionNotAuthenticatedException extends SessionError {
  static override readonly httpStatus: number = 401;
  static create(operation: string): SessionNotAuthenticatedException {
    return new this(`Cannot ${operation}: this request's session is not logged in. Log in first.`);
  }
}
