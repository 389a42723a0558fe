import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Header, Inject, Module, Put, type DynamicModule, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import request from 'supertest';
import type { Response } from 'supertest';
import { AttributeBag, SessionInterface, SessionModule, type SessionModuleOptions } from 'nest-session';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { sessionConfigFromEnv } from '../../sample-app/session-env.config.js';
import { Browser, setCookies } from '../support/http.js';
import { createTestSessionStores, onEveryBackend, type TestSessionStores } from '../support/session-backends.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';

const ID_HEADER = 'x-session-id';

/** The id a header-mode response hands out (undefined when it carries no id header). */
function headerId(res: Response): string | undefined {
  const value = res.headers[ID_HEADER];
  return value;
}

describe.each(onEveryBackend<HttpAdapterName>(['express', 'fastify']))('security hardening on %s with %s', (adapter, backend) => {
  let app: INestApplication;
  let stores: TestSessionStores;

  beforeAll(async () => {
    stores = await createTestSessionStores(backend);
    const { metadataBackend, storageBackend, locker } = stores;
    app = await createSampleApp(adapter, {
      session: {
        metadataBackend,
        storageBackend,
        ...(locker === undefined ? {} : { locker }),
        idHeader: ID_HEADER,
        maxEntryBytes: 300,
        cookie: { clearSiteData: true },
      },
      trustProxy: 'loopback',
    });
  });
  afterAll(async () => {
    await app.close();
  });

  const http = () => request(app.getHttpServer());

  describe('header mode (idHeader)', () => {
    it('a client that sends the header empty gets its new id in the header, never a cookie, and no-store', async () => {
      const put = await http().put('/session/data/k').set(ID_HEADER, '').send({ value: 'native' });
      expect(put.status).toBe(200);
      expect(put.headers['set-cookie']).toBeUndefined();
      const id = headerId(put)!;
      expect(id).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(put.headers['cache-control']).toBe('no-store');

      const read = await http().get('/session').set(ID_HEADER, id);
      expect(read.body).toMatchObject({ started: true, data: { k: 'native' } });
      expect(headerId(read)).toBeUndefined(); // nothing new to hand out
      expect(read.headers['set-cookie']).toBeUndefined();
    });

    it('login renews the id in the header (the old one dies); logout answers an empty header; never a cookie', async () => {
      const put = await http().put('/session/data/k').set(ID_HEADER, '').send({ value: 1 });
      const first = headerId(put)!;
      const login = await http().post('/auth/login').set(ID_HEADER, first).send({ user: 'hannah' });
      expect(login.status).toBe(200);
      expect(login.headers['set-cookie']).toBeUndefined();
      const second = headerId(login)!;
      expect(second).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(second).not.toBe(first);
      expect((await http().get('/session').set(ID_HEADER, first)).body.started).toBe(false);
      expect((await http().get('/session').set(ID_HEADER, second)).body).toMatchObject({ started: true, user: 'hannah' });

      const logout = await http().post('/auth/logout').set(ID_HEADER, second);
      expect(logout.status).toBe(200);
      expect(logout.headers['set-cookie']).toBeUndefined();
      expect(headerId(logout)).toBe('');
      expect((await http().get('/session').set(ID_HEADER, second)).body.started).toBe(false);
    });

    it('reads the id from the header only: a cookie is ignored in header mode', async () => {
      const browser = new Browser(app);
      await browser.put('/session/data/k', { value: 'cookie session' });
      const res = await http().get('/session').set('Cookie', `sid=${browser.cookie!}`).set(ID_HEADER, '');
      expect(res.body.started).toBe(false);
    });

    it.each([
      ['unknown', 'A'.repeat(32)],
      ['malformed', 'not an id!'],
      ['too long', 'a'.repeat(300)],
    ])('an %s id in the header is never adopted: the client gets a new one', async (_kind, bad) => {
      const res = await http().put('/session/data/k').set(ID_HEADER, bad).send({ value: 1 });
      expect(res.status).toBe(200);
      const id = headerId(res)!;
      expect(id).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(id).not.toBe(bad);
      expect(res.headers['set-cookie']).toBeUndefined();
      expect(await stores.metadataBackend.has(metadataKeyOf(bad.slice(0, 32)))).toBe(false);
    });

    it('a cookie client never sees the id header: not at creation, login or logout', async () => {
      const browser = new Browser(app);
      const responses = [
        await browser.put('/session/data/k', { value: 1 }),
        await browser.post('/auth/login', { user: 'ida' }),
        await browser.get('/session'),
        await browser.post('/auth/logout'),
      ];
      expect(setCookies(responses[0]!).get('sid')).toBeDefined();
      for (const res of responses) expect(res.headers[ID_HEADER]).toBeUndefined();
    });
  });

  describe('cookie responses', () => {
    it('a response that sets or expires the cookie carries Cache-Control: no-store; one without a cookie does not', async () => {
      const browser = new Browser(app);
      const put = await browser.put('/session/data/k', { value: 1 });
      expect(put.headers['set-cookie']).toBeDefined();
      expect(put.headers['cache-control']).toBe('no-store');
      const read = await browser.get('/session');
      expect(read.headers['set-cookie']).toBeUndefined();
      expect(read.headers['cache-control']).not.toBe('no-store');
      const logout = await browser.post('/auth/logout');
      expect(setCookies(logout).get('sid')!.attributes['max-age']).toBe('0');
      expect(logout.headers['cache-control']).toBe('no-store');
    });

    it('logout sends Clear-Site-Data: "cookies" when cookie.clearSiteData is on', async () => {
      const browser = new Browser(app);
      const put = await browser.put('/session/data/k', { value: 1 });
      expect(put.headers['clear-site-data']).toBeUndefined();
      const logout = await browser.post('/auth/logout');
      expect(logout.headers['clear-site-data']).toBe('"cookies"');
    });

    it("behind a trusted proxy, X-Forwarded-Proto: https makes secure: 'auto' send Secure", async () => {
      const viaProxy = await http().put('/session/data/k').set('X-Forwarded-Proto', 'https').send({ value: 1 });
      expect(setCookies(viaProxy).get('sid')!.attributes.secure).toBe(true);
      const plain = await http().put('/session/data/k').send({ value: 1 });
      expect(setCookies(plain).get('sid')!.attributes.secure).toBeUndefined();
    });
  });

  describe('limits and error bodies', () => {
    it('a value beyond maxEntryBytes answers 413 with a body that names no internal identifier', async () => {
      const browser = new Browser(app);
      await browser.put('/session/data/small', { value: 1 });
      const storageIds = (await stores.metadataBackend.get(metadataKeyOf(browser.cookie!)))!;
      const res = await browser.put('/session/data/big', { value: 'x'.repeat(400) });
      expect(res.status).toBe(413);
      expect(res.body).toMatchObject({ statusCode: 413, error: 'SessionLimitExceededException' });
      expect(res.body.message).toContain('"big"');
      const text = JSON.stringify(res.body);
      expect(text).not.toContain(browser.cookie!);
      expect(text).not.toContain(metadataKeyOf(browser.cookie!));
      const storageId = (
        JSON.parse(storageIds.includes('\n') ? storageIds.slice(storageIds.indexOf('{')) : storageIds) as { storageId?: string }
      ).storageId;
      expect(storageId).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(text).not.toContain(storageId!);
      expect((await browser.get('/session')).body.data).toEqual({ small: 1 });
    });

    it('the key __proto__ answers 400 and changes nothing', async () => {
      const browser = new Browser(app);
      await browser.put('/session/data/a', { value: 1 });
      const res = await browser.put('/session/data/__proto__', { value: { isAdmin: true } });
      expect(res.status).toBe(400);
      expect(res.body.message).toContain('reserved');
      const session = await browser.get('/session');
      expect(session.body.data).toEqual({ a: 1 });
    });
  });
});

