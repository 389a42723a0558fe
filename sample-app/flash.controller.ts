import { BadRequestException, Body, Controller, Get, HttpCode, Post, Query, Redirect } from '@nestjs/common';
import { FlashBag, Flashes, type FlashMessages } from 'nest-session';
import { parseDelay, sleep } from './session.controller.js';

/** Flash messages (README "Bags"): added in one request, shown once in a later one. */
@Controller('flash')
export class FlashController {
  /** Adds a message; `?redirect=1` answers 302 to GET /flash, like a form post would. */
  @Post()
  @HttpCode(201)
  async add(
    @Body() body: { type?: unknown; message?: unknown } | undefined,
    @Flashes() flashes: FlashBag,
    @Query('delay') delay?: string,
  ): Promise<{ added: true }> {
    if (typeof body?.type !== 'string' || body.type.length === 0 || typeof body.message !== 'string') {
      throw new BadRequestException('Send {"type": "success", "message": "..."}.');
    }
    await sleep(parseDelay(delay));
    flashes.add(body.type, body.message);
    return { added: true };
  }

  @Post('redirect')
  @Redirect('/flash', 302)
  addAndRedirect(@Body() body: { type?: string; message?: string } | undefined, @Flashes() flashes: FlashBag): void {
    flashes.add(body?.type ?? 'info', body?.message ?? '');
  }

  /** Reads and consumes all messages. */
  @Get()
  show(@Flashes() flashes: FlashBag): FlashMessages {
    return flashes.all();
  }
}
