import type { Observable } from 'rxjs';
import type { SessionEvent } from './session-events.js';

/** Which part of the store an operation went to. */
export type SessionStorePart = 'metadata' | 'storage' | 'locker';

/**
 * Measurement hooks of one `SessionModule` (option `instrumentation`), e.g. the OpenTelemetry
 * metrics of 'nest-session/opentelemetry'. Every hook is optional and called synchronously on
 * the request path, so it must be cheap and must not throw. Without the option nothing is
 * wrapped or measured: no cost at all.
 */
export interface SessionInstrumentation {
  /** Called once, when the module's store is built, with `SessionManager.events$`. */
  observe?(events$: Observable<SessionEvent>): void;
  /** A request's commit finished (`ok`) or failed (`error`, with the error's class name). */
  commit?(durationMs: number, outcome: 'ok' | 'error', error?: string): void;
  /** A session lock was acquired after waiting `waitMs` (0 when it was free). */
  lockAcquired?(waitMs: number): void;
  /** A session lock was not free within `lock.waitTimeout` (the request answers 423). */
  lockTimedOut?(waitMs: number): void;
  /** A store operation failed because the store could not be reached or answered an error. */
  storeError?(part: SessionStorePart, operation: string): void;
}
