import type { SessionSerializer } from '../cache/session-serializer.interface.js';
import type { TaggableBackend } from '../cache/taggable-backend.interface.js';
import type { SessionLocker } from '../locking/session-locker.interface.js';
import type { SessionIdGenerator } from './session-id-generator.interface.js';
import type { SessionBagFactory } from '../bags/session-bag.interface.js';

/** Cookie settings. */
export interface SessionCookieOptions {
  /** Cookie name. @default 'sid' */
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
  /** SameSite attribute; `'none'` requires `secure`. @default 'lax' */
  sameSite?: 'lax' | 'strict' | 'none';
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
 * framework's trusted-proxy setting to be right (README "Security notes").
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
  /** Garbage collection: probabilistic on requests, scheduled by cron, limited per run. */
  garbageCollection?: SessionGarbageCollectionOptions;
  /** Binds sessions to a prefix of the client address; `false`/omitted = off. @default false */
  ipLock?: SessionIpLockOptions | false;
}

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
  readonly garbageCollection: ResolvedGarbageCollectionOptions;
  /** `undefined` when the IP lock is off. */
  readonly ipLock: ResolvedIpLockOptions | undefined;
}

export type ResolvedGarbageCollectionOptions = Readonly<Required<SessionGarbageCollectionOptions>>;
export type ResolvedIpLockOptions = Readonly<Required<SessionIpLockOptions>>;
