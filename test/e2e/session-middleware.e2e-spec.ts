import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  Controller,
  Get,
  Injectable,
  Module,
  Post,
  RequestMethod,
  type INestApplication,
  type MiddlewareConsumer,
  type NestMiddleware,
  type NestModule,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import { CurrentSession, SessionInterface, SessionMiddleware, SessionModule } from '../../lib/index.js';
import { SESSION_REQUEST_KEY } from '../../lib/session/session-request.key.js';
import { Browser, setCookies } from '../support/http.js';

/**
 * Option `autoMount: false`: the session is a Nest middleware the app applies itself, ordered
 * against its other middleware and limited with forRoutes/exclude.
 */

/** Records, in a response header, whether the session had begun when this middleware ran (Express only). */
function recorder(header: string) {
  @Injectable()
  class Recorder implements NestMiddleware {
    use(req: IncomingMessage & { [SESSION_REQUEST_KEY]?: unknown }, res: ServerResponse, next: () => void): void {
      res.setHeader(header, String(req[SESSION_REQUEST_KEY] !== undefined));
      next();
    }
  }
  return Recorder;
}
const Before = recorder('x-before');
const After = recorder('x-after');

@Controller('s')
class SessionRoutes {
  @Post('write')
  async write(@CurrentSession() session: SessionInterface): Promise<{ ok: true }> {
    session.start();
    await session.putData('n', 5);
    return { ok: true };
  }

  @Get('read')
  async read(@CurrentSession() session: SessionInterface): Promise<{ n: unknown }> {
    return { n: session.isStarted() ? await session.getData('n') : null };
  }

  /** Excluded from the middleware: no session at all. */
  @Get('skip')
  skip(@CurrentSession() session: SessionInterface): { started: boolean } {
    return { started: session.isStarted() };
  }
}

@Controller('p')
class PublicRoutes {
  @Get('ping')
  ping(): { pong: true } {
    return { pong: true };
  }
}

@Module({
  imports: [SessionModule.forRoot({ autoMount: false })],
  controllers: [SessionRoutes, PublicRoutes],
})
class AppModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer
      .apply(Before, SessionMiddleware, After)
      .exclude({ path: 's/skip', method: RequestMethod.GET })
      .forRoutes(SessionRoutes);
  }
}

describe.each(['express', 'fastify'] as const)('SessionMiddleware (autoMount: false) on %s', (adapter) => {
  let app: INestApplication;

  beforeAll(async () => {
    app =
      adapter === 'fastify'
        ? await NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter(), { logger: false })
        : await NestFactory.create(AppModule, new ExpressAdapter(), { logger: false });
    await app.init();
    if (adapter === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
  });
  afterAll(async () => {
    await app.close();
  });

  it('gives the routes it is applied to their session', async () => {
    const browser = new Browser(app);
    expect((await browser.post('/s/write')).status).toBe(201);
    expect(browser.cookie).toBeDefined();
    expect((await browser.get('/s/read')).body).toEqual({ n: 5 });
  });

  it('leaves routes outside forRoutes alone: no session work, no Set-Cookie', async () => {
    const browser = new Browser(app);
    await browser.post('/s/write');
    const res = await request(app.getHttpServer()).get('/p/ping').set('Cookie', `sid=${browser.cookie}`);
    expect(res.status).toBe(200);
    expect(setCookies(res).size).toBe(0);
  });

  it('leaves excluded routes without a session (using it there is an error, never a Set-Cookie)', async () => {
    const browser = new Browser(app);
    await browser.post('/s/write');
    const res = await request(app.getHttpServer()).get('/s/skip').set('Cookie', `sid=${browser.cookie}`);
    expect(res.status).toBe(500);
    expect(setCookies(res).size).toBe(0);
    // The session itself is untouched.
    expect((await browser.get('/s/read')).body).toEqual({ n: 5 });
  });

  if (adapter === 'express') {
    it('runs where it stands among the other middleware', async () => {
      const res = await request(app.getHttpServer()).get('/s/read');
      expect(res.headers['x-before']).toBe('false');
      expect(res.headers['x-after']).toBe('true');
    });
  } else {
    it('resumes after the middleware chain, which Fastify runs on the raw request in onRequest', async () => {
      const res = await request(app.getHttpServer()).get('/s/read');
      expect(res.headers['x-before']).toBe('false');
      expect(res.headers['x-after']).toBe('false');
      expect(res.body).toEqual({ n: null });
    });
  }
});

describe('autoMount option', () => {
  it('refuses a non-boolean at boot', async () => {
    @Module({ imports: [SessionModule.forRoot({ autoMount: 'no' as unknown as boolean })] })
    class BadModule {}
    await expect(NestFactory.create(BadModule, new ExpressAdapter(), { logger: false, abortOnError: false })).rejects.toThrow(
      /autoMount/,
    );
  });
});
