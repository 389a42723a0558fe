/**
 * The apps the benchmark compares. Metadata only (no Nest imports): the runner reads it, the
 * app child (app-child.ts) builds the app it names.
 */

export type HttpAdapterName = 'express' | 'fastify';
export type StoreKind = 'none' | 'memory' | 'redis' | 'postgres';
export type AppKind = 'ceiling' | 'ours' | 'peer';

export interface Variant {
  /** Unique name; also the app child's argument and `--profile=` value. */
  readonly name: string;
  readonly adapter: HttpAdapterName;
  readonly kind: AppKind;
  readonly store: StoreKind;
  /** How it shows in the table. */
  readonly label: string;
  /** Ours through the injected SessionInterface (AsyncLocalStorage on); default: `@CurrentSession()`. */
  readonly injected?: boolean;
}

export const VARIANTS: readonly Variant[] = [
  { name: 'ceiling-express', adapter: 'express', kind: 'ceiling', store: 'none', label: 'ceiling (no session)' },
  { name: 'ours-memory-express', adapter: 'express', kind: 'ours', store: 'memory', label: 'ours, MemoryBackend' },
  {
    name: 'ours-memory-express-injected',
    adapter: 'express',
    kind: 'ours',
    store: 'memory',
    label: 'ours, MemoryBackend, injected SessionInterface',
    injected: true,
  },
  { name: 'express-session-memory', adapter: 'express', kind: 'peer', store: 'memory', label: 'express-session, MemoryStore' },
  { name: 'ours-redis-express', adapter: 'express', kind: 'ours', store: 'redis', label: 'ours, RedisBackend' },
  { name: 'express-session-redis', adapter: 'express', kind: 'peer', store: 'redis', label: 'express-session, connect-redis' },
  { name: 'ours-postgres-express', adapter: 'express', kind: 'ours', store: 'postgres', label: 'ours, PostgresBackend' },
  {
    name: 'express-session-postgres',
    adapter: 'express',
    kind: 'peer',
    store: 'postgres',
    label: 'express-session, connect-pg-simple',
  },
  { name: 'ceiling-fastify', adapter: 'fastify', kind: 'ceiling', store: 'none', label: 'ceiling (no session)' },
  { name: 'ours-memory-fastify', adapter: 'fastify', kind: 'ours', store: 'memory', label: 'ours, MemoryBackend' },
  {
    name: 'ours-memory-fastify-injected',
    adapter: 'fastify',
    kind: 'ours',
    store: 'memory',
    label: 'ours, MemoryBackend, injected SessionInterface',
    injected: true,
  },
  { name: 'fastify-session-memory', adapter: 'fastify', kind: 'peer', store: 'memory', label: '@fastify/session, default store' },
  { name: 'ours-redis-fastify', adapter: 'fastify', kind: 'ours', store: 'redis', label: 'ours, RedisBackend' },
  { name: 'fastify-session-redis', adapter: 'fastify', kind: 'peer', store: 'redis', label: '@fastify/session, connect-redis' },
];

export function variantByName(name: string): Variant {
  const variant = VARIANTS.find((v) => v.name === name);
  if (variant === undefined) throw new Error(`Unknown bench app "${name}"; known: ${VARIANTS.map((v) => v.name).join(', ')}`);
  return variant;
}

/** The peer an `ours` variant is compared with: same adapter, same store. */
export function peerOf(variant: Variant): Variant | undefined {
  return VARIANTS.find((v) => v.kind === 'peer' && v.adapter === variant.adapter && v.store === variant.store);
}

export function ceilingOf(variant: Variant): Variant {
  return VARIANTS.find((v) => v.kind === 'ceiling' && v.adapter === variant.adapter)!;
}

/** Settings every app child gets from the runner (through the environment). */
export interface AppEnv {
  readonly redisUrl: string;
  /** Key prefix for everything this app writes to Redis (unique per run and app). */
  readonly redisPrefix: string;
}

/** Signing secret of the peers (both require one; @fastify/session wants >= 32 characters). */
export const PEER_SECRET = 'bench-secret-0123456789abcdef-0123456789';
/** Cookie name used by every app, so the runner handles one name. */
export const COOKIE_NAME = 'sid';
/** Session lifetime of every app, seconds (ours: inactivity timeout; connect-redis: ttl). */
export const SESSION_TTL = 3600;