describe.each(onEveryBackend<HttpAdapterName>(['express', 'fastify']))('a __Host- cookie on %s with %s', (adapter, backend) => {
  let app: INestApplication;

  beforeAll(async () => {
    const stores = await createTestSessionStores(backend);
    const { metadataBackend, storageBackend, locker } = stores;
    // As SESSION_COOKIE_NAME=__Host-sid configures the sample app.
    const env = sessionConfigFromEnv({ SESSION_COOKIE_NAME: '__Host-sid' });
    app = await createSampleApp(adapter, {
      session: { ...env.config.session, metadataBackend, storageBackend, ...(locker === undefined ? {} : { locker }) },
    });
  });
  afterAll(async () => {
    await app.close();
  });

  it('is sent with Secure, Path=/ and no Domain, also over plain HTTP, and works', async () => {
    const browser = new Browser(app, '__Host-sid');
    const put = await browser.put('/session/data/k', { value: 'v' });
    const cookie = setCookies(put).get('__Host-sid')!;
    expect(cookie).toBeDefined();
    expect(cookie.attributes).toMatchObject({ secure: true, path: '/', httponly: true });
    expect(cookie.attributes.domain).toBeUndefined();
    expect((await browser.get('/session')).body).toMatchObject({ started: true, data: { k: 'v' } });
    const logout = await browser.post('/auth/logout');
    expect(setCookies(logout).get('__Host-sid')!.attributes).toMatchObject({ secure: true, path: '/', 'max-age': '0' });
  });
});

