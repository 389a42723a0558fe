import {
  Inject,
  Injectable,
  Logger,
  Optional,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { CronJob } from 'cron';
import { SESSION_OPTIONS } from '../session/session.constants.js';
import type { ResolvedSessionOptions } from '../session/session-module.options.js';
import { SessionManager } from './session.manager.js';

/** Name of the job in `SchedulerRegistry` (a suffix is added if an app has two SessionModules). */
export const GC_CRON_JOB_NAME = 'nest-session-gc';

/**
 * Runs `SessionManager.collectGarbage()` on the `garbageCollection.cron` schedule.
 *
 * SessionModule does not import `ScheduleModule.forRoot()` itself: a second `forRoot()` (also an
 * identical one) makes a second explorer and registry, and every `@Cron()` method of the app then
 * fires twice; importing it where the app has none would switch on the app's own `@Cron()`
 * methods. So: when the app imports `ScheduleModule.forRoot()`, the job is registered in its
 * `SchedulerRegistry` (visible and controllable there); otherwise the `CronJob` is run directly.
 * Either way it starts in `onApplicationBootstrap` and is stopped in `beforeApplicationShutdown`,
 * and its timer is unref'd, so it never keeps a process (or Jest) alive.
 */
@Injectable()
export class GcScheduler implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('SessionGcScheduler');
  private job: CronJob | undefined;
  private name: string | undefined;

  constructor(
    @Inject(SessionManager) private readonly manager: SessionManager,
    @Inject(SESSION_OPTIONS) private readonly options: ResolvedSessionOptions,
    @Optional() @Inject(SchedulerRegistry) private readonly registry?: SchedulerRegistry,
  ) {}

  onApplicationBootstrap(): void {
    const cron = this.options.garbageCollection.cron;
    if (cron === false || this.job !== undefined) return;
    const job = CronJob.from({
      cronTime: cron,
      onTick: () => this.tick(),
      start: false,
      unrefTimeout: true,
      // A run still going when the next tick comes is not started twice in this instance.
      waitForCompletion: true,
    });
    if (this.registry) {
      let name = GC_CRON_JOB_NAME;
      for (let i = 2; this.registry.doesExist('cron', name); i++) name = `${GC_CRON_JOB_NAME}-${i}`;
      this.registry.addCronJob(name, job);
      this.name = name;
    }
    job.start();
    this.job = job;
    this.logger.debug(
      `Session garbage collection scheduled: "${cron}"${this.name === undefined ? '' : ` (SchedulerRegistry job "${this.name}")`}`,
    );
  }

  async beforeApplicationShutdown(): Promise<void> {
    const job = this.job;
    this.job = undefined;
    if (job === undefined) return;
    const registry = this.registry;
    // ScheduleModule's own shutdown hook may have deleted (and stopped) it already.
    if (registry && this.name !== undefined && registry.doesExist('cron', this.name) && registry.getCronJob(this.name) === job) {
      registry.deleteCronJob(this.name);
    }
    this.name = undefined;
    await job.stop();
  }

  private async tick(): Promise<void> {
    try {
      await this.manager.collectGarbage();
    } catch {
      // Already logged as a warning by SessionManager; the next tick tries again.
    }
  }
}
