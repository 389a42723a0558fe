import {
  type DynamicModule,
  Inject,
  Logger,
  Module,
  type MiddlewareConsumer,
  type NestModule,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { HttpAdapterHost, ModuleRef, ModulesContainer, type AbstractHttpAdapter } from '@nestjs/core';
import { createExpressSessionMiddleware } from '../http/express.adapter.js';
import { installFastifySessionHooks, type FastifyInstanceLike } from '../http/fastify.adapter.js';
import { SessionHttpHandler } from '../http/session-http.handler.js';
import { LegacySessionTakeover } from '../http/legacy-session.takeover.js';
import { SESSION_OPTIONS } from '../session/session.constants.js';
import { SESSION_MODULE_OPTIONS, SessionConfigurableModule } from './session-module.definition.js';
import { CurrentSessionProxy } from '../session/current-session.proxy.js';
import { SessionContext } from '../session/session.context.js';
import { SessionInterface } from '../session/session.interface.js';
import type { ResolvedSessionOptions, SessionModuleOptions } from '../session/session-module.options.js';
import { resolveSessionOptions } from './session-options.resolver.js';
import { SessionStore } from '../session/session.store.js';
import { GcScheduler } from '../manager/gc.scheduler.js';
import { SessionManager } from '../manager/session.manager.js';
import { SessionBagRegistry } from '../bags/session-bag.registry.js';
import type { SessionBagFactory } from '../bags/session-bag.interface.js';
import { SessionSocketRegistry } from './session-socket.registry.js';
import { PassportSessions } from './passport-sessions.js';
import { findCurrentSessionConsumer } from './current-session.usage.js';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';

/** Fastify's `addHook` as the passport hook needs it. */
interface FastifyPassportInstance {
  addHook(name: 'preHandler', hook: ReturnType<PassportSessions['fastifyHook']>): unknown;
}

/** Host module of `SessionModule.forFeature()` registrations. */
@Module({})
export class SessionFeatureModule {}

/**
 * Server-side sessions for every HTTP request. `SessionModule.forRoot(options)` or
 * `forRootAsync({ useFactory, inject, imports })`; `isGlobal: true` makes its exports global.
 * Works on Express and Fastify (detected with `httpAdapter.getType()`).
 */
@Module({
  providers: [
    {
      provide: SESSION_OPTIONS,
      useFactory: (options: SessionModuleOptions) => resolveSessionOptions(options),
      inject: [SESSION_MODULE_OPTIONS],
    },
    {
      provide: SessionBagRegistry,
      useFactory: (options: ResolvedSessionOptions) => {
        const registry = new SessionBagRegistry();
        for (const factory of options.bags) registry.register(factory);
        return registry;
      },
      inject: [SESSION_OPTIONS],
    },
    {
      provide: SessionStore,
      useFactory: (options: ResolvedSessionOptions, bags: SessionBagRegistry) => {
        const store = new SessionStore(options, bags);
        options.instrumentation?.observe?.(store.events.events$);
        return store;
      },
      inject: [SESSION_OPTIONS, SessionBagRegistry],
    },
    { provide: SessionContext, useFactory: () => new SessionContext() },
    {
      provide: SessionInterface,
      useFactory: (context: SessionContext) => new CurrentSessionProxy(context),
      inject: [SessionContext],
    },
    {
      provide: SessionHttpHandler,
      useFactory: (store: SessionStore, context: SessionContext, manager: SessionManager) =>
        new SessionHttpHandler(
          store,
          context,
          manager,
          store.options.legacy === undefined ? undefined : new LegacySessionTakeover(store.options.legacy, store),
        ),
      inject: [SessionStore, SessionContext, SessionManager],
    },
    SessionManager,
    GcScheduler,
    {
      // The sessions of WebSocket connections (SessionWebSocketAdapter, graphql-ws).
      provide: SessionSocketRegistry,
      useFactory: (store: SessionStore, context: SessionContext, manager: SessionManager) =>
        new SessionSocketRegistry(store, context, manager),
      inject: [SessionStore, SessionContext, SessionManager],
    },
  ],
  exports: [
    SessionInterface,
    // For SessionMiddleware (option autoMount: false), which the app's modules instantiate.
    SessionHttpHandler,
    SessionManager,
    SessionStore,
    SessionContext,
    SessionBagRegistry,
    SESSION_OPTIONS,
    SessionSocketRegistry,
  ],
})
export class SessionModule extends SessionConfigurableModule implements NestModule, OnApplicationShutdown {
  private readonly logger = new Logger('SessionModule');

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly handler: SessionHttpHandler,
    @Inject(SESSION_OPTIONS) private readonly options: ResolvedSessionOptions,
    private readonly moduleRef: ModuleRef,
    private readonly modules: ModulesContainer,
  ) {
    super();
  }

  /**
   * Lets a feature module ship its own bags: `imports: [SessionModule.forFeature({ bags: [() => new CartBag()] })]`.
   * Needs `SessionModule.forRoot({ isGlobal: true })` (or SessionModule imported where the feature module can see it).
   * @throws InvalidArgumentException at boot for a duplicate bag name.
   */
  static forFeature(feature: { bags: SessionBagFactory[] }): DynamicModule {
    const token = Symbol('SessionFeatureBags');
    return {
      module: SessionFeatureModule,
      providers: [
        {
          provide: token,
          useFactory: (registry: SessionBagRegistry) => {
            for (const factory of feature.bags) registry.register(factory);
            return feature.bags.length;
          },
          inject: [SessionBagRegistry],
        },
      ],
    };
  }

  /** Installs the HTTP adapter before Nest registers routes, so it runs for every route and 404s. */
  configure(_consumer: MiddlewareConsumer): void {
    // Typed as always there, but absent in an application context without HTTP.
    const adapter = this.adapterHost.httpAdapter as AbstractHttpAdapter | undefined;
    if (!adapter) return; // an application context without HTTP: SessionManager only
    this.decideAsyncContext();
    const type = adapter.getType();
    // Passport (PassportSessionModule, imported anywhere) goes right after the session, in this order.
    const passport = this.passportSessions();
    if (!this.options.autoMount) {
      // The app applies SessionMiddleware itself; Fastify still needs the commit hooks.
      if (passport) {
        throw InvalidOptionException.create(
          'autoMount',
          'must be true with PassportSessionModule: passport needs the session on every route',
        );
      }
      if (type === 'fastify') installFastifySessionHooks(adapter.getInstance<FastifyInstanceLike>(), this.handler, 'marked');
      return;
    }
    if (type === 'express') {
      const express = adapter.getInstance<{ use(fn: unknown): void }>();
      express.use(createExpressSessionMiddleware(this.handler));
      if (passport) express.use(passport.expressMiddleware());
    } else if (type === 'fastify') {
      installFastifySessionHooks(adapter.getInstance<FastifyInstanceLike>(), this.handler);
      if (passport) adapter.getInstance<FastifyPassportInstance>().addHook('preHandler', passport.fastifyHook());
    } else {
      this.logger.warn(`HTTP adapter "${type}" is not supported; sessions are available through SessionManager only.`);
    }
  }

  /** Option `asyncContext`: whether HTTP requests run in AsyncLocalStorage (see there). */
  private decideAsyncContext(): void {
    const setting = this.options.asyncContext;
    if (setting === true) return;
    if (setting === false) {
      this.handler.context.turnOffForHttp('option asyncContext is false');
      return;
    }
    const found = findCurrentSessionConsumer(
      this.modules,
      [SessionInterface, SessionManager],
      [SessionModule, SessionFeatureModule],
    );
    if (found === undefined) {
      this.handler.context.turnOffForHttp(
        "option asyncContext is 'auto' and no provider or controller injects SessionInterface or SessionManager",
      );
      this.logger.debug(`HTTP requests run without AsyncLocalStorage: nothing injects SessionInterface or SessionManager.`);
    } else {
      this.logger.debug(`HTTP requests run in AsyncLocalStorage: ${found.consumer} injects ${found.token}.`);
    }
  }

  private passportSessions(): PassportSessions | undefined {
    try {
      return this.moduleRef.get(PassportSessions, { strict: false });
    } catch {
      return undefined; // PassportSessionModule is not imported
    }
  }

  async onApplicationShutdown(): Promise<void> {
    const { metadataBackend, storageBackend, locker } = this.options;
    await Promise.all([
      metadataBackend.close?.(),
      storageBackend.close?.(),
      locker.close?.(),
      this.options.legacy?.loader.close?.(),
    ]);
  }
}
