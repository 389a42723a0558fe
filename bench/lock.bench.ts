/**
 * Lock benchmark (issue 3, `npm run bench:lock`):
 *
 * 1. uncontended acquire + release per second on one key (MemoryLocker, RedisLocker);
 * 2. wait time p50/p99 under 32-way contention on one key: 32 workers loop
 *    acquire -> `await setImmediate` -> release;
 * 3. req/s of `POST /counter/n/increment` without and with `?lock=1` on the sample app, which
 *    runs in a child process (`bench/lock/app-child.ts`: Express, Fastify, and Express with a
 *    RedisLocker) while autocannon runs here, 32 connections sharing one session cookie; plus
 *    the app's own view of the lock (wait and hold times, Redis scripts per request).
 *
 * Every measurement is preceded by a warm-up. Redis (127.0.0.1:6379, override with
 * BENCH_REDIS_URL) is optional: its rows are skipped when it cannot be reached. The Redis
 * keys live under a unique prefix and are deleted at the end. Compiled by
 * `bench/lock/tsconfig.json` into `.bench-out/lock/` (gitignored).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { createClient } from 'redis';
import { MemoryLocker } from '../lib/locking/memory.locker.js';
import { RedisLocker } from '../lib/redis/redis.locker.js';
import type { LockOptions, SessionLocker } from '../lib/locking/session-locker.interface.js';
import type { AppSample } from './lock/app-child.js';

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const LOCK_OPTIONS: LockOptions = { ttl: 10_000, waitTimeout: 10_000 };
const WORKERS = 32;
const CONNECTIONS = 32;
const MEMORY_LOOP: LoopPlan = { warmupIterations: 100_000, rounds: 5, iterationsPerRound: 60_000 };
const REDIS_LOOP: LoopPlan = { warmupIterations: 3_000, rounds: 5, iterationsPerRound: 3_000 };

// ---- 1. uncontended ------------------------------------------------------------------------

interface LoopPlan {
  readonly warmupIterations: number;
  readonly rounds: number;
  readonly iterationsPerRound: number;
}

interface UncontendedRow {
  readonly locker: string;
  readonly iterations: number;
  /** Acquire+release pairs per second of each round. */
  readonly rates: number[];
}

async function acquireRelease(locker: SessionLocker, key: string, iterations: number): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < iterations; i++) {
    const lock = await locker.acquire(key, LOCK_OPTIONS);
    if (!(await lock.release())) throw new Error(`release of ${key} answered false`);
  }
  return performance.now() - start;
}

async function uncontended(name: string, locker: SessionLocker, plan: LoopPlan): Promise<UncontendedRow> {
  await acquireRelease(locker, 'uncontended', plan.warmupIterations);
  const rates: number[] = [];
  for (let round = 0; round < plan.rounds; round++) {
    const ms = await acquireRelease(locker, 'uncontended', plan.iterationsPerRound);
    rates.push((plan.iterationsPerRound / ms) * 1000);
  }
  return { locker: name, iterations: plan.rounds * plan.iterationsPerRound, rates };
}

// ---- 2. contention -------------------------------------------------------------------------

