import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { SessionOutsideRequestException } from '../errors/session-outside-request.exception.js';
import { SESSION_REQUEST_KEY } from '../session/session-request.key.js';
import type { Session } from '../session/session.js';
import type { SessionInterface } from '../session/session.interface.js';

/**
 * Handler parameter decorator for the current request's session:
 * `@Get() show(@CurrentSession() session: SessionInterface)`.
 * @throws SessionOutsideRequestException when used on a non-HTTP handler.
 */
export const CurrentSession = createParamDecorator((_data: unknown, context: ExecutionContext): SessionInterface => {
  const request = context.switchToHttp().getRequest<{ [SESSION_REQUEST_KEY]?: Session } | undefined>();
  const session = request?.[SESSION_REQUEST_KEY];
  if (session === undefined) throw SessionOutsideRequestException.create('resolve @CurrentSession()');
  return session;
});
