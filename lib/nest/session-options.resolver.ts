import { DevalueSerializer } from '../cache/devalue.serializer.js';
import { MemoryBackend } from '../cache/memory.backend.js';
import { InvalidOptionException, shownOptionValue } from '../errors/invalid-option.exception.js';
import { MemoryLocker } from '../locking/memory.locker.js';
import { RandomIdGenerator } from '../session/random-id.generator.js';
import { FlashBag } from '../bags/flash.bag.js';
import { resolveGarbageCollectionOptions } from '../manager/gc.options.js';
import { resolveIpLockOptions } from '../session/ip-lock.js';
import type { ResolvedSessionOptions, SessionModuleOptions } from '../session/session-module.options.js';
import { isCookieName } from '../session/cookie-name.js';
import { assertKnownOptions } from './unknown-options.check.js';
import { resolveLegacySessionOptions } from '../legacy/legacy-session.options.js';
import { instrumentOptions } from './instrumented-options.js';

/** What the store calls on each backend: checked at boot so a wrong object fails there, not on a request. */
const BACKEND_METHODS = [
  'get',
  'getByTag',
  'set',
  'write',
  'remove',
  'flushByTag',
  'findIdentifiersByTag',
  'collectGarbage',
] as const;

/**
 * Merges defaults once, validates, freezes. Every problem names the option, so a bad
 * configuration fails at boot instead of on the first request.
 * @throws InvalidOptionException
 */
export function resolveSessionOptions(options: SessionModuleOptions = {}): ResolvedSessionOptions {
  const cookie = options.cookie ?? {};
  const locker = options.locker ?? new MemoryLocker();
  const resolved: ResolvedSessionOptions = {
    cookie: {
      name: cookie.name ?? 'sid',
      lifetime: cookie.lifetime ?? 0,
      domain: cookie.domain,
      path: cookie.path ?? '/',
      secure: cookie.secure ?? 'auto',
      httpOnly: cookie.httpOnly ?? true,
      sameSite: cookie.sameSite ?? 'lax',
      clearSiteData: cookie.clearSiteData ?? false,
    },
    inactivityTimeout: options.inactivityTimeout ?? 3600,
    updateGracePeriod: options.updateGracePeriod ?? 60,
    metadataBackend: options.metadataBackend ?? new MemoryBackend(),
    // The default storage checks the default (in-process) locker's locks inside its writes, so
    // commits that nobody else holds the lock of need no acquire and release.
    storageBackend: options.storageBackend ?? new MemoryBackend(locker instanceof MemoryLocker ? { locks: locker } : {}),
    locker,
    lock: {
      waitTimeout: options.lock?.waitTimeout ?? 5000,
      ttl: options.lock?.ttl ?? 10000,
    },
    serializer: options.serializer ?? new DevalueSerializer(),
    idGenerator: options.idGenerator ?? new RandomIdGenerator(),
    bags: Object.freeze([...(options.bags ?? [() => new FlashBag()])]),
    legacy: resolveLegacySessionOptions(options.legacy),
    instrumentation: options.instrumentation,
    garbageCollection: resolveGarbageCollectionOptions(options.garbageCollection),
    ipLock: resolveIpLockOptions(options.ipLock),
    maxEntryBytes: options.maxEntryBytes ?? 1024 * 1024,
    maxKeysPerSession: options.maxKeysPerSession ?? 1000,
    maxTagsPerSession: options.maxTagsPerSession ?? 100,
    idHeader: resolveIdHeader(options.idHeader),
    absoluteTimeout: options.absoluteTimeout ?? 0,
    maxSessionsPerUser: options.maxSessionsPerUser ?? 0,
    maxSessionsPolicy: options.maxSessionsPolicy ?? 'evict-oldest',
    asyncContext: options.asyncContext ?? 'auto',
    autoMount: options.autoMount ?? true,
  };
  assertKnownOptions(options, resolved);
  validate(resolved);
  Object.freeze(resolved.cookie);
  Object.freeze(resolved.lock);
  return Object.freeze(instrumentOptions(resolved));
}

