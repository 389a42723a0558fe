import { SessionError } from './session.error.js';

/**
 * Thrown when a login would exceed `maxSessionsPerUser` under `maxSessionsPolicy: 'reject'`:
 * the login is not stored and the client keeps the session it had. HTTP: 409.
 */
export class SessionLimitReachedException extends SessionError {
  static override readonly httpStatus: number = 409;
  static create(limit: number): SessionLimitReachedException {
    return new this(
      `Cannot log in: this user already has the most sessions allowed (${limit}, maxSessionsPerUser). ` +
        `End one of them (log out on another device) and try again.`,
    );
  }
}
