/**
 * Instructions per request, counted by Valgrind's callgrind: the same apps as `npm run bench`
 * (ceiling and ours on the memory backend), each in its own process under
 * `valgrind --tool=callgrind --instr-atstart=no`, warmed up without instrumentation, then
 * `--requests` requests counted. Unlike req/s and CPU time, the count barely depends on what
 * else the machine runs, so small differences between ours and the no-session ceiling show
 * on a shared machine. Slow (valgrind runs the app ~50x slower): about a minute per row.
 *
 *   npm run bench:instructions -- [--apps=ceiling-express,ours-memory-express,...]
 *                                 [--only=anonymous,read] [--requests=8000] [--warmup=3000]
 *
 * Needs `valgrind` and `callgrind_control` (Debian: `apt-get install valgrind`).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import type { AppChildMessage } from './app-child.js';
import { sessionCookieFrom } from './http.js';
import { SCENARIOS, type Scenario } from './scenarios.js';
import { COOKIE_NAME } from './variants.js';

const here = path.dirname(fileURLToPath(import.meta.url));

interface Row {
  readonly scenario: Scenario;
  readonly app: string;
  readonly perRequest: number;
}

function flag(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  return process.argv.find((arg) => arg.startsWith(prefix))?.slice(prefix.length) ?? fallback;
}

function hasTool(tool: string): boolean {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function requests(port: number, scenario: Scenario, amount: number, cookie: string | undefined): Promise<void> {
  const result = await autocannon({
    url: `http://127.0.0.1:${port}${scenario.path}`,
    method: scenario.method,
    connections: 4,
    amount,
    timeout: 60,
    headers: cookie === undefined ? {} : { cookie },
  });
  const failed = result.non2xx + result.errors;
  if (failed > 0) throw new Error(`${scenario.name}: ${failed} of ${amount} requests failed`);
}

/** The session cookie of a new session that wrote key `n` (what the `read` scenario sends). */
async function prepareCookie(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST' });
  const cookie = sessionCookieFrom(response.headers.getSetCookie());
  if (cookie === undefined) throw new Error('POST /write set no session cookie');
  return cookie;
}

function waitListening(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`app exited (${code ?? 'signal'}) before listening`)));
    child.on('message', (message: AppChildMessage) => {
      if (message.type === 'listening') resolve(message.port);
      else if (message.type === 'failed') reject(new Error(message.error));
    });
  });
}

async function measure(app: string, scenario: Scenario, amount: number, warmup: number): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'nsbench-callgrind-'));
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--instr-atstart=no',
      `--callgrind-out-file=${path.join(dir, 'out.%p')}`,
      process.execPath,
      path.join(here, 'app-child.js'),
      app,
    ],
    { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] },
  );
  try {
    const port = await waitListening(child);
    // The ceiling gets a cookie of the same size that names nothing, as in `npm run bench`.
    const cookie =
      scenario.cookie === 'none'
        ? undefined
        : app.startsWith('ceiling-')
          ? `${COOKIE_NAME}=${'x'.repeat(32)}`
          : await prepareCookie(port);
    await requests(port, scenario, warmup, cookie);
    const pid = String(child.pid);
    execFileSync('callgrind_control', ['-i', 'on', pid], { stdio: 'ignore' });
    await requests(port, scenario, amount, cookie);
    execFileSync('callgrind_control', ['-i', 'off', pid], { stdio: 'ignore' });
    execFileSync('callgrind_control', ['-d', pid], { stdio: 'ignore' });
    let total = 0;
    for (const file of readdirSync(dir)) {
      const match = /^totals: (\d+)/m.exec(readFileSync(path.join(dir, file), 'utf8'));
      if (match) total += Number(match[1]);
    }
    return total / amount;
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (!hasTool('valgrind') || !hasTool('callgrind_control')) {
    console.log('valgrind is not installed (Debian: apt-get install valgrind); nothing measured.');
    return;
  }
  const apps = flag('apps', 'ceiling-express,ours-memory-express,ceiling-fastify,ours-memory-fastify').split(',');
  const only = flag('only', 'anonymous,read').split(',');
  const amount = Number(flag('requests', '8000'));
  const warmup = Number(flag('warmup', '3000'));
  const rows: Row[] = [];
  for (const scenario of SCENARIOS.filter((s) => only.includes(s.name))) {
    for (const app of apps) {
      const perRequest = await measure(app, scenario, amount, warmup);
      console.error(`[${scenario.name}] ${app}: ${Math.round(perRequest)} instructions per request`);
      rows.push({ scenario, app, perRequest });
    }
  }
  console.log(`\nInstructions per request (callgrind, ${amount} requests after ${warmup} of warm-up, 4 connections):\n`);
  console.log('| scenario | app | instructions per request | ceiling ÷ ours |');
  console.log('|---|---|--:|--:|');
  for (const row of rows) {
    const adapter = row.app.endsWith('-fastify') ? 'fastify' : 'express';
    const ceiling = rows.find((r) => r.scenario === row.scenario && r.app === `ceiling-${adapter}`);
    const ratio = ceiling === undefined || row.app === ceiling.app ? '' : `${(ceiling.perRequest / row.perRequest).toFixed(2)}×`;
    console.log(`| ${row.scenario.label} | ${row.app} | ${Math.round(row.perRequest).toLocaleString('en-US')} | ${ratio} |`);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
