import { InvalidArgumentException } from './invalid-argument.exception.js';

/**
 * Thrown when a write would take a session beyond one of its limits (`maxEntryBytes`,
 * `maxKeysPerSession`, `maxTagsPerSession`): nothing is stored. HTTP: 413. The message names
 * the limit and the key or tag the caller passed, never an internal identifier. A kind of
 * `InvalidArgumentException` (the value is the problem), answered with 413 instead of 400.
 */
export class SessionLimitExceededException extends InvalidArgumentException {
  static override readonly httpStatus: number = 413;

  static entryTooLarge(key: string, bytes: number, max: number): SessionLimitExceededException {
    return new this(
      `Cannot store session key "${key}": its value takes ${bytes} bytes serialized, more than maxEntryBytes (${max}). ` +
        `Store less data under one key, or raise maxEntryBytes.`,
    );
  }

  static tooManyKeys(key: string, max: number): SessionLimitExceededException {
    return new this(
      `Cannot store session key "${key}": the session already holds maxKeysPerSession (${max}) keys. ` +
        `Remove keys first, group values under fewer keys, or raise maxKeysPerSession.`,
    );
  }

  static tooManyTags(tag: string, max: number): SessionLimitExceededException {
    return new this(
      `Cannot add session tag "${tag}": the session already carries maxTagsPerSession (${max}) tags. ` +
        `Remove tags first, or raise maxTagsPerSession.`,
    );
  }

  /** A backend's own size limit refused an entry (its message, naming the entry, goes to the log only). */
  static refusedByStore(message: string): SessionLimitExceededException {
    return new this(message, 'A session value is too large to store.');
  }
}
