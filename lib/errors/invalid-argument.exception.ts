import { SessionError } from './session.error.js';

/** Thrown for a bad key, tag, identifier or argument value; the message names it. */
export class InvalidArgumentException extends SessionError {
  static override readonly httpStatus: number = 400;
}
