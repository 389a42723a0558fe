import type { SessionSerializer } from '../cache/session-serializer.interface.js';
import type { TaggableBackend } from '../cache/taggable-backend.interface.js';
import type { SessionLocker } from '../locking/session-locker.interface.js';
import type { SessionIdGenerator } from './session-id-generator.interface.js';
import type { SessionBagFactory } from '../bags/session-bag.interface.js';
import type { LegacySessionOptions, ResolvedLegacySessionOptions } from '../legacy/legacy-session.options.js';
import type { SessionInstrumentation } from './session-instrumentation.js';

/** Cookie settings. */
export interface SessionCookieOptions {
  /**
   * Cookie name. A name starting with `__Host-` (e.g. `'__Host-sid'`, recommended when the app
   * is served over HTTPS only) makes browsers accept the cookie only with `Secure`, `Path=/` and
   * no `Domain`: the cookie is then always sent with those, and a `domain`, a `path` other
   * than `/` or `secure: false` is refused at boot. @default 'sid'
   */
  name?: string;
  /**
   * Cookie lifetime in seconds; `0` makes a browser-session cookie (no Max-Age/Expires).
   * Permanent sessions always get a time-based cookie. @default 0
   */
  lifetime?: number;
  /** Cookie Domain attribute; omitted = host-only cookie. @default undefined */
  domain?: string;
  /** Cookie Path attribute. @default '/' */
  path?: string;
  /**
   * Secure attribute. `'auto'` sets it on HTTPS requests as the framework sees them (Express
   * `req.secure` / Fastify `request.protocol`, both honouring their trust-proxy setting);
   * `true`/`false` force it. @default 'auto'
   */
  secure?: boolean | 'auto';
  /** HttpOnly attribute. @default true */
  httpOnly?: boolean;
  /**
   * SameSite attribute; `'none'` requires `secure: true` (refused at boot with `'auto'` or
   * `false`: browsers drop a `SameSite=None` cookie without `Secure`, so plain-HTTP requests
   * would silently lose their session). @default 'lax'
   */
  sameSite?: 'lax' | 'strict' | 'none';
  /**
   * Also send `Clear-Site-Data: "cookies"` with the response that expires the session cookie
   * (logout, `destroy()`), so the browser drops every cookie of the site. @default false
   */
  clearSiteData?: boolean;
}

/** Locking settings (see README "Locking"). */
export interface SessionLockOptions {
  /** Milliseconds a request waits for a session's lock before answering 423. @default 5000 */
  waitTimeout?: number;
  /** Milliseconds after which a held lock expires if its holder never releases it. @default 10000 */
  ttl?: number;
}

/** Garbage collection of expired sessions (see README "SessionManager and GC"). */
export interface SessionGarbageCollectionOptions {
  /**
   * Chance in percent (0-100, decimals allowed, e.g. `0.1`) that a request starts a GC run once
   * its response is finished (never delaying it). `0` = only the scheduled job and
   * `SessionManager.collectGarbage()`. @default 1
   */
  probability?: number;
  /** Most expired sessions one run removes; the rest wait for the next run. @default 1000 */
  maximumPerRun?: number;
  /**
   * Cron expression (5 fields, or 6 with seconds) of the scheduled GC job, validated at boot;
   * `false` schedules none. Runs in every app instance; the GC lock lets one run at a time.
   * @default every five minutes ('*' + '/5 * * * *')
   */
  cron?: string | false;
}

/**
 * IP lock (TYPO3 `lockIP`): a session is bound to a prefix of the address of the client that
 * started it; a request from another prefix is treated as having no session. Needs the
 * framework's trusted-proxy setting to be right (README "Security"). Fails closed: a client
 * whose address is unknown gets a session locked to no address, never an unlocked one.
 */
export interface SessionIpLockOptions {
  /** Leading IPv4 octets that must match, 0-4 (0 = do not lock IPv4 clients). @default 4 */
  ipv4Prefix?: number;
  /** Leading 16-bit IPv6 blocks that must match, 0-8 (4 = the /64 network). @default 4 */
  ipv6Prefix?: number;
}