/** A bag whose data cannot be stored: what a bug below the handler looks like at commit (not a SessionError). */
class UnstorableBag extends AttributeBag {
  constructor(private readonly detail: string) {
    super('unstorable', 'unstorable');
  }
  override getStorableData(): Record<string, unknown> | undefined {
    throw new TypeError(`cannot store the bag of session ${this.detail}`);
  }
}

/** A route that sets its own Cache-Control and writes the session. */
@Controller()
class OwnCacheControlController {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  /** API misuse: the id of a session that was never started (SessionNotStartedException, 500). */
  @Get('misuse')
  misuse(): string {
    return this.session.getId();
  }

  /** Writes the session, then fails with an error that names the session's id (a bug of the app). */
  @Put('app-bug')
  async appBug(): Promise<never> {
    this.session.start();
    await this.session.putData('k', 'written before the bug');
    throw new Error(`app bug in session ${this.session.getId()}`);
  }

  /** The handler succeeds; the commit fails with an error that is no SessionError and names the id. */
  @Put('commit-bug')
  async commitBug(): Promise<{ ok: boolean }> {
    this.session.start();
    await this.session.putData('k', 'never stored');
    this.session.registerBag(new UnstorableBag(this.session.getId()));
    (await this.session.getBag<AttributeBag>('unstorable')).set('x', 1);
    return { ok: true };
  }

  @Get('own-cache-control')
  @Header('Cache-Control', 'private, max-age=5')
  async write(): Promise<{ ok: boolean }> {
    this.session.start();
    await this.session.putData('k', 1);
    return { ok: true };
  }
}

@Module({})
class OwnCacheControlModule {
  static forRoot(options: SessionModuleOptions): DynamicModule {
    return {
      module: OwnCacheControlModule,
      imports: [SessionModule.forRoot({ ...options, isGlobal: true })],
      controllers: [OwnCacheControlController],
    };
  }
}

