import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import type { LegacySessionData, LegacySessionLoader } from './legacy-session.loader.js';

/**
 * Taking over express-session users (`SessionModule` option `legacy`): a request that carries
 * no session cookie of ours but a validly signed express-session cookie naming a live legacy
 * session is answered with a new session of ours holding that data; the legacy entry is
 * removed and the legacy cookie expired. See README "Migrating from express-session".
 */
export interface LegacySessionOptions {
  /** express-session's `secret` (or its array, newest first); every one is tried. Required. */
  secrets: string | readonly string[];
  /** Where the legacy sessions are, e.g. `new ConnectRedisLoader({ client })`. Required. */
  loader: LegacySessionLoader;
  /** The legacy cookie as express-session set it (to read and to expire it). */
  cookie?: {
    /** express-session's `name`. @default 'connect.sid' */
    name?: string;
    /** Its `cookie.path`. @default '/' */
    path?: string;
    /** Its `cookie.domain`. @default undefined (host-only) */
    domain?: string;
  };
  /**
   * The user a legacy session is bound to (`bindToUser`), or `undefined` for an anonymous one.
   * @default passport's `passport.user` when it is a non-empty string or a finite number
   */
  userIdOf?: (data: LegacySessionData) => string | undefined;
  /**
   * Seconds during which requests that still carry the legacy cookie after its takeover (sent in
   * parallel with the first, before its response arrived) get the new session too, instead of
   * nothing. 0: only the first request gets it. An integer from 0 to 300.
   * @default 10
   */
  graceSeconds?: number;
}

/** `LegacySessionOptions` after defaults and checks; frozen. */
export interface ResolvedLegacySessionOptions {
  readonly secrets: readonly string[];
  readonly loader: LegacySessionLoader;
  readonly cookie: { readonly name: string; readonly path: string; readonly domain?: string };
  readonly userIdOf: (data: LegacySessionData) => string | undefined;
  readonly graceSeconds: number;
}

const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** passport stores `serializeUser`'s answer under `passport.user`. */
function passportUser(data: LegacySessionData): string | undefined {
  const passport = data['passport'];
  if (typeof passport !== 'object' || passport === null) return undefined;
  const user = (passport as Record<string, unknown>)['user'];
  if (typeof user === 'string' && user.length > 0) return user;
  if (typeof user === 'number' && Number.isFinite(user)) return String(user);
  return undefined;
}

/**
 * Defaults and checks of the `legacy` option; `undefined` when it is not set.
 * @throws InvalidOptionException naming the bad field.
 */
export function resolveLegacySessionOptions(
  options: LegacySessionOptions | false | undefined,
): ResolvedLegacySessionOptions | undefined {
  if (options === undefined || options === false) return undefined;
  const given: unknown = options.secrets;
  const secrets: unknown[] = typeof given === 'string' ? [given] : Array.isArray(given) ? [...(given as unknown[])] : [];
  if (secrets.length === 0 || secrets.some((s) => typeof s !== 'string' || s === '')) {
    throw InvalidOptionException.create('legacy.secrets', "must be express-session's secret or a non-empty list of them");
  }
  if (typeof (options.loader as Partial<LegacySessionLoader> | undefined)?.take !== 'function') {
    throw InvalidOptionException.create('legacy.loader', 'must implement take(sid), e.g. new ConnectRedisLoader({ client })');
  }
  const name = options.cookie?.name ?? 'connect.sid';
  if (!COOKIE_NAME.test(name)) {
    throw InvalidOptionException.create('legacy.cookie.name', `must be a cookie name (got ${JSON.stringify(name)})`);
  }
  const path = options.cookie?.path ?? '/';
  if (!path.startsWith('/') || /[;\s]/.test(path)) {
    throw InvalidOptionException.create('legacy.cookie.path', `must start with "/" and contain no ";" or spaces`);
  }
  const domain = options.cookie?.domain;
  if (domain !== undefined && !/^\.?[A-Za-z0-9.-]+$/.test(domain)) {
    throw InvalidOptionException.create('legacy.cookie.domain', `must be a host name (got ${JSON.stringify(domain)})`);
  }
  if (options.userIdOf !== undefined && typeof options.userIdOf !== 'function') {
    throw InvalidOptionException.create('legacy.userIdOf', 'must be a function');
  }
  const graceSeconds = options.graceSeconds ?? 10;
  if (!Number.isSafeInteger(graceSeconds) || graceSeconds < 0 || graceSeconds > 300) {
    throw InvalidOptionException.create('legacy.graceSeconds', `must be an integer from 0 to 300 (got ${String(graceSeconds)})`);
  }
  return Object.freeze({
    secrets: Object.freeze(secrets as string[]),
    loader: options.loader,
    cookie: Object.freeze(domain === undefined ? { name, path } : { name, path, domain }),
    userIdOf: options.userIdOf ?? passportUser,
    graceSeconds,
  });
}
