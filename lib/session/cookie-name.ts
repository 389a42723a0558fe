/** RFC 6265 cookie-name token characters. */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Whether `name` can be a cookie name (a non-empty RFC 6265 token); the one check behind the
 * `cookie.name` option and `Session.setName`, each of which reports a failure in its own terms.
 */
export function isCookieName(name: unknown): name is string {
  return typeof name === 'string' && COOKIE_NAME.test(name);
}
