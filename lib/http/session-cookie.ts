import type { ResolvedSessionOptions } from '../session/session-module.options.js';

/** At most this many cookies of our name are considered (a repeated cookie is not a DoS lever). */
const MAX_CANDIDATES = 4;

/**
 * Values of the cookie `name` in a Cookie header, in header order (browsers send the most
 * specific path first), keeping only those `isValid` accepts. Malformed pairs are skipped,
 * never thrown on: a client cannot make session handling fail with a bad header.
 */
export function readSessionCookies(
  header: string | string[] | undefined,
  name: string,
  isValid: (id: string) => boolean,
): string[] {
  if (header === undefined) return [];
  const text = Array.isArray(header) ? header.join('; ') : header;
  const found: string[] = [];
  let start = 0;
  while (start < text.length && found.length < MAX_CANDIDATES) {
    let end = text.indexOf(';', start);
    if (end === -1) end = text.length;
    const eq = text.indexOf('=', start);
    if (eq !== -1 && eq < end && text.slice(start, eq).trim() === name) {
      let value = text.slice(eq + 1, end).trim();
      if (value.length > 1 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      if (value.length <= 256 && isValid(value)) found.push(value);
    }
    start = end + 1;
  }
  return found;
}

/**
 * The Set-Cookie value for a session id, or for expiring the cookie when `id` is undefined.
 * Cookie-name prefixes (RFC 6265bis) are honoured whatever the options say, so a name set at
 * run time (`Session.setName`) works too: `__Host-` always gets `Secure`, `Path=/` and no
 * `Domain`; `__Secure-` always gets `Secure`. A browser drops such a cookie otherwise.
 */
export function serializeSessionCookie(
  options: ResolvedSessionOptions['cookie'],
  name: string,
  id: string | undefined,
  maxAge: number | undefined,
  secureRequest: boolean,
): string {
  const host = name.startsWith('__Host-');
  const prefixed = host || name.startsWith('__Secure-');
  let cookie = `${name}=${id ?? ''}; Path=${host ? '/' : options.path}`;
  if (options.domain && !host) cookie += `; Domain=${options.domain}`;
  if (id === undefined) {
    cookie += '; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0';
  } else if (maxAge !== undefined && maxAge > 0) {
    const seconds = Math.floor(maxAge);
    cookie += `; Max-Age=${seconds}; Expires=${new Date(Date.now() + seconds * 1000).toUTCString()}`;
  }
  if (options.httpOnly) cookie += '; HttpOnly';
  if (prefixed || options.secure === true || (options.secure === 'auto' && secureRequest)) cookie += '; Secure';
  cookie +=
    options.sameSite === 'lax' ? '; SameSite=Lax' : options.sameSite === 'strict' ? '; SameSite=Strict' : '; SameSite=None';
  return cookie;
}
