import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { SessionWebSocketAdapter } from 'nest-session';
import { AppModule, type SampleAppConfig } from './app.module.js';

export type HttpAdapterName = 'express' | 'fastify';

type FastifyAdapterOptions = NonNullable<ConstructorParameters<typeof FastifyAdapter>[0]>;

/**
 * Creates and initialises the sample app on the chosen adapter (also used by the e2e tests,
 * so they exercise exactly what `npm start` serves).
 */
export async function createSampleApp(adapter: HttpAdapterName, config: SampleAppConfig = {}): Promise<INestApplication> {
  const trustProxy = config.trustProxy;
  const app =
    adapter === 'fastify'
      ? await NestFactory.create(
          AppModule.forRoot(config),
          new FastifyAdapter(trustProxy === undefined ? undefined : ({ trustProxy } as FastifyAdapterOptions)),
          { logger: ['error', 'warn'] },
        )
      : await NestFactory.create(AppModule.forRoot(config), new ExpressAdapter(), { logger: ['error', 'warn'] });
  // TRUST_PROXY: `req.secure` (cookie.secure 'auto') and `req.ip` (IP lock) then honour X-Forwarded-*.
  if (adapter === 'express' && trustProxy !== undefined)
    (app.getHttpAdapter().getInstance() as { set(name: string, value: unknown): void }).set('trust proxy', trustProxy);
  app.enableShutdownHooks();
  // socket.io at /socket.io on the same server; every message sees the handshake's session.
  app.useWebSocketAdapter(new SessionWebSocketAdapter(app, new IoAdapter(app)));
  await app.init();
  if (adapter === 'fastify') {
    await (app.getHttpAdapter().getInstance() as { ready(): Promise<unknown> }).ready();
  }
  return app;
}
