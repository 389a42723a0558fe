/**
 * `npm run bench [-- options]`: starts every bench app in its own process, loads each with
 * autocannon from this process, scenario by scenario and all in one run, then measures the
 * memory of idle sessions, and prints one table with the ratios of ours to the peers and to
 * the ceiling. Absolute numbers drift on a shared machine; ratios from one run hold.
 *
 * Options:
 *   --quick              memory stores only, fewer scenarios, shorter slices (under 2 minutes)
 *   --duration=S         seconds per slice, i.e. per app, scenario and round (default 1.5; quick 1)
 *   --warmup=S           seconds of warm-up load per app and scenario before round 1 (default 1; quick 0.5)
 *   --rounds=N           rounds over all app/scenario pairs, order rotating (default 4; quick 3);
 *                        the table shows medians over the rounds
 *   --connections=N      autocannon connections (default 32)
 *   --only=a,b           scenarios by name: anonymous, read, write, login, incr, hot, create
 *   --apps=a,b           apps by name (see variants.ts); ceilings and peers are not added
 *   --profile=APP        CPU-profile that app during its measured runs (V8 inspector, 500 µs
 *                        sampling; its numbers suffer); profiles go to .bench-out/profiles/
 *                        and a summary per scenario is printed (combine with --only and --apps)
 *   --memory-sessions=N  sessions for the memory measurement (default 100000; 1 and 5 keys each); 0 skips it.
 *                        Only the memory measurement: --only= --apps= (no scenario, no app)
 *   --redis-url=URL      default $REDIS_URL or redis://127.0.0.1:6379
 *                        (PostgreSQL rows: $BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres)
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import type { AppChildCommand, AppChildMessage } from './app-child.js';
import { createSessions, request } from './http.js';
import { load, type LoadResult } from './load.js';
import type { MemoryReport } from './memory-child.js';
import { summarizeProfile } from './profile-summary.js';
import { renderMemory, renderTable, summarize, type Measurement } from './report.js';
import { SCENARIOS, type Scenario } from './scenarios.js';
import { COOKIE_NAME, VARIANTS, type Variant } from './variants.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const outDir = path.join(repoRoot, '.bench-out');

// ---- options ---------------------------------------------------------------------------

interface Options {
  readonly quick: boolean;
  readonly duration: number;
  readonly warmup: number;
  readonly rounds: number;
  readonly connections: number;
  readonly scenarios: readonly Scenario[];
  readonly variants: readonly Variant[];
  readonly profile: string | undefined;
  readonly memorySessions: number;
  readonly redisUrl: string;
}

function parseOptions(argv: readonly string[]): Options {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (match === null) throw new Error(`Unknown argument ${arg}; see the comment at the top of bench/run.ts.`);
    flags.set(match[1]!, match.at(2) ?? 'true');
  }
  const known = [
    'quick',
    'duration',
    'warmup',
    'rounds',
    'connections',
    'only',
    'apps',
    'profile',
    'memory-sessions',
    'redis-url',
  ];
  for (const name of flags.keys())
    if (!known.includes(name)) throw new Error(`Unknown option --${name}; known: ${known.map((k) => `--${k}`).join(' ')}`);
  const quick = flags.has('quick');
  const number = (name: string, fallback: number): number => {
    const value = flags.has(name) ? Number(flags.get(name)) : fallback;
    if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a number >= 0`);
    return value;
  };
  const list = (name: string): string[] | undefined =>
    flags
      .get(name)
      ?.split(',')
      .filter((s) => s.length > 0);

  const only = list('only');
  let scenarios = SCENARIOS.filter((s) => (only ? only.includes(s.name) : !quick || s.quick));
  if (only) for (const name of only) if (!SCENARIOS.some((s) => s.name === name)) throw new Error(`Unknown scenario ${name}`);
  const apps = list('apps');
  if (apps)
    for (const name of apps)
      if (!VARIANTS.some((v) => v.name === name))
        throw new Error(`Unknown app ${name}; known: ${VARIANTS.map((v) => v.name).join(', ')}`);
  const variants = VARIANTS.filter((v) => (apps ? apps.includes(v.name) : !quick || v.store === 'memory' || v.store === 'none'));
  scenarios = scenarios.filter((s) => variants.some((v) => s.kinds.includes(v.kind)));
  const profile = flags.get('profile');
  if (profile !== undefined && !variants.some((v) => v.name === profile))
    throw new Error(`--profile=${profile} names no selected app`);
  return {
    quick,
    duration: number('duration', quick ? 1 : 1.5),
    warmup: number('warmup', quick ? 0.5 : 1),
    rounds: Math.max(1, Math.floor(number('rounds', quick ? 3 : 4))),
    connections: Math.max(1, Math.floor(number('connections', 32))),
    scenarios,
    variants,
    profile,
    memorySessions: Math.floor(number('memory-sessions', 100_000)),
    redisUrl: flags.get('redis-url') ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  };
}

/** The commit the measured lib/ comes from, and whether lib/ had uncommitted changes. */
function libVersion(): string {
  try {
    const git = (...args: string[]): string =>
      execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git('status', '--porcelain', '--', 'lib').length > 0;
    return `lib/ at commit ${git('rev-parse', '--short', 'HEAD')}${dirty ? ' plus uncommitted changes' : ''}`;
  } catch {
    return 'lib/ version unknown (no git)';
  }
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

// ---- app processes ---------------------------------------------------------------------

interface RunningApp {
  readonly variant: Variant;
  readonly child: ChildProcess;
  readonly port: number;
  readonly info: string;
  /** The app process's CPU time so far, µs (asked over IPC). */
  readonly cpu: () => Promise<number>;
}

/** Sends a command to an app child and waits for the answer of type `answer`. */
function ask<T extends AppChildMessage['type']>(
  child: ChildProcess,
  command: AppChildCommand,
  answer: T,
): Promise<Extract<AppChildMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      reject(new Error(`the app did not answer ${JSON.stringify(command)}`));
    }, 30_000);
    const onMessage = (message: AppChildMessage): void => {
      if (message.type !== answer) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(message as Extract<AppChildMessage, { type: T }>);
    };
    child.on('message', onMessage);
    child.send(command);
  });
}