describe.each(onEveryBackend<HttpAdapterName>(['express', 'fastify']))(
  'a small app of its own on %s with %s',
  (adapter, backend) => {
    let app: INestApplication;
    let stores: TestSessionStores;
    beforeAll(async () => {
      stores = await createTestSessionStores(backend);
      const { metadataBackend, storageBackend, locker } = stores;
      app = await NestFactory.create(
        OwnCacheControlModule.forRoot({ metadataBackend, storageBackend, ...(locker === undefined ? {} : { locker }) }),
        adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(),
        { logger: false },
      );
      await app.init();
      if (adapter === 'fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<unknown> }).ready();
    });
    afterAll(async () => {
      await app.close();
    });

    /** Runs `work` with NODE_ENV set to `env`, then restores it. */
    async function inEnv<T>(env: string, work: () => Promise<T>): Promise<T> {
      const before = process.env.NODE_ENV;
      process.env.NODE_ENV = env;
      try {
        return await work();
      } finally {
        process.env.NODE_ENV = before;
      }
    }

    const GENERIC = { statusCode: 500, error: 'Internal Server Error', message: 'Internal server error' };

    it('API misuse answers 500 with a generic body in production (the details go to the log), a helpful one elsewhere', async () => {
      const production = await inEnv('production', () => request(app.getHttpServer()).get('/misuse'));
      expect(production.status).toBe(500);
      expect(production.body).toEqual(GENERIC);
      const development = await inEnv('development', () => request(app.getHttpServer()).get('/misuse'));
      expect(development.status).toBe(500);
      expect(development.body.message).toContain('session.start()');
    });

    it.each(['production', 'development'])(
      'an error of the app after a session write answers a generic 500 that names no id (%s)',
      async (env) => {
        const res = await inEnv(env, () => request(app.getHttpServer()).put('/app-bug'));
        expect(res.status).toBe(500);
        // Nest's own answer to an error that is no HttpException.
        expect(res.body).toEqual({ statusCode: 500, message: 'Internal server error' });
        expect(res.text).not.toContain('app bug');
        expect(res.text).not.toMatch(/[A-Za-z0-9_-]{32}/);
      },
    );

    it.each(['production', 'development'])(
      'an unexpected failure of the commit answers a generic 500 that names no id, sets no cookie and stores nothing (%s)',
      async (env) => {
        const entries = await stores.storageEntries();
        const res = await inEnv(env, () => request(app.getHttpServer()).put('/commit-bug'));
        expect(res.status).toBe(500);
        expect(res.body).toEqual({ statusCode: 500, error: 'Internal Server Error', message: 'Session handling failed.' });
        expect(res.text).not.toContain('cannot store');
        expect(res.text).not.toMatch(/[A-Za-z0-9_-]{32}/);
        expect(res.headers['set-cookie']).toBeUndefined();
        expect(await stores.storageEntries()).toBe(entries);
        // The app goes on: the next request stores its session.
        const next = new Browser(app);
        expect((await next.get('/own-cache-control')).status).toBe(200);
        expect(await stores.metadataBackend.has(metadataKeyOf(next.cookie!))).toBe(true);
      },
    );

    it('a route that sets its own Cache-Control keeps it on a response that sets the cookie', async () => {
      const res = await request(app.getHttpServer()).get('/own-cache-control');
      expect(res.status).toBe(200);
      expect(setCookies(res).get('sid')).toBeDefined();
      expect(res.headers['cache-control']).toBe('private, max-age=5');
    });
  },
);

describe('the sample app reads the security settings from the environment', () => {
  it('maps SESSION_ID_HEADER, SESSION_COOKIE_NAME, SESSION_INACTIVITY_TIMEOUT and TRUST_PROXY', () => {
    const { config } = sessionConfigFromEnv({
      SESSION_ID_HEADER: 'x-session-id',
      SESSION_COOKIE_NAME: '__Host-sid',
      SESSION_INACTIVITY_TIMEOUT: '900',
      TRUST_PROXY: 'loopback',
    });
    expect(config.session).toMatchObject({ idHeader: 'x-session-id', cookie: { name: '__Host-sid' }, inactivityTimeout: 900 });
    expect(config.trustProxy).toBe('loopback');
    expect(sessionConfigFromEnv({ TRUST_PROXY: '1' }).config.trustProxy).toBe(1);
    expect(sessionConfigFromEnv({ TRUST_PROXY: 'true' }).config.trustProxy).toBe(true);
    expect(sessionConfigFromEnv({}).config.trustProxy).toBeUndefined();
    expect(() => sessionConfigFromEnv({ SESSION_INACTIVITY_TIMEOUT: 'soon' })).toThrow(/SESSION_INACTIVITY_TIMEOUT/);
  });
});
