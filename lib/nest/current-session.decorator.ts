import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { SessionOutsideRequestException } from '../errors/session-outside-request.exception.js';
import type { SessionInterface } from '../session/session.interface.js';
import { sessionOfExecution } from './execution-session.js';

/**
 * Handler parameter decorator for the current request's session:
 * `@Get() show(@CurrentSession() session: SessionInterface)`. Also in WebSocket gateways
 * (the message's session, through `SessionWebSocketAdapter`) and GraphQL resolvers.
 * @throws SessionOutsideRequestException where the session layer does not run.
 */
export const CurrentSession = createParamDecorator((_data: unknown, context: ExecutionContext): SessionInterface => {
  const session = sessionOfExecution(context);
  if (session === undefined) throw SessionOutsideRequestException.create('resolve @CurrentSession()');
  return session;
});
