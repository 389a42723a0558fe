/**
 * Resident memory of idle sessions, in its own process: `node --expose-gc memory-child.js
 * <ours|express-session> <count> [keys]`. Creates `count` sessions holding `keys` (1 or 5)
 * small keys each through the store APIs directly (no HTTP), the same keys and values for both,
 * and reports heap, array-buffer and RSS growth after full GCs. Array buffers count: the
 * MemoryBackend keeps its indexes in typed arrays, whose memory is outside V8's `heapUsed`.
 * For ours it also reports where the bytes go, from `MemoryBackend.memoryUsage()`.
 *
 * Ours goes through the real Session and the SessionStore of a SessionModule with default
 * options (MemoryBackend for both caches, MemoryLocker, DevalueSerializer); Session and
 * SessionStore are internal classes, imported by path on purpose: the measurement must store
 * exactly what a request stores.
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { NestFactory } from '@nestjs/core';
import session from 'express-session';
import type { MemoryBackend } from '../lib/cache/memory.backend.js';
import { SESSION_OPTIONS, SessionModule, type ResolvedSessionOptions } from '../lib/index.js';
import { Session } from '../lib/session/session.js';
import { SessionStore } from '../lib/session/session.store.js';
import { COOKIE_NAME, SESSION_TTL } from './variants.js';

export interface MemoryReport {
  readonly impl: string;
  readonly sessions: number;
  /** Small keys per session (1 or 5). */
  readonly keys: number;
  readonly heapUsedBytes: number;
  /** Growth of ArrayBuffer memory (typed arrays), which `heapUsedBytes` does not include. */
  readonly arrayBuffersBytes: number;
  readonly rssBytes: number;
  readonly externalBytes: number;
  readonly detail: string;
  /** Ours: estimated bytes per session by structure (their sum is checked against the measured growth). */
  readonly breakdown?: Readonly<Record<string, number>>;
}

/** The keys every session gets, in this order, for both implementations: small numbers. */
const KEY_NAMES = ['n', 'cart', 'theme', 'visits', 'lang'];

const gc = (globalThis as { gc?: () => void }).gc;

async function settle(): Promise<NodeJS.MemoryUsage> {
  if (gc === undefined) throw new Error('run with --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage();
}

/** Ours: what a request that writes `keys` keys into a new session leaves in the store. */
async function createOurs(count: number, keys: number): Promise<Created> {
  const context = await NestFactory.createApplicationContext(
    SessionModule.forRoot({ cookie: { name: COOKIE_NAME }, inactivityTimeout: SESSION_TTL }),
    { logger: false },
  );
  const store = context.get(SessionStore);
  const options = context.get<ResolvedSessionOptions>(SESSION_OPTIONS);
  for (let i = 0; i < count; i++) {
    const s = new Session(store, { cookieIds: [], cookieName: COOKIE_NAME });
    s.start();
    for (let k = 0; k < keys; k++) await s.putData(KEY_NAMES[k]!, i + k);
    await s.commit();
    await s.dispose();
  }
  const metadata = options.metadataBackend as MemoryBackend;
  const storage = options.storageBackend as MemoryBackend;
  const stats = (backend: MemoryBackend): string => JSON.stringify(backend.stats());
  const breakdown = (): Record<string, number> => {
    const m = metadata.memoryUsage(() => 'metadata entries');
    const s = storage.memoryUsage((id) => (id.endsWith('.~guard') ? 'guard' : 'storage entries'));
    const perSession = (bytes: number): number => bytes / count;
    return {
      'metadata entries': perSession(m.shares['metadata entries'] ?? 0),
      'storage entries': perSession(s.shares['storage entries'] ?? 0),
      guard: perSession(s.shares.guard ?? 0),
      'tag index': perSession(m.tagIndex + s.tagIndex),
      'expiry index': perSession(m.expiryIndex + s.expiryIndex),
      ids: perSession(m.ids + s.ids),
      total: perSession(m.total + s.total),
    };
  };
  return { keep: store, detail: `metadata ${stats(metadata)}, storage ${stats(storage)}`, breakdown };
}

interface Created {
  readonly keep: unknown;
  readonly detail: string;
  readonly breakdown?: () => Record<string, number>;
}

/** express-session's Cookie takes its options (the typings declare no constructor). */
const CookieClass = session.Cookie as unknown as new (options: session.CookieOptions) => session.Cookie;

/** express-session's MemoryStore: what `store.set` keeps for a session with `keys` keys. */
async function createExpressSession(count: number, keys: number): Promise<Created> {
  const store = new session.MemoryStore();
  for (let i = 0; i < count; i++) {
    const cookie = new CookieClass({ httpOnly: true, sameSite: 'lax', secure: false, path: '/' });
    const data: Record<string, unknown> = { cookie };
    for (let k = 0; k < keys; k++) data[KEY_NAMES[k]!] = i + k;
    // express-session's ids: uid-safe(24), i.e. 32 base64url characters.
    await new Promise<void>((resolve, reject) =>
      store.set(randomBytes(24).toString('base64url'), data as unknown as session.SessionData, (error?: Error) =>
        error ? reject(error) : resolve(),
      ),
    );
  }
  const sizes = await new Promise<number>((resolve) => store.length((_error, length) => resolve(length ?? -1)));
  return { keep: store, detail: `${sizes} sessions stored (JSON strings in an object keyed by id)` };
}

async function main(): Promise<void> {
  const impl = process.argv[2] ?? '';
  const count = Number(process.argv[3] ?? 100_000);
  const keys = Number(process.argv[4] ?? 1);
  const create = impl === 'ours' ? createOurs : impl === 'express-session' ? createExpressSession : undefined;
  if (create === undefined || !(keys >= 1 && keys <= KEY_NAMES.length))
    throw new Error(`usage: memory-child.js <ours|express-session> [count] [keys 1-${KEY_NAMES.length}]`);
  // Load and warm the code paths first so that code and JIT memory do not count as session memory.
  await create(200, keys);
  const before = await settle();
  const created = await create(count, keys);
  const after = await settle();
  const report: MemoryReport = {
    impl,
    sessions: count,
    keys,
    heapUsedBytes: after.heapUsed - before.heapUsed,
    arrayBuffersBytes: after.arrayBuffers - before.arrayBuffers,
    rssBytes: after.rss - before.rss,
    externalBytes: after.external - before.external,
    detail: created.detail,
    breakdown: created.breakdown?.(),
  };
  if (created.keep === undefined) throw new Error('unreachable');
  if (process.send) process.send(report);
  else console.log(JSON.stringify(report));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
