import { DevalueSerializer } from '../cache/devalue.serializer.js';
import { MemoryBackend } from '../cache/memory.backend.js';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { MemoryLocker } from '../locking/memory.locker.js';
import { RandomIdGenerator } from '../session/random-id.generator.js';
import { FlashBag } from '../bags/flash.bag.js';
import { resolveGarbageCollectionOptions } from '../manager/gc.options.js';
import { resolveIpLockOptions } from '../session/ip-lock.js';
import type { ResolvedSessionOptions, SessionModuleOptions } from '../session/session-module.options.js';
import { isCookieName } from '../session/cookie-name.js';

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
  const resolved: ResolvedSessionOptions = {
    cookie: {
      name: cookie.name ?? 'sid',
      lifetime: cookie.lifetime ?? 0,
      domain: cookie.domain,
      path: cookie.path ?? '/',
      secure: cookie.secure ?? 'auto',
      httpOnly: cookie.httpOnly ?? true,
      sameSite: cookie.sameSite ?? 'lax',
    },
    inactivityTimeout: options.inactivityTimeout ?? 3600,
    updateGracePeriod: options.updateGracePeriod ?? 60,
    metadataBackend: options.metadataBackend ?? new MemoryBackend(),
    storageBackend: options.storageBackend ?? new MemoryBackend(),
    locker: options.locker ?? new MemoryLocker(),
    lock: {
      waitTimeout: options.lock?.waitTimeout ?? 5000,
      ttl: options.lock?.ttl ?? 10000,
    },
    serializer: options.serializer ?? new DevalueSerializer(),
    idGenerator: options.idGenerator ?? new RandomIdGenerator(),
    bags: Object.freeze([...(options.bags ?? [() => new FlashBag()])]),
    garbageCollection: resolveGarbageCollectionOptions(options.garbageCollection),
    ipLock: resolveIpLockOptions(options.ipLock),
  };
  validate(resolved);
  Object.freeze(resolved.cookie);
  Object.freeze(resolved.lock);
  return Object.freeze(resolved);
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
  if (c.sameSite === 'none' && c.secure === false) {
    throw InvalidOptionException.create(
      'cookie.sameSite',
      `'none' needs cookie.secure true or 'auto'; browsers drop SameSite=None cookies without Secure`,
    );
  }
  positiveNumber('inactivityTimeout', o.inactivityTimeout);
  nonNegativeNumber('updateGracePeriod', o.updateGracePeriod);
  if (o.updateGracePeriod >= o.inactivityTimeout) {
    throw InvalidOptionException.create(
      'updateGracePeriod',
      `(${o.updateGracePeriod}) must be smaller than inactivityTimeout (${o.inactivityTimeout})`,
    );
  }
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

function positiveNumber(name: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw InvalidOptionException.create(name, `must be a positive number (got ${JSON.stringify(value)})`);
  }
}

function nonNegativeNumber(name: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw InvalidOptionException.create(name, `must be a number >= 0 (got ${JSON.stringify(value)})`);
  }
}

function implementsMethods(name: string, value: unknown, methods: readonly string[]): void {
  const missing = methods.filter((m) => typeof (value as Record<string, unknown> | null)?.[m] !== 'function');
  if (missing.length > 0) {
    throw InvalidOptionException.create(name, `must implement ${missing.join(', ')}`);
  }
}
