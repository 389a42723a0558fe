import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { AppModule, type SampleAppConfig } from './app.module.js';

export type HttpAdapterName = 'express' | 'fastify';

/**
 * Creates and initialises the sample app on the chosen adapter (also used by the e2e tests,
 * so they exercise exactly what `npm start` serves).
 */
export async function createSampleApp(adapter: HttpAdapterName, config: SampleAppConfig = {}): Promise<INestApplication> {
  const app =
    adapter === 'fastify'
      ? await NestFactory.create(AppModule.forRoot(config), new FastifyAdapter(), { logger: ['error', 'warn'] })
      : await NestFactory.create(AppModule.forRoot(config), new ExpressAdapter(), { logger: ['error', 'warn'] });
  app.enableShutdownHooks();
  await app.init();
  if (adapter === 'fastify') {
    await (app.getHttpAdapter().getInstance() as { ready(): Promise<unknown> }).ready();
  }
  return app;
}