/** Options of `SessionModule.forRoot()` / the factory of `forRootAsync()`. */
export interface SessionModuleOptions {
  cookie?: SessionCookieOptions;
  /** Seconds without activity after which a session expires and can no longer be resumed. @default 3600 */
  inactivityTimeout?: number;
  /**
   * Seconds within which an unchanged session's last-activity time is not rewritten (TYPO3's
   * update grace period): a session that only gets read costs at most one write per period.
   * Must be smaller than `inactivityTimeout`. @default 60
   */
  updateGracePeriod?: number;
  /** Backend of the metadata cache (one entry per session). @default new MemoryBackend() */
  metadataBackend?: TaggableBackend;
  /** Backend of the storage cache (one entry per data key). @default new MemoryBackend() */
  storageBackend?: TaggableBackend;
  /** Locker for session locks. @default new MemoryLocker() */
  locker?: SessionLocker;
  lock?: SessionLockOptions;
  /** Serializer of session values. @default new DevalueSerializer() */
  serializer?: SessionSerializer;
  /** Generator of public session ids. @default new RandomIdGenerator() (192 bits) */
  idGenerator?: SessionIdGenerator;
  /**
   * Bags every session offers, as factories (each request gets fresh instances). Replaces the
   * default list; feature modules add theirs with `SessionModule.forFeature({ bags })`.
   * @default [() => new FlashBag()]
   */
  bags?: SessionBagFactory[];
  /**
   * Takes express-session users over, nobody logged out (see `LegacySessionOptions` and README
   * "Migrating from express-session"); `false`/omitted = off. @default false
   */
  legacy?: LegacySessionOptions | false;
  /**
   * Measurement hooks, e.g. `new OpenTelemetrySessionMetrics()` from 'nest-session/opentelemetry'
   * (README "Metrics"). Omitted = nothing is measured and nothing is wrapped. @default undefined
   */
  instrumentation?: SessionInstrumentation;
  /** Garbage collection: probabilistic on requests, scheduled by cron, limited per run. */
  garbageCollection?: SessionGarbageCollectionOptions;
  /** Binds sessions to a prefix of the client address; `false`/omitted = off. @default false */
  ipLock?: SessionIpLockOptions | false;
  /**
   * Largest serialized session value in bytes (UTF-8), checked for every backend when the value
   * is put (`putData`, the attribute bag) and for bags at commit; a bigger one throws
   * `SessionLimitExceededException` (HTTP 413) and stores nothing. @default 1048576 (1 MiB)
   */
  maxEntryBytes?: number;
  /**
   * Most data keys one session holds (bags not counted); storing a new key beyond it throws
   * `SessionLimitExceededException` (HTTP 413). Counting needs the session's key list: adding a
   * key that this request has not seen yet to a stored session loads it once. @default 1000
   */
  maxKeysPerSession?: number;
  /**
   * Most custom tags one session carries (the user tag of `bindToUser` not counted); `addTag`
   * beyond it throws `SessionLimitExceededException` (HTTP 413). @default 100
   */
  maxTagsPerSession?: number;
  /**
   * Name of a request header that carries the session id for clients without cookies (native
   * apps, scripts), e.g. `'x-session-id'`; `false` = cookies only. A request that sends this
   * header (with an id, or empty when it has none yet) is in header mode: its id is read from
   * the header only, new ids (creation, renewal, login) come back in the same response header
   * and it never gets a cookie; a request without it never sees the header in a response.
   * Unknown or malformed ids are ignored as for cookies. @default false
   */
  idHeader?: string | false;
  /**
   * Absolute lifetime in seconds (ASVS 7.3.2): a session ends this long after it was created,
   * or after its last login (`bindToUser` restarts the clock), however active it is. `0` = none.
   * @default 0
   */
  absoluteTimeout?: number;
  /**
   * Most sessions one user may have at once (ASVS 7.1.2); what happens at the limit is
   * `maxSessionsPolicy`. Enforced atomically per user across app instances sharing the locker.
   * `0` = no limit. @default 0
   */
  maxSessionsPerUser?: number;
  /**
   * At the `maxSessionsPerUser` limit, a login either ends the user's oldest sessions
   * (`'evict-oldest'`, by login time) or fails with `SessionLimitReachedException` (HTTP 409,
   * `'reject'`). @default 'evict-oldest'
   */
  maxSessionsPolicy?: SessionLimitPolicy;
  /**
   * Whether HTTP requests run in AsyncLocalStorage, which the injected `SessionInterface` (and
   * `SessionManager`'s "current session" methods) need to find the request's session. On Node 20
   * it costs every promise of the process (promise hooks: a Fastify app answers up to 30% fewer
   * requests). `'auto'` turns it on at boot only when some provider, controller, guard,
   * interceptor or gateway of the app injects `SessionInterface` or `SessionManager` (constructor
   * or property injection); an app that reaches the session only through `@CurrentSession()`,
   * `@Flashes()` and the request pays nothing. Set `true` when code resolves `SessionInterface`
   * dynamically (`moduleRef.get`, `app.get`): that `'auto'` cannot see. WebSocket messages and
   * GraphQL subscriptions always run in it. @default 'auto'
   */
  asyncContext?: boolean | 'auto';
  /**
   * `true`: the module installs its HTTP integration for every route (and 404s), before the
   * app's own middleware. `false`: it installs nothing that resumes sessions; apply
   * `SessionMiddleware` in a module's `configure(consumer)` like any Nest middleware, to order it
   * against other middleware (helmet, nestjs-cls) and to leave routes out with
   * `forRoutes`/`exclude`; routes it does not run for have no session (`@CurrentSession()` and
   * the injected `SessionInterface` throw `SessionOutsideRequestException`) and never get a
   * Set-Cookie. Not with `PassportSessionModule`, which needs the session on every route.
   * @default true
   */
  autoMount?: boolean;
}

