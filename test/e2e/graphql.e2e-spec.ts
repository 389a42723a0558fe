import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { EventEmitter, on } from 'node:events';
import { Inject, Module, type DynamicModule, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import { Args, Field, GraphQLModule, Mutation, ObjectType, Query, Resolver, Subscription } from '@nestjs/graphql';
import { createClient, type Client } from 'graphql-ws';
import request from 'supertest';
import WebSocket from 'ws';
import {
  CurrentSession,
  GraphQLSessions,
  SESSION_ENDED_CLOSE_CODE,
  SessionInterface,
  SessionModule,
  SessionSocketRegistry,
} from 'nest-session';
import { AuthController } from '../../sample-app/auth.controller.js';
import { SessionController } from '../../sample-app/session.controller.js';
import type { HttpAdapterName } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';
import { listenLocally } from '../support/web-sockets.js';

@ObjectType()
class Who {
  @Field(() => Boolean)
  started!: boolean;

  @Field(() => String, { nullable: true })
  user!: string | null;

  @Field(() => String, { nullable: true })
  color!: string | null;

  @Field(() => Number, { nullable: true })
  tick!: number | null;
}

/** Event source of the `whoChanges` subscription: the test emits, every subscriber gets an event. */
const ticks = new EventEmitter();

async function describeSession(session: SessionInterface, tick: number | null = null): Promise<Who> {
  if (!session.isStarted()) return { started: false, user: null, color: null, tick };
  const color = await session.getData('color');
  return { started: true, user: session.getUserId() ?? null, color: typeof color === 'string' ? color : null, tick };
}

/** The injected session, for the subscription's `resolve` (a plain function Nest does not inject into). */
let injected: SessionInterface | undefined;

@Resolver(() => Who)
class WhoResolver {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {
    injected = session;
  }

  @Query(() => Who)
  who(): Promise<Who> {
    return describeSession(this.session);
  }

  @Query(() => Who)
  whoByParameter(@CurrentSession() session: SessionInterface): Promise<Who> {
    return describeSession(session);
  }

  @Mutation(() => String)
  async setColor(@Args('color', { type: () => String }) color: string): Promise<string> {
    this.session.start();
    await this.session.putData('color', color);
    return color;
  }

  @Subscription(() => Who, {
    // Each event is resolved with a fresh session of the connection (a unit of work).
    resolve: (payload: [number]) => describeSession(injected!, payload[0]),
  })
  whoChanges(): AsyncIterator<unknown> {
    return on(ticks, 'tick')[Symbol.asyncIterator]();
  }
}

@Module({})
class GraphQLTestModule {
  static forRoot(adapter: HttpAdapterName): DynamicModule {
    const graphql =
      adapter === 'express'
        ? GraphQLModule.forRootAsync<ApolloDriverConfig>({
            driver: ApolloDriver,
            inject: [SessionSocketRegistry],
            useFactory: (sockets: SessionSocketRegistry) => {
              const sessions = new GraphQLSessions(sockets);
              return {
                autoSchemaFile: true,
                context: sessions.apolloContext,
                transformSchema: sessions.transformSchema,
                subscriptions: { 'graphql-ws': true },
              };
            },
          })
        : GraphQLModule.forRootAsync<MercuriusDriverConfig>({
            driver: MercuriusDriver,
            inject: [SessionSocketRegistry],
            useFactory: (sockets: SessionSocketRegistry) => {
              const sessions = new GraphQLSessions(sockets);
              return {
                autoSchemaFile: true,
                transformSchema: sessions.transformSchema,
                subscription: { context: sessions.mercuriusContext },
              };
            },
          });
    return {
      module: GraphQLTestModule,
      imports: [SessionModule.forRoot({ isGlobal: true }), graphql],
      controllers: [SessionController, AuthController],
      providers: [WhoResolver],
    };
  }
}

/** A graphql-ws client whose upgrade request carries the cookie. */
function graphqlWsClient(url: string, cookie: string | undefined, closed: (code: number) => void): Client {
  class CookieWebSocket extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { headers: cookie === undefined ? {} : { cookie: `sid=${cookie}` } });
    }
  }
  return createClient({
    url: url.replace(/^http/, 'ws') + '/graphql',
    webSocketImpl: CookieWebSocket,
    retryAttempts: 0,
    onNonLazyError: () => undefined, // the close that ends a test's session is expected
    lazy: false,
    on: { closed: (event) => closed((event as { code: number }).code) },
  });
}

