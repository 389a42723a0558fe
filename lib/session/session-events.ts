import { Logger } from '@nestjs/common';
import { Observable, Subject, Subscriber, type Observer, type Operator, type Subscription, type TeardownLogic } from 'rxjs';

/*
 * Events name sessions by their handle (`SessionInfo.handle`, `SessionManager.getSessionByHandle`):
 * a short, non-secret digest. They never carry a session id: an id is the cookie value, a
 * credential, and subscribers forward events to logs, queues and audit trails.
 */

/** A session was stored for the first time (an anonymous one once it holds data). */
export interface SessionStartedEvent {
  readonly type: 'started';
  /** The session's handle (never its id). */
  readonly handle: string;
  readonly userId?: string;
  /** Epoch ms. */
  readonly timestamp: number;
}

/**
 * A session got a new id (`renewId`, `regenerate`, `bindToUser`); the previous ids are dead. A
 * handle is derived from the id, so the session's handle changes with it: `previousHandles`
 * links the new one to the old.
 */
export interface SessionRenewedEvent {
  readonly type: 'renewed';
  /** Handle of the new id. */
  readonly handle: string;
  /** Handles of the ids renewed away. */
  readonly previousHandles: readonly string[];
  readonly timestamp: number;
}

/** A session was destroyed: by its own request (`destroy()`), or remotely through `SessionManager`. */
export interface SessionDestroyedEvent {
  readonly type: 'destroyed';
  readonly handle: string;
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
  readonly handle: string;
  readonly userId?: string;
  readonly timestamp: number;
}

/** A session was bound to a user (`bindToUser`), committed. */
export interface SessionUserBoundEvent {
  readonly type: 'userBound';
  readonly handle: string;
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
 * `events$` as subscribers see it: a subscriber that throws is isolated. rxjs would report an
 * error thrown in `next` as uncaught (a crash of the process, from a timer); here it is logged
 * and the other subscribers, the request that emitted and the subscriber's later events go on.
 * An `async` subscriber whose promise rejects is logged the same way (Node would end the
 * process on the unhandled rejection). `lift` keeps the type, so
 * `events$.pipe(filter(...)).subscribe(fn)` is isolated too; an operator of such a pipe that
 * throws ends that one subscription (rxjs semantics) with the error logged, unless the
 * subscriber has an `error` callback of its own.
 */
class IsolatedObservable<T> extends Observable<T> {
  constructor(
    private readonly onError: (error: unknown) => void,
    subscribe?: (this: Observable<T>, subscriber: Subscriber<T>) => TeardownLogic,
  ) {
    super(subscribe);
  }

  /*
   * rxjs 7 marks lift, source and operator deprecated (internal, to go in v8), but overriding
   * lift is its documented way for an Observable subclass to keep its type through pipe().
   * Without it, a piped subscriber's error would again be reported as uncaught.
   */
  /* eslint-disable @typescript-eslint/no-deprecated */
  override lift<R>(operator?: Operator<T, R>): Observable<R> {
    const lifted = new IsolatedObservable<R>(this.onError);
    lifted.source = this;
    lifted.operator = operator;
    return lifted;
  }
  /* eslint-enable @typescript-eslint/no-deprecated */

  override subscribe(
    observerOrNext?: Partial<Observer<T>> | ((value: T) => void) | null,
    error?: ((error: unknown) => void) | null,
    complete?: (() => void) | null,
  ): Subscription {
    // A Subscriber is an operator's (or rxjs' own) inner subscriber, which handles its errors itself.
    if (observerOrNext instanceof Subscriber) return super.subscribe(observerOrNext);
    const observer: Partial<Observer<T>> =
      typeof observerOrNext === 'function'
        ? { next: observerOrNext, error: error ?? undefined, complete: complete ?? undefined }
        : (observerOrNext ?? {});
    const next = observer.next?.bind(observer);
    const onError = observer.error?.bind(observer);
    const onComplete = observer.complete?.bind(observer);
    return super.subscribe({
      next: (value: T) => this.isolated(() => next?.(value)),
      // An operator of the pipe that throws (`map`, `filter`, ...) ends this subscription with an
      // error; without an error callback rxjs would rethrow it from a timer (a crash): log it.
      error: (thrown: unknown) => (onError === undefined ? this.onError(thrown) : this.isolated(() => onError(thrown))),
      complete: onComplete === undefined ? undefined : () => this.isolated(onComplete),
    });
  }

  /**
   * Runs a subscriber's callback: what it throws, or the promise it returns rejects with (an
   * `async` subscriber; Node would end the process on the unhandled rejection), is logged.
   */
  private isolated(callback: () => unknown): void {
    try {
      const result = callback();
      if (isThenable(result)) void result.then(undefined, this.onError);
    } catch (thrown) {
      this.onError(thrown);
    }
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/**
 * The event channel of one SessionModule: sessions and the manager emit into it, the manager
 * exposes it as `events$`. Events are emitted synchronously after the store write they report;
 * a subscriber that throws is isolated and logged (see `IsolatedObservable`), but subscribers
 * should move slow work off the request path (e.g. `observeOn(asyncScheduler)`).
 *
 * Logs at debug level per session (by handle: a session id is a credential and appears in
 * no event) and at log level per GC run that removed something.
 */
export class SessionEventBus {
  private readonly subject = new Subject<SessionEvent>();
  private readonly logger = new Logger('SessionEvents');
  readonly events$: Observable<SessionEvent> = new IsolatedObservable<SessionEvent>(
    (error) =>
      this.logger.error(
        `A subscriber of SessionManager.events$ threw; it was isolated (the other subscribers and the request went on): ${
          (error as { stack?: string } | null | undefined)?.stack ?? String(error)
        }`,
      ),
    (subscriber) => this.subject.subscribe(subscriber),
  );

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
    const who = `session #${event.handle}`;
    switch (event.type) {
      case 'started':
        this.logger.debug(`${who} started${event.userId === undefined ? '' : ' (user-bound)'}`);
        break;
      case 'renewed':
        this.logger.debug(`${who} renewed (replaces ${event.previousHandles.map((handle) => '#' + handle).join(', ')})`);
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
