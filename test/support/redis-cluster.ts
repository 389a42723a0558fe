import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster } from 'redis';

export type TestRedisCluster = ReturnType<typeof createCluster>;

/** Cluster bus ports are the client port + 10000 (Redis' fixed offset). */
const BUS_OFFSET = 10_000;
/** Preferred first client port; if it or its neighbours are taken, another block in 7300-9899 is tried. */
const PREFERRED_BASE_PORT = 7311;

/**
 * A private Redis Cluster for tests: `nodes` masters (no replicas), each a `redis-server
 * --cluster-enabled yes` child process on 127.0.0.1 with its config in a temporary directory,
 * joined by `redis-cli --cluster create`. Fails (never skips) when `redis-server` or `redis-cli`
 * is missing. `stop()` kills every process and removes the directory; call it in `afterAll`.
 */
export class RedisClusterServer {
  private readonly children: ChildProcess[] = [];
  private output = '';

  private constructor(
    readonly ports: readonly number[],
    readonly dir: string,
  ) {}

  /** `redis://127.0.0.1:<port>` of every node. */
  get urls(): string[] {
    return this.ports.map((port) => `redis://127.0.0.1:${port}`);
  }

  /** Root nodes for `createCluster()`. */
  get rootNodes(): Array<{ url: string }> {
    return this.urls.map((url) => ({ url }));
  }

  /** Starts `nodes` (>= 3) masters, creates the cluster and waits until every node reports `cluster_state:ok`. */
  static async start(nodes = 3): Promise<RedisClusterServer> {
    const server = new RedisClusterServer(await freePortBlock(nodes), mkdtempSync(join(tmpdir(), 'nest-session-cluster-')));
    try {
      await server.launch();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  private async launch(): Promise<void> {
    await Promise.all(this.ports.map((port, i) => this.startNode(port, i + 1)));
    const created = await run('redis-cli', [
      '--cluster',
      'create',
      ...this.ports.map((port) => `127.0.0.1:${port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    if (created.code !== 0) {
      throw new Error(`redis-cli --cluster create failed (${String(created.code)}): ${created.output}\n${this.output}`);
    }
    const deadline = Date.now() + 20_000;
    for (;;) {
      const states = await Promise.all(this.ports.map((port) => run('redis-cli', ['-p', String(port), 'CLUSTER', 'INFO'])));
      if (states.every((s) => s.output.includes('cluster_state:ok'))) return;
      if (Date.now() > deadline) {
        throw new Error(`The test cluster did not reach cluster_state:ok within 20 s: ${states.map((s) => s.output).join('\n')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  private async startNode(port: number, index: number): Promise<void> {
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      join(this.dir, `nodes-${index}.conf`),
      '--cluster-node-timeout',
      '2000',
      '--dir',
      this.dir,
      '--dbfilename',
      `dump-${index}.rdb`,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
    ];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(child);
    child.stdout?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    const failed = new Promise<never>((_, reject) => {
      child.once('error', (error) =>
        reject(new Error(`Cannot start redis-server (${error.message}). Install it: apt-get install redis-server`)),
      );
      child.once('exit', (code) => reject(new Error(`redis-server on port ${port} exited with ${String(code)}: ${this.output}`)));
    });
    failed.catch(() => undefined);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const pong = await Promise.race([run('redis-cli', ['-p', String(port), 'PING']), failed]);
      if (pong.output.trim() === 'PONG') return;
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer within 10 s: ${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Kills every node (SIGKILL) and removes the directory. Idempotent. */
  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGKILL');
        await exited;
      }),
    );
    this.children.length = 0;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A connected node-redis cluster client of `server`, failing fast (no reconnects) so a test
 * that lost its cluster fails instead of hanging. Close it in `afterAll`.
 */
export async function connectTestCluster(server: RedisClusterServer): Promise<TestRedisCluster> {
  const cluster = createCluster({
    rootNodes: server.rootNodes,
    defaults: { socket: { connectTimeout: 2000, reconnectStrategy: false } },
  });
  cluster.on('error', () => {
    /* reported through the failing command instead */
  });
  await cluster.connect();
  return cluster;
}

/** Runs a command to completion; answers its exit code and combined output. Rejects if it cannot start. */
function run(command: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', (error) =>
      reject(new Error(`Cannot run ${command} (${error.message}). Install it: apt-get install redis-server (redis-tools)`)),
    );
    child.once('close', (code) => resolve({ code, output }));
  });
}

/** `count` consecutive free ports whose cluster bus ports (+10000) are free too: 7311.. if possible. */
async function freePortBlock(count: number): Promise<number[]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = attempt === 0 ? PREFERRED_BASE_PORT : 7300 + Math.floor(Math.random() * 2600);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    const free = await Promise.all(ports.flatMap((port) => [isFree(port), isFree(port + BUS_OFFSET)]));
    if (free.every(Boolean)) return ports;
  }
  throw new Error('No block of free ports for a test Redis Cluster in 7300-9899 (and their bus ports +10000)');
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
