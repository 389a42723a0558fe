import { Logger } from '@nestjs/common';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { assertIdentifier } from '../cache/identifier.js';
import { SESSION_REQUEST_KEY } from '../session/session-request.key.js';
import type { Session } from '../session/session.js';
import { defaultPassportUserId, PassportSession, type PassportSessionEntry } from './passport-session.js';

type Next = (error?: unknown) => void;

/**
 * A connect-style middleware as passport makes them (`passport.initialize()`,
 * `passport.session()`). Declared as a method so that passport's own typings, which name
 * Express' request type, are accepted.
 */
export type PassportMiddleware = {
  handle(request: object, response: object, next: Next): void;
}['handle'];

/** The parts of a passport `Authenticator` (the default `import passport from 'passport'`) this uses. */
export interface PassportLike {
  initialize(): PassportMiddleware;
  session(): PassportMiddleware;
}

/** Options of `PassportSessionModule.forRoot()`. */
export interface PassportSessionOptions {
  /** The passport instance the app's strategies and `@nestjs/passport` use: `import passport from 'passport'`. */
  passport: PassportLike;
  /**
   * The user id a login binds the session to, from what `serializeUser` gave. @default a string
   * as is, a number as a string, an object's `id`
   */
  userId?: (serialized: unknown) => string;
  /** The key passport keeps its entry under (passport's `key` option), also the session data key. @default 'passport' */
  key?: string;
}

/** A request as this needs it (Express and Fastify alike). */
interface PassportRequest {
  [SESSION_REQUEST_KEY]?: Session;
  session?: unknown;
}

/**
 * Passport on the request's session, installed by `SessionModule` right after its own
 * middleware (Express) or hooks (Fastify) when `PassportSessionModule` is imported: per request
 * it gives `req.session` (a `PassportSession`), then runs `passport.initialize()` and
 * `passport.session()`, so `req.user` comes from `deserializeUser` before guards run and
 * `req.logIn()`, `req.logOut()`, `req.isAuthenticated()` work.
 *
 * Costs no I/O for a request without a session; the stored entry is read (one read of one key)
 * only for a session bound to a user.
 */
export class PassportSessions {
  private readonly logger = new Logger('PassportSessions');
  private readonly key: string;
  private readonly userIdOf: (serialized: unknown) => string;
  private readonly initialize: PassportMiddleware;
  private readonly restore: PassportMiddleware;

  /** @throws InvalidOptionException for a missing passport instance or a bad key. */
  constructor(options: PassportSessionOptions) {
    const passport = options.passport as Partial<PassportLike> | undefined;
    if (typeof passport?.initialize !== 'function' || typeof passport.session !== 'function') {
      throw InvalidOptionException.create('passport', "must be passport's Authenticator: import passport from 'passport'");
    }
    this.key = options.key ?? 'passport';
    try {
      assertIdentifier(this.key, 'session key');
    } catch {
      throw InvalidOptionException.create('key', `must be a valid session key (got ${JSON.stringify(this.key)})`);
    }
    if (options.userId !== undefined && typeof options.userId !== 'function') {
      throw InvalidOptionException.create('userId', 'must be a function (serialized) => string');
    }
    this.userIdOf = options.userId ?? defaultPassportUserId;
    this.initialize = passport.initialize();
    this.restore = passport.session();
  }

  /** Express middleware, installed after the session middleware. */
  expressMiddleware(): (request: PassportRequest, response: object, next: Next) => void {
    return (request, response, next) => this.handle(request, response, next);
  }

  /** Fastify `preHandler` hook (the session is resumed in `onRequest`). */
  fastifyHook(): (request: PassportRequest, reply: object, done: (error?: Error) => void) => void {
    return (request, reply, done) =>
      this.handle(request, reply, (error?: unknown) =>
        error === undefined || error === null
          ? done()
          : done(error instanceof Error ? error : new Error('Passport failed without an Error.')),
      );
  }

  private handle(request: PassportRequest, response: object, next: Next): void {
    const session = request[SESSION_REQUEST_KEY];
    if (session === undefined) {
      next();
      return;
    }
    this.load(session).then(
      (stored) => {
        request.session = new PassportSession(session, this.key, stored, this.userIdOf);
        this.initialize(request, response, (error?: unknown) => {
          if (error !== undefined && error !== null) next(error);
          else this.restore(request, response, next);
        });
      },
      (error: unknown) => next(error),
    );
  }

  /** The stored passport entry of a user-bound session; undefined for any other. */
  private async load(session: Session): Promise<PassportSessionEntry | undefined> {
    try {
      if (!session.isStarted() || session.getUserId() === undefined) return undefined;
    } catch (error) {
      // The store was down at resume: the request goes on logged out; code that uses the session gets the 503.
      if (error instanceof StoreUnavailableException) return undefined;
      throw error;
    }
    const entry = await session.getData(this.key);
    if (entry === undefined) return undefined;
    if (typeof entry !== 'object' || entry === null) {
      this.logger.warn(`The session's "${this.key}" entry is not an object; passport sees no user.`);
      return undefined;
    }
    return entry as PassportSessionEntry;
  }
}
