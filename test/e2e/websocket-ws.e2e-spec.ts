import 'reflect-metadata';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import {
  Inject,
  Injectable,
  Module,
  UseGuards,
  type CanActivate,
  type DynamicModule,
  type ExecutionContext,
  type INestApplication,
} from '@nestjs/common';
import { APP_GUARD, NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import {
  CurrentSession,
  MemoryBackend,
  SESSION_ENDED_CLOSE_CODE,
  SessionInterface,
  SessionManager,
  SessionModule,
  SessionWebSocketAdapter,
  type SessionModuleOptions,
  userTag,
} from 'nest-session';
import { createRedisSessionStores } from 'nest-session/redis';
import { AuthController } from '../../sample-app/auth.controller.js';
import { CounterController } from '../../sample-app/counter.controller.js';
import { SessionController } from '../../sample-app/session.controller.js';
import { WhoamiGateway } from '../../sample-app/whoami.gateway.js';
import type { HttpAdapterName } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';
import { connectTestRedis, TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from '../support/redis.js';
import { listenLocally, sleep, WsClient } from '../support/web-sockets.js';

/** What the global guard saw, per context type: it calls `session.isStarted()` for every handler. */
const seenByGuard: Array<{ type: string; has: boolean; started: boolean }> = [];

/** A global guard as an app would write one: it uses the session wherever it runs (HTTP and ws). */
@Injectable()
class SessionAwareGuard implements CanActivate {
  constructor(
    @Inject(SessionInterface) private readonly session: SessionInterface,
    @Inject(SessionManager) private readonly manager: SessionManager,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    const has = this.manager.hasCurrentSession();
    seenByGuard.push({ type: context.getType(), has, started: has && this.session.isStarted() });
    return true;
  }
}

/** Lets only messages of a logged-in session through. */
@Injectable()
class LoggedInGuard implements CanActivate {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  canActivate(): boolean {
    return this.session.isStarted() && this.session.getUserId() !== undefined;
  }
}

@WebSocketGateway()
class AccountGateway {
  @SubscribeMessage('account')
  @UseGuards(LoggedInGuard)
  account(@CurrentSession() session: SessionInterface): { user: string | undefined } {
    return { user: session.getUserId() };
  }
}

@Module({})
class WsTestModule {
  static forRoot(session: SessionModuleOptions): DynamicModule {
    return {
      module: WsTestModule,
      imports: [SessionModule.forRoot({ ...session, isGlobal: true })],
      controllers: [SessionController, AuthController, CounterController],
      providers: [WhoamiGateway, AccountGateway, LoggedInGuard, { provide: APP_GUARD, useClass: SessionAwareGuard }],
    };
  }
}

/** The app on `adapter` with `ws` (Nest's WsAdapter) wrapped in SessionWebSocketAdapter, listening locally. */
async function createWsApp(
  adapter: HttpAdapterName,
  session: SessionModuleOptions = {},
): Promise<{ app: INestApplication; url: string }> {
  const app =
    adapter === 'fastify'
      ? await NestFactory.create(WsTestModule.forRoot(session), new FastifyAdapter(), { logger: ['error', 'warn'] })
      : await NestFactory.create(WsTestModule.forRoot(session), new ExpressAdapter(), { logger: ['error', 'warn'] });
  app.useWebSocketAdapter(new SessionWebSocketAdapter(app, new WsAdapter(app)));
  const url = await listenLocally(app);
  return { app, url };
}

describe.each<HttpAdapterName>(['express', 'fastify'])('ws gateway on %s', (adapter) => {
  let app: INestApplication;
  let url: string;
  const clients: WsClient[] = [];
  const connect = async (cookie?: string): Promise<WsClient> => {
    const client = await WsClient.connect(url, cookie);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    ({ app, url } = await createWsApp(adapter));
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });
  afterAll(async () => {
    await app.close();
  });

  it('answers whoami with the session named by the upgrade request cookie', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/color', { value: 'green' });
    await browser.post('/auth/login', { user: 'ada' });
    const client = await connect(browser.cookie);
    expect(await client.request('whoami')).toEqual({ started: true, data: { color: 'green' }, user: 'ada' });
  });

  it('answers started: false without a cookie', async () => {
    expect(await (await connect()).request('whoami')).toEqual({ started: false, data: {}, user: null });
  });

  it('commits a message write before answering, seen by HTTP, and sees HTTP writes', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/a', { value: 1 });
    const client = await connect(browser.cookie);
    expect(await client.request('put', { key: 'b', value: 2 })).toEqual({ key: 'b', value: 2 });
    expect((await browser.get('/session')).body.data).toEqual({ a: 1, b: 2 });
    await browser.put('/session/data/c', { value: 3 });
    expect(await client.request('whoami')).toMatchObject({ data: { a: 1, b: 2, c: 3 } });
  });

  it('runs global guards with the message session (hasCurrentSession, isStarted) and lets a guard use it', async () => {
    seenByGuard.length = 0;
    const anonymous = await connect();
    expect(await anonymous.request('account')).toMatchObject({ exception: { status: 'error', message: 'Forbidden resource' } });
    const browser = new Browser(app);
    await browser.post('/auth/login', { user: 'grace' });
    const client = await connect(browser.cookie);
    expect(await client.request('account')).toEqual({ user: 'grace' });
    expect(seenByGuard.filter((s) => s.type === 'ws')).toEqual([
      { type: 'ws', has: true, started: false },
      { type: 'ws', has: true, started: true },
    ]);
    expect(seenByGuard.filter((s) => s.type === 'http').every((s) => s.has)).toBe(true);
    expect(app.get(SessionManager).hasCurrentSession()).toBe(false); // outside any request or message
  });

  it('holds the session lock per message: locked increments over ws and HTTP lose none', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/seed', { value: true });
    const client = await connect(browser.cookie);
    await Promise.all([
      ...Array.from({ length: 10 }, () => client.request('increment', 'n')),
      ...Array.from({ length: 10 }, () => browser.post('/counter/n/increment-locked')),
    ]);
    expect((await browser.get('/session')).body.data.n).toBe(20);
  });

  it('closes the socket (code 4401) within 2 s of a logout over HTTP', async () => {
    const browser = new Browser(app);
    await browser.post('/auth/login', { user: 'linus' });
    const client = await connect(browser.cookie);
    expect(await client.request('whoami')).toMatchObject({ user: 'linus' });
    const closed = client.closedWithin(2000);
    await browser.post('/auth/logout');
    expect(await closed).toMatchObject({ code: SESSION_ENDED_CLOSE_CODE, reason: 'Session ended' });
  });

  it('closes the socket within 2 s when its session is destroyed by tag, and when destroyed by handle', async () => {
    const manager = app.get(SessionManager);
    const byTag = new Browser(app);
    await byTag.post('/auth/login', { user: 'tag-owner' });
    const tagged = await connect(byTag.cookie);
    expect(await tagged.request('whoami')).toMatchObject({ user: 'tag-owner' });
    const taggedClosed = tagged.closedWithin(2000);
    expect(await manager.destroySessionsByTag(userTag('tag-owner'))).toBe(1);
    expect(await taggedClosed).toMatchObject({ code: SESSION_ENDED_CLOSE_CODE });

    const byHandle = new Browser(app);
    await byHandle.post('/auth/login', { user: 'handle-owner' });
    const handled = await connect(byHandle.cookie);
    expect(await handled.request('whoami')).toMatchObject({ user: 'handle-owner' });
    const infos = [];
    for await (const info of manager.listSessions({ userId: 'handle-owner' })) infos.push(info);
    expect(infos).toHaveLength(1);
    const handledClosed = handled.closedWithin(2000);
    expect(await manager.destroySessionByHandle(infos[0]!.handle)).toBe(true);
    expect(await handledClosed).toMatchObject({ code: SESSION_ENDED_CLOSE_CODE });
  });
});