function cpuReader(child: ChildProcess): () => Promise<number> {
  return async () => (await ask(child, 'cpu', 'cpu')).micros;
}

async function startApp(variant: Variant, redisUrl: string, redisPrefix: string): Promise<RunningApp | string> {
  const child = fork(path.join(here, 'app-child.js'), [variant.name], {
    execArgv: [],
    env: {
      ...process.env,
      BENCH_REDIS_URL: redisUrl,
      BENCH_REDIS_PREFIX: `${redisPrefix}${variant.name}:`,
      NODE_ENV: 'production',
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('did not start listening within 60 s');
    }, 60_000);
    child.once('message', (message: AppChildMessage) => {
      clearTimeout(timer);
      if (message.type === 'listening')
        resolve({ variant, child, port: message.port, info: message.info, cpu: cpuReader(child) });
      else if (message.type === 'failed') resolve(`failed to start: ${message.error}`);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(`exited with code ${code} before listening`);
    });
  });
}

async function stopApp(app: RunningApp): Promise<void> {
  if (app.child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      app.child.kill('SIGKILL');
      resolve();
    }, 15_000);
    app.child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    app.child.send('stop');
  });
}

/**
 * Checks that an app does what the scenarios assume (so that every app does equal work):
 * anonymous requests set no cookie, a write creates a session that a read sees, login
 * answers a new id and kills the old one, the locked increment counts.
 */