function validate(o: ResolvedSessionOptions): void {
  const c = o.cookie;
  if (!isCookieName(c.name)) {
    throw InvalidOptionException.create('cookie.name', `must be a non-empty cookie token (got ${JSON.stringify(c.name)})`);
  }
  nonNegativeNumber('cookie.lifetime', c.lifetime);
  if (c.domain !== undefined && (typeof c.domain !== 'string' || !/^\.?[A-Za-z0-9.-]+$/.test(c.domain))) {
    throw InvalidOptionException.create('cookie.domain', `must be a host name (got ${JSON.stringify(c.domain)})`);
  }
  if (typeof c.path !== 'string' || !c.path.startsWith('/') || /[;\s]/.test(c.path)) {
    throw InvalidOptionException.create(
      'cookie.path',
      `must start with "/" and contain no ";" or spaces (got ${JSON.stringify(c.path)})`,
    );
  }
  if (c.secure !== 'auto' && typeof c.secure !== 'boolean') {
    throw InvalidOptionException.create('cookie.secure', `must be true, false or 'auto' (got ${JSON.stringify(c.secure)})`);
  }
  if (typeof c.httpOnly !== 'boolean') {
    throw InvalidOptionException.create('cookie.httpOnly', `must be a boolean (got ${JSON.stringify(c.httpOnly)})`);
  }
  if (!['lax', 'strict', 'none'].includes(c.sameSite)) {
    throw InvalidOptionException.create(
      'cookie.sameSite',
      `must be 'lax', 'strict' or 'none' (got ${JSON.stringify(c.sameSite)})`,
    );
  }
  if (c.sameSite === 'none' && c.secure !== true) {
    throw InvalidOptionException.create(
      'cookie.sameSite',
      `'none' needs cookie.secure: true (got ${shownOptionValue(c.secure)}); browsers drop SameSite=None cookies without Secure, ` +
        `so requests over plain HTTP would lose their session`,
    );
  }
  if (typeof c.clearSiteData !== 'boolean') {
    throw InvalidOptionException.create('cookie.clearSiteData', `must be a boolean (got ${shownOptionValue(c.clearSiteData)})`);
  }
  validateCookiePrefix(c);
  positiveNumber('inactivityTimeout', o.inactivityTimeout);
  nonNegativeNumber('updateGracePeriod', o.updateGracePeriod);
  if (o.updateGracePeriod >= o.inactivityTimeout) {
    throw InvalidOptionException.create(
      'updateGracePeriod',
      `(${o.updateGracePeriod}) must be smaller than inactivityTimeout (${o.inactivityTimeout})`,
    );
  }
  validateUserSessionOptions(o);
  validateLimits(o);
  positiveNumber('lock.waitTimeout', o.lock.waitTimeout);
  positiveNumber('lock.ttl', o.lock.ttl);
  implementsMethods('metadataBackend', o.metadataBackend, BACKEND_METHODS);
  implementsMethods('storageBackend', o.storageBackend, BACKEND_METHODS);
  if (o.metadataBackend === o.storageBackend) {
    throw InvalidOptionException.create(
      'storageBackend',
      'must be a different backend instance than metadataBackend (give each cache its own instance or key prefix)',
    );
  }
  implementsMethods('locker', o.locker, ['acquire']);
  implementsMethods('serializer', o.serializer, ['serialize', 'deserialize']);
  if (!Array.isArray(o.bags) || o.bags.some((f) => typeof f !== 'function')) {
    throw InvalidOptionException.create('bags', 'must be an array of factories, e.g. [() => new FlashBag()]');
  }
  implementsMethods('idGenerator', o.idGenerator, ['generate', 'isValid']);
  const sample = o.idGenerator.generate();
  if (!o.idGenerator.isValid(sample) || sample.includes('.') || sample.length < 22) {
    throw InvalidOptionException.create(
      'idGenerator',
      'must generate ids of at least 22 URL-safe characters (128 bits) without "." that its own isValid() accepts',
    );
  }
}

