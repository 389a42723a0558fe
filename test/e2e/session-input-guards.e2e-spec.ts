import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  BadRequestException,
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Inject,
  Module,
  Param,
  Post,
  Put,
  type DynamicModule,
  type INestApplication,
  type LoggerService,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { filter, map } from 'rxjs';
import type { Response } from 'supertest';
import {
  AttributeBag,
  FlashBag,
  Flashes,
  SessionInterface,
  SessionManager,
  SessionModule,
  type SessionEvent,
  type SessionModuleOptions,
} from 'nest-session';
import type { HttpAdapterName } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';
import { createTestSessionStores, onEveryBackend, type TestSessionStores } from '../support/session-backends.js';

/**
 * Issue 12's input guards and the isolation of `events$` subscribers, over HTTP on both adapters
 * and on memory and Redis: the key and tag caps (`maxKeysPerSession`, `maxTagsPerSession`,
 * 413), the reserved names `__proto__`, `constructor` and `prototype` as keys, tags, bag names
 * and flash types (400, nothing stored), and subscribers of `SessionManager.events$` that throw
 * (synchronously, from an async function, in a pipe) while requests go on.
 */
const MAX_KEYS = 3;
const MAX_TAGS = 2;
const RESERVED = ['__proto__', 'constructor', 'prototype'] as const;
const ISOLATED = 'A subscriber of SessionManager.events$ threw';

/** The app's logger: keeps what is logged as errors (the test reads it), drops the rest. */
class CapturingLogger implements LoggerService {
  readonly errors: string[] = [];
  log(): void {}
  warn(): void {}
  debug(): void {}
  verbose(): void {}
  error(message: unknown, ...rest: unknown[]): void {
    this.errors.push([message, ...rest].map(String).join(' '));
  }
}

@Controller()
class GuardsController {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  @Get('session')
  async show(): Promise<{ started: boolean; data: Record<string, unknown>; tags: string[]; user: string | null }> {
    const s = this.session;
    if (!s.isStarted()) return { started: false, data: {}, tags: [], user: null };
    return { started: true, data: { ...(await s.getAllData()) }, tags: s.getTags(), user: s.getUserId() ?? null };
  }

  @Put('data/:key')
  async put(@Param('key') key: string, @Body() body: { value?: unknown } | undefined): Promise<{ ok: true }> {
    if (body === undefined || !('value' in body)) throw new BadRequestException('Send {"value": ...}.');
    this.session.start();
    await this.session.putData(key, body.value);
    return { ok: true };
  }

  @Delete('data/:key')
  async remove(@Param('key') key: string): Promise<{ ok: true }> {
    await this.session.removeData(key);
    return { ok: true };
  }

  @Post('tags/:tag')
  @HttpCode(200)
  async addTag(@Param('tag') tag: string): Promise<{ tags: string[] }> {
    this.session.start();
    await this.session.addTag(tag);
    return { tags: this.session.getTags() };
  }

  @Delete('tags/:tag')
  async removeTag(@Param('tag') tag: string): Promise<{ tags: string[] }> {
    await this.session.removeTag(tag);
    return { tags: this.session.getTags() };
  }

  /** A bag of this request's own (`registerBag`), named by the client. */
  @Post('bags/:name')
  @HttpCode(200)
  async bag(@Param('name') name: string): Promise<{ ok: true }> {
    this.session.registerBag(new AttributeBag(name, 'own-bag'));
    (await this.session.getBag<AttributeBag>(name)).set('isAdmin', true);
    return { ok: true };
  }

  @Get('bags/:name')
  async readBag(@Param('name') name: string): Promise<Record<string, unknown>> {
    return { ...(await this.session.getBag<AttributeBag>(name)).all() };
  }

  @Post('flash/:type')
  @HttpCode(200)
  flash(@Param('type') type: string, @Flashes() flashes: FlashBag): { ok: true } {
    flashes.add(type, 'hello');
    return { ok: true };
  }

  @Get('flash')
  flashes(@Flashes() flashes: FlashBag): Record<string, unknown[]> {
    return { ...flashes.peekAll() };
  }

  @Post('login/:user')
  @HttpCode(200)
  login(@Param('user') user: string): { user: string } {
    this.session.bindToUser(user);
    return { user };
  }

  @Post('logout')
  @HttpCode(200)
  async logout(): Promise<{ ok: true }> {
    await this.session.destroy('logout');
    return { ok: true };
  }
}

@Module({})
class GuardsModule {
  static forRoot(options: SessionModuleOptions): DynamicModule {
    return {
      module: GuardsModule,
      imports: [SessionModule.forRoot({ ...options, isGlobal: true })],
      controllers: [GuardsController],
    };
  }
}

