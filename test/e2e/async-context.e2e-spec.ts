import { afterEach, describe, expect, it } from '@jest/globals';
import {
  Controller,
  Get,
  Inject,
  Injectable,
  Module,
  Post,
  Scope,
  type INestApplication,
  type Provider,
  type Type,
} from '@nestjs/common';
import { ModuleRef, NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { CurrentSession, SessionInterface, SessionManager, SessionModule, type SessionModuleOptions } from '../../lib/index.js';
import { SessionContext } from '../../lib/session/session.context.js';
import { Browser } from '../support/http.js';

/**
 * Option `asyncContext` ('auto' by default): HTTP requests run in AsyncLocalStorage only when
 * something in the app injects SessionInterface or SessionManager, because on Node 20 its
 * promise hooks cost every promise of the process.
 */

/** Reaches the session only through @CurrentSession(); ModuleRef to try a dynamic look-up. */
@Controller()
class DecoratorController {
  constructor(
    private readonly moduleRef: ModuleRef,
    @Inject(SessionContext) private readonly context: SessionContext,
  ) {}

  @Post('write')
  async write(@CurrentSession() session: SessionInterface): Promise<{ ok: true }> {
    session.start();
    await session.putData('n', 7);
    return { ok: true };
  }

  @Get('read')
  async read(@CurrentSession() session: SessionInterface): Promise<{ n: unknown; inContext: boolean }> {
    return { n: session.isStarted() ? await session.getData('n') : null, inContext: this.context.has() };
  }

  /** A dynamic look-up, which 'auto' cannot see. */
  @Get('dynamic')
  dynamic(): { error: string } | { started: boolean } {
    const session = this.moduleRef.get<SessionInterface>(SessionInterface, { strict: false });
    try {
      return { started: session.isStarted() };
    } catch (error) {
      return { error: (error as Error).message };
    }
  }
}

@Injectable()
class ByConstructor {
  constructor(@Inject(SessionInterface) readonly session: SessionInterface) {}
}

@Injectable()
class ByProperty {
  @Inject(SessionInterface) readonly session!: SessionInterface;
}

@Injectable({ scope: Scope.REQUEST })
class RequestScoped {
  constructor(@Inject(SessionInterface) readonly session: SessionInterface) {}
}

@Injectable()
class ByManager {
  constructor(readonly manager: SessionManager) {}
}

const FACTORY = Symbol('factory');

async function boot(
  adapter: 'express' | 'fastify',
  providers: Provider[],
  options: SessionModuleOptions = {},
  controllers: Type<unknown>[] = [DecoratorController],
): Promise<INestApplication> {
  @Module({ imports: [SessionModule.forRoot(options)], controllers, providers })
  class AppModule {}
  const app =
    adapter === 'fastify'
      ? await NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter(), { logger: false, abortOnError: false })
      : await NestFactory.create(AppModule, new ExpressAdapter(), { logger: false, abortOnError: false });
  await app.init();
  if (adapter === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
  return app;
}

describe.each(['express', 'fastify'] as const)('asyncContext on %s', (adapter) => {
  let app: INestApplication | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it("'auto' with nothing injected: requests run outside AsyncLocalStorage and the session works through @CurrentSession()", async () => {
    app = await boot(adapter, []);
    expect(app.get(SessionContext).runsHttpRequests).toBe(false);
    const browser = new Browser(app);
    expect((await browser.post('/write')).status).toBe(201);
    const read = await browser.get('/read');
    expect(read.body).toEqual({ n: 7, inContext: false });
  });

  it("'auto' names the option in the error of a dynamic look-up it could not see", async () => {
    app = await boot(adapter, []);
    const res = await new Browser(app).get('/dynamic');
    expect(res.body.error).toContain('asyncContext');
    expect(res.body.error).toContain('@CurrentSession()');
  });

  it.each<[string, Provider[]]>([
    ['constructor injection', [ByConstructor]],
    ['property injection', [ByProperty]],
    ['a request-scoped provider', [RequestScoped]],
    ['SessionManager', [ByManager]],
    ['a factory provider', [{ provide: FACTORY, useFactory: (s: SessionInterface) => s, inject: [SessionInterface] }]],
  ])("'auto' with %s: requests run in AsyncLocalStorage and the injected session works", async (_name, providers) => {
    app = await boot(adapter, providers);
    expect(app.get(SessionContext).runsHttpRequests).toBe(true);
    const browser = new Browser(app);
    await browser.post('/write');
    expect((await browser.get('/read')).body).toEqual({ n: 7, inContext: true });
    expect((await browser.get('/dynamic')).body).toEqual({ started: true });
  });

  it('true runs every request in it, even with nothing injected', async () => {
    app = await boot(adapter, [], { asyncContext: true });
    expect(app.get(SessionContext).runsHttpRequests).toBe(true);
    expect((await new Browser(app).get('/dynamic')).body).toEqual({ started: false });
  });

  it('false runs none in it, even with SessionInterface injected, and says why', async () => {
    app = await boot(adapter, [ByConstructor], { asyncContext: false });
    expect(app.get(SessionContext).runsHttpRequests).toBe(false);
    const res = await new Browser(app).get('/dynamic');
    expect(res.body.error).toContain('option asyncContext is false');
  });

  it('refuses anything else at boot', async () => {
    await expect(boot(adapter, [], { asyncContext: 'yes' as unknown as boolean })).rejects.toThrow(/asyncContext/);
  });
});
