import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './redis-server.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/**
 * The sample app compiled for child processes. Under node_modules/.cache so it is ignored by git
 * and never disturbs `dist/` (another build or a benchmark may be using it), and so bare imports
 * resolve to the project's node_modules. `npm run test:nest11` sets NEST_SESSION_E2E_NODE_MODULES
 * (test/compat/nest11/global-setup.js) to test/compat/nest11/node_modules: compiled under it, the
 * app's `@nestjs/*` imports resolve to Nest 11 there and everything else, up the tree, to the
 * project's node_modules.
 */
const DEFAULT_OUT_DIR = join(ROOT, 'node_modules', '.cache', 'nest-session-e2e');
const NEST_NODE_MODULES = process.env.NEST_SESSION_E2E_NODE_MODULES;
const OUT_DIR = NEST_NODE_MODULES === undefined ? DEFAULT_OUT_DIR : join(NEST_NODE_MODULES, '.cache', 'nest-session-e2e');
/** The package's entries, pointing at the compiled lib/ (as package.json's `exports` does for dist/). */
const OUTPUT_PACKAGE = {
  name: 'nest-session',
  private: true,
  type: 'module',
  exports: {
    '.': './lib/index.js',
    './redis': './lib/redis/index.js',
    './cache-manager': './lib/cache-manager/index.js',
    './postgres': './lib/postgres/index.js',
    './terminus': './lib/terminus/index.js',
    './opentelemetry': './lib/opentelemetry/index.js',
    './cli': './lib/cli/index.js',
  },
};
const MAIN = join(OUT_DIR, 'sample-app', 'main.js');
const STAMP = join(OUT_DIR, '.built');

/** Whether `dir` holds a build newer than every source (its stamp is dated to the start of the build). */
function isFresh(dir: string, newest: number): boolean {
  const stamp = join(dir, '.built');
  return existsSync(stamp) && existsSync(join(dir, 'sample-app', 'main.js')) && statSync(stamp).mtimeMs > newest;
}

/** Newest modification time (ms) of the files the build reads. */
function newestSource(): number {
  let newest = 0;
  const visit = (path: string): void => {
    const stat = statSync(path);
    if (stat.isDirectory()) {
      for (const name of readdirSync(path)) visit(join(path, name));
    } else if (path.endsWith('.ts')) {
      newest = Math.max(newest, stat.mtimeMs);
    }
  };
  visit(join(ROOT, 'lib'));
  visit(join(ROOT, 'sample-app'));
  for (const file of ['tsconfig.json', 'tsconfig.build.json', 'package.json'])
    newest = Math.max(newest, statSync(join(ROOT, file)).mtimeMs);
  return newest;
}

/**
 * Compiles lib/ and sample-app/ (tsconfig.build.json, incremental) unless the output is newer
 * than every source; answers the path of the compiled `sample-app/main.js`. A package.json
 * next to the output makes `import 'nest-session'` resolve to the compiled lib/, exactly as the
 * package's own `exports` map does for dist/.
 */
export function buildSampleApp(): string {
  // Written on every call (cheap), so a change of the entries never meets a stale copy.
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, 'package.json'), JSON.stringify(OUTPUT_PACKAGE, null, 2));
  const newest = newestSource();
  if (isFresh(OUT_DIR, newest)) return MAIN;
  if (OUT_DIR !== DEFAULT_OUT_DIR && isFresh(DEFAULT_OUT_DIR, newest)) {
    // The emitted JavaScript is the same whichever Nest resolves its imports: the fresh build of
    // `npm test` (.ci/run runs it first) is copied, not compiled again. Without the .tsbuildinfo
    // (which describes the outputs it replaces), so a later build here compiles everything.
    rmSync(join(OUT_DIR, '.tsbuildinfo'), { force: true });
    for (const part of ['lib', 'sample-app']) cpSync(join(DEFAULT_OUT_DIR, part), join(OUT_DIR, part), { recursive: true });
    const builtAt = statSync(join(DEFAULT_OUT_DIR, '.built')).mtime;
    writeFileSync(STAMP, '');
    utimesSync(STAMP, builtAt, builtAt);
    return MAIN;
  }
  const startedAt = Date.now();
  const tsc = spawnSync(
    process.execPath,
    [
      join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      join(ROOT, 'tsconfig.build.json'),
      '--outDir',
      OUT_DIR,
      '--incremental',
      '--tsBuildInfoFile',
      join(OUT_DIR, '.tsbuildinfo'),
    ],
    { cwd: ROOT, encoding: 'utf8' },
  );
  if (tsc.status !== 0) {
    throw new Error(`Compiling the sample app failed (tsc exit ${String(tsc.status)}):\n${tsc.stdout}${tsc.stderr}`);
  }
  // Dated to the start of the build: a source saved while tsc ran counts as newer next time.
  writeFileSync(STAMP, '');
  utimesSync(STAMP, new Date(startedAt), new Date(startedAt));
  return MAIN;
}

