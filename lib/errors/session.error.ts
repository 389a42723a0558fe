import { HttpException } from '@nestjs/common';

/**
 * Base class of every error this package throws. Catch `SessionError` to handle them all;
 * each subclass names one failure and its message says how to fix it.
 *
 * It extends Nest's `HttpException` so an error that escapes a handler becomes the right
 * status (`httpStatus` of the subclass) through Nest's own exception layer, with no filter to
 * register, and user filters see a normal `HttpException`.
 */
export class SessionError extends HttpException {
  /** HTTP status of this kind of error. */
  static readonly httpStatus: number = 500;

  constructor(message: string) {
    super(message, new.target.httpStatus);
  }

  /** HTTP status the error answers with. */
  get httpStatus(): number {
    return this.getStatus();
  }
}
