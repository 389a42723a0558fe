import { applyDecorators, SetMetadata, UseInterceptors } from '@nestjs/common';
import type { LockOptions } from '../locking/session-locker.interface.js';
import { SESSION_LOCK_METADATA, SessionLockInterceptor } from './session-lock.interceptor.js';

/**
 * Holds the session lock for the whole request (route or controller): the session is read
 * fresh after the lock is taken, and written and unlocked when the response goes out or the
 * handler fails. Concurrent requests of the same session queue (first come, first served);
 * one that waits longer than `waitTimeout` gets 423 Locked. Starts a session if there is none.
 *
 * @param options `waitTimeout` and `ttl` in ms; default: the module's `lock` options
 *   (5000 / 10000).
 */
export function SessionLock(options: Partial<LockOptions> = {}): MethodDecorator & ClassDecorator {
  return applyDecorators(SetMetadata(SESSION_LOCK_METADATA, options), UseInterceptors(SessionLockInterceptor));
}
