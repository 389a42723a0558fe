import { BadRequestException, Body, Controller, Delete, Get, HttpCode, Inject, Param, Post, Put, Query } from '@nestjs/common';
import { SessionInterface } from 'nest-session';

/** Reading and writing the current session: `GET /session`, `PUT`/`DELETE /session/data/:key` and the other `/session` routes. */
@Controller('session')
export class SessionController {
  // A singleton controller: the injected session follows the current request.
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  @Get()
  async show(): Promise<{ started: boolean; data: Record<string, unknown>; tags: string[]; user: string | null }> {
    const s = this.session;
    if (!s.isStarted()) return { started: false, data: {}, tags: [], user: null };
    return { started: true, data: toJson(await s.getAllData()), tags: s.getTags(), user: s.getUserId() ?? null };
  }

  @Put('data/:key')
  async put(
    @Param('key') key: string,
    @Body() body: { value?: unknown } | undefined,
    @Query('delay') delay?: string,
  ): Promise<{ key: string; value: unknown }> {
    if (body === undefined || typeof body !== 'object' || !('value' in body)) {
      throw new BadRequestException('Send a JSON body {"value": ...}.');
    }
    this.session.start();
    await this.session.getData(key); // read first, then (optionally) wait: a slow read-modify-write
    await sleep(parseDelay(delay));
    await this.session.putData(key, body.value);
    return { key, value: body.value };
  }

  /**
   * `regenerate(destroy)` under the session lock, then `save()`: a new id (with `destroy=1` also
   * a new storage id, the old one flushed); data and bags are kept. Answers the session as
   * `GET /session` does.
   */
  @Post('regenerate')
  @HttpCode(200)
  async regenerate(
    @Query('destroy') destroy?: string,
  ): Promise<{ started: boolean; data: Record<string, unknown>; tags: string[]; user: string | null }> {
    const s = this.session;
    await s.open();
    await s.regenerate(destroy === '1');
    await s.save();
    return this.show();
  }

  @Delete('data/:key')
  async remove(@Param('key') key: string): Promise<{ key: string; removed: boolean }> {
    if (!this.session.isStarted()) return { key, removed: false };
    const had = await this.session.hasKey(key);
    await this.session.removeData(key);
    return { key, removed: had };
  }

  /**
   * Tries to store something that is not plain data, to show the 400 that
   * DataNotSerializableException gives (JSON bodies cannot carry such values).
   */
  @Post('unserializable')
  async unserializable(@Query('kind') kind = 'function'): Promise<never> {
    this.session.start();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const values: Record<string, unknown> = {
      function: () => 1,
      symbol: Symbol('s'),
      instance: new (class Cart {
        readonly items: string[] = [];
      })(),
      cyclic,
    };
    await this.session.putData('bad', values[kind] ?? values.function);
    throw new Error('unreachable: putData accepted a value it must reject');
  }
}

export function parseDelay(delay: string | undefined): number {
  const ms = delay === undefined ? 0 : Number(delay);
  if (!Number.isFinite(ms) || ms < 0) throw new BadRequestException('delay must be a number of milliseconds >= 0.');
  return Math.min(ms, 5000);
}

export function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

/** Session values may be Map, Set, Date or BigInt; show them as JSON can. */
function toJson(data: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify(data, (_k, v: unknown): unknown =>
      typeof v === 'bigint' ? v.toString() : v instanceof Map ? Object.fromEntries(v) : v instanceof Set ? [...v] : v,
    ),
  ) as Record<string, unknown>;
}