describe('ws gateway session checks', () => {
  it('look up the sessions of all open sockets with one batched read per check', async () => {
    const metadataBackend = new MemoryBackend();
    const { app, url } = await createWsApp('express', { metadataBackend, storageBackend: new MemoryBackend() });
    const clients: WsClient[] = [];
    try {
      for (let i = 0; i < 6; i++) {
        const browser = new Browser(app);
        await browser.put('/session/data/i', { value: i });
        clients.push(await WsClient.connect(url, browser.cookie));
      }
      for (const client of clients) expect(await client.request('whoami')).toMatchObject({ started: true });
      const batches: number[] = [];
      const getMany = metadataBackend.getMany.bind(metadataBackend);
      metadataBackend.getMany = (ids) => {
        batches.push(ids.length);
        return getMany(ids);
      };
      await sleep(2300); // two or three checks (every 1000 ms), no messages meanwhile
      expect(batches.length).toBeGreaterThanOrEqual(2);
      expect(batches.length).toBeLessThanOrEqual(3);
      expect(batches.every((size) => size === 6)).toBe(true); // one read of all 6 sessions per check
    } finally {
      for (const client of clients) client.close();
      await app.close();
    }
  });
});

describe.each<HttpAdapterName>(['express', 'fastify'])('ws gateway on %s with a second instance on Redis', (adapter) => {
  const prefix = uniquePrefix('ws-redis');
  let redis: TestRedisClient;
  let a: INestApplication;
  let b: INestApplication;
  let url: string;
  let client: WsClient | undefined;

  beforeAll(async () => {
    redis = await connectTestRedis();
    const stores = async (): Promise<SessionModuleOptions> => {
      const { metadataBackend, storageBackend, locker } = await createRedisSessionStores({ url: TEST_REDIS_URL, prefix });
      return { metadataBackend, storageBackend, locker };
    };
    ({ app: a, url } = await createWsApp(adapter, await stores()));
    ({ app: b } = await createWsApp(adapter === 'express' ? 'fastify' : 'express', await stores()));
  });
  afterAll(async () => {
    client?.close();
    await Promise.all([a?.close(), b?.close()]);
    if (redis !== undefined) {
      const keys: string[] = [];
      for await (const batch of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
      if (keys.length > 0) await redis.del(keys);
      await redis.close();
    }
  });

  it('closes the socket within 2 s when the other instance destroys the user sessions', async () => {
    const browser = new Browser(a);
    await browser.post('/auth/login', { user: 'eve' });
    client = await WsClient.connect(url, browser.cookie);
    expect(await client.request('whoami')).toMatchObject({ started: true, user: 'eve' });
    // An idle moment first: the socket is not closed while its session lives.
    await sleep(1200);
    expect(client.socket.readyState).toBe(client.socket.OPEN);
    const closed = client.closedWithin(2000);
    expect(await b.get(SessionManager).destroySessionsForUser('eve', 'admin')).toBe(1);
    expect((await closed).code).toBe(SESSION_ENDED_CLOSE_CODE);
  });
});
