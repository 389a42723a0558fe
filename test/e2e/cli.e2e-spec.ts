import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { createSampleApp } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';
import { connectTestRedis, TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from '../support/redis.js';
import { buildSampleApp } from '../support/sample-process.js';

const run = promisify(execFile);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the sample app's CLI (`npm run cli -- ...` without the build) as its own process. */
function cli(cliPath: string, args: string[], env: Record<string, string>): Promise<CliResult> {
  return exec(process.execPath, [cliPath, ...args], env);
}

async function exec(file: string, args: string[], env: Record<string, string>): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(file, args, {
      env: { ...process.env, NODE_OPTIONS: '', ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

/** The same on a pseudo-terminal (util-linux `script`), where the GC progress bar is drawn. */
async function cliOnTty(cliPath: string, args: string[], env: Record<string, string>): Promise<CliResult> {
  const command = [process.execPath, cliPath, ...args].map((part) => `'${part.replace(/'/g, `'\\''`)}'`).join(' ');
  return exec('script', ['-qec', command, '/dev/null'], env);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe('the admin CLI (nest-commander) as a process', () => {
  let cliPath: string;
  beforeAll(() => {
    cliPath = join(dirname(buildSampleApp()), 'cli.js');
  }, 180_000);

  describe('on Redis', () => {
    let redis: TestRedisClient;
    let app: INestApplication;
    const prefix = uniquePrefix('cli');
    const env = () => ({ SESSION_BACKEND: 'redis', REDIS_URL: TEST_REDIS_URL, SESSION_PREFIX: prefix });

    beforeAll(async () => {
      redis = await connectTestRedis();
      // The "running app" whose sessions the CLI manages: the same Redis and prefix.
      app = await createSampleApp('express', {
        redis: { url: TEST_REDIS_URL, prefix },
        session: { garbageCollection: { probability: 0, cron: false } },
      });
    });
    afterAll(async () => {
      await app.close();
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(keys);
      await redis.close();
    });

    it('lists, counts and destroys sessions by user, tag and handle', async () => {
      for (const user of ['alice', 'alice', 'bob']) {
        const browser = new Browser(app);
        await browser.put('/session/data/x', { value: 1 });
        await browser.post('/auth/login', { user });
      }
      await new Browser(app).put('/session/data/anonymous', { value: true });

      const stats = await cli(cliPath, ['sessions', 'stats', '--json'], env());
      expect(stats.stderr).toBe('');
      expect(JSON.parse(stats.stdout)).toMatchObject({ sessions: 4, userBound: 3, anonymous: 1, users: 2, permanent: 0 });

      const list = await cli(cliPath, ['sessions', 'list', '--user', 'alice'], env());
      expect(list.code).toBe(0);
      const lines = list.stdout.trim().split('\n');
      expect(lines).toHaveLength(3);
      expect(lines[2]).toBe('2 session(s)');
      expect(lines[0]).toMatch(/^[A-Za-z0-9_-]{16} {2}user=alice {2}created=\S+ {2}last=\S+ {2}expires=\S+ {2}tags=-$/);

      const json = await cli(cliPath, ['sessions', 'list', '--json'], env());
      const infos = json.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { handle: string; userId?: string });
      expect(infos).toHaveLength(4);

      const bob = infos.find((info) => info.userId === 'bob')!;
      const byHandle = await cli(cliPath, ['sessions', 'destroy', '--handle', bob.handle], env());
      expect(byHandle.stdout.trim()).toBe('destroyed 1 session(s)');
      const byUser = await cli(cliPath, ['sessions', 'destroy', '--user', 'alice'], env());
      expect(byUser.stdout.trim()).toBe('destroyed 2 session(s)');
      const after = await cli(cliPath, ['sessions', 'stats'], env());
      expect(after.stdout).toContain('sessions: 1\n');
      expect(after.stdout).toContain('userBound: 0\n');

      const none = await cli(cliPath, ['sessions', 'destroy', '--tag', 'nothing-has-it'], env());
      expect(none.stdout.trim()).toBe('destroyed 0 session(s)');
    }, 120_000);

    it('refuses a destroy without exactly one selector, with a message and a non-zero exit', async () => {
      const result = await cli(cliPath, ['sessions', 'destroy'], env());
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain('Give exactly one of --user, --tag and --handle.');
    }, 60_000);

    it('collects expired sessions: plain counts per run when piped, a progress bar on a terminal', async () => {
      const short = await createSampleApp('express', {
        redis: { url: TEST_REDIS_URL, prefix },
        session: { inactivityTimeout: 1, updateGracePeriod: 0, garbageCollection: { probability: 0, cron: false } },
      });
      try {
        for (let i = 0; i < 3; i++) await new Browser(short).put('/session/data/x', { value: i });
      } finally {
        await short.close();
      }
      await sleep(1300);
      const piped = await cli(cliPath, ['sessions', 'gc', '--all'], { ...env(), SESSION_GC: 'manual' });
      expect(piped.stderr).toBe('');
      expect(piped.stdout).toBe('run 1: removed 3 (total 3)\nremoved 3 expired session(s) in 1 run(s)\n');

      const tty = await cliOnTty(cliPath, ['sessions', 'gc'], env());
      expect(tty.stdout).toMatch(/\r\[-{24}\] run 1: removed 0, 0 in total\r?\n/);
      expect(tty.stdout).toContain('removed 0 expired session(s) in 1 run(s)');
    }, 60_000);
  });

  describe('in memory', () => {
    it('runs every command against the in-memory store of its own process', async () => {
      const env = { SESSION_BACKEND: 'memory' };
      const stats = await cli(cliPath, ['sessions', 'stats'], env);
      expect(stats.code).toBe(0);
      expect(stats.stdout).toContain('sessions: 0\n');
      const list = await cli(cliPath, ['sessions', 'list'], env);
      expect(list.stdout).toBe('0 session(s)\n');
      const gc = await cli(cliPath, ['sessions', 'gc', '--all'], env);
      expect(gc.stdout).toBe('run 1: removed 0 (total 0)\nremoved 0 expired session(s) in 1 run(s)\n');
      const destroy = await cli(cliPath, ['sessions', 'destroy', '--user', 'nobody'], env);
      expect(destroy.stdout).toBe('destroyed 0 session(s)\n');
    }, 60_000);
  });
});
