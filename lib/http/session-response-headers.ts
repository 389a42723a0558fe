import type { ResolvedSessionOptions } from '../session/session-module.options.js';
import type { CookieAction } from './session-cookie.policy.js';

/** A header a response carries for its session, besides Set-Cookie. */
export interface SessionResponseHeader {
  readonly name: string;
  readonly value: string;
  /** Only when the application has not set this header itself. */
  readonly unlessSet: boolean;
}

/** Where a request keeps its session id: the cookie, or the `idHeader` (header mode). */
export type SessionIdCarrier = 'cookie' | 'header';

const NONE: readonly SessionResponseHeader[] = Object.freeze([]);
const NO_STORE: SessionResponseHeader = Object.freeze({ name: 'cache-control', value: 'no-store', unlessSet: true });

/**
 * The headers a response carries with a cookie `action`:
 * - any response that hands out or expires an id gets `Cache-Control: no-store` (unless the
 *   app set its own), so no shared cache keeps and replays a response carrying a credential;
 * - in header mode, the id itself in the `idHeader` (empty when the session ended), which a
 *   cookie-mode response never carries;
 * - with `cookie.clearSiteData`, `Clear-Site-Data: "cookies"` on the response that ends the session.
 */
export function sessionResponseHeaders(
  action: CookieAction,
  carrier: SessionIdCarrier,
  options: ResolvedSessionOptions,
): readonly SessionResponseHeader[] {
  if (action.kind === 'none') return NONE;
  const headers: SessionResponseHeader[] = [NO_STORE];
  if (carrier === 'header' && options.idHeader !== undefined) {
    headers.push({ name: options.idHeader, value: action.kind === 'set' ? action.id : '', unlessSet: false });
  }
  if (action.kind === 'clear' && options.cookie.clearSiteData) {
    headers.push({ name: 'clear-site-data', value: '"cookies"', unlessSet: false });
  }
  return headers;
}
