/**
 * One bench app in its own process: `node app-child.js <variant>` (forked by run.ts, with an
 * IPC channel). Listens on a free port on 127.0.0.1 and reports it; answers CPU-time queries,
 * profiles on request (V8 inspector, so that start-up is not in the profile), and closes
 * cleanly on "stop".
 */
import { writeFileSync } from 'node:fs';
import { Session as InspectorSession } from 'node:inspector';
import type { AddressInfo, Server } from 'node:net';
import { buildCeilingApp } from './apps/ceiling.app.js';
import { buildExpressSessionApp } from './apps/express-session.app.js';
import { buildFastifySessionApp } from './apps/fastify-session.app.js';
import type { BenchApp } from './apps/nest.js';
import { buildOursApp } from './apps/ours.app.js';
import { buildOursPostgresApp } from './apps/ours-postgres.app.js';
import { buildExpressSessionPostgresApp } from './apps/express-session-postgres.app.js';
import { variantByName, type AppEnv, type Variant } from './variants.js';

/** Messages from the runner to an app child. */
export type AppChildCommand =
  | 'stop'
  | 'cpu'
  /** Starts the V8 CPU profiler (sampling every 500 µs). */
  | { type: 'profile-start' }
  /** Stops it and writes the profile to `file`; answered with `profiled`. */
  | { type: 'profile-stop'; file: string };

/** Messages from an app child to the runner. */
export type AppChildMessage =
  | { type: 'listening'; port: number; info: string }
  | { type: 'failed'; error: string }
  /** Answer to the runner's "cpu" message: this process's CPU time so far, microseconds. */
  | { type: 'cpu'; micros: number }
  | { type: 'profiled'; file: string };

function build(variant: Variant, env: AppEnv): Promise<BenchApp> {
  switch (variant.kind) {
    case 'ceiling':
      return buildCeilingApp(variant.adapter, env);
    case 'ours':
      return variant.store === 'postgres'
        ? buildOursPostgresApp(variant.adapter)
        : buildOursApp(variant.adapter, variant.store, env, variant.injected === true);
    case 'peer':
      if (variant.store === 'postgres') return buildExpressSessionPostgresApp();
      return variant.adapter === 'express'
        ? buildExpressSessionApp(variant.store, env)
        : buildFastifySessionApp(variant.store, env);
  }
}

function send(message: AppChildMessage): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const variant = variantByName(process.argv[2] ?? '');
  const env: AppEnv = {
    redisUrl: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
    redisPrefix: process.env.BENCH_REDIS_PREFIX ?? `nsbench-${process.pid}:`,
  };
  let bench: BenchApp;
  try {
    bench = await build(variant, env);
  } catch (error) {
    send({ type: 'failed', error: (error as { stack?: string } | null | undefined)?.stack ?? String(error) });
    if (process.connected) process.disconnect();
    return;
  }
  await bench.app.listen(0, '127.0.0.1');
  const address = (bench.app.getHttpServer() as Server).address() as AddressInfo;

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await bench.close().catch((error: unknown) => console.error(`[${variant.name}] close failed:`, error));
    process.exit(0);
  };
  let inspector: InspectorSession | undefined;
  process.on('message', (message: AppChildCommand) => {
    if (message === 'stop') void stop();
    else if (message === 'cpu') {
      const usage = process.cpuUsage();
      send({ type: 'cpu', micros: usage.user + usage.system });
    } else if (message.type === 'profile-start') {
      if (inspector === undefined) {
        inspector = new InspectorSession();
        inspector.connect();
        inspector.post('Profiler.enable');
        inspector.post('Profiler.setSamplingInterval', { interval: 500 });
      }
      inspector.post('Profiler.start');
    } else if (inspector !== undefined) {
      const file = message.file;
      inspector.post('Profiler.stop', (error, result) => {
        if (error === null) writeFileSync(file, JSON.stringify(result.profile));
        send({ type: 'profiled', file });
      });
    }
  });
  // The runner went away (crash, Ctrl-C): do not linger.
  process.on('disconnect', () => void stop());
  send({ type: 'listening', port: address.port, info: bench.info });
}

main().catch((error: unknown) => {
  send({ type: 'failed', error: (error as { stack?: string } | null | undefined)?.stack ?? String(error) });
  process.exitCode = 1;
});
