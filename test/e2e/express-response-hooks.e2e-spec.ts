import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  Controller,
  Get,
  Module,
  Post,
  Res,
  type INestApplication,
  type MiddlewareConsumer,
  type NestModule,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import compression from 'compression';
import express from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import { CurrentSession, SessionInterface, SessionModule } from '../../lib/index.js';
import { SESSION_REQUEST_KEY } from '../../lib/session/session-request.key.js';
import type { Session } from '../../lib/session/session.js';
import { setCookies } from '../support/http.js';

/**
 * The Express adapter commits through hooks on `http.ServerResponse.prototype` (no wrapper per
 * response), with per-response wrappers where those hooks would come too late. These cases
 * break one way or the other if the wrong one runs: a wrapper installed before the session
 * (compression) must still let the commit's error answer the request; an Express sub-app
 * (which gives `res` its own prototype) must still commit; a streamed response must carry the
 * cookie; two apps in one process must each finish their own sessions.
 */

/** Opens when the test says so: holds a request between its read and its write. */
class Gate {
  private open!: () => void;
  private reachedResolve!: () => void;
  readonly opened = new Promise<void>((resolve) => (this.open = resolve));
  readonly reached = new Promise<void>((resolve) => (this.reachedResolve = resolve));
  async pass(): Promise<void> {
    this.reachedResolve();
    await this.opened;
  }
  release(): void {
    this.open();
  }
}

let gate = new Gate();

@Controller()
class Routes {
  @Post('put')
  async put(@CurrentSession() session: SessionInterface): Promise<{ ok: true; padding: string }> {
    session.start();
    await session.putData('n', 1);
    // Large enough for compression to compress it.
    return { ok: true, padding: 'x'.repeat(4096) };
  }

  @Get('read')
  async read(@CurrentSession() session: SessionInterface): Promise<Record<string, unknown>> {
    if (!session.isStarted()) return {};
    return { n: await session.getData('n'), streamed: await session.getData('streamed'), sub: await session.getData('sub') };
  }

  /** Reads, waits at the gate, then writes: a destroy in between makes its commit fail. */
  @Post('slow')
  async slow(@CurrentSession() session: SessionInterface): Promise<{ ok: true; padding: string }> {
    await session.getData('n');
    await gate.pass();
    await session.putData('n', 2);
    return { ok: true, padding: 'y'.repeat(4096) };
  }

  @Post('logout')
  async logout(@CurrentSession() session: SessionInterface): Promise<{ ok: true }> {
    await session.destroy();
    return { ok: true };
  }

  /** Streams: the headers go out before end(), so the cookie is the one the commit makes valid. */
  @Get('stream')
  async stream(@CurrentSession() session: SessionInterface, @Res() res: ServerResponse): Promise<void> {
    session.start();
    await session.putData('streamed', true);
    res.setHeader('content-type', 'text/plain');
    res.write('first;');
    setTimeout(() => res.end('last'), 10);
  }
}

/** An Express sub-app behind the session middleware: it gives `res` its own prototype. */
const subApp = express();
subApp.use((req: IncomingMessage, res: ServerResponse) => {
  const session = (req as { [SESSION_REQUEST_KEY]?: Session })[SESSION_REQUEST_KEY]!;
  session.start();
  void session.putData('sub', 'yes').then(() => {
    res.setHeader('content-type', 'text/plain');
    res.end('sub-app');
  });
});

function appModule(cookieName: string) {
  @Module({ imports: [SessionModule.forRoot({ cookie: { name: cookieName } })], controllers: [Routes] })
  class AppModule implements NestModule {
    configure(consumer: MiddlewareConsumer): void {
      consumer.apply((req: express.Request, res: express.Response, next: () => void) => subApp(req, res, next)).forRoutes('sub');
    }
  }
  return AppModule;
}

async function createApp(cookieName: string, withCompression: boolean): Promise<INestApplication> {
  const app = await NestFactory.create<NestExpressApplication>(appModule(cookieName), new ExpressAdapter(), { logger: false });
  // Registered before init, so before the session: its own `end` wraps every response first.
  if (withCompression) app.use(compression({ threshold: 0 }));
  await app.init();
  return app;
}

