import { BadRequestException, Controller, HttpCode, Inject, Param, Post, Query } from '@nestjs/common';
import { SessionInterface, SessionLock } from 'nest-session';
import { parseDelay, sleep } from './session.controller.js';

/** Read-modify-write counters: what locking is for (README "Locking"). */
@Controller('counter')
export class CounterController {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  /**
   * +1 on a number. `?lock=1` holds the session lock across the read-modify-write with
   * `open()`; without it, concurrent increments of the same key can overwrite each other
   * (increments of different keys never do). `?delay=MS` stands for a slow handler and
   * `?fail=1` throws after writing, to show that a failing handler leaves no lock behind.
   */
  @Post(':key/increment')
  @HttpCode(200)
  async increment(
    @Param('key') key: string,
    @Query('lock') lock?: string,
    @Query('delay') delay?: string,
    @Query('fail') fail?: string,
  ): Promise<{ key: string; value: number }> {
    if (lock === '1') await this.session.open();
    else if (!(await this.session.resume())) this.session.start();
    return this.bump(key, delay, fail);
  }

  /** The same with the lock declared on the route: `@SessionLock()`. */
  @Post(':key/increment-locked')
  @HttpCode(200)
  @SessionLock()
  async incrementLocked(
    @Param('key') key: string,
    @Query('delay') delay?: string,
    @Query('fail') fail?: string,
  ): Promise<{ key: string; value: number }> {
    return this.bump(key, delay, fail);
  }

  private async bump(key: string, delay: string | undefined, fail: string | undefined): Promise<{ key: string; value: number }> {
    const current = await this.session.getData(key);
    if (current !== undefined && typeof current !== 'number') throw new BadRequestException(`"${key}" does not hold a number.`);
    await sleep(parseDelay(delay));
    const value = (current ?? 0) + 1;
    await this.session.putData(key, value);
    if (fail === '1') throw new BadRequestException('Failing on purpose after the write (fail=1).');
    return { key, value };
  }
}
