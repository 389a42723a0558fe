import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';

/**
 * Valid session data keys, session tags and cache identifiers (Flow's cache identifier
 * pattern, plus `.` and `:`): 1-250 characters of `A-Z a-z 0-9 _ % & - . :`. Keeping them to
 * this set means they are safe as Redis key parts, in logs and in URLs without escaping.
 */
export const IDENTIFIER_PATTERN = /^[A-Za-z0-9_%&\-.:]{1,250}$/;

/**
 * Names that match the pattern but are refused as keys, tags, bag names and flash types:
 * assigned to a plain object they reach its prototype (`putData('__proto__', {isAdmin: true})`
 * would make every attribute listing answer `isAdmin`), whatever the code that builds the object.
 */
const RESERVED_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** Whether `name` is one of the names refused because objects would treat them specially. */
export function isReservedName(name: string): boolean {
  return RESERVED_NAMES.has(name);
}

/** @throws InvalidArgumentException naming `what` when `value` is a reserved name (see {@link isReservedName}). */
export function assertNotReserved(value: unknown, what: string): void {
  if (typeof value === 'string' && RESERVED_NAMES.has(value)) {
    throw new InvalidArgumentException(
      `Invalid ${what} ${JSON.stringify(value)}: "__proto__", "constructor" and "prototype" are reserved; choose another name.`,
    );
  }
}

/** @throws InvalidArgumentException naming `what` when `value` is not a valid identifier (or a reserved name). */
export function assertIdentifier(value: unknown, what: string): asserts value is string {
  assertNotReserved(value, what);
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
  if (typeof value !== 'string' || !CACHE_IDENTIFIER_PATTERN.test(value) || RESERVED_NAMES.has(value)) {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : typeof value;
    // A cache entry id embeds a storage id: the message is for the log only (fromStore).
    throw InvalidArgumentException.fromStore(
      `Invalid ${what} ${shown}: use 1-250 characters of A-Z, a-z, 0-9, "_", "%", "&", "-", ".", ":" and "~".`,
    );
  }
}

/**
 * @throws InvalidArgumentException (`fromStore`: a cache tag can embed a storage id, so the
 * message is for the log only) when `value` is not a valid cache tag.
 */
export function assertCacheTag(value: unknown): asserts value is string {
  try {
    assertIdentifier(value, 'cache tag');
  } catch (error) {
    throw InvalidArgumentException.fromStore((error as Error).message);
  }
}