describe('Express response hooks', () => {
  let plain: INestApplication;
  let compressed: INestApplication;

  beforeAll(async () => {
    plain = await createApp('plain_sid', false);
    compressed = await createApp('zip_sid', true);
  });
  afterAll(async () => {
    await plain.close();
    await compressed.close();
  });

  async function start(app: INestApplication, name: string): Promise<string> {
    const res = await request(app.getHttpServer()).post('/put').expect(201);
    const cookie = setCookies(res).get(name);
    expect(cookie?.value).toBeDefined();
    return `${name}=${cookie!.value}`;
  }

  it('commits behind compression registered first: the body is compressed and the data stored', async () => {
    const res = await request(compressed.getHttpServer()).post('/put').set('accept-encoding', 'gzip').expect(201);
    expect(res.headers['content-encoding']).toBe('gzip');
    expect((res.body as { ok: boolean }).ok).toBe(true);
    expect(await storedBehind(compressed, 'zip_sid', res)).toEqual({ n: 1 });
  });

  /** What the session whose cookie `res` set holds, read back by the next request (`GET /read`). */
  async function storedBehind(app: INestApplication, name: string, res: request.Response): Promise<unknown> {
    const cookie = setCookies(res).get(name);
    expect(cookie?.value).toBeDefined();
    return (await request(app.getHttpServer()).get('/read').set('cookie', `${name}=${cookie!.value}`).expect(200)).body;
  }

  /** A request whose session is destroyed between its read and its commit, answered as it came back. */
  async function raceWithLogout(app: INestApplication, name: string, gzip: boolean): Promise<request.Response> {
    const cookie = await start(app, name);
    gate = new Gate();
    let slow = request(app.getHttpServer()).post('/slow').set('cookie', cookie);
    if (gzip) slow = slow.set('accept-encoding', 'gzip');
    const answered = slow.then((r) => r);
    await gate.reached;
    await request(app.getHttpServer()).post('/logout').set('cookie', cookie).expect(201);
    gate.release();
    return answered;
  }

  it("answers a commit's failure behind compression (the commit runs before compression writes the headers)", async () => {
    const res = await raceWithLogout(compressed, 'zip_sid', true);
    // The session was destroyed between the read and the commit: 409, not the handler's 201.
    expect(res.status).toBe(409);
    expect(JSON.stringify(res.body)).not.toContain('yyyy');
  });

  it("answers a commit's failure without a wrapper before the session (the prototype hooks)", async () => {
    expect((await raceWithLogout(plain, 'plain_sid', false)).status).toBe(409);
  });

  it('sets the cookie on a streamed response and commits before it ends', async () => {
    const res = await request(plain.getHttpServer()).get('/stream').expect(200);
    expect(res.text).toBe('first;last');
    expect(await storedBehind(plain, 'plain_sid', res)).toEqual({ streamed: true });
  });

  it('commits a session used inside an Express sub-app (which replaces the prototype of res)', async () => {
    const res = await request(plain.getHttpServer()).get('/sub').expect(200);
    expect(res.text).toBe('sub-app');
    expect(await storedBehind(plain, 'plain_sid', res)).toEqual({ sub: 'yes' });
  });

  it('finishes each app its own sessions when two run in one process', async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        request((i % 2 === 0 ? plain : compressed).getHttpServer())
          .post('/put')
          .expect(201)
          .then((res) => ({ i, names: [...setCookies(res).keys()] })),
      ),
    );
    for (const { i, names } of results) expect(names).toEqual([i % 2 === 0 ? 'plain_sid' : 'zip_sid']);
  });

  it('leaves responses of a plain Node server in the same process alone', async () => {
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('node');
    });
    const res = await request(server).get('/').expect(200);
    expect(res.text).toBe('node');
    expect(res.headers['set-cookie']).toBeUndefined();
  });
});
