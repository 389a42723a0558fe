import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';

/**
 * Valid session data keys, session tags and cache identifiers (Flow's cache identifier
 * pattern, plus `.` and `:`): 1-250 characters of `A-Z a-z 0-9 _ % & - . :`. Keeping them to
 * this set means they are safe as Redis key parts, in logs and in URLs without escaping.
 */
export const IDENTIFIER_PATTERN = /^[A-Za-z0-9_%&\-.:]{1,250}$/;

/** @throws InvalidArgumentException naming `what` when `value` is not a valid identifier. */
export function assertIdentifier(value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string' || !IDENTIFIER_PATTERN.test(value)) {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : typeof value;
    throw new InvalidArgumentException(
      `Invalid ${what} ${shown}: use 1-250 characters of A-Z, a-z, 0-9, "_", "%", "&", "-", "." and ":".`,
    );
  }
}

/**
 * Cache entry identifiers: identifiers plus `~`. User keys and tags can never contain `~`, so
 * the session layer names its own storage entries with it (`<storageId>.~guard`,
 * `<storageId>.~bag:<key>`) without any risk of colliding with a user key. `~` is as safe as
 * the rest in Redis keys, logs and URLs.
 */
export const CACHE_IDENTIFIER_PATTERN = /^[A-Za-z0-9_%&\-.:~]{1,250}$/;

/** @throws InvalidArgumentException naming `what` when `value` is not a valid cache entry identifier. */
export function assertCacheIdentifier(value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string' || !CACHE_IDENTIFIER_PATTERN.test(value)) {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : typeof value;
    throw new InvalidArgumentException(
      `Invalid ${what} ${shown}: use 1-250 characters of A-Z, a-z, 0-9, "_", "%", "&", "-", ".", ":" and "~".`,
    );
  }
}