/** `absoluteTimeout`, `maxSessionsPerUser`, `maxSessionsPolicy`. */
function validateUserSessionOptions(o: ResolvedSessionOptions): void {
  nonNegativeNumber('absoluteTimeout', o.absoluteTimeout);
  if (!Number.isSafeInteger(o.maxSessionsPerUser) || o.maxSessionsPerUser < 0) {
    throw InvalidOptionException.create(
      'maxSessionsPerUser',
      `must be a whole number >= 0, 0 = no limit (got ${shownOptionValue(o.maxSessionsPerUser)})`,
    );
  }
  // Options may come from untyped configuration: the type does not guarantee the value.
  const policy: unknown = o.maxSessionsPolicy;
  if (policy !== 'evict-oldest' && policy !== 'reject') {
    throw InvalidOptionException.create(
      'maxSessionsPolicy',
      `must be 'evict-oldest' or 'reject' (got ${JSON.stringify(policy)})`,
    );
  }
  if (typeof (o.autoMount as unknown) !== 'boolean') {
    throw InvalidOptionException.create('autoMount', `must be true or false (got ${shownOptionValue(o.autoMount)})`);
  }
  const asyncContext: unknown = o.asyncContext;
  if (asyncContext !== true && asyncContext !== false && asyncContext !== 'auto') {
    throw InvalidOptionException.create('asyncContext', `must be true, false or 'auto' (got ${shownOptionValue(asyncContext)})`);
  }
}

/** `__Host-` and `__Secure-` names (RFC 6265bis cookie prefixes): what browsers require of them, checked at boot. */
function validateCookiePrefix(c: ResolvedSessionOptions['cookie']): void {
  const host = c.name.startsWith('__Host-');
  if (!host && !c.name.startsWith('__Secure-')) return;
  const prefix = host ? '__Host-' : '__Secure-';
  if (c.secure === false) {
    throw InvalidOptionException.create(
      'cookie.secure',
      `must not be false with a ${prefix} cookie name (${JSON.stringify(c.name)}): browsers accept such a cookie only with Secure; omit secure`,
    );
  }
  if (!host) return;
  if (c.domain !== undefined) {
    throw InvalidOptionException.create(
      'cookie.domain',
      `must not be set with a __Host- cookie name (${JSON.stringify(c.name)}): browsers refuse a __Host- cookie with a Domain; omit domain`,
    );
  }
  if (c.path !== '/') {
    throw InvalidOptionException.create(
      'cookie.path',
      `must be "/" with a __Host- cookie name (${JSON.stringify(c.name)}), got ${JSON.stringify(c.path)}: browsers refuse a __Host- cookie with another path`,
    );
  }
}

/** Header names are case-insensitive: kept in lower case, as Node reports request headers. */
function resolveIdHeader(value: string | false | undefined): string | undefined {
  if (value === undefined || value === false) return undefined;
  const given: unknown = value; // options may come from untyped configuration
  if (typeof given !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(given)) {
    throw InvalidOptionException.create(
      'idHeader',
      `must be a header name such as 'x-session-id', or false (got ${shownOptionValue(given)})`,
    );
  }
  const name = given.toLowerCase();
  if (['cookie', 'set-cookie', 'authorization', 'host', 'content-length', 'content-type', 'transfer-encoding'].includes(name)) {
    throw InvalidOptionException.create(
      'idHeader',
      `must not be ${JSON.stringify(given)}: that header means something else; use e.g. 'x-session-id'`,
    );
  }
  return name;
}

/** `maxEntryBytes`, `maxKeysPerSession`, `maxTagsPerSession`: whole numbers >= 1. */
function validateLimits(o: ResolvedSessionOptions): void {
  for (const name of ['maxEntryBytes', 'maxKeysPerSession', 'maxTagsPerSession'] as const) {
    const value = o[name];
    if (!Number.isSafeInteger(value) || value < 1) {
      throw InvalidOptionException.create(name, `must be a whole number >= 1 (got ${shownOptionValue(value)})`);
    }
  }
}

function positiveNumber(name: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw InvalidOptionException.create(name, `must be a positive number (got ${shownOptionValue(value)})`);
  }
}

function nonNegativeNumber(name: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw InvalidOptionException.create(name, `must be a number >= 0 (got ${shownOptionValue(value)})`);
  }
}

function implementsMethods(name: string, value: unknown, methods: readonly string[]): void {
  const missing = methods.filter((m) => typeof (value as Record<string, unknown> | null)?.[m] !== 'function');
  if (missing.length > 0) {
    throw InvalidOptionException.create(name, `must implement ${missing.join(', ')}`);
  }
}
