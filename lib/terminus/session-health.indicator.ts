import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { SESSION_OPTIONS } from '../session/session.constants.js';
import type { ResolvedSessionOptions } from '../session/session-module.options.js';

/** Cache entry read by the backend probes; `~` never occurs in a session's entry ids. */
const PROBE_ENTRY = '~health';
/** Lock key of the locker probe (session lock keys are storage ids and never start with `~`). */
const PROBE_LOCK = '~health';
/** Lifetime of the probe lock if the process dies while holding it. */
const PROBE_LOCK_TTL_MS = 5000;

/** Options of {@link SessionHealthIndicator.isHealthy}. */
export interface SessionHealthCheckOptions {
  /** Milliseconds each probe may take before its part counts as down. @default 1000 */
  timeout?: number;
}

/** One part of the session store as a health check reports it. */
export interface SessionStorePartHealth {
  readonly status: 'up' | 'down';
  /** The implementation, e.g. `RedisBackend`, `MemoryLocker`. */
  readonly engine: string;
  /** Milliseconds the probe took (up to the timeout). */
  readonly latencyMs: number;
  /** Why it is down (generic: no address, key or driver message). */
  readonly message?: string;
}

/**
 * A `@nestjs/terminus` health indicator of the session store (entry `nest-session/terminus`,
 * needs the optional peer `@nestjs/terminus`): the metadata backend and the storage backend are
 * each read once (one entry that does not exist), and the locker does an acquire/release round
 * trip, all in parallel, each with a timeout. The result carries every part's engine and latency;
 * the indicator is `down` when any part is. Provide it next to `TerminusModule`:
 *
 * ```ts
 * @Module({ imports: [TerminusModule], providers: [SessionHealthIndicator], controllers: [HealthController] })
 * ...
 * @Get('health') @HealthCheck()
 * check() { return this.health.check([() => this.sessions.isHealthy('sessions')]); }
 * ```
 */
@Injectable()
export class SessionHealthIndicator {
  constructor(
    @Inject(SESSION_OPTIONS) private readonly options: ResolvedSessionOptions,
    @Inject(HealthIndicatorService) private readonly health: HealthIndicatorService,
  ) {}

  /**
   * Probes the store. Never throws: a part that fails or exceeds `timeout` makes the result
   * `down` (terminus then answers 503); the driver's error is not reported (it can name hosts).
   * @param key Name of the indicator in the health response. @default 'sessions'
   */
  async isHealthy(key = 'sessions', options: SessionHealthCheckOptions = {}): Promise<HealthIndicatorResult> {
    const timeout = options.timeout ?? 1000;
    const { metadataBackend, storageBackend, locker } = this.options;
    const [metadata, storage, lock] = await Promise.all([
      probe(metadataBackend, timeout, () => metadataBackend.get(PROBE_ENTRY)),
      probe(storageBackend, timeout, () => storageBackend.get(PROBE_ENTRY)),
      probe(locker, timeout, async () => {
        const held = await locker.acquire(PROBE_LOCK, { waitTimeout: timeout, ttl: PROBE_LOCK_TTL_MS });
        await held.release();
      }),
    ]);
    const data = { metadata, storage, locker: lock };
    const indicator = this.health.check(key);
    return [metadata, storage, lock].every((part) => part.status === 'up') ? indicator.up(data) : indicator.down(data);
  }
}

async function probe(part: object, timeout: number, run: () => Promise<unknown>): Promise<SessionStorePartHealth> {
  const engine = part.constructor.name;
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeout);
  });
  try {
    const outcome = await Promise.race([run().then(() => 'ok' as const), timedOut]);
    const latencyMs = Math.round((performance.now() - started) * 100) / 100;
    if (outcome === 'timeout') return { status: 'down', engine, latencyMs, message: `no answer within ${timeout} ms` };
    return { status: 'up', engine, latencyMs };
  } catch {
    const latencyMs = Math.round((performance.now() - started) * 100) / 100;
    return { status: 'down', engine, latencyMs, message: 'unreachable' };
  } finally {
    clearTimeout(timer);
  }
}
