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
    if (eq !== -1 && eq < end && isName(text, start, eq, name)) {
      let value = text.slice(eq + 1, end).trim();
      if (value.length > 1 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      if (value.length <= 256 && isValid(value)) found.push(value);
    }
    start = end + 1;
  }
  return found;
}

/**
 * Whether `text` between `from` and `to`, without the whitespace `String.prototype.trim`
 * removes, is `name`: the same test as `text.slice(from, to).trim() === name` without the two
 * strings it allocates for every other cookie of the header.
 */
function isName(text: string, from: number, to: number, name: string): boolean {
  while (from < to && isTrimmed(text.charCodeAt(from))) from++;
  while (to > from && isTrimmed(text.charCodeAt(to - 1))) to--;
  return to - from === name.length && text.startsWith(name, from);
}

/** The characters `String.prototype.trim` removes (ECMAScript WhiteSpace and LineTerminator). */
function isTrimmed(code: number): boolean {
  return (
    code === 0x20 ||
    (code >= 0x09 && code <= 0x0d) ||
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  );
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
