import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { SessionManager } from 'nest-session';
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

    /** `count` sessions stored with a 1 s inactivity timeout, then 1.3 s later: all expired. */
    async function expiredSessions(count: number): Promise<void> {
      const short = await createSampleApp('express', {
        redis: { url: TEST_REDIS_URL, prefix },
        session: { inactivityTimeout: 1, updateGracePeriod: 0, garbageCollection: { probability: 0, cron: false } },
      });
      try {
        for (let i = 0; i < count; i++) await new Browser(short).put('/session/data/x', { value: i });
      } finally {
        await short.close();
      }
      await sleep(1300);
    }

    it('collects expired sessions: plain counts per run when piped, a progress bar on a terminal', async () => {
      await expiredSessions(3);
      const piped = await cli(cliPath, ['sessions', 'gc', '--all'], { ...env(), SESSION_GC: 'manual' });
      expect(piped.stderr).toBe('');
      expect(piped.stdout).toBe('run 1: removed 3 (total 3)\nremoved 3 expired session(s) in 1 run(s)\n');

      // Five expired sessions, at most two per run: the bar shows each run's share of that.
      const before = await cli(cliPath, ['sessions', 'stats', '--json'], env());
      await expiredSessions(5);
      const perRun = { ...env(), SESSION_GC_MAX_PER_RUN: '2' };
      const one = await cliOnTty(cliPath, ['sessions', 'gc'], perRun);
      expect(one.code).toBe(0);
      expect(one.stdout).toBe(
        '\r[########################] run 1: removed 2, 2 in total\r\nremoved 2 expired session(s) in 1 run(s)\r\n',
      );
      const all = await cliOnTty(cliPath, ['sessions', 'gc', '--all'], perRun);
      expect(all.stdout).toBe(
        '\r[########################] run 1: removed 2, 2 in total' +
          '\r[############------------] run 2: removed 1, 3 in total\r\n' +
          'removed 3 expired session(s) in 2 run(s)\r\n',
      );
      // Nothing left to collect: an empty bar. The live sessions are untouched.
      const none = await cliOnTty(cliPath, ['sessions', 'gc'], perRun);
      expect(none.stdout).toBe(
        '\r[------------------------] run 1: removed 0, 0 in total\r\nremoved 0 expired session(s) in 1 run(s)\r\n',
      );
      const after = await cli(cliPath, ['sessions', 'stats', '--json'], env());
      expect(JSON.parse(after.stdout)).toEqual(JSON.parse(before.stdout));

      // Piped, the same runs are plain lines.
      await expiredSessions(3);
      const lines = await cli(cliPath, ['sessions', 'gc', '--all'], perRun);
      expect(lines.stdout).toBe(
        'run 1: removed 2 (total 2)\nrun 2: removed 1 (total 3)\nremoved 3 expired session(s) in 2 run(s)\n',
      );
    }, 90_000);

    it('refuses a SESSION_GC_MAX_PER_RUN that is not a whole number >= 1', async () => {
      const result = await cli(cliPath, ['sessions', 'gc'], { ...env(), SESSION_GC_MAX_PER_RUN: '0' });
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain('SESSION_GC_MAX_PER_RUN must be a whole number >= 1, not "0"');
    }, 60_000);

    it('lists and destroys the sessions with a tag, and only those', async () => {
      const tagged = uniquePrefix('cli-tag');
      const tagApp = await createSampleApp('express', {
        redis: { url: TEST_REDIS_URL, prefix: tagged },
        session: { garbageCollection: { probability: 0, cron: false } },
      });
      const tagEnv = { SESSION_BACKEND: 'redis', REDIS_URL: TEST_REDIS_URL, SESSION_PREFIX: tagged };
      try {
        const manager = tagApp.get(SessionManager);
        const browsers: Record<string, Browser> = {};
        const handles: Record<string, string> = {};
        // Tagged by the running app, as an app tags sessions (addTag on a remote session writes through).
        const tagsOf: Record<string, readonly string[]> = {
          alice: ['beta'],
          bob: ['beta', 'eu'],
          anonymous: ['beta'],
          carol: [],
        };
        for (const name of Object.keys(tagsOf)) {
          const browser = new Browser(tagApp);
          await browser.put('/session/data/x', { value: name });
          if (name !== 'anonymous') await browser.post('/auth/login', { user: name });
          browsers[name] = browser;
        }
        for await (const info of manager.listSessions()) {
          const session = (await manager.getSessionByHandle(info.handle))!;
          const name = info.userId ?? 'anonymous';
          handles[name] = info.handle;
          for (const tag of tagsOf[name] ?? []) await session.addTag(tag);
        }
        expect(Object.keys(handles).sort()).toEqual(['alice', 'anonymous', 'bob', 'carol']);

        const list = await cli(cliPath, ['sessions', 'list', '--tag', 'beta'], tagEnv);
        expect(list.stderr).toBe('');
        const lines = list.stdout.trim().split('\n');
        expect(lines).toHaveLength(4);
        expect(lines[3]).toBe('3 session(s)');
        const shown = lines.slice(0, 3).map((line) => {
          const match = /^(\S{16}) {2}user=(\S+) {2}created=\S+ {2}last=\S+ {2}expires=\S+ {2}tags=(\S+)$/.exec(line);
          expect(match).not.toBeNull();
          return { handle: match![1], user: match![2]!, tags: match![3]!.split(',').sort().join(',') };
        });
        // The user's own tag is not shown as a custom tag.
        expect(shown.sort((a, b) => a.user.localeCompare(b.user))).toEqual([
          { handle: handles.anonymous, user: '-', tags: 'beta' },
          { handle: handles.alice, user: 'alice', tags: 'beta' },
          { handle: handles.bob, user: 'bob', tags: 'beta,eu' },
        ]);
        const json = await cli(cliPath, ['sessions', 'list', '--tag', 'eu', '--json'], tagEnv);
        const eu = json.stdout
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as { handle: string; userId?: string; tags: string[] });
        expect(eu.map((info) => [info.handle, info.userId])).toEqual([[handles.bob, 'bob']]);
        expect(eu[0]!.tags).toEqual(expect.arrayContaining(['beta', 'eu']));
        expect((await cli(cliPath, ['sessions', 'list', '--tag', 'nobody-has-it'], tagEnv)).stdout).toBe('0 session(s)\n');
        const both = await cli(cliPath, ['sessions', 'list', '--tag', 'beta', '--user', 'bob'], tagEnv);
        expect(both.code).not.toBe(0);
        expect(both.stderr).toContain('Give --user or --tag, not both.');

        const destroyed = await cli(cliPath, ['sessions', 'destroy', '--tag', 'beta'], tagEnv);
        expect(destroyed.stderr).toBe('');
        expect(destroyed.stdout).toBe('destroyed 3 session(s)\n');
        expect((await cli(cliPath, ['sessions', 'list', '--tag', 'beta'], tagEnv)).stdout).toBe('0 session(s)\n');
        const rest = await cli(cliPath, ['sessions', 'list', '--json'], tagEnv);
        expect(
          rest.stdout
            .trim()
            .split('\n')
            .map((line) => (JSON.parse(line) as { handle: string }).handle),
        ).toEqual([handles.carol]);
        // The running app sees it at once: the tagged sessions' cookies start nothing, carol's still works.
        for (const name of ['alice', 'bob', 'anonymous']) {
          expect((await browsers[name]!.get('/session')).body).toMatchObject({ started: false });
        }
        expect((await browsers.carol!.get('/session')).body).toMatchObject({
          started: true,
          user: 'carol',
          data: { x: 'carol' },
        });
      } finally {
        await tagApp.close();
        const keys = await redis.keys(`${tagged}*`);
        if (keys.length > 0) await redis.del(keys);
      }
    }, 120_000);
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