/** Subscribes and answers the events as they come. */
function subscribe(client: Client, query: string): { next(): Promise<unknown>; stop(): void } {
  const queue: unknown[] = [];
  const waiting: Array<(value: unknown) => void> = [];
  const stop = client.subscribe(
    { query },
    {
      next: (value) => {
        const waiter = waiting.shift();
        if (waiter === undefined) queue.push(value);
        else waiter(value);
      },
      error: () => undefined,
      complete: () => undefined,
    },
  );
  return {
    next: () => (queue.length > 0 ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiting.push(resolve))),
    stop,
  };
}

/** Emits ticks until the subscription has seen one (its set-up is asynchronous). */
async function nextEvent(subscription: { next(): Promise<unknown> }, tick: number): Promise<unknown> {
  const event = subscription.next();
  let seen = false;
  void event.then(() => (seen = true));
  while (!seen) {
    ticks.emit('tick', tick);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return event;
}

const WHO = '{ started user color }';

describe.each<HttpAdapterName>(['express', 'fastify'])('GraphQL on %s', (adapter) => {
  let app: INestApplication;
  let url: string;
  const post = (browser: Browser, query: string, variables?: Record<string, unknown>) =>
    browser.post('/graphql', { query, variables });

  beforeAll(async () => {
    app =
      adapter === 'fastify'
        ? await NestFactory.create(GraphQLTestModule.forRoot(adapter), new FastifyAdapter(), { logger: ['error', 'warn'] })
        : await NestFactory.create(GraphQLTestModule.forRoot(adapter), new ExpressAdapter(), { logger: ['error', 'warn'] });
    url = await listenLocally(app);
  });
  afterAll(async () => {
    await app.close();
  });

  it('a query reads the request session (injected and @CurrentSession)', async () => {
    const browser = new Browser(app);
    const anonymous = await post(browser, `{ who ${WHO} }`);
    expect(anonymous.body).toEqual({ data: { who: { started: false, user: null, color: null } } });
    await browser.put('/session/data/color', { value: 'blue' });
    await browser.post('/auth/login', { user: 'ada' });
    const res = await post(browser, `{ who ${WHO} whoByParameter ${WHO} }`);
    expect(res.body.data).toEqual({
      who: { started: true, user: 'ada', color: 'blue' },
      whoByParameter: { started: true, user: 'ada', color: 'blue' },
    });
  });

  it('a mutation writes the session, committed with the response (a new session gets its cookie)', async () => {
    const browser = new Browser(app);
    const res = await post(browser, 'mutation($c: String!) { setColor(color: $c) }', { c: 'teal' });
    expect(res.body).toEqual({ data: { setColor: 'teal' } });
    expect(browser.cookie).toBeDefined();
    expect((await browser.get('/session')).body.data).toEqual({ color: 'teal' });
  });

  it('a subscription over graphql-ws sees the connection session, fresh on every event, and ends with it', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/color', { value: 'red' });
    await browser.post('/auth/login', { user: 'grace' });
    let closedWith: number | undefined;
    const client = graphqlWsClient(url, browser.cookie, (code) => (closedWith = code));
    try {
      const subscription = subscribe(client, `subscription { whoChanges { started user color tick } }`);
      expect(await nextEvent(subscription, 1)).toEqual({
        data: { whoChanges: { started: true, user: 'grace', color: 'red', tick: 1 } },
      });
      await browser.put('/session/data/color', { value: 'green' });
      ticks.emit('tick', 2);
      expect(await subscription.next()).toEqual({
        data: { whoChanges: { started: true, user: 'grace', color: 'green', tick: 2 } },
      });

      // The socket is closed within 2 s of a logout over HTTP.
      const started = Date.now();
      await browser.post('/auth/logout');
      while (closedWith === undefined && Date.now() - started < 2000) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(closedWith).toBe(SESSION_ENDED_CLOSE_CODE);
      subscription.stop();
    } finally {
      await client.dispose();
    }
  });

  it('a subscription without a cookie sees no session', async () => {
    const client = graphqlWsClient(url, undefined, () => undefined);
    try {
      const subscription = subscribe(client, `subscription { whoChanges { started user tick } }`);
      expect(await nextEvent(subscription, 3)).toEqual({ data: { whoChanges: { started: false, user: null, tick: 3 } } });
      subscription.stop();
    } finally {
      await client.dispose();
    }
  });

  it('answers GraphQL over HTTP without a session when nothing uses one (no cookie)', async () => {
    const res = await request(app.getHttpServer()).post('/graphql').send({ query: '{ __typename }' });
    expect(res.status).toBe(200);
    expect(res.headers['set-cookie']).toBeUndefined();
  });
});