interface ContentionRow {
  readonly locker: string;
  readonly acquisitions: number;
  readonly seconds: number;
  /** Wait of each acquisition in ms (sorted). */
  readonly waits: Float64Array;
  readonly perWorkerMin: number;
  readonly perWorkerMax: number;
  /** Lua script calls per acquisition (Redis only). */
  readonly scriptsPerAcquire?: number;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function contention(
  name: string,
  locker: SessionLocker,
  warmupMs: number,
  measureMs: number,
  countScripts?: () => number,
): Promise<ContentionRow> {
  const key = 'contended';
  const waits: number[] = [];
  const perWorker = new Array<number>(WORKERS).fill(0);
  let recording = false;
  let stopped = false;

  const worker = async (index: number): Promise<void> => {
    while (!stopped) {
      const asked = performance.now();
      const lock = await locker.acquire(key, LOCK_OPTIONS);
      const waited = performance.now() - asked;
      if (recording) {
        waits.push(waited);
        perWorker[index]!++;
      }
      await nextTurn(); // the critical section
      if (!(await lock.release())) throw new Error('a contended lock was lost before release');
    }
  };
  const running = Array.from({ length: WORKERS }, (_, i) => worker(i));
  const failed = Promise.all(running).then(() => undefined);

  await Promise.race([sleep(warmupMs), failed]);
  const scriptsBefore = countScripts?.() ?? 0;
  recording = true;
  const start = performance.now();
  await Promise.race([sleep(measureMs), failed]);
  recording = false;
  const seconds = (performance.now() - start) / 1000;
  const scripts = (countScripts?.() ?? 0) - scriptsBefore;
  stopped = true;
  await failed;

  const sorted = Float64Array.from(waits).sort();
  return {
    locker: name,
    acquisitions: sorted.length,
    seconds,
    waits: sorted,
    perWorkerMin: Math.min(...perWorker),
    perWorkerMax: Math.max(...perWorker),
    scriptsPerAcquire: countScripts ? scripts / Math.max(1, sorted.length) : undefined,
  };
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

// ---- Redis ---------------------------------------------------------------------------------

interface RedisSetup {
  readonly client: ReturnType<typeof createClient>;
  readonly prefix: string;
  /** EVALSHA/EVAL calls made by the lockers so far. */
  scripts: number;
}

async function connectRedis(): Promise<RedisSetup | string> {
  const client = createClient({ url: REDIS_URL, socket: { connectTimeout: 2000, reconnectStrategy: false } });
  client.on('error', () => undefined); // failures surface through the awaited calls
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    client.destroy();
    return `skipped (${REDIS_URL}: ${(error as Error).message || String(error)})`;
  }
  const setup: RedisSetup = {
    client,
    prefix: `bench-lock:${process.pid}-${randomBytes(4).toString('hex')}:`,
    scripts: 0,
  };
  // Count the lockers' script calls (one per acquire attempt, release or cancel).
  for (const method of ['evalSha', 'eval'] as const) {
    const original = client[method].bind(client) as (...args: unknown[]) => Promise<unknown>;
    (client as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      setup.scripts++;
      return original(...args);
    };
  }
  return setup;
}

async function closeRedis(setup: RedisSetup): Promise<number> {
  let deleted = 0;
  for await (const batch of setup.client.scanIterator({ MATCH: `${setup.prefix}*`, COUNT: 500 })) {
    const keys = Array.isArray(batch) ? batch : [batch];
    if (keys.length > 0) deleted += await setup.client.del(keys);
  }
  await setup.client.close();
  return deleted;
}

// ---- 3. counter requests over HTTP ---------------------------------------------------------

interface HttpRun {
  readonly requests: number;
  readonly seconds: number;
  readonly p50: number;
  readonly p99: number;
  readonly non2xx: number;
  readonly errors: number;
  /** CPU time of the app process per wall-clock second (1.0 = one full core). */
  readonly appCores: number;
  /** CPU time of the app process in µs. */
  readonly appCpuUs: number;
  /** Lock activity inside the app during the run. */
  readonly lock: AppSample;
}

/** Which sample app to run: adapter, and a Redis key prefix for a RedisLocker (else memory). */
interface AppTarget {
  readonly adapter: 'express' | 'fastify';
  readonly redisPrefix?: string;
}

interface HttpRow {
  readonly label: string;
  readonly unlocked?: HttpRun;
  readonly locked?: HttpRun;
  readonly failure?: string;
}

class AppProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static start(target: AppTarget): Promise<AppProcess> {
    const { adapter } = target;
    const entry = fileURLToPath(new URL('./lock/app-child.js', import.meta.url));
    const args = target.redisPrefix === undefined ? [adapter, 'memory'] : [adapter, 'redis', target.redisPrefix];
    const child = fork(entry, args, {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, BENCH_REDIS_URL: REDIS_URL },
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the ${adapter} app did not start within 20 s`));
      }, 20_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the ${adapter} app exited with code ${code} before listening`));
      });
      child.on('message', (message: { type?: string; port?: number } | undefined) => {
        if (message?.type !== 'listening') return;
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve(new AppProcess(child, message.port!));
      });
    });
  }

  /** CPU time used so far and lock activity since the previous sample. */
  sample(): Promise<AppSample> {
    return new Promise((resolve) => {
      const onMessage = (message: { type?: string } | undefined): void => {
        if (message?.type !== 'sample') return;
        this.child.off('message', onMessage);
        resolve(message as AppSample);
      };
      this.child.on('message', onMessage);
      this.child.send({ type: 'sample' });
    });
  }

  stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      this.child.kill('SIGTERM');
    });
  }
}

