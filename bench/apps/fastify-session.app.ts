import { Controller, Get, HttpCode, Module, Post, Req } from '@nestjs/common';
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import { RedisStore } from 'connect-redis';
import type { AppEnv, StoreKind } from '../variants.js';
import { COOKIE_NAME, PEER_SECRET, SESSION_TTL } from '../variants.js';
import { connectRedis, createNestApp, next, type BenchApp } from './nest.js';

/** What the handlers use of a Fastify request with @fastify/session. */
interface Request {
  session: {
    get(key: string): unknown;
    set(key: string, value: unknown): void;
    regenerate(): Promise<void>;
  };
}

/** The same trivial routes as every other app, through `request.session`. */
@Controller()
class FastifySessionController {
  @Get('anon')
  anon(): { ok: boolean } {
    return { ok: true };
  }

  @Get('read')
  read(@Req() req: Request): { value: number | null } {
    return { value: (req.session.get('n') as number | undefined) ?? null };
  }

  @Post('write')
  @HttpCode(200)
  write(@Req() req: Request): { ok: boolean } {
    req.session.set('n', next());
    return { ok: true };
  }

  /** Login as the README shows it: regenerate the session (new id), then store the user. */
  @Post('login')
  @HttpCode(200)
  async login(@Req() req: Request): Promise<{ ok: boolean }> {
    await req.session.regenerate();
    req.session.set('user', `user${next()}`);
    return { ok: true };
  }
}

@Module({ controllers: [FastifySessionController] })
class FastifySessionModule {}

/**
 * @fastify/session (with @fastify/cookie) as its README recommends: a secret of >= 32
 * characters, `saveUninitialized: false`; its default in-memory store or connect-redis.
 * `rolling: false` (its default is true, which re-saves every session on every response):
 * the equivalent of express-session's `resave: false`, and the peer's fastest setting.
 * `cookie.secure: false` because the benchmark speaks plain HTTP (its default `true` would
 * never save a session over HTTP).
 */
export async function buildFastifySessionApp(store: StoreKind, env: AppEnv): Promise<BenchApp> {
  const client = store === 'redis' ? await connectRedis(env.redisUrl) : undefined;
  const sessionStore = client !== undefined ? new RedisStore({ client, prefix: env.redisPrefix, ttl: SESSION_TTL }) : undefined;
  const app = await createNestApp(FastifySessionModule, 'fastify', {
    fastify: async (app) => {
      await app.register(fastifyCookie as never);
      await app.register(fastifySession as never, {
        secret: PEER_SECRET,
        cookieName: COOKIE_NAME,
        saveUninitialized: false,
        rolling: false,
        cookie: { httpOnly: true, sameSite: 'lax', secure: false, path: '/' },
        ...(sessionStore !== undefined ? { store: sessionStore } : {}),
      });
    },
  });
  return {
    app,
    info: `secret, saveUninitialized: false, rolling: false, cookie.secure: false; ${client ? `connect-redis 9 (ttl ${SESSION_TTL})` : 'default store'}`,
    close: async () => {
      await app.close();
      await client?.quit().catch(() => undefined);
    },
  };
}
