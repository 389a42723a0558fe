import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { from, switchMap, type Observable } from 'rxjs';
import { SessionOutsideRequestException } from '../errors/session-outside-request.exception.js';
import type { LockOptions } from '../locking/session-locker.interface.js';
import { sessionOfExecution } from './execution-session.js';

/** Metadata key of `@SessionLock()`. */
export const SESSION_LOCK_METADATA = 'nest-session:lock';

/**
 * Takes the session lock (`open()`) before the handler runs. The HTTP adapter's commit at the
 * end of the request writes under that lock and releases it, on success and on failure alike,
 * so a lock is never left behind (a client that disconnects releases it too). When the store
 * was down at resume (the session is unavailable, see SessionHttpHandler), `open()` rejects
 * with StoreUnavailableException and the route answers 503 without running the handler.
 * In a WebSocket gateway (through `SessionWebSocketAdapter`) the message is the unit: the
 * lock is held until the message's handler settles.
 */
@Injectable()
export class SessionLockInterceptor implements NestInterceptor {
  constructor(private readonly reflector: Reflector) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const options = this.reflector.getAllAndOverride<Partial<LockOptions> | undefined>(SESSION_LOCK_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    const session = sessionOfExecution(context);
    if (session === undefined) throw SessionOutsideRequestException.create('lock the session with @SessionLock()');
    return from(session.open(options ?? {})).pipe(switchMap(() => next.handle()));
  }
}
