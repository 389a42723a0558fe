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

  /**
   * What a client may be told: the message without details that belong in the log only
   * (driver errors, entry ids). Nest's exception layer and the session's HTTP handler answer
   * with this; `message` keeps the details for logs.
   */
  readonly publicMessage: string;

  /**
   * @param message the full message, for logs and for the developer who catches the error.
   * @param publicMessage what a client may see; defaults to `message` (fine when it names only
   *   what the client sent, such as its own key).
   */
  constructor(message: string, publicMessage: string = message) {
    super({ statusCode: new.target.httpStatus, error: new.target.name, message: publicMessage }, new.target.httpStatus);
    this.message = message;
    this.publicMessage = publicMessage;
  }

  /** HTTP status the error answers with. */
  get httpStatus(): number {
    return this.getStatus();
  }
}