async function startApp(
  adapter: HttpAdapterName,
  options: SessionModuleOptions,
  logger: LoggerService,
): Promise<INestApplication> {
  const app = await NestFactory.create(
    GuardsModule.forRoot(options),
    adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(),
    { logger, abortOnError: false },
  );
  await app.init();
  if (adapter === 'fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<unknown> }).ready();
  return app;
}

/** The body of an answer as text, to check that it names no id. */
const text = (res: Response): string => JSON.stringify(res.body);

describe.each(onEveryBackend<HttpAdapterName>(['express', 'fastify']))(
  'input guards and events$ on %s with %s',
  (adapter, backend) => {
    let app: INestApplication;
    let stores: TestSessionStores;
    const logger = new CapturingLogger();

    beforeAll(async () => {
      stores = await createTestSessionStores(backend);
      const { metadataBackend, storageBackend, locker } = stores;
      app = await startApp(
        adapter,
        {
          metadataBackend,
          storageBackend,
          ...(locker === undefined ? {} : { locker }),
          maxKeysPerSession: MAX_KEYS,
          maxTagsPerSession: MAX_TAGS,
          garbageCollection: { probability: 0, cron: false },
        },
        logger,
      );
    });
    afterAll(async () => {
      await app.close();
    });

    describe('a subscriber of events$ that throws', () => {
      it('breaks neither the request nor the process: sync, async and piped subscribers are isolated and logged', async () => {
        const events$ = app.get(SessionManager).events$;
        const seen: SessionEvent['type'][] = [];
        let calls = 0;
        const subscriptions = [
          events$.subscribe(() => {
            calls++;
            throw new Error('plain subscriber bug');
          }),
          // An app forwarding events to a store that fails (an audit table that is down).
          // eslint-disable-next-line @typescript-eslint/no-misused-promises
          events$.subscribe(async () => {
            await new Promise((resolve) => setImmediate(resolve));
            throw new Error('async subscriber bug');
          }),
          events$.pipe(filter((e) => e.type === 'userBound')).subscribe(() => {
            throw new Error('piped subscriber bug');
          }),
          events$
            .pipe(
              map((): never => {
                throw new Error('operator bug');
              }),
            )
            .subscribe(() => undefined),
          events$.subscribe((e) => seen.push(e.type)),
        ];
        const before = logger.errors.length;
        try {
          for (const user of ['erin', 'frank']) {
            const browser = new Browser(app);
            expect((await browser.put('/data/cart', { value: ['book'] })).status).toBe(200);
            const anonymous = browser.cookie;
            expect(anonymous).toBeDefined();
            expect((await browser.post(`/login/${user}`)).status).toBe(200);
            expect(browser.cookie).not.toBe(anonymous);
            expect((await browser.get('/session')).body).toMatchObject({ started: true, user, data: { cart: ['book'] } });
            expect((await browser.post('/logout')).status).toBe(200);
            expect(browser.cookie).toBeUndefined();
          }
          // Give an unhandled rejection, or rxjs' rethrow from a timer, the time to surface (it would fail this test).
          await new Promise((resolve) => setTimeout(resolve, 50));
        } finally {
          for (const subscription of subscriptions) subscription.unsubscribe();
        }
        const perLogin = ['started', 'renewed', 'userBound', 'destroyed'];
        expect(seen).toEqual([...perLogin, ...perLogin]);
        expect(calls).toBe(8); // the throwing subscriber got every later event too
        const isolated = logger.errors.slice(before).filter((m) => m.includes(ISOLATED));
        expect(isolated.filter((m) => m.includes('plain subscriber bug'))).toHaveLength(8);
        expect(isolated.filter((m) => m.includes('async subscriber bug'))).toHaveLength(8);
        expect(isolated.filter((m) => m.includes('piped subscriber bug'))).toHaveLength(2);
        expect(isolated.filter((m) => m.includes('operator bug'))).toHaveLength(1); // it ended that subscription
        expect(isolated.join('\n')).not.toMatch(/[A-Za-z0-9_-]{32}/); // no session id in the log
      });
    });

    describe('count caps', () => {
      it(`maxKeysPerSession (${MAX_KEYS}): a new key beyond it answers 413 and stores nothing, also in a later request`, async () => {
        const browser = new Browser(app);
        for (const key of ['a', 'b', 'c']) expect((await browser.put(`/data/${key}`, { value: key })).status).toBe(200);
        const entries = await stores.storageEntries();
        // A later request, which has not loaded the session's keys.
        const refused = await browser.put('/data/d', { value: 'd' });
        expect(refused.status).toBe(413);
        expect(refused.body).toMatchObject({ statusCode: 413, error: 'SessionLimitExceededException' });
        expect(refused.body.message).toContain(`maxKeysPerSession (${MAX_KEYS})`);
        expect(text(refused)).not.toContain(browser.cookie!);
        expect(await stores.storageEntries()).toBe(entries);
        expect((await browser.get('/session')).body.data).toEqual({ a: 'a', b: 'b', c: 'c' });
        // Overwriting needs no room; a removed key makes room.
        expect((await browser.put('/data/a', { value: 'A' })).status).toBe(200);
        expect((await browser.delete('/data/b')).status).toBe(200);
        expect((await browser.put('/data/d', { value: 'd' })).status).toBe(200);
        expect((await browser.get('/session')).body.data).toEqual({ a: 'A', c: 'c', d: 'd' });
        // Bags are not data keys: a session at its key limit still gets flashes.
        expect((await browser.post('/flash/info')).status).toBe(200);
        expect((await browser.get('/flash')).body).toEqual({ info: ['hello'] });
      });

      it('maxKeysPerSession holds for parallel requests: of two new keys for the last free slot, one is stored', async () => {
        const browser = new Browser(app);
        await browser.put('/data/a', { value: 1 });
        await browser.put('/data/b', { value: 2 });
        const results = await Promise.all([browser.put('/data/x', { value: 'x' }), browser.put('/data/y', { value: 'y' })]);
        expect(results.map((r) => r.status).sort()).toEqual([200, 413]);
        const data = (await browser.get('/session')).body.data as Record<string, unknown>;
        expect(Object.keys(data)).toHaveLength(MAX_KEYS);
        expect(Object.keys(data).filter((k) => k === 'x' || k === 'y')).toHaveLength(1);
      });

      it(`maxTagsPerSession (${MAX_TAGS}): a tag beyond it answers 413; the user tag of a login does not count`, async () => {
        const browser = new Browser(app);
        expect((await browser.post('/tags/one')).status).toBe(200);
        expect((await browser.post('/tags/two')).status).toBe(200);
        expect((await browser.post('/tags/two')).status).toBe(200); // already there: no room needed
        const refused = await browser.post('/tags/three');
        expect(refused.status).toBe(413);
        expect(refused.body.message).toContain(`maxTagsPerSession (${MAX_TAGS})`);
        expect(text(refused)).not.toContain(browser.cookie!);
        expect((await browser.get('/session')).body.tags).toEqual(['one', 'two']);
        expect((await browser.post('/login/grace')).status).toBe(200);
        expect((await browser.delete('/tags/one')).status).toBe(200);
        expect((await browser.post('/tags/three')).status).toBe(200);
        const session = (await browser.get('/session')).body as { tags: string[]; user: string };
        expect(session.user).toBe('grace');
        expect(session.tags.filter((t) => !t.startsWith('user-')).sort()).toEqual(['three', 'two']);
        expect((await browser.post('/tags/four')).status).toBe(413);
      });
    });

    describe('reserved names', () => {
      it.each(RESERVED)(
        '%s is refused with 400 as a key, a tag, a bag name and a flash type; nothing is stored',
        async (name) => {
          const browser = new Browser(app);
          expect((await browser.put('/data/plain', { value: 1 })).status).toBe(200);
          await browser.post('/tags/kept');
          const entries = await stores.storageEntries();
          const answers = [
            await browser.put(`/data/${name}`, { value: { isAdmin: true } }),
            await browser.post(`/tags/${name}`),
            await browser.post(`/bags/${name}`),
            await browser.post(`/flash/${name}`),
          ];
          for (const res of answers) {
            expect(res.status).toBe(400);
            expect(res.body.message).toContain('reserved');
            expect(text(res)).not.toContain(browser.cookie!);
          }
          expect((await browser.get(`/bags/${name}`)).status).toBe(400); // no such bag either
          const session = (await browser.get('/session')).body as { data: Record<string, unknown>; tags: string[] };
          expect(session.data).toEqual({ plain: 1 });
          expect(session.data.isAdmin).toBeUndefined();
          expect(session.tags).toEqual(['kept']);
          expect((await browser.get('/flash')).body).toEqual({});
          expect(await stores.storageEntries()).toBe(entries);
        },
      );
    });
  },
);

describe.each<HttpAdapterName>(['express', 'fastify'])('a reserved bag name at boot on %s', (adapter) => {
  it.each(RESERVED)('a module bag named %s is refused when the app starts, naming it', async (name) => {
    const failure = await startApp(adapter, { bags: [() => new AttributeBag(name, 'module-bag')] }, new CapturingLogger()).then(
      async (app) => {
        await app.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toContain(`"${name}"`);
    expect((failure as Error).message).toContain('reserved');
  });
});
