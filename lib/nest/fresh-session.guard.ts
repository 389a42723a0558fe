import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ReauthenticationRequiredException } from '../errors/reauthentication-required.exception.js';
import { SessionNotAuthenticatedException } from '../errors/session-not-authenticated.exception.js';
import { SessionOutsideRequestException } from '../errors/session-outside-request.exception.js';
import { SESSION_REQUEST_KEY } from '../session/session-request.key.js';
import type { Session } from '../session/session.js';

/** Metadata key of `@RequireFreshSession()`: the maximum authentication age in seconds. */
export const FRESH_SESSION_METADATA = 'nest-session:fresh-session';

/**
 * The guard behind `@RequireFreshSession(maxAgeSeconds)`: lets a request through only when its
 * session is bound to a user who authenticated (logged in, or `markAuthenticated()`) at most
 * `maxAgeSeconds` ago.
 * @throws SessionNotAuthenticatedException (401) when the session is bound to no user.
 * @throws ReauthenticationRequiredException (401, body `reauthenticate: true`) when the
 *   authentication is older.
 */
@Injectable()
export class FreshSessionGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    const maxAge = this.reflector.getAllAndOverride<number | undefined>(FRESH_SESSION_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (maxAge === undefined) return true;
    const session = context.switchToHttp().getRequest<{ [SESSION_REQUEST_KEY]?: Session } | undefined>()?.[SESSION_REQUEST_KEY];
    if (session === undefined) throw SessionOutsideRequestException.create('check @RequireFreshSession()');
    // The HTTP layer has resumed the session before guards run.
    if (!session.isStarted() || session.getUserId() === undefined) {
      throw SessionNotAuthenticatedException.create('use this route');
    }
    const authenticatedAt = session.getAuthenticatedAt();
    if (authenticatedAt === undefined || Date.now() - authenticatedAt > maxAge * 1000) {
      throw ReauthenticationRequiredException.create(maxAge);
    }
    return true;
  }
}
