import { metrics, type Attributes, type Counter, type Histogram, type MeterProvider } from '@opentelemetry/api';
import type { Observable, Subscription } from 'rxjs';
import type { SessionEvent } from '../session/session-events.js';
import type { SessionInstrumentation, SessionStorePart } from '../session/session-instrumentation.js';

/** Options of {@link OpenTelemetrySessionMetrics}. */
export interface OpenTelemetrySessionMetricsOptions {
  /** Where the meter comes from. @default the global provider (`metrics.getMeterProvider()`) */
  meterProvider?: MeterProvider;
  /** Meter name. @default 'nest-session' */
  meterName?: string;
  /** Prefix of every instrument name. @default 'session.' */
  prefix?: string;
}

/** Longest `reason` attribute value kept (reasons are free text: bound them, and keep them few). */
const MAX_REASON = 64;

/**
 * OpenTelemetry metrics of one `SessionModule` (entry `nest-session/opentelemetry`, needs the
 * optional peer `@opentelemetry/api`): pass it as the module's `instrumentation` option. With
 * the API present but no SDK registered every instrument is the API's no-op; without this
 * option nothing is measured at all.
 *
 * Instruments (names with the default prefix `session.`):
 * - counters `session.started`, `session.renewed`, `session.destroyed` (`reason`, `remote`),
 *   `session.expired` (removed by GC), `session.commits` (`outcome`: ok | error, `error`),
 *   `session.lock.acquired`, `session.lock.timeouts`, `session.store.errors` (`part`, `operation`),
 *   `session.gc.runs`, `session.gc.removed`;
 * - histograms (ms) `session.commit.duration`, `session.lock.wait`, `session.gc.duration`;
 * - observable gauge `session.active`: sessions this instance saw start minus those it saw end
 *   (destroyed or collected), O(1) to observe. Summed over instances it is the number of stored
 *   sessions since they all started; it restarts at 0 with the process.
 */
export class OpenTelemetrySessionMetrics implements SessionInstrumentation {
  private readonly started: Counter;
  private readonly renewed: Counter;
  private readonly destroyed: Counter;
  private readonly expired: Counter;
  private readonly commits: Counter;
  private readonly commitDuration: Histogram;
  private readonly lockAcquisitions: Counter;
  private readonly lockWait: Histogram;
  private readonly lockTimeouts: Counter;
  private readonly storeErrors: Counter;
  private readonly gcRuns: Counter;
  private readonly gcRemoved: Counter;
  private readonly gcDuration: Histogram;
  private active = 0;
  private subscription: Subscription | undefined;

  constructor(options: OpenTelemetrySessionMetricsOptions = {}) {
    const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(options.meterName ?? 'nest-session');
    const p = options.prefix ?? 'session.';
    this.started = meter.createCounter(`${p}started`, { description: 'Sessions stored for the first time' });
    this.renewed = meter.createCounter(`${p}renewed`, { description: 'Session id renewals (renewId, regenerate, login)' });
    this.destroyed = meter.createCounter(`${p}destroyed`, { description: 'Sessions destroyed, by reason' });
    this.expired = meter.createCounter(`${p}expired`, { description: 'Expired sessions removed by garbage collection' });
    this.commits = meter.createCounter(`${p}commits`, { description: 'End-of-request commits, by outcome' });
    this.commitDuration = meter.createHistogram(`${p}commit.duration`, { description: 'Commit latency', unit: 'ms' });
    this.lockAcquisitions = meter.createCounter(`${p}lock.acquired`, { description: 'Session locks acquired' });
    this.lockWait = meter.createHistogram(`${p}lock.wait`, { description: 'Time spent waiting for a session lock', unit: 'ms' });
    this.lockTimeouts = meter.createCounter(`${p}lock.timeouts`, {
      description: 'Session locks not free within lock.waitTimeout',
    });
    this.storeErrors = meter.createCounter(`${p}store.errors`, { description: 'Failed store operations, by part and operation' });
    this.gcRuns = meter.createCounter(`${p}gc.runs`, { description: 'Garbage collection runs' });
    this.gcRemoved = meter.createCounter(`${p}gc.removed`, { description: 'Expired sessions removed by garbage collection' });
    this.gcDuration = meter.createHistogram(`${p}gc.duration`, { description: 'Garbage collection run time', unit: 'ms' });
    meter
      .createObservableGauge(`${p}active`, { description: 'Sessions started minus ended, as this instance saw them' })
      .addCallback((result) => result.observe(this.active));
  }

  /** Subscribes to the module's events (called by `SessionModule`); the subscription ends with the stream. */
  observe(events$: Observable<SessionEvent>): void {
    this.subscription?.unsubscribe();
    this.subscription = events$.subscribe((event) => this.record(event));
  }

  commit(durationMs: number, outcome: 'ok' | 'error', error?: string): void {
    const attributes: Attributes = error === undefined ? { outcome } : { outcome, error };
    this.commits.add(1, attributes);
    this.commitDuration.record(durationMs, { outcome });
  }

  lockAcquired(waitMs: number): void {
    this.lockAcquisitions.add(1);
    this.lockWait.record(waitMs);
  }

  lockTimedOut(waitMs: number): void {
    this.lockTimeouts.add(1);
    this.lockWait.record(waitMs, { outcome: 'timeout' });
  }

  storeError(part: SessionStorePart, operation: string): void {
    this.storeErrors.add(1, { part, operation });
  }

  private record(event: SessionEvent): void {
    switch (event.type) {
      case 'started':
        this.active++;
        this.started.add(1, { user_bound: event.userId !== undefined });
        break;
      case 'renewed':
        this.renewed.add(1);
        break;
      case 'destroyed':
        this.active--;
        this.destroyed.add(1, { reason: (event.reason ?? 'none').slice(0, MAX_REASON), remote: event.remote });
        break;
      case 'expired':
        this.active--;
        this.expired.add(1);
        break;
      case 'gc':
        this.gcRuns.add(1);
        this.gcRemoved.add(event.removed);
        this.gcDuration.record(event.durationMs);
        break;
      default:
        break; // userBound and event types added later carry nothing measured here
    }
  }
}