async function sanityCheck(app: RunningApp, scenarios: readonly Scenario[]): Promise<string | undefined> {
  const port = app.port;
  const fail = (what: string, got: unknown): string => `${what}; got ${JSON.stringify(got)}`;
  const anon = await request(port, 'GET', '/anon');
  if (anon.status !== 200 || anon.cookie !== undefined) return fail('GET /anon must answer 200 without a session cookie', anon);
  if (app.variant.kind === 'ceiling') return undefined;
  const [cookie] = await createSessions(port, 1);
  const read = await request(port, 'GET', '/read', cookie);
  if (read.status !== 200 || typeof (read.body as { value?: unknown }).value !== 'number')
    return fail('GET /read must see the key POST /write stored', read);
  const write = await request(port, 'POST', '/write', cookie);
  if (write.status !== 200) return fail('POST /write with a session must answer 200', write);
  const login = await request(port, 'POST', '/login', cookie);
  if (login.status !== 200 || login.cookie === undefined || login.cookie === cookie)
    return fail('POST /login must answer 200 with a new session cookie', login);
  const old = await request(port, 'GET', '/read', cookie);
  if ((old.body as { value?: unknown }).value !== null) return fail('the id before login must be dead after it', old);
  if (scenarios.some((s) => s.name === 'incr') && app.variant.kind === 'ours') {
    const incr = await request(port, 'POST', '/incr', login.cookie);
    if (incr.status !== 200 || typeof (incr.body as { value?: unknown }).value !== 'number')
      return fail('POST /incr must answer the new value', incr);
  }
  return undefined;
}

/** Cookies for one run: a session per connection, or (ceiling) a cookie of the same size that names nothing. */
async function cookiesFor(app: RunningApp, scenario: Scenario, connections: number): Promise<string[] | undefined> {
  if (scenario.cookie === 'none') return undefined;
  if (app.variant.kind === 'ceiling')
    return Array.from({ length: connections }, (_, i) => `${COOKIE_NAME}=${'x'.repeat(28)}${String(i).padStart(4, '0')}`);
  return createSessions(app.port, scenario.cookie === 'shared' ? 1 : connections);
}

/** `list` rotated left by `by`, and reversed on odd rounds: every app takes every position. */
function rotate<T>(list: readonly T[], by: number): T[] {
  if (list.length === 0) return [];
  const shift = by % list.length;
  const rotated = [...list.slice(shift), ...list.slice(0, shift)];
  return by % 2 === 1 ? rotated.reverse() : rotated;
}

// ---- memory ----------------------------------------------------------------------------

async function measureMemory(impl: 'ours' | 'express-session', sessions: number, keys: number): Promise<MemoryReport | string> {
  const child = fork(path.join(here, 'memory-child.js'), [impl, String(sessions), String(keys)], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve) => {
    let report: MemoryReport | undefined;
    child.once('message', (message: MemoryReport) => (report = message));
    child.once('exit', (code) => resolve(report ?? `memory child for ${impl} exited with code ${code}`));
  });
}

// ---- Redis -----------------------------------------------------------------------------

async function redisReachable(url: string): Promise<string | undefined> {
  const client = createClient({ url, socket: { connectTimeout: 2000, reconnectStrategy: false } });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    await client.quit();
    return undefined;
  } catch (error) {
    client.destroy();
    return `Redis not reachable at ${url} (${(error as Error).message})`;
  }
}

/** Deletes every key of this run (its unique prefix); never anything else. */
async function deleteRunKeys(url: string, prefix: string): Promise<number> {
  const client = createClient({ url, socket: { connectTimeout: 2000, reconnectStrategy: false } });
  client.on('error', () => undefined);
  await client.connect();
  let deleted = 0;
  try {
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
      if (keys.length > 0) deleted += await client.unlink(keys);
    }
  } finally {
    await client.quit();
  }
  return deleted;
}

