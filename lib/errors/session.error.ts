import { HttpException, Logger } from '@nestjs/common';

/** What a client is told of a 500 in production: nothing about the code that failed. */
const GENERIC_500 = 'Internal server error';

/**
 * Base class of every error this package throws. Catch `SessionError` to handle them all;
 * each subclass names one failure and its message says how to fix it.
 *
 * It extends Nest's `HttpException` so an error that escapes a handler becomes the right
 * status (`httpStatus` of the subclass) through Nest's own exception layer, with no filter to
 * register, and user filters see a normal `HttpException`.
 *
 * A 500 means the application misused the API (a session used before `start()`, outside a
 * request, an unsupported operation): with `NODE_ENV=production` its body says only
 * "Internal server error"; elsewhere it carries the message, which says how to fix the code.
 * Nest's exception layer logs no `HttpException`, so an error of status 500 or more is logged
 * (once, by the `Session` logger, full message) when its response is built.
 */
export class SessionError extends HttpException {
  /** HTTP status of this kind of error. */
  static readonly httpStatus: number = 500;

  /**
   * What a client may be told: the message without details that belong in the log only
   * (driver errors, entry ids, addresses). Nest's exception layer and the session's HTTP
   * handler answer with this; `message` keeps the details for logs.
   */
  readonly publicMessage: string;

  private logged = false;

  /**
   * @param message the full message, for logs and for the developer who catches the error.
   * @param publicMessage what a client may see; defaults to `message` (fine when it names only
   *   what the client sent, such as its own key). A 500 in production always shows a generic text.
   * @param status HTTP status; defaults to the class's `httpStatus`.
   */
  constructor(message: string, publicMessage: string = message, status: number = new.target.httpStatus) {
    const shown = status === 500 && process.env.NODE_ENV === 'production' ? GENERIC_500 : publicMessage;
    super(
      {
        statusCode: status,
        error: status === 500 && shown === GENERIC_500 ? 'Internal Server Error' : new.target.name,
        message: shown,
      },
      status,
    );
    this.message = message;
    this.publicMessage = shown;
  }

  /** HTTP status the error answers with. */
  get httpStatus(): number {
    return this.getStatus();
  }

  /** The response body; the first call for a status >= 500 logs the full message (see the class comment). */
  override getResponse(): string | object {
    this.logServerError();
    return super.getResponse();
  }

  /** Logs a status >= 500 once (500 as an error with its stack, others as a warning). */
  logServerError(): void {
    const status = this.getStatus();
    if (this.logged || status < 500) return;
    this.logged = true;
    const logger = new Logger('Session');
    if (status === 500) logger.error(this.stack ?? this.message);
    else logger.warn(this.message);
  }
}
