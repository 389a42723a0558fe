import { Inject, Injectable, type NestMiddleware } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createExpressSessionMiddleware } from '../http/express.adapter.js';
import { markForSession } from '../http/fastify.adapter.js';
import { SessionHttpHandler } from '../http/session-http.handler.js';

type Next = (error?: unknown) => void;

/**
 * The session as a Nest middleware, for `SessionModule.forRoot({ autoMount: false })`: apply it
 * in `configure(consumer)` to order it against other middleware and to choose its routes,
 * `consumer.apply(helmet(), SessionMiddleware).exclude('health').forRoutes('*')`. On Express it
 * resumes the session where it stands in the chain; on Fastify, where Nest middleware runs in
 * `onRequest` on the raw request, it marks the request and the session resumes before the
 * handler (guards, interceptors and handlers see it on both).
 */
@Injectable()
export class SessionMiddleware implements NestMiddleware {
  private readonly run: (req: IncomingMessage, res: ServerResponse, next: Next) => void;

  constructor(@Inject(SessionHttpHandler) handler: SessionHttpHandler, @Inject(HttpAdapterHost) host: HttpAdapterHost) {
    const type = (host.httpAdapter as { getType(): string } | undefined)?.getType();
    if (type === 'fastify') {
      this.run = (req, _res, next) => {
        markForSession(req);
        next();
      };
    } else {
      this.run = createExpressSessionMiddleware(handler);
    }
  }

  use(req: IncomingMessage, res: ServerResponse, next: Next): void {
    this.run(req, res, next);
  }
}
