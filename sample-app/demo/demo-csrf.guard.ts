import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ForbiddenException, Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { SessionInterface } from 'nest-session';

/** Session data key of the demo page's CSRF token. */
export const DEMO_CSRF_KEY = 'demo-csrf';
/** Name of the hidden form field that carries the token. */
export const DEMO_CSRF_FIELD = '_csrf';

/**
 * The session's CSRF token for the demo page's forms, made (32 random bytes) and stored in the
 * session on first use. Starts the session: a form needs a session to be checked against.
 */
export async function demoCsrfToken(session: SessionInterface): Promise<string> {
  session.start();
  const stored = await session.getData(DEMO_CSRF_KEY);
  if (typeof stored === 'string') return stored;
  const token = randomBytes(32).toString('base64url');
  await session.putData(DEMO_CSRF_KEY, token);
  return token;
}

/**
 * Lets a demo form post through only when its `_csrf` field equals the token kept in the
 * session (synchronizer token pattern; the SameSite=Lax cookie is the first line). A post
 * without a session, without the field or with another value answers 403.
 */
@Injectable()
export class DemoCsrfGuard implements CanActivate {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const body = context.switchToHttp().getRequest<{ body?: unknown }>().body;
    const given = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[DEMO_CSRF_FIELD] : undefined;
    // The HTTP layer has resumed the session (if the cookie names one) before guards run.
    const expected = this.session.isStarted() ? await this.session.getData(DEMO_CSRF_KEY) : undefined;
    if (typeof given !== 'string' || typeof expected !== 'string' || !sameSecret(given, expected)) {
      throw new ForbiddenException('This form post has no valid CSRF token: reload the page and try again.');
    }
    return true;
  }
}

/** Constant-time comparison of two secrets of any length (hashing first evens the lengths). */
export function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}
