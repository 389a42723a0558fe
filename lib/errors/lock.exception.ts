import { SessionError } from './session.error.js';

/**
 * Thrown (Aerys semantics) for any session operation except `unlock()` while a lock request
 * is pending, and for lock misuse such as saving with a lock that expired.
 */
export class LockException extends SessionError {
  static override readonly httpStatus: number = 409;
}
