import { SessionError } from './session.error.js';

/** Thrown at boot for a bad `SessionModule` option; the message names the option. */
export class InvalidOptionException extends SessionError {
  static create(option: string, problem: string): InvalidOptionException {
    return new this(`SessionModule option "${option}" ${problem}.`);
  }
}
