/**
 * Child process of `bench/lock.bench.ts`: runs the sample app on a free port of 127.0.0.1.
 * argv: adapter (`express` | `fastify`), locker (`memory` | `redis`), Redis key prefix (redis
 * only; Redis at BENCH_REDIS_URL or 127.0.0.1:6379). Sessions stay in memory; the locker is
 * wrapped to time how long acquires wait and locks are held. Talks to the parent over IPC:
 *   child -> parent  { type: 'listening', port }
 *   parent -> child  { type: 'sample' }  answered, once no lock is held or awaited, with a
 *                                        {@link AppSample} covering the time since the
 *                                        previous sample
 * It exits when the parent disconnects or sends SIGTERM.
 */
import { register } from 'node:module';
import type { Server } from 'node:net';
import type { LockOptions, SessionLockHandle, SessionLocker } from 'nest-session';

register('./resolve-hooks.js', import.meta.url);

/** What the app did between two samples. */
export interface AppSample {
  readonly type: 'sample';
  /** CPU time (user + system) in µs. */
  readonly cpu: number;
  readonly acquires: number;
  /** Time from acquire() to the lock in hand, ms. */
  readonly waitP50: number;
  readonly waitP99: number;
  /** Time from the lock in hand to release(), ms. */
  readonly holdMean: number;
  readonly holdP99: number;
  /** Lua script calls to Redis (RedisLocker only). */
  readonly scripts: number;
}

/** Records wait and hold times of a locker; two performance.now() calls per acquire. */
class TimedLocker implements SessionLocker {
  waits: number[] = [];
  holds: number[] = [];
  /** Acquires under way plus locks not yet released. */
  busy = 0;

  constructor(private readonly inner: SessionLocker) {}

  async acquire(key: string, options: LockOptions): Promise<SessionLockHandle> {
    const asked = performance.now();
    this.busy++;
    let lock: SessionLockHandle;
    try {
      lock = await this.inner.acquire(key, options);
    } catch (error) {
      this.busy--;
      throw error;
    }
    const taken = performance.now();
    this.waits.push(taken - asked);
    let released = false;
    const release = (): Promise<boolean> => {
      if (!released) {
        released = true;
        this.busy--;
        this.holds.push(performance.now() - taken);
      }
      return lock.release();
    };
    return { key: lock.key, token: lock.token, fence: lock.fence, release, extend: (ttl) => lock.extend(ttl) };
  }

  close(): Promise<void> {
    return this.inner.close?.() ?? Promise.resolve();
  }

  /** Resolves once no acquire is under way and no lock is held (at most `ms` later). */
  async idle(ms: number): Promise<void> {
    const until = performance.now() + ms;
    while (this.busy > 0 && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
  }

  take(): Omit<AppSample, 'type' | 'cpu' | 'scripts'> {
    const waits = Float64Array.from(this.waits).sort();
    const holds = Float64Array.from(this.holds).sort();
    this.waits = [];
    this.holds = [];
    const at = (values: Float64Array, p: number): number =>
      values.length === 0 ? 0 : values[Math.min(values.length - 1, Math.ceil((p / 100) * values.length) - 1)]!;
    return {
      acquires: waits.length,
      waitP50: at(waits, 50),
      waitP99: at(waits, 99),
      holdMean: holds.length === 0 ? 0 : holds.reduce((a, b) => a + b, 0) / holds.length,
      holdP99: at(holds, 99),
    };
  }
}

const [adapterArg, lockerArg, prefix] = process.argv.slice(2);
const adapter = adapterArg === 'fastify' ? 'fastify' : 'express';
// Imported after the hook is registered, so `nest-session` resolves to the compiled lib.
const { MemoryLocker } = await import('nest-session');
const { RedisLocker } = await import('../../lib/redis/redis.locker.js');
const { createSampleApp } = await import('../../sample-app/app.factory.js');
const { createClient } = await import('redis');

let redis: ReturnType<typeof createClient> | undefined;
let scripts = 0;
let inner: SessionLocker;
if (lockerArg === 'redis') {
  redis = createClient({ url: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379' });
  redis.on('error', (error: unknown) => console.error('bench app: Redis error', error));
  await redis.connect();
  // Count the locker's script calls (acquire attempts, releases, cancels).
  for (const method of ['evalSha', 'eval'] as const) {
    const original = redis[method].bind(redis) as (...args: unknown[]) => Promise<unknown>;
    (redis as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      scripts++;
      return original(...args);
    };
  }
  inner = new RedisLocker({ client: redis, prefix });
} else {
  inner = new MemoryLocker();
}
const locker = new TimedLocker(inner);
const app = await createSampleApp(adapter, { session: { locker } });
await app.listen(0, '127.0.0.1');
const address = (app.getHttpServer() as Server).address() as { port: number };

async function onMessage(message: { type?: string } | undefined): Promise<void> {
  if (message?.type !== 'sample') return;
  // Requests the load generator left waiting for a lock belong to the run that sent them.
  await locker.idle(3000);
  const { user, system } = process.cpuUsage();
  const sample: AppSample = { type: 'sample', cpu: user + system, scripts, ...locker.take() };
  scripts = 0;
  process.send?.(sample);
}
process.on('message', (message: { type?: string } | undefined) => void onMessage(message));
const stop = (): void => {
  // Requests still waiting for a lock when the load generator stopped finish first: closing
  // the app closes the locker (SessionModule's shutdown hook) and would fail them. The Redis
  // client is ours to close.
  void locker
    .idle(5000)
    .then(() => app.close())
    .then(() => redis?.close())
    .finally(() => process.exit(0));
};
process.once('disconnect', stop);
process.once('SIGTERM', stop);
process.send?.({ type: 'listening', port: address.port });
