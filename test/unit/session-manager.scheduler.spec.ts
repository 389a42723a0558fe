import { afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import { Test, type TestingModule } from '@nestjs/testing';
import { MemoryBackend } from '../../lib/cache/memory.backend.js';
import { GC_CRON_JOB_NAME } from '../../lib/manager/gc.scheduler.js';
import type { SessionEvent } from '../../lib/session/session-events.js';
import { SessionManager } from '../../lib/manager/session.manager.js';
import type { SessionModuleOptions } from '../../lib/session/session-module.options.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { SessionModule } from '../../lib/nest/session.module.js';

beforeAll(() => Logger.overrideLogger(['error', 'warn']));

/** Timers and Date are fake; promise plumbing stays real. */
function fakeTime(now: string): void {
  jest.useFakeTimers({ now: new Date(now), doNotFake: ['nextTick', 'setImmediate', 'clearImmediate', 'queueMicrotask'] });
}

async function boot(options: SessionModuleOptions, withSchedule = false): Promise<TestingModule> {
  const moduleRef = await Test.createTestingModule({
    imports: [...(withSchedule ? [ScheduleModule.forRoot()] : []), SessionModule.forRoot(options)],
  }).compile();
  await moduleRef.init();
  return moduleRef;
}

async function storeExpiringSession(moduleRef: TestingModule): Promise<string> {
  const session = new Session(moduleRef.get(SessionStore), { cookieIds: [], cookieName: 'sid' });
  session.start();
  await session.putData('k', 1);
  await session.commit();
  return session.getId();
}

describe('scheduled garbage collection', () => {
  let moduleRef: TestingModule | undefined;

  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    jest.useRealTimers();
  });

  it('fires on the cron schedule and collects what expired', async () => {
    fakeTime('2031-01-01T00:00:30.000Z');
    moduleRef = await boot({
      inactivityTimeout: 120,
      updateGracePeriod: 0,
      garbageCollection: { probability: 0, cron: '*/5 * * * *' },
    });
    const runs: SessionEvent[] = [];
    moduleRef.get(SessionManager).events$.subscribe((event) => {
      if (event.type === 'gc') runs.push(event);
    });
    await storeExpiringSession(moduleRef);

    await jest.advanceTimersByTimeAsync(4 * 60_000); // 00:04:30
    expect(runs).toEqual([]);
    await jest.advanceTimersByTimeAsync(60_000); // 00:05:30: ran at 00:05:00
    expect(runs).toEqual([expect.objectContaining({ type: 'gc', removed: 1 })]);
    await jest.advanceTimersByTimeAsync(4 * 60_000); // 00:09:30
    expect(runs).toHaveLength(1);
    await jest.advanceTimersByTimeAsync(60_000); // 00:10:30
    expect(runs).toHaveLength(2);
    expect(runs[1]).toMatchObject({ removed: 0 });
  });

  it('runs the CronJob itself when the app has no ScheduleModule, and stops it on shutdown', async () => {
    fakeTime('2031-01-01T00:00:00.000Z');
    moduleRef = await boot({ garbageCollection: { probability: 0, cron: '* * * * * *' } });
    const runs: SessionEvent[] = [];
    moduleRef.get(SessionManager).events$.subscribe((event) => runs.push(event));
    await jest.advanceTimersByTimeAsync(3_000);
    expect(runs.filter((e) => e.type === 'gc')).toHaveLength(3);
    expect(jest.getTimerCount()).toBeGreaterThan(0);
    await moduleRef.close();
    moduleRef = undefined;
    expect(jest.getTimerCount()).toBe(0); // nothing left to keep the process alive
  });

  it('registers the job in SchedulerRegistry when the app imports ScheduleModule, and removes it on shutdown', async () => {
    fakeTime('2031-01-01T00:00:00.000Z');
    moduleRef = await boot({ garbageCollection: { probability: 0, cron: '0 * * * *' } }, true);
    const registry = moduleRef.get(SchedulerRegistry);
    expect(registry.doesExist('cron', GC_CRON_JOB_NAME)).toBe(true);
    expect(registry.getCronJob(GC_CRON_JOB_NAME).isActive).toBe(true);
    await moduleRef.close();
    moduleRef = undefined;
    expect(registry.doesExist('cron', GC_CRON_JOB_NAME)).toBe(false);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('schedules nothing with cron: false', async () => {
    fakeTime('2031-01-01T00:00:00.000Z');
    moduleRef = await boot({ garbageCollection: { probability: 0, cron: false } }, true);
    expect(moduleRef.get(SchedulerRegistry).getCronJobs().size).toBe(0);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('a bad cron expression fails at boot, naming the option', async () => {
    await expect(boot({ garbageCollection: { cron: '*/5 * * *' } })).rejects.toThrow('"garbageCollection.cron"');
  });

  it('shutdown waits for a GC run in flight, refuses new ones and completes events$', async () => {
    const metadataBackend = new MemoryBackend();
    moduleRef = await boot({ metadataBackend, garbageCollection: { probability: 0, cron: false } });
    const manager = moduleRef.get(SessionManager);
    let completed = false;
    manager.events$.subscribe({ complete: () => (completed = true) });
    const collect = metadataBackend.collectGarbage.bind(metadataBackend);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let finished = false;
    metadataBackend.collectGarbage = async (limit) => {
      await gate;
      const result = await collect(limit);
      finished = true;
      return result;
    };
    const run = manager.collectGarbage();
    const closing = moduleRef.close();
    moduleRef = undefined;
    await new Promise((resolve) => setImmediate(resolve));
    expect(finished).toBe(false);
    release();
    expect(completed).toBe(false);
    await closing;
    expect(finished).toBe(true);
    expect(completed).toBe(true);
    expect(await run).toBe(0);
    expect(await manager.collectGarbage()).toBe(0);
  });
});
