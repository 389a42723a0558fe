import { SessionError } from './session.error.js';

/** What a client learns of an argument a cache backend refused: its message names internal entries. */
const STORE_REFUSED = 'The session could not be stored.';

/** Thrown for a bad key, tag, identifier or argument value; the message names it. */
export class InvalidArgumentException extends SessionError {
  static override readonly httpStatus: number = 400;

  /**
   * A cache backend refused an argument: the session layer validates what a client can
   * influence (keys, tags, sizes) before a backend sees it, so this is a bug or a
   * misconfiguration, not bad input: HTTP 500, and the message (which names cache entries,
   * i.e. storage ids) goes to the log only.
   */
  static fromStore(message: string): InvalidArgumentException {
    return new this(message, STORE_REFUSED, 500);
  }
}
