import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  Controller,
  Get,
  Inject,
  Injectable,
  Module,
  Post,
  type INestApplication,
  type MiddlewareConsumer,
  type NestModule,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import helmet from 'helmet';
import { ClsMiddleware, ClsModule, ClsService } from 'nestjs-cls';
import type { IncomingMessage } from 'node:http';
import request from 'supertest';
import { SessionInterface, SessionMiddleware, SessionModule } from '../../lib/index.js';
import { setCookies } from '../support/http.js';

/**
 * The session mounted as a Nest middleware (`autoMount: false`) behind the real helmet and
 * nestjs-cls middleware, as apps order them: helmet's headers and the CLS context reach the
 * same responses and handlers as the session, and neither leaks between parallel requests.
 */

/** A singleton that reads both request contexts: nestjs-cls' store and the injected session. */
@Injectable()
class Visits {
  constructor(
    @Inject(SessionInterface) private readonly session: SessionInterface,
    private readonly cls: ClsService,
  ) {}

  async count(): Promise<{ requestId: unknown; visits: number }> {
    if (!this.session.isStarted()) this.session.start();
    // An await between the two reads: both contexts must survive it.
    const visits = ((await this.session.getData('visits')) as number | undefined) ?? 0;
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
    await this.session.putData('visits', visits + 1);
    return { requestId: this.cls.get('requestId'), visits: visits + 1 };
  }
}

@Controller('v')
class VisitRoutes {
  constructor(private readonly visits: Visits) {}

  @Post()
  visit(): Promise<{ requestId: unknown; visits: number }> {
    return this.visits.count();
  }
}

@Controller('plain')
class PlainRoutes {
  @Get()
  plain(): { ok: true } {
    return { ok: true };
  }
}

@Module({
  imports: [
    ClsModule.forRoot({
      global: true,
      middleware: {
        mount: false,
        setup: (cls: ClsService, req: IncomingMessage) => cls.set('requestId', req.headers['x-request-id']),
      },
    }),
    SessionModule.forRoot({ autoMount: false }),
  ],
  controllers: [VisitRoutes, PlainRoutes],
  providers: [Visits],
})
class AppModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(helmet(), ClsMiddleware, SessionMiddleware).forRoutes(VisitRoutes);
  }
}

describe.each(['express', 'fastify'] as const)('behind helmet and nestjs-cls on %s', (adapter) => {
  let app: INestApplication;

  beforeAll(async () => {
    app =
      adapter === 'fastify'
        ? await NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter(), { logger: ['error'] })
        : await NestFactory.create(AppModule, new ExpressAdapter(), { logger: ['error'] });
    await app.init();
    if (adapter === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
  });
  afterAll(async () => {
    await app.close();
  });

  it("sends helmet's headers next to the session cookie", async () => {
    const res = await request(app.getHttpServer()).post('/v').set('x-request-id', 'r-1').expect(201);
    expect(res.body).toEqual({ requestId: 'r-1', visits: 1 });
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-security-policy']).toContain("default-src 'self'");
    expect(setCookies(res).get('sid')?.attributes).toHaveProperty('httponly');
  });

  it('keeps each parallel request in its own CLS context and its own session', async () => {
    const server = app.getHttpServer() as Parameters<typeof request>[0];
    const visit = (id: string, cookie?: string) => {
      const req = request(server).post('/v').set('x-request-id', id);
      return cookie === undefined ? req : req.set('Cookie', `sid=${cookie}`);
    };
    // First visits give each browser its cookie; then parallel requests of both, interleaved.
    const cookies: string[] = [];
    for (const i of [0, 1]) cookies.push(setCookies(await visit(`first-${i}`).expect(201)).get('sid')!.value);
    expect(cookies[0]).not.toBe(cookies[1]);
    const rounds = await Promise.all(
      Array.from({ length: 12 }, (_, n) => visit(`req-${n}`, cookies[n % 2]).then((res) => ({ n, res }))),
    );
    for (const { n, res } of rounds) {
      expect(res.status).toBe(201);
      expect((res.body as { requestId: unknown }).requestId).toBe(`req-${n}`);
      // Unlocked parallel writes of one key: the last writer wins, but a count is always this browser's own.
      const visits = (res.body as { visits: number }).visits;
      expect(visits).toBeGreaterThanOrEqual(2);
      expect(visits).toBeLessThanOrEqual(7);
      expect(setCookies(res).has('sid')).toBe(false);
    }
  });

  it('leaves a route without the middleware untouched by all three', async () => {
    const res = await request(app.getHttpServer()).get('/plain').expect(200);
    expect(res.headers['x-content-type-options']).toBeUndefined();
    expect(setCookies(res).size).toBe(0);
  });
});
