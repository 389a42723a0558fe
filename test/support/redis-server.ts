import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectTestRedis, type TestRedisClient } from './redis.js';

/** Options of {@link RedisServer.start}. */
export interface RedisServerOptions {
  /** Append-only persistence in the server's temporary directory (survives a SIGKILL + restart). @default false */
  appendonly?: boolean;
}

/**
 * A private `redis-server` child process on a free port, for tests that stop and restart Redis
 * or count the commands it receives, without disturbing the shared Redis at 6379. Data lives in
 * a temporary directory removed by `stop()`. Fails (never skips) when `redis-server` is missing.
 */
export class RedisServer {
  private child: ChildProcess | undefined;
  private output = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: RedisServerOptions,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), mkdtempSync(join(tmpdir(), 'nest-session-redis-')), options);
    await server.launch();
    return server;
  }

  /** Starts the process (again, on the same port and directory) and waits until it answers PING. */
  async launch(): Promise<void> {
    if (this.child !== undefined) return;
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      this.options.appendonly === true ? 'yes' : 'no',
      '--appendfsync',
      'always',
      '--dir',
      this.dir,
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
    ];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.output = '';
    child.stdout?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    const failed = new Promise<never>((_, reject) => {
      child.once('error', (error) =>
        reject(new Error(`Cannot start redis-server (${error.message}). Install it: apt-get install redis-server`)),
      );
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${String(code)} at start: ${this.output}`)));
    });
    failed.catch(() => undefined);
    this.child = child;
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const up = await Promise.race([ping(this.port), failed]);
      if (up) return;
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`redis-server on port ${this.port} did not answer within 10 s: ${this.output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Kills the process (SIGKILL by default: Redis just vanishes, as in a crash) and waits for its exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
    this.child = undefined;
  }

  /** Kills the process and removes its directory. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A TCP port nobody listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Whether something on the port answers a Redis PING with PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let answer = '';
    const done = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.on('data', (chunk) => {
      answer += chunk.toString();
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'));
    });
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
  });
}

/** One command as MONITOR reported it. */
export interface MonitoredCommand {
  /** `ip:port` of the client that sent it, or `lua` for a command run by a script. */
  readonly source: string;
  /** Command name upper-cased, then its arguments. */
  readonly args: readonly string[];
}

/** A command sent by a client, with the commands its script ran (if it ran one). */
export interface RoundTripCommand extends MonitoredCommand {
  readonly scriptCommands: readonly MonitoredCommand[];
}

/** Commands that change data (including inside scripts). */
const WRITE_COMMANDS = new Set([
  'SET',
  'DEL',
  'UNLINK',
  'SADD',
  'SREM',
  'ZADD',
  'ZREM',
  'ZREMRANGEBYSCORE',
  'PEXPIRE',
  'EXPIRE',
  'PERSIST',
  'INCR',
  'INCRBY',
  'HSET',
  'HDEL',
  'MSET',
  'GETDEL',
  'SETEX',
  'PSETEX',
  'APPEND',
  'RENAME',
]);

export function isWrite(command: RoundTripCommand): boolean {
  return WRITE_COMMANDS.has(command.args[0] ?? '') || command.scriptCommands.some((c) => WRITE_COMMANDS.has(c.args[0] ?? ''));
}

/**
 * Records every command a Redis server receives (MONITOR on a connection of its own), so a test
 * can count what one HTTP request cost. `between()` brackets a piece of work with markers that
 * travel through Redis itself, so nothing in flight is missed or counted twice.
 */
export class CommandRecorder {
  private readonly lines: MonitoredCommand[] = [];
  private readonly waiters = new Map<string, () => void>();
  private markers = 0;

  private constructor(
    private readonly monitor: TestRedisClient,
    private readonly control: TestRedisClient,
  ) {}

  /** Starts recording the commands the Redis at `url` receives. */
  static async attach(url: string): Promise<CommandRecorder> {
    const monitor = await connectTestRedis(url);
    const control = await connectTestRedis(url);
    const recorder = new CommandRecorder(monitor, control);
    await monitor.monitor((reply) => recorder.record(reply));
    return recorder;
  }

  private record(line: string): void {
    const match = /^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/s.exec(line);
    if (match === null) return;
    const args = [...match[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => unescape(m[1]!));
    if (args.length === 0) return;
    args[0] = args[0]!.toUpperCase();
    if (args[0] === 'ECHO' && args[1]?.startsWith('recorder-mark-')) {
      this.waiters.get(args[1])?.();
    }
    this.lines.push({ source: match[1]!, args });
  }

  private async mark(): Promise<number> {
    const name = `recorder-mark-${++this.markers}`;
    const seen = new Promise<void>((resolve) => this.waiters.set(name, resolve));
    await this.control.sendCommand(['ECHO', name]);
    await seen;
    this.waiters.delete(name);
    return this.lines.findIndex((l) => l.args[0] === 'ECHO' && l.args[1] === name);
  }

  /** Runs `work` and answers the commands clients sent meanwhile, each with its script's commands. */
  async between(work: () => Promise<unknown>): Promise<RoundTripCommand[]> {
    const start = await this.mark();
    await work();
    const end = await this.mark();
    const result: { source: string; args: readonly string[]; scriptCommands: MonitoredCommand[] }[] = [];
    for (const line of this.lines.slice(start + 1, end)) {
      if (line.source === 'lua') result.at(-1)?.scriptCommands.push(line);
      else result.push({ ...line, scriptCommands: [] });
    }
    return result;
  }

  async close(): Promise<void> {
    this.monitor.destroy();
    await Promise.allSettled([this.control.close()]);
  }
}

/** MONITOR's escapes: \" \\ \n \r \t and \xHH. */
function unescape(text: string): string {
  return text.replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, e: string) =>
    e.length === 3 ? String.fromCharCode(parseInt(e.slice(1), 16)) : e === 'n' ? '\n' : e === 'r' ? '\r' : e === 't' ? '\t' : e,
  );
}
