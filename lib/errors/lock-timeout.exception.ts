import { SessionError } from './session.error.js';

/** Thrown when a session lock cannot be acquired within the wait time. HTTP: 423 Locked. */
export class LockTimeoutException extends SessionError {
  static override readonly httpStatus: number = 423;
  static create(waitedMs: number): LockTimeoutException {
    return new this(
      `The session is locked by another request and the lock was not released within ${waitedMs} ms. ` +
        `Retry the request; if this happens often, shorten the locked section or raise lock.waitTimeout.`,
    );
  }
}