/** What a login does at the `maxSessionsPerUser` limit. */
export type SessionLimitPolicy = 'evict-oldest' | 'reject';

/** The options after defaults were applied and validated; frozen. */
export interface ResolvedSessionOptions {
  readonly cookie: Readonly<Required<Omit<SessionCookieOptions, 'domain'>>> & { readonly domain?: string };
  readonly inactivityTimeout: number;
  readonly updateGracePeriod: number;
  readonly metadataBackend: TaggableBackend;
  readonly storageBackend: TaggableBackend;
  readonly locker: SessionLocker;
  readonly lock: Readonly<Required<SessionLockOptions>>;
  readonly serializer: SessionSerializer;
  readonly idGenerator: SessionIdGenerator;
  readonly bags: readonly SessionBagFactory[];
  /** `undefined` when the express-session takeover is off. */
  readonly legacy: ResolvedLegacySessionOptions | undefined;
  /** `undefined` when nothing is measured (then backends and locker are the ones given). */
  readonly instrumentation: SessionInstrumentation | undefined;
  readonly garbageCollection: ResolvedGarbageCollectionOptions;
  /** `undefined` when the IP lock is off. */
  readonly ipLock: ResolvedIpLockOptions | undefined;
  readonly maxEntryBytes: number;
  readonly maxKeysPerSession: number;
  readonly maxTagsPerSession: number;
  /** The id header's name in lower case; `undefined` = cookies only. */
  readonly idHeader: string | undefined;
  /** Seconds; 0 = no absolute lifetime. */
  readonly absoluteTimeout: number;
  /** 0 = no limit. */
  readonly maxSessionsPerUser: number;
  readonly maxSessionsPolicy: SessionLimitPolicy;
  readonly asyncContext: boolean | 'auto';
  readonly autoMount: boolean;
}

export type ResolvedGarbageCollectionOptions = Readonly<Required<SessionGarbageCollectionOptions>>;
export type ResolvedIpLockOptions = Readonly<Required<SessionIpLockOptions>>;
