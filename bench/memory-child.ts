/**
 * Resident memory of idle sessions, in its own process: `node --expose-gc memory-child.js
 * <ours|express-session> <count>`. Creates `count` sessions holding one small key each through
 * the store APIs directly (no HTTP), and reports heap and RSS growth after full GCs.
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
import { SESSION_OPTIONS, SessionModule, type ResolvedSessionOptions } from '../lib/index.js';
import { Session } from '../lib/session/session.js';
import { SessionStore } from '../lib/session/session.store.js';
import { COOKIE_NAME, SESSION_TTL } from './variants.js';

export interface MemoryReport {
  readonly impl: string;
  readonly sessions: number;
  readonly heapUsedBytes: number;
  readonly rssBytes: number;
  readonly externalBytes: number;
  readonly detail: string;
}

const gc = (globalThis as { gc?: () => void }).gc;

async function settle(): Promise<NodeJS.MemoryUsage> {
  if (gc === undefined) throw new Error('run with --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage();
}

/** Ours: what a request that writes one key into a new session leaves in the store. */
async function createOurs(count: number): Promise<{ keep: unknown; detail: string }> {
  const context = await NestFactory.createApplicationContext(
    SessionModule.forRoot({ cookie: { name: COOKIE_NAME }, inactivityTimeout: SESSION_TTL }),
    { logger: false },
  );
  const store = context.get(SessionStore);
  const options = context.get<ResolvedSessionOptions>(SESSION_OPTIONS);
  for (let i = 0; i < count; i++) {
    const s = new Session(store, { cookieIds: [], cookieName: COOKIE_NAME });
    s.start();
    await s.putData('n', i);
    await s.commit();
    await s.dispose();
  }
  const stats = (backend: unknown): string => JSON.stringify((backend as { stats?: () => unknown }).stats?.() ?? {});
  return { keep: store, detail: `metadata ${stats(options.metadataBackend)}, storage ${stats(options.storageBackend)}` };
}

/** express-session's Cookie takes its options (the typings declare no constructor). */
const CookieClass = session.Cookie as unknown as new (options: session.CookieOptions) => session.Cookie;

/** express-session's MemoryStore: what `store.set` keeps for a session with one key. */
async function createExpressSession(count: number): Promise<{ keep: unknown; detail: string }> {
  const store = new session.MemoryStore();
  for (let i = 0; i < count; i++) {
    const cookie = new CookieClass({ httpOnly: true, sameSite: 'lax', secure: false, path: '/' });
    const data = { cookie, n: i } as unknown as session.SessionData;
    // express-session's ids: uid-safe(24), i.e. 32 base64url characters.
    await new Promise<void>((resolve, reject) =>
      store.set(randomBytes(24).toString('base64url'), data, (error?: Error) => (error ? reject(error) : resolve())),
    );
  }
  const sizes = await new Promise<number>((resolve) => store.length((_error, length) => resolve(length ?? -1)));
  return { keep: store, detail: `${sizes} sessions stored (JSON strings in an object keyed by id)` };
}

async function main(): Promise<void> {
  const impl = process.argv[2] ?? '';
  const count = Number(process.argv[3] ?? 100_000);
  const create = impl === 'ours' ? createOurs : impl === 'express-session' ? createExpressSession : undefined;
  if (create === undefined) throw new Error('usage: memory-child.js <ours|express-session> [count]');
  // Load and warm the code paths first so that code and JIT memory do not count as session memory.
  await create(200);
  const before = await settle();
  const created = await create(count);
  const after = await settle();
  const report: MemoryReport = {
    impl,
    sessions: count,
    heapUsedBytes: after.heapUsed - before.heapUsed,
    rssBytes: after.rss - before.rss,
    externalBytes: after.external - before.external,
    detail: created.detail,
  };
  if (created.keep === undefined) throw new Error('unreachable');
  if (process.send) process.send(report);
  else console.log(JSON.stringify(report));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
