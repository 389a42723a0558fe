import { createHash } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Subject, type Observable } from 'rxjs';

/** A session was stored for the first time (an anonymous one once it holds data). */
export interface SessionStartedEvent {
  readonly type: 'started';
  readonly sessionId: string;
  readonly userId?: string;
  /** Epoch ms. */
  readonly timestamp: number;
}

/** A session got a new id (`renewId`, `regenerate`, `bindToUser`); the previous ids are dead. */
export interface SessionRenewedEvent {
  readonly type: 'renewed';
  readonly sessionId: string;
  readonly previousIds: readonly string[];
  readonly timestamp: number;
}

/** A session was destroyed: by its own request (`destroy()`), or remotely through `SessionManager`. */
export interface SessionDestroyedEvent {
  readonly type: 'destroyed';
  readonly sessionId: string;
  /** What the caller passed to `destroy(reason)`, e.g. `'logout'`. */
  readonly reason?: string;
  /** Destroyed through `SessionManager` (not by the session's own request). */
  readonly remote: boolean;
  readonly timestamp: number;
}

/**
 * An expired session was removed by garbage collection. (An expired session can never be
 * resumed, whether or not GC has removed it yet; this event tells when its data is gone.)
 */
export interface SessionExpiredEvent {
  readonly type: 'expired';
  readonly sessionId: string;
  readonly userId?: string;
  readonly timestamp: number;
}

/** A session was bound to a user (`bindToUser`), committed. */
export interface SessionUserBoundEvent {
  readonly type: 'userBound';
  readonly sessionId: string;
  readonly userId: string;
  readonly timestamp: number;
}

/** A garbage collection run finished (runs skipped because another one held the GC lock emit nothing). */
export interface SessionGcEvent {
  readonly type: 'gc';
  /** Expired sessions removed by this run. */
  readonly removed: number;
  readonly durationMs: number;
  readonly timestamp: number;
}

/** Everything `SessionManager.events$` emits; switch on `type`. */
export type SessionEvent =
  | SessionStartedEvent
  | SessionRenewedEvent
  | SessionDestroyedEvent
  | SessionExpiredEvent
  | SessionUserBoundEvent
  | SessionGcEvent;

/**
 * The event channel of one SessionModule: sessions and the manager emit into it, the manager
 * exposes it as `events$`. Events are emitted synchronously after the store write they report;
 * subscribers must not throw (rxjs reports an error thrown in `next` as uncaught) and should
 * move slow work off the request path (e.g. `observeOn(asyncScheduler)`).
 *
 * Logs at debug level per session (ids shown only as a short hash: a session id is a
 * credential) and at log level per GC run that removed something.
 */
export class SessionEventBus {
  private readonly subject = new Subject<SessionEvent>();
  private readonly logger = new Logger('SessionEvents');
  readonly events$: Observable<SessionEvent> = this.subject.asObservable();

  emit(event: SessionEvent): void {
    this.log(event);
    this.subject.next(event);
  }

  /** Completes the stream (module shutdown); later emits are dropped. */
  complete(): void {
    this.subject.complete();
  }

  private log(event: SessionEvent): void {
    if (event.type === 'gc') {
      const message = `Garbage collection removed ${event.removed} expired session(s) in ${event.durationMs.toFixed(1)} ms`;
      if (event.removed > 0) this.logger.log(message);
      else if (Logger.isLevelEnabled('debug')) this.logger.debug(message);
      return;
    }
    if (!Logger.isLevelEnabled('debug')) return;
    const who = `session #${fingerprint(event.sessionId)}`;
    switch (event.type) {
      case 'started':
        this.logger.debug(`${who} started${event.userId === undefined ? '' : ' (user-bound)'}`);
        break;
      case 'renewed':
        this.logger.debug(`${who} renewed (replaces ${event.previousIds.map((id) => '#' + fingerprint(id)).join(', ')})`);
        break;
      case 'destroyed':
        this.logger.debug(
          `${who} destroyed${event.remote ? ' remotely' : ''}${event.reason === undefined ? '' : ` (reason: ${event.reason})`}`,
        );
        break;
      case 'expired':
        this.logger.debug(`${who} expired and was collected`);
        break;
      case 'userBound':
        this.logger.debug(`${who} bound to a user`);
        break;
    }
  }
}

/** A short, non-reversible tag of a session id for logs. */
function fingerprint(id: string): string {
  return createHash('sha256').update(id).digest('base64url').slice(0, 8);
}