// ---- main ------------------------------------------------------------------------------

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const started = Date.now();
  const runId = `${process.pid}-${started.toString(36)}`;
  const redisPrefix = `nsbench-${runId}:`;
  const loadAtStart = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const version = libVersion();
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  mkdirSync(outDir, { recursive: true });
  const profileDir = path.join(outDir, 'profiles');
  if (options.profile !== undefined) mkdirSync(profileDir, { recursive: true });

  const notes: string[] = [];
  if (options.profile !== undefined)
    notes.push(`${options.profile} ran under the CPU profiler: its numbers are lower than unprofiled.`);
  let variants = options.variants;
  if (variants.some((v) => v.store === 'redis')) {
    const problem = await redisReachable(options.redisUrl);
    if (problem !== undefined) {
      notes.push(`Redis rows skipped: ${problem}.`);
      variants = variants.filter((v) => v.store !== 'redis');
    }
  }

  // Start every app (two at a time: the machine has two cores).
  const apps: RunningApp[] = [];
  let shuttingDown = false;
  const shutdown = async (): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    await Promise.all(apps.map(stopApp));
    if (variants.some((v) => v.store === 'redis')) {
      const deleted = await deleteRunKeys(options.redisUrl, redisPrefix).catch((error: unknown) => {
        log(`could not delete the Redis keys ${redisPrefix}*: ${(error as Error).message}`);
        return 0;
      });
      log(`deleted ${deleted} Redis keys with prefix ${redisPrefix}`);
    }
  };
  process.once('SIGINT', () => {
    log("interrupted: stopping the apps and deleting this run's Redis keys");
    void shutdown().finally(() => process.exit(130));
  });

  try {
    const queue = [...variants];
    const starter = async (): Promise<void> => {
      for (let variant = queue.shift(); variant !== undefined; variant = queue.shift()) {
        const result = await startApp(variant, options.redisUrl, redisPrefix);
        if (typeof result === 'string') {
          notes.push(`${variant.label} (${variant.adapter}): ${result.split('\n')[0]}`);
          log(`${variant.name}: ${result}`);
          continue;
        }
        const problem = await sanityCheck(result, options.scenarios).catch(
          (error: unknown) => `sanity check threw ${(error as Error).message}`,
        );
        if (problem !== undefined) {
          notes.push(`${variant.label} (${variant.adapter}) left out: ${problem}`);
          log(`${variant.name}: ${problem}`);
          await stopApp(result);
          continue;
        }
        apps.push(result);
        log(`started ${variant.name} on port ${result.port}: ${result.info}`);
      }
    };
    await Promise.all([starter(), starter()]);
    apps.sort((a, b) => VARIANTS.indexOf(a.variant) - VARIANTS.indexOf(b.variant));

    // Round by round, scenario by scenario; within a scenario the apps run back to back (so
    // that ours and its peer see the same machine state), and the order rotates every round.
    // Each (app, scenario) gets one short slice per round; the table shows medians over the
    // rounds, which shrugs off the bursts of a shared machine better than one long run.
    const runs = options.scenarios.flatMap((scenario) =>
      apps.filter((a) => scenario.kinds.includes(a.variant.kind)).map((app) => ({ scenario, app })),
    );
    const total = runs.length * options.rounds;
    log(
      `${runs.length} app/scenario pairs x ${options.rounds} round(s) of ${options.duration} s, ${options.connections} connections; ` +
        `about ${Math.ceil((runs.length * (options.rounds * (options.duration + 0.3) + options.warmup + 0.3)) / 60)} min`,
    );
    const results = new Map<string, LoadResult[]>();
    // Redis rows: the redis-server's own CPU per response, read from INFO cpu around each slice
    // (one app runs at a time, so the delta is that app's). Redis shares the cores with the apps.
    const redisCpu = new Map<string, number[]>();
    const redisStats = options.variants.some((v) => v.store === 'redis') ? await redisCpuReader(options.redisUrl) : undefined;
    const profiles: { scenario: Scenario; file: string; requests: number }[] = [];
    let done = 0;
    for (let round = 0; round < options.rounds; round++) {
      for (const scenario of options.scenarios) {
        const order = rotate(
          apps.filter((a) => scenario.kinds.includes(a.variant.kind)),
          round,
        );
        for (const app of order) {
          const base = {
            port: app.port,
            method: scenario.method,
            path: scenario.path,
            connections: options.connections,
            chain: scenario.cookie === 'chain',
          };
          if (round === 0 && options.warmup > 0) {
            await load({ ...base, duration: options.warmup, cookies: await cookiesFor(app, scenario, options.connections) });
          }
          const cookies = await cookiesFor(app, scenario, options.connections);
          const profiled = options.profile === app.variant.name;
          if (profiled) app.child.send({ type: 'profile-start' } satisfies AppChildCommand);
          const redisBefore = app.variant.store === 'redis' ? await redisStats?.read() : undefined;
          const result = await load({ ...base, duration: options.duration, cookies, cpu: app.cpu });
          if (redisBefore !== undefined && result.responses > 0) {
            const redisAfter = await redisStats!.read();
            const key = `${app.variant.name}|${scenario.name}`;
            redisCpu.set(key, [...(redisCpu.get(key) ?? []), ((redisAfter - redisBefore) * 1e6) / result.responses]);
          }
          if (profiled) {
            const file = path.join(profileDir, `${app.variant.name}-${scenario.name}-r${round + 1}.cpuprofile`);
            await ask(app.child, { type: 'profile-stop', file }, 'profiled');
            if (round === 0) profiles.push({ scenario, file, requests: result.responses });
          }
          const key = `${app.variant.name}|${scenario.name}`;
          results.set(key, [...(results.get(key) ?? []), result]);
          done++;
          const bad =
            result.non2xx + result.errors > 0
              ? `  (non-2xx ${result.non2xx}, errors ${result.errors}: ${JSON.stringify(result.statusCodes)})`
              : '';
          log(
            `[${done}/${total}] ${scenario.name.padEnd(9)} ${app.variant.name.padEnd(24)} ${Math.round(result.rps).toString().padStart(6)} req/s` +
              `  p50 ${result.p50.toFixed(1)} ms  p99 ${result.p99.toFixed(1)} ms  ${result.cpuPerRequest?.toFixed(0) ?? '?'} µs CPU/req${bad}`,
          );
        }
      }
    }
    const infos = apps.map((a) => `- ${a.variant.label} (${a.variant.adapter}): ${a.info}`);
    await redisStats?.close();
    await shutdown();

    // Memory of idle sessions (one small key each, then five), each store in a fresh process.
    const memory: MemoryReport[] = [];
    if (options.memorySessions > 0) {
      for (const keys of [1, 5]) {
        for (const impl of ['ours', 'express-session'] as const) {
          log(`memory: ${options.memorySessions} idle sessions with ${keys} key(s) in ${impl}`);
          const report = await measureMemory(impl, options.memorySessions, keys);
          if (typeof report === 'string') notes.push(report);
          else memory.push(report);
        }
      }
    }

    // Report.
    const measurements: Measurement[] = [];
    for (const { scenario, app } of runs) {
      const rounds = results.get(`${app.variant.name}|${scenario.name}`);
      if (rounds !== undefined) measurements.push({ variant: app.variant, scenario, rounds });
    }
    const { table, targets } = renderTable(measurements, VARIANTS, options.scenarios);
    const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
    const out: string[] = [];
    out.push(
      `## Benchmark results`,
      '',
      `Machine: ${os.availableParallelism()} cores (nproc), ${cpu}, Node ${process.version}, ${os.platform()} ${os.release()}; load average at start ${loadAtStart}; ${version}.`,
      `Command: \`${command}\` (${options.rounds} round(s) of ${options.duration} s per app and scenario, ${options.connections} connections, autocannon 9 in the runner process, each app in its own process; finished in ${Math.round((Date.now() - started) / 1000)} s).`,
      '',
      table,
      '',
      'req/s counts 2xx responses; p50/p99 are latencies (autocannon, whole ms); CPU µs/req is the user + system CPU time of the app process per response. All are medians over the rounds. "ours vs X" shows two ratios, each the median over the rounds of a pair measured back to back: req/s of ours ÷ req/s of X, then CPU/req of X ÷ CPU/req of ours; > 1 means ours is faster or cheaper. X is the peer with the same adapter and store, or the ceiling (the same Nest app without sessions). On a shared machine the CPU ratio is the steadier of the two.',
    );
    if (targets.length > 0) {
      const met = targets.filter((t) => t.met).length;
      out.push(
        '',
        `Targets (issue 7): ${met} of ${targets.length} met.`,
        ...targets.map((t) => `- ${t.met ? 'met' : '**missed**'}: ${t.text}`),
      );
    }
    if (redisCpu.size > 0) out.push('', renderRedisCpu(redisCpu, runs));
    if (memory.length > 0) out.push('', renderMemory(memory));
    out.push('', 'Apps:', ...infos);
    if (notes.length > 0) out.push('', 'Notes:', ...notes.map((n) => `- ${n}`));
    console.log(out.join('\n'));

    const json = path.join(outDir, `bench-${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(
      json,
      JSON.stringify(
        {
          command,
          version,
          machine: { cores: os.availableParallelism(), cpu, node: process.version, loadAtStart },
          options: { ...options, scenarios: options.scenarios.map((s) => s.name), variants: options.variants.map((v) => v.name) },
          results: measurements.map((m) => ({
            app: m.variant.name,
            scenario: m.scenario.name,
            summary: summarize(m.rounds),
            rounds: m.rounds,
          })),
          memory,
          redisCpuPerRequest: Object.fromEntries(redisCpu),
          notes,
        },
        null,
        2,
      ),
    );
    log(`results written to ${path.relative(process.cwd(), json)}`);

    for (const profile of profiles) {
      log(`profile of ${options.profile}, ${profile.scenario.name}: ${path.relative(process.cwd(), profile.file)}`);
      console.log(
        `\n## Profile of ${options.profile}, ${profile.scenario.label} (round 1)\n\n${summarizeProfile(profile.file, 25, profile.requests)}`,
      );
    }
  } finally {
    await shutdown();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});

