import { applyDecorators, SetMetadata, UseGuards } from '@nestjs/common';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { FRESH_SESSION_METADATA, FreshSessionGuard } from './fresh-session.guard.js';

/**
 * Re-authentication age for sensitive actions (ASVS 7.5.1), on a route or controller: the
 * request's session must be bound to a user who logged in or confirmed their credentials
 * (`session.markAuthenticated()`) within `maxAgeSeconds`. Otherwise the route answers 401 with
 * `reauthenticate: true` in the body (`ReauthenticationRequiredException`); a request that is
 * not logged in answers 401 (`SessionNotAuthenticatedException`).
 * @param maxAgeSeconds e.g. 300; a number > 0.
 * @throws InvalidArgumentException at decoration time for a bad `maxAgeSeconds`.
 */
export function RequireFreshSession(maxAgeSeconds: number): MethodDecorator & ClassDecorator {
  if (typeof maxAgeSeconds !== 'number' || !Number.isFinite(maxAgeSeconds) || maxAgeSeconds <= 0) {
    throw new InvalidArgumentException(`@RequireFreshSession(${String(maxAgeSeconds)}): use a number of seconds > 0.`);
  }
  return applyDecorators(SetMetadata(FRESH_SESSION_METADATA, maxAgeSeconds), UseGuards(FreshSessionGuard));
}
