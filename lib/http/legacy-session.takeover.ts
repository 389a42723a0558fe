import { Logger } from '@nestjs/common';
import { IDENTIFIER_PATTERN, isReservedName } from '../cache/identifier.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { unsignExpressSessionCookie } from '../legacy/express-session-cookie.js';
import type { ResolvedLegacySessionOptions } from '../legacy/legacy-session.options.js';
import type { Session } from '../session/session.js';
import { readSessionCookies } from './session-cookie.js';

/**
 * Takes express-session users over (option `legacy`): the HTTP handler asks it for a request
 * without a session cookie of ours. A validly signed legacy cookie's session is taken from the
 * legacy store (read and removed in one atomic step) into the request's new session: every key
 * but `cookie` becomes a data key, the legacy user (`passport.user`) the bound user. The session
 * is stored by the request's normal commit, and its response expires the legacy cookie.
 *
 * Two parallel requests with the same legacy cookie: the store's take is atomic, so exactly one
 * of them gets the data and answers with the new session; the other finds nothing and goes on as
 * a request without a session (as for any unknown id), so both end in that one session. A bad
 * signature, an unknown or already taken id start nothing and cost no write. If the winner's
 * commit fails (store down), the legacy session is gone all the same: the user is logged out,
 * never given two sessions.
 */
export class LegacySessionTakeover {
  private readonly logger = new Logger('LegacySession');
  /** Sessions of this process that were taken over and whose response must expire the legacy cookie. */
  private readonly takenOver = new WeakSet<Session>();

  constructor(readonly options: ResolvedLegacySessionOptions) {}

  /** The legacy session id of a request's Cookie header when a secret signed it; no I/O. */
  legacyId(cookieHeader: string | string[] | undefined): string | undefined {
    const values = readSessionCookies(cookieHeader, this.options.cookie.name, isPlausible);
    for (const value of values) {
      const sid = unsignExpressSessionCookie(value, this.options.secrets);
      if (sid !== undefined) return sid;
    }
    return undefined;
  }

  /**
   * Loads (and removes) the legacy session `sid` into `session` (not started yet): starts it,
   * copies the data and binds the user. Answers whether there was a legacy session.
   * @throws StoreUnavailableException when the legacy store fails (nothing was taken).
   */
  async takeOver(session: Session, sid: string): Promise<boolean> {
    let data;
    try {
      data = await this.options.loader.take(sid);
    } catch (error) {
      throw StoreUnavailableException.create('take over the legacy session', error);
    }
    if (data === undefined) return false;
    session.start();
    const skipped: string[] = [];
    for (const [key, value] of Object.entries(data)) {
      if (key === 'cookie') continue;
      if (!IDENTIFIER_PATTERN.test(key) || isReservedName(key)) {
        skipped.push(key.slice(0, 40));
        continue;
      }
      try {
        await session.putData(key, value);
      } catch {
        skipped.push(key); // e.g. a value our serializer cannot store; its key is logged, never the value
      }
    }
    let userId = this.options.userIdOf(data);
    if (userId !== undefined) {
      try {
        session.bindToUser(userId);
      } catch {
        // e.g. a user id longer than 1024 characters: the data is kept, the session stays anonymous
        skipped.push('(user binding)');
        userId = undefined;
      }
    }
    this.takenOver.add(session);
    this.logger.log(
      `Took over a legacy session as session #${session.getHandle()}${userId === undefined ? '' : ' (user-bound)'}` +
        (skipped.length === 0 ? '' : `; keys not taken over: ${skipped.map((k) => JSON.stringify(k)).join(', ')}`),
    );
    return true;
  }

  /** Whether the response of `session` must expire the legacy cookie. */
  mustExpireCookie(session: Session): boolean {
    return this.takenOver.has(session);
  }

  /** Set-Cookie that expires the legacy cookie (with the path and domain it was set with). */
  expiryCookie(secure: boolean): string {
    const { name, path, domain } = this.options.cookie;
    return (
      `${name}=; Path=${path}${domain === undefined ? '' : `; Domain=${domain}`}` +
      `; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly${secure ? '; Secure' : ''}`
    );
  }
}

/** Only values shaped like a signed express-session cookie are unsigned (`s:` URL-encoded or not). */
function isPlausible(value: string): boolean {
  return value.startsWith('s%3A') || value.startsWith('s:');
}
