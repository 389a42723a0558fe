import 'reflect-metadata';
import type { DynamicModule, INestApplication, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { createClient } from 'redis';
import type { HttpAdapterName } from '../variants.js';

export type BenchRedisClient = ReturnType<typeof createClient>;

/** A running bench app and whatever else must be closed with it. */
export interface BenchApp {
  readonly app: INestApplication;
  /** One line on how the app is configured, printed under the table. */
  readonly info: string;
  close(): Promise<void>;
}

/**
 * Creates a Nest app on the adapter with Nest's defaults (body parsing on, as in a real app),
 * lets `configure` install middleware or plugins before init, and initialises it.
 */
export async function createNestApp(
  module: Type<unknown> | DynamicModule,
  adapter: HttpAdapterName,
  configure: {
    express?: (app: NestExpressApplication) => Promise<void> | void;
    fastify?: (app: NestFastifyApplication) => Promise<void> | void;
  } = {},
): Promise<INestApplication> {
  const options = { logger: ['error', 'warn'] as ('error' | 'warn')[] };
  if (adapter === 'fastify') {
    const app = await NestFactory.create<NestFastifyApplication>(module, new FastifyAdapter(), options);
    await configure.fastify?.(app);
    await app.init();
    await app.getHttpAdapter().getInstance().ready();
    return app;
  }
  const app = await NestFactory.create<NestExpressApplication>(module, new ExpressAdapter(), options);
  await configure.express?.(app);
  await app.init();
  return app;
}

/** A connected node-redis client that fails loudly instead of reconnecting forever. */
export async function connectRedis(url: string): Promise<BenchRedisClient> {
  const client = createClient({ url, socket: { connectTimeout: 2000, reconnectStrategy: false } });
  client.on('error', (error: Error) => console.error(`[bench app] redis: ${error.message}`));
  await client.connect();
  return client;
}

/** Shared by every app's write/login handlers: a value that differs on every request. */
let counter = 0;
export function next(): number {
  counter += 1;
  return counter;
}