/** Reads the redis-server's CPU time (user + system, seconds) from `INFO cpu`. */
async function redisCpuReader(url: string): Promise<{ read(): Promise<number>; close(): Promise<void> } | undefined> {
  const client = createClient({ url, socket: { connectTimeout: 2000, reconnectStrategy: false } });
  try {
    await client.connect();
  } catch {
    return undefined;
  }
  return {
    async read() {
      const info = await client.info('cpu');
      const field = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
      return field('used_cpu_user') + field('used_cpu_sys');
    },
    async close() {
      await client.close();
    },
  };
}

/** The table of redis-server CPU per response (median over the rounds), ours next to the peer. */
function renderRedisCpu(
  cpu: ReadonlyMap<string, number[]>,
  runs: readonly { scenario: Scenario; app: { variant: Variant } }[],
): string {
  const lines = [
    'Redis server CPU per response (user + system time of redis-server from `INFO cpu`, around each slice; median over the rounds):',
    '',
    '| adapter | scenario | app | Redis µs/req |',
    '|---|---|---|---:|',
  ];
  for (const { scenario, app } of runs) {
    const values = cpu.get(`${app.variant.name}|${scenario.name}`);
    if (values === undefined || values.length === 0) continue;
    const sorted = [...values].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    const adapter = app.variant.adapter === 'express' ? 'Express' : 'Fastify';
    lines.push(`| ${adapter} | ${scenario.label} | ${app.variant.label} | ${median.toFixed(0)} |`);
  }
  return lines.join('\n');
}
