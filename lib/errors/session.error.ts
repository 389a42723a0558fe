/**
 * Base class of every error this package throws. Catch `SessionError` to handle them all;
 * each subclass names one failure and its message says how to fix it.
 */
export class SessionError extends Error {
  override readonly name: string = this.constructor.name;
  /** HTTP status the HTTP adapters answer with when this error escapes a request. */
  readonly httpStatus: number = 500;
}
