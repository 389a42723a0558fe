import { Controller, Get, HttpCode, Module, Post, Req } from '@nestjs/common';
import { RedisStore } from 'connect-redis';
import session from 'express-session';
import type { AppEnv, StoreKind } from '../variants.js';
import { COOKIE_NAME, PEER_SECRET, SESSION_TTL } from '../variants.js';
import { connectRedis, createNestApp, next, type BenchApp } from './nest.js';

/** What the handlers use of an Express request with express-session. */
interface Request {
  session: session.Session & { n?: number; user?: string };
}

/** The same trivial routes as every other app, through `req.session`. */
@Controller()
class ExpressSessionController {
  @Get('anon')
  anon(): { ok: boolean } {
    return { ok: true };
  }

  @Get('read')
  read(@Req() req: Request): { value: number | null } {
    return { value: req.session.n ?? null };
  }

  @Post('write')
  @HttpCode(200)
  write(@Req() req: Request): { ok: boolean } {
    req.session.n = next();
    return { ok: true };
  }

  /** Login as the README shows it: regenerate the session (new id), then store the user. */
  @Post('login')
  @HttpCode(200)
  async login(@Req() req: Request): Promise<{ ok: boolean }> {
    await new Promise<void>((resolve, reject) => req.session.regenerate((error?: Error) => (error ? reject(error) : resolve())));
    req.session.user = `user${next()}`;
    return { ok: true };
  }
}

@Module({ controllers: [ExpressSessionController] })
export class ExpressSessionModule {}

/**
 * express-session as its README recommends for production: a secret, `resave: false`,
 * `saveUninitialized: false`; MemoryStore (its default) or connect-redis.
 */
export async function buildExpressSessionApp(store: StoreKind, env: AppEnv): Promise<BenchApp> {
  const client = store === 'redis' ? await connectRedis(env.redisUrl) : undefined;
  const sessionStore =
    client !== undefined ? new RedisStore({ client, prefix: env.redisPrefix, ttl: SESSION_TTL }) : new session.MemoryStore();
  const app = await createNestApp(ExpressSessionModule, 'express', {
    express: (app) => {
      app.use(
        session({
          name: COOKIE_NAME,
          secret: PEER_SECRET,
          resave: false,
          saveUninitialized: false,
          store: sessionStore,
          cookie: { httpOnly: true, sameSite: 'lax', secure: false, path: '/' },
        }),
      );
    },
  });
  return {
    app,
    info: `resave: false, saveUninitialized: false, secret; ${client ? `connect-redis 9 (ttl ${SESSION_TTL})` : 'MemoryStore'}`,
    close: async () => {
      await app.close();
      await client?.quit().catch(() => undefined);
    },
  };
}