/** Starts a session with one write and answers its cookie (`name=value`). */
async function seedSession(base: string): Promise<string> {
  const response = await fetch(`${base}/session/data/seed`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ value: 1 }),
  });
  if (!response.ok) throw new Error(`PUT /session/data/seed answered ${response.status}: ${await response.text()}`);
  const setCookie = response.headers.get('set-cookie');
  if (setCookie === null) throw new Error('PUT /session/data/seed sent no Set-Cookie');
  return setCookie.split(';')[0]!;
}

async function load(app: AppProcess, url: string, cookie: string, seconds: number): Promise<HttpRun> {
  const before = await app.sample();
  const started = performance.now();
  const result = await autocannon({
    url,
    method: 'POST',
    headers: { cookie },
    connections: CONNECTIONS,
    duration: seconds,
  });
  const wallUs = (performance.now() - started) * 1000;
  const after = await app.sample();
  return {
    requests: result.requests.total,
    seconds: result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    appCores: (after.cpu - before.cpu) / wallUs,
    appCpuUs: after.cpu - before.cpu,
    lock: after,
  };
}

/**
 * Two rounds of one route as one: requests and time add up; latency and lock percentiles are
 * the mean of the rounds' (an approximation: the rounds are alike), hold mean weighted.
 */
function merge(a: HttpRun, b: HttpRun): HttpRun {
  const mean = (x: number, y: number): number => (x + y) / 2;
  const acquires = a.lock.acquires + b.lock.acquires;
  return {
    requests: a.requests + b.requests,
    seconds: a.seconds + b.seconds,
    p50: mean(a.p50, b.p50),
    p99: mean(a.p99, b.p99),
    non2xx: a.non2xx + b.non2xx,
    errors: a.errors + b.errors,
    appCores: (a.appCores * a.seconds + b.appCores * b.seconds) / (a.seconds + b.seconds),
    appCpuUs: a.appCpuUs + b.appCpuUs,
    lock: {
      type: 'sample',
      cpu: b.lock.cpu,
      acquires,
      waitP50: mean(a.lock.waitP50, b.lock.waitP50),
      waitP99: mean(a.lock.waitP99, b.lock.waitP99),
      holdMean: (a.lock.holdMean * a.lock.acquires + b.lock.holdMean * b.lock.acquires) / Math.max(1, acquires),
      holdP99: mean(a.lock.holdP99, b.lock.holdP99),
      scripts: a.lock.scripts + b.lock.scripts,
    },
  };
}

async function counterRequests(target: AppTarget, warmupSeconds: number, seconds: number): Promise<HttpRow> {
  const label = `${target.adapter}, ${target.redisPrefix === undefined ? 'MemoryLocker' : 'RedisLocker'}`;
  let app: AppProcess | undefined;
  try {
    app = await AppProcess.start(target);
    const base = `http://127.0.0.1:${app.port}`;
    const cookie = await seedSession(base);
    const unlockedUrl = `${base}/counter/n/increment`;
    const lockedUrl = `${base}/counter/n/increment?lock=1`;
    // Warm both routes up (JIT, connection pools), then measure in the order unlocked, locked,
    // locked, unlocked (half the time each), so a drift of the machine's speed during the run
    // (JIT, GC, other processes) weighs on both routes alike. Same cookie throughout.
    await load(app, unlockedUrl, cookie, warmupSeconds);
    await load(app, lockedUrl, cookie, warmupSeconds);
    const half = seconds / 2;
    const unlocked1 = await load(app, unlockedUrl, cookie, half);
    const locked1 = await load(app, lockedUrl, cookie, half);
    const locked2 = await load(app, lockedUrl, cookie, half);
    const unlocked2 = await load(app, unlockedUrl, cookie, half);
    return { label, unlocked: merge(unlocked1, unlocked2), locked: merge(locked1, locked2) };
  } catch (error) {
    return { label, failure: (error as Error).message };
  } finally {
    await app?.stop();
  }
}