/** A sample app running as a child process (one "app instance"). */
export class SampleProcess {
  private output = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly name: string,
    readonly url: string,
  ) {
    child.stdout?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
  }

  /** Everything the process printed so far. */
  get log(): string {
    return this.output;
  }

  /**
   * Starts `node <main>` with `env` (added to this process's environment) and a free PORT, and
   * waits until it logs that it listens.
   * @throws when it exits first or does not listen within 20 s (the message carries its output).
   */
  static async start(main: string, name: string, env: Record<string, string>): Promise<SampleProcess> {
    const port = await freePort();
    const child = spawn(process.execPath, [main], {
      cwd: ROOT,
      env: { ...process.env, NODE_OPTIONS: '', ...env, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const instance = new SampleProcess(child, name, `http://127.0.0.1:${port}`);
    await new Promise<void>((resolveStart, reject) => {
      const timer = setTimeout(() => fail(new Error('did not listen within 20 s')), 20_000);
      const onData = (): void => {
        if (instance.output.includes('Listening on')) {
          cleanup();
          resolveStart();
        }
      };
      const onExit = (code: number | null): void => fail(new Error(`exited with ${String(code)}`));
      const cleanup = (): void => {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.off('exit', onExit);
      };
      const fail = (error: Error): void => {
        cleanup();
        child.kill('SIGKILL');
        reject(new Error(`Sample app "${name}" ${error.message}:\n${instance.output}`));
      };
      child.stdout?.on('data', onData);
      child.once('exit', onExit);
    });
    return instance;
  }

  /**
   * SIGTERM (the app closes itself: enableShutdownHooks), SIGKILL after 5 s; waits for the exit.
   * Answers whether the app went by itself (false: it had to be killed).
   */
  async stop(): Promise<boolean> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.stoppedByItself;
    const exited = new Promise<void>((resolveExit) => this.child.once('exit', () => resolveExit()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      this.stoppedByItself = false;
      this.child.kill('SIGKILL');
    }, 5000);
    await exited;
    clearTimeout(timer);
    return this.stoppedByItself;
  }

  private stoppedByItself = true;
}

/** An HTTP answer with its JSON body parsed. */
export interface JsonResponse {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly setCookie: readonly string[];
}

/**
 * One browser talking to several app instances: it keeps the session cookie it is given,
 * whichever instance gave it, and sends it to whichever instance it asks next. Plain
 * node:http without keep-alive, so no socket outlives a request.
 */
export class InstanceBrowser {
  cookie: string | undefined;

  constructor(readonly cookieName = 'sid') {}

  async send(
    base: string,
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<JsonResponse> {
    const all: Record<string, string> = { ...headers };
    if (this.cookie !== undefined) all.cookie = `${this.cookieName}=${this.cookie}`;
    const response = await jsonRequest(base, method, path, body, all);
    for (const raw of response.setCookie) {
      const [pair = '', ...attributes] = raw.split(';').map((part) => part.trim());
      const eq = pair.indexOf('=');
      if (pair.slice(0, eq) !== this.cookieName) continue;
      const cleared = attributes.some((a) => a.toLowerCase() === 'max-age=0');
      this.cookie = cleared ? undefined : pair.slice(eq + 1);
    }
    return response;
  }

  get(base: string, path: string): Promise<JsonResponse> {
    return this.send(base, 'GET', path);
  }
  put(base: string, path: string, body: unknown): Promise<JsonResponse> {
    return this.send(base, 'PUT', path, body);
  }
  post(base: string, path: string, body?: unknown): Promise<JsonResponse> {
    return this.send(base, 'POST', path, body);
  }
}

/** One HTTP request with a JSON body (if any); fails after `timeout` ms. */
export function jsonRequest(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  timeout = 15_000,
): Promise<JsonResponse> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolveResponse, reject) => {
    const req = httpRequest(
      new URL(path, base),
      {
        method,
        agent: false,
        headers: {
          ...headers,
          ...(payload === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }),
        },
        timeout,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
          } catch {
            parsed = { text };
          }
          const cookies = res.headers['set-cookie'] ?? [];
          resolveResponse({ status: res.statusCode ?? 0, body: parsed, setCookie: cookies });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${base}${path} did not answer within ${timeout} ms`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}
