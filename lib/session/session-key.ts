import * as crypto from 'node:crypto';

// `crypto.hash` (Node >= 20.12) is several times faster than createHash for one-shot hashing.
const sha256 = (value: string): string =>
  typeof crypto.hash === 'function'
    ? crypto.hash('sha256', value, 'base64url')
    : crypto.createHash('sha256').update(value).digest('base64url');

declare const metadataKeyBrand: unique symbol;

/**
 * The id of a session's entry in the metadata cache: a digest of its public id (the cookie
 * value), never the id itself, so a copy of the store yields no working cookie. Branded so that a raw id cannot be passed
 * where a key is expected. Only `metadataKeyOf` makes one.
 */
export type MetadataKey = string & { readonly [metadataKeyBrand]: true };

/** Characters of a handle (96 bits of SHA-256, base64url). */
const HANDLE_LENGTH = 16;
/** Domain separation: the handle's hash input can never be an id's or another digest's. */
const HANDLE_DOMAIN = 'nest-session/handle:';
/** Prefix of a key's group (`h:<handle>`); no session tag or internal tag starts like that. */
const GROUP_PREFIX = 'h:';
const HANDLE_PATTERN = /^[A-Za-z0-9_-]{16}$/;
const KEY_PATTERN = /^h:[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{43}$/;

/*
 * Layout: key = `h:<handle>.<SHA-256(id)>`, handle = the first 16 base64url characters of
 * SHA-256(HANDLE_DOMAIN + SHA-256(id)).
 *
 * - A key holds a digest of the id: nothing in the store (key names, tag sets, values, MONITOR,
 *   slowlog) is a working cookie. Ids are 192 random bits, so a plain SHA-256 is enough.
 * - The handle is a digest of the key's digest part: listings, which only know keys, read it off
 *   the key; it cannot be turned into the key's digest, let alone the id.
 * - `h:<handle>` is the key's group (the text before its first `.`). Every metadata entry carries
 *   it as a cache tag, so a handle finds its key in O(1). On Redis an entry's own group tag lives
 *   in the entry's slot and is kept by the same write script: the index costs no extra command.
 */

/** The metadata key of the session whose public id (cookie value) is `id`. */
export function metadataKeyOf(id: string): MetadataKey {
  const digest = sha256(id);
  return `${GROUP_PREFIX}${sha256(HANDLE_DOMAIN + digest).slice(0, HANDLE_LENGTH)}.${digest}` as MetadataKey;
}

/** Whether `value` has the form of a metadata key (e.g. an id read from a listing). */
export function isMetadataKey(value: string): value is MetadataKey {
  return KEY_PATTERN.test(value);
}

/**
 * The handle of the session stored under `key`: a short, non-secret name for listings, events,
 * logs and "revoke this device". It cannot be turned into the key or into a working cookie.
 * (For a string that is not a key, e.g. an entry left by an older version, a digest of it.)
 */
export function handleOf(key: string): string {
  return isMetadataKey(key)
    ? key.slice(GROUP_PREFIX.length, GROUP_PREFIX.length + HANDLE_LENGTH)
    : sha256(HANDLE_DOMAIN + key).slice(0, HANDLE_LENGTH);
}

/** Whether `value` has the form of a handle. */
export function isHandle(value: unknown): value is string {
  return typeof value === 'string' && HANDLE_PATTERN.test(value);
}

/** The metadata cache tag that the entry of the session with `handle` carries (its key's group). */
export function handleTag(handle: string): string {
  return GROUP_PREFIX + handle;
}