// ---- output --------------------------------------------------------------------------------

function table(headers: string[], rows: string[][], rightAligned = headers.map((_, i) => i > 0)): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]): string =>
    '| ' + cells.map((c, i) => (rightAligned[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ') + ' |';
  const rule = '|' + widths.map((w, i) => (rightAligned[i] ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|';
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (n: number): string => (Number.isFinite(n) ? n.toFixed(n < 10 ? 3 : 1) : '-');
const reqPerSec = (run: HttpRun): number => run.requests / run.seconds;
const cpuPerRequest = (run: HttpRun): number => run.appCpuUs / Math.max(1, run.requests);
const loadAverage = (): string =>
  loadavg()
    .map((n) => n.toFixed(2))
    .join(' ');
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function skippedRow(name: string, reason: string, columns: number): string[] {
  return [name, reason, ...new Array<string>(columns - 2).fill('')];
}

// ---- main ----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const began = performance.now();
  const cpu = cpus();
  console.log(
    `nest-session lock benchmark: Node ${process.version}, ${cpu.length} x ${cpu[0]?.model.trim() ?? 'CPU'}, ` +
      `${new Date().toISOString()}, load average ${loadAverage()} (other processes skew the figures)\n`,
  );
  const redis = await connectRedis();

  const uncontendedRows: string[][] = [];
  const contentionRows: string[][] = [];
  const httpRows: HttpRow[] = [];
  const warmup = 1;
  const seconds = 5;
  let deleted: number | undefined;
  try {
    // 1.
    process.stdout.write('1/3 uncontended acquire+release ...');
    const memory = new MemoryLocker();
    const memoryRow = await uncontended('MemoryLocker', memory, MEMORY_LOOP);
    uncontendedRows.push(rowOf(memoryRow));
    if (typeof redis === 'string') {
      uncontendedRows.push(skippedRow('RedisLocker', redis, 5));
    } else {
      const locker = new RedisLocker({ client: redis.client, prefix: redis.prefix });
      const row = await uncontended('RedisLocker', locker, REDIS_LOOP);
      uncontendedRows.push(rowOf(row));
      await locker.close();
    }
    console.log(' done');

    // 2.
    process.stdout.write('2/3 32-way contention ...');
    contentionRows.push(contentionRowOf(await contention('MemoryLocker', memory, 500, 2000)));
    await memory.close();
    if (typeof redis === 'string') {
      contentionRows.push(skippedRow('RedisLocker', redis, 8));
    } else {
      const locker = new RedisLocker({ client: redis.client, prefix: redis.prefix });
      contentionRows.push(contentionRowOf(await contention('RedisLocker', locker, 500, 2000, () => redis.scripts)));
      await locker.close();
    }
    console.log(' done');

    // 3.
    const targets: AppTarget[] = [{ adapter: 'express' }, { adapter: 'fastify' }];
    if (typeof redis !== 'string') targets.push({ adapter: 'express', redisPrefix: redis.prefix });
    for (const target of targets) {
      process.stdout.write(
        `3/3 counter requests on ${target.adapter}${target.redisPrefix === undefined ? '' : ' with RedisLocker'} ...`,
      );
      httpRows.push(await counterRequests(target, warmup, seconds));
      console.log(' done');
    }
  } finally {
    // Also after a failure: the run's Redis keys (fence counters live 7 days) must not stay.
    if (typeof redis !== 'string') deleted = await closeRedis(redis);
  }

  console.log(
    `\n1) Uncontended acquire + release, one key, sequential (after warm-up; median of ${MEMORY_LOOP.rounds} rounds)\n`,
  );
  console.log(table(['locker', 'iterations', 'acquire+release/s', 'µs per pair', 'rounds (pairs/s)'], uncontendedRows));

  console.log(
    `\n2) ${WORKERS} workers contending for one key: acquire -> await setImmediate -> release ` + '(2 s after 0.5 s warm-up)\n',
  );
  console.log(
    table(
      [
        'locker',
        'acquisitions',
        'handoffs/s',
        'wait p50 ms',
        'wait p99 ms',
        'wait max ms',
        'per worker min-max',
        'scripts/acquire',
      ],
      contentionRows,
    ),
  );

  console.log(
    `\n3) POST /counter/n/increment, sample app in a child process, autocannon ${CONNECTIONS} connections, ` +
      `${seconds} s per route after ${warmup} s warm-up\n   ` +
      `(rounds of ${seconds / 2} s: unlocked, locked, locked, unlocked; one session cookie; latencies: mean of the 2 rounds)\n`,
  );
  console.log(
    table(
      [
        'app (locker)',
        'unlocked req/s',
        'lock=1 req/s',
        'locked/unlocked',
        'p50 ms unl/lock',
        'p99 ms unl/lock',
        'non-2xx+errors',
        'app CPU cores unl/lock',
        'app CPU µs/req unl/lock',
      ],
      httpRows.map((row) =>
        row.failure !== undefined || row.unlocked === undefined || row.locked === undefined
          ? skippedRow(row.label, `failed: ${row.failure ?? 'no result'}`, 9)
          : [
              row.label,
              int(reqPerSec(row.unlocked)),
              int(reqPerSec(row.locked)),
              (reqPerSec(row.locked) / reqPerSec(row.unlocked)).toFixed(2),
              `${row.unlocked.p50} / ${row.locked.p50}`,
              `${row.unlocked.p99} / ${row.locked.p99}`,
              `${row.unlocked.non2xx + row.unlocked.errors} / ${row.locked.non2xx + row.locked.errors}`,
              `${row.unlocked.appCores.toFixed(2)} / ${row.locked.appCores.toFixed(2)}`,
              `${int(cpuPerRequest(row.unlocked))} / ${int(cpuPerRequest(row.locked))}`,
            ],
      ),
    ),
  );

  console.log(
    '\n   Lock activity inside the app during the measured runs (locker timed by a thin wrapper; sessions in memory)\n',
  );
  console.log(
    table(
      [
        'app (locker)',
        'route',
        'acquires/request',
        'wait p50 ms',
        'wait p99 ms',
        'hold mean ms',
        'hold p99 ms',
        'Redis scripts/request',
      ],
      httpRows.flatMap((row) =>
        (
          [
            ['unlocked', row.unlocked],
            ['lock=1', row.locked],
          ] as const
        ).flatMap(([route, run]) => {
          if (run === undefined) return [];
          const total = run.requests;
          return [
            [
              row.label,
              route,
              (run.lock.acquires / Math.max(1, total)).toFixed(2),
              ms(run.lock.waitP50),
              ms(run.lock.waitP99),
              ms(run.lock.holdMean),
              ms(run.lock.holdP99),
              row.label.includes('Redis') ? (run.lock.scripts / Math.max(1, total)).toFixed(1) : '-',
            ],
          ];
        }),
      ),
      [false, false, true, true, true, true, true, true],
    ),
  );

  const notes = [`total ${((performance.now() - began) / 1000).toFixed(1)} s`, `load average at the end ${loadAverage()}`];
  if (deleted !== undefined) notes.push(`${deleted} Redis keys of the run deleted`);
  if (typeof redis === 'string') notes.push(`Redis ${redis}`);
  console.log(`\n(${notes.join('; ')})`);
}

function rowOf(row: UncontendedRow): string[] {
  const rate = median(row.rates);
  return [row.locker, int(row.iterations), int(rate), (1e6 / rate).toFixed(2), row.rates.map(int).join(' / ')];
}

function contentionRowOf(row: ContentionRow): string[] {
  return [
    row.locker,
    int(row.acquisitions),
    int(row.acquisitions / row.seconds),
    ms(percentile(row.waits, 50)),
    ms(percentile(row.waits, 99)),
    ms(row.waits[row.waits.length - 1] ?? Number.NaN),
    `${row.perWorkerMin}-${row.perWorkerMax}`,
    row.scriptsPerAcquire === undefined ? '-' : row.scriptsPerAcquire.toFixed(1),
  ];
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
