import type { SessionSerializer } from '../cache/session-serializer.interface.js';
import type { TaggableBackend } from '../cache/taggable-backend.interface.js';
import type { SessionLocker } from '../locking/session-locker.interface.js';
import type { SessionIdGenerator } from './session-id-generator.interface.js';

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
}
