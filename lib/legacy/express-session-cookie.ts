import { createHmac, timingSafeEqual } from 'node:crypto';

/** Longest express-session id accepted (uid-safe makes 32 characters; custom `genid`s are bounded too). */
const MAX_SID_LENGTH = 256;

/**
 * The session id in an express-session cookie value as the browser sends it (URL-encoded
 * `s:<sid>.<signature>`, the signature being base64 HMAC-SHA256 of the id without `=` padding,
 * as `cookie-signature` makes it), or `undefined` when the value is malformed or no secret
 * signed it. Every secret is tried (newest first, as express-session's `secret` array), each
 * with a constant-time comparison, so a forged cookie learns nothing from the timing.
 */
export function unsignExpressSessionCookie(value: string, secrets: readonly string[]): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    return undefined;
  }
  if (!decoded.startsWith('s:')) return undefined;
  const signed = decoded.slice(2);
  const dot = signed.lastIndexOf('.');
  if (dot <= 0 || dot > MAX_SID_LENGTH) return undefined;
  const sid = signed.slice(0, dot);
  const given = Buffer.from(signed.slice(dot + 1));
  let valid = false;
  for (const secret of secrets) {
    const expected = Buffer.from(createHmac('sha256', secret).update(sid).digest('base64').replace(/=+$/, ''));
    // The length of a valid signature is public (always 43 characters); only equal lengths are compared.
    if (expected.length === given.length && timingSafeEqual(expected, given)) valid = true;
  }
  return valid ? sid : undefined;
}
