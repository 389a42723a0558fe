import { SessionError } from './session.error.js';

/** Thrown when an operation is not possible on this kind of session (e.g. `renewId()` on a remote session). */
export class OperationNotSupportedException extends SessionError {
  static create(operation: string, why: string): OperationNotSupportedException {
    return new this(`${operation} is not supported: ${why}.`);
  }
}
