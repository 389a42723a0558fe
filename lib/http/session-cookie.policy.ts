import type { SessionCookieFacts } from '../session/session-cookie-facts.js';

/** What a response must do with the session cookie. */
export type CookieAction =
  | { readonly kind: 'none' }
  | { readonly kind: 'set'; readonly id: string; readonly maxAge?: number }
  | { readonly kind: 'clear' };

const NONE: CookieAction = Object.freeze({ kind: 'none' });
const CLEAR: CookieAction = Object.freeze({ kind: 'clear' });

/**
 * The cookie a response carries after the request's commits. It is expired when the session
 * was destroyed (and no new one stored); it is set when the client does not hold the id yet
 * (created or renewed), and on every metadata write of a permanent session so that its
 * Max-Age slides with activity. Otherwise nothing is sent: an unchanged cookie costs no header.
 */
export function cookieAfterCommit(facts: SessionCookieFacts): CookieAction {
  if (facts.destroyed) return CLEAR;
  if (facts.idIssued || (facts.metadataWritten && facts.permanent)) return setCookie(facts);
  return NONE;
}

/**
 * The cookie for headers that go out before the commit (streamed responses): the one the
 * commit will make valid when it stores an id the client does not hold yet, otherwise what
 * the commits so far call for.
 */
export function cookieBeforeCommit(facts: SessionCookieFacts): CookieAction {
  if (!facts.destroyed && facts.idIssuePending) return setCookie(facts);
  return cookieAfterCommit(facts);
}

function setCookie(facts: SessionCookieFacts): CookieAction {
  // Facts without an id cannot name a session: nothing to send.
  if (facts.id === undefined) return NONE;
  return { kind: 'set', id: facts.id, maxAge: facts.cookieLifetime };
}
