import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';

/**
 * Packs the library as `npm pack` would publish it and type-checks small consumer apps against
 * the tarball with `skipLibCheck: false`: a consumer without the optional peers (`redis`,
 * `cache-manager`) must compile against the core entry, one with them must compile against the
 * engine entries, and one without `redis` that imports 'nest-session/redis' must fail for the
 * missing `redis` (which proves the peers are really absent from the first consumer).
 *
 * Everything happens in a fresh temporary directory: the build goes to a temporary outDir (not
 * the repository's dist/), the tarball is packed from a temporary copy of package.json, README
 * and that build, and each consumer links only the packages it declares from the repository's
 * node_modules. `preserveSymlinks` makes TypeScript resolve the linked packages' own imports
 * from the consumer's node_modules too, so a package the consumer did not link cannot leak in.
 */

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '../..');
const TSC = join(ROOT, 'node_modules/.bin/tsc');
const run = promisify(execFile);

/** What a consumer of the core needs: the peers, the dependencies and the types they import. */
const CORE_PACKAGES = [
  '@nestjs/common',
  '@nestjs/core',
  '@nestjs/schedule',
  'rxjs',
  '@standard-schema/spec',
  'reflect-metadata',
  'devalue',
  'cron',
  '@types/luxon',
  '@types/node',
  'undici-types',
];
/** What a consumer of the engines adds: node-redis with its parts, cache-manager with Keyv. */
const ENGINE_PACKAGES = [
  'redis',
  '@redis/client',
  '@redis/bloom',
  '@redis/json',
  '@redis/search',
  '@redis/time-series',
  'cache-manager',
  'keyv',
  '@keyv/serialize',
];

/** What a consumer of 'nest-session/postgres' that builds its own pool adds: node-postgres and its types. */
const POSTGRES_PACKAGES = ['pg', '@types/pg', 'pg-protocol', 'pg-types'];

const CONSUMER_TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    lib: ['ES2023'],
    strict: true,
    skipLibCheck: false,
    noEmit: true,
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    preserveSymlinks: true,
    types: ['node'],
  },
  include: ['src'],
};

const CORE_APP = `
import 'reflect-metadata';
import { Inject, Injectable, Module } from '@nestjs/common';
import { MemoryBackend, MemoryLocker, SessionInterface, SessionManager, SessionModule } from 'nest-session';

declare module 'nest-session' {
  interface SessionData {
    visits: number;
  }
}

@Injectable()
export class Visits {
  constructor(
    @Inject(SessionInterface) private readonly session: SessionInterface,
    private readonly manager: SessionManager,
  ) {}

  async count(): Promise<number> {
    const visits: number = ((await this.session.getData('visits')) ?? 0) + 1;
    await this.session.putData('visits', visits);
    return visits;
  }

  async endAllOf(user: string): Promise<number> {
    return this.manager.destroySessionsForUser(user, 'logged out everywhere');
  }
}

@Module({
  imports: [SessionModule.forRoot({ metadataBackend: new MemoryBackend(), storageBackend: new MemoryBackend(), locker: new MemoryLocker() })],
  providers: [Visits],
})
export class AppModule {}
`;

const ENGINES_APP = `
import { createCache } from 'cache-manager';
import { Keyv } from 'keyv';
import { createClient } from 'redis';
import { SessionModule, type SessionModuleOptions } from 'nest-session';
import { CacheManagerBackend } from 'nest-session/cache-manager';
import { createRedisSessionStores, RedisBackend, type RedisSessionStores } from 'nest-session/redis';

export async function onRedis(): Promise<SessionModuleOptions> {
  const stores: RedisSessionStores = await createRedisSessionStores({ url: 'redis://127.0.0.1:6379', prefix: 'app:' });
  return { metadataBackend: stores.metadataBackend, storageBackend: stores.storageBackend, locker: stores.locker };
}

export function onOwnClient(client: ReturnType<typeof createClient>): RedisBackend {
  return new RedisBackend({ client, prefix: 'own:' });
}

export const onCacheManager = SessionModule.forRoot({
  metadataBackend: new CacheManagerBackend({ cache: createCache({ stores: [new Keyv()] }), prefix: 'm-' }),
  storageBackend: new CacheManagerBackend({ cache: createCache({ stores: [new Keyv()] }), prefix: 's-' }),
});
`;

const POSTGRES_APP = `
import pg from 'pg';
import { SessionModule } from 'nest-session';
import { createPostgresSessionStores, PostgresBackend, PostgresLocker, POSTGRES_SCHEMA_SQL } from 'nest-session/postgres';

const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/app', statement_timeout: 2000 });
pool.on('error', () => undefined);

export const onOwnPool = SessionModule.forRootAsync({
  useFactory: async () => {
    const stores = await createPostgresSessionStores({ pool, schema: 'sessions', tablePrefix: 'app_' });
    await stores.migrate();
    return { metadataBackend: stores.metadataBackend, storageBackend: stores.storageBackend, locker: stores.locker };
  },
});
export const parts = [new PostgresBackend({ pool, namespace: 'm' }), new PostgresLocker({ pool })] as const;
export const sql: string = POSTGRES_SCHEMA_SQL;
`;

/** The engine's declarations name no type of pg: a consumer that only passes a URL needs neither pg's types nor pg to compile. */
const POSTGRES_URL_ONLY_APP = `
import { createPostgresSessionStores, type PostgresSessionStores } from 'nest-session/postgres';

export const stores: Promise<PostgresSessionStores> = createPostgresSessionStores({ connectionString: 'postgres://127.0.0.1/app' });
`;

/** The operations entries (health, metrics) with their optional peers, and the legacy takeover of the core. */
const OPERATIONS_APP = `
import { Injectable, Module } from '@nestjs/common';
import { TerminusModule, type HealthIndicatorResult } from '@nestjs/terminus';
import { ConnectRedisLoader, SessionModule, type LegacySessionLoader } from 'nest-session';
import { SessionHealthIndicator } from 'nest-session/terminus';
import { OpenTelemetrySessionMetrics } from 'nest-session/opentelemetry';

const loader: LegacySessionLoader = new ConnectRedisLoader({ client: { getdel: async (_key: string) => null } });

@Injectable()
export class Health {
  constructor(private readonly sessions: SessionHealthIndicator) {}
  check(): Promise<HealthIndicatorResult> {
    return this.sessions.isHealthy('sessions', { timeout: 500 });
  }
}

@Module({
  imports: [
    TerminusModule,
    SessionModule.forRoot({ instrumentation: new OpenTelemetrySessionMetrics(), legacy: { secrets: ['s'], loader } }),
  ],
  providers: [SessionHealthIndicator, Health],
})
export class AppModule {}
`;

const REDIS_WITHOUT_REDIS_APP = `
import { createRedisSessionStores } from 'nest-session/redis';

export const stores = createRedisSessionStores({ url: 'redis://127.0.0.1:6379' });
`;

let work: string;
let tarball: string;

async function link(consumer: string, name: string): Promise<void> {
  const target = join(consumer, 'node_modules', name);
  await mkdir(dirname(target), { recursive: true });
  await symlink(join(ROOT, 'node_modules', name), target, 'dir');
}

/** Creates a consumer app with the packed library and the given packages, and runs tsc over it. */
async function typeCheck(name: string, source: string, packages: string[]): Promise<{ ok: boolean; output: string }> {
  const consumer = join(work, name);
  await mkdir(join(consumer, 'src'), { recursive: true });
  await mkdir(join(consumer, 'node_modules/nest-session'), { recursive: true });
  await run('tar', ['-xzf', tarball, '-C', join(consumer, 'node_modules/nest-session'), '--strip-components=1']);
  for (const pkg of packages) await link(consumer, pkg);
  await writeFile(join(consumer, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
  await writeFile(join(consumer, 'tsconfig.json'), JSON.stringify(CONSUMER_TSCONFIG));
  await writeFile(join(consumer, 'src/app.ts'), source);
  try {
    const { stdout, stderr } = await run(TSC, ['-p', consumer], { cwd: consumer });
    return { ok: true, output: stdout + stderr };
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    return { ok: false, output: stdout + stderr };
  }
}

describe('the packed library, as a consumer type-checks it (skipLibCheck: false)', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'nest-session-consumer-'));
    const pkg = join(work, 'package');
    await mkdir(pkg);
    await run(TSC, ['-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist'), '--sourceMap', 'false']);
    await copyFile(join(ROOT, 'package.json'), join(pkg, 'package.json'));
    await copyFile(join(ROOT, 'README.md'), join(pkg, 'README.md'));
    // npm pack applies package.json's `files`; --ignore-scripts keeps it from running a build.
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: pkg });
    const [packed] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
    tarball = join(work, packed.filename);
    const paths = packed.files.map((f) => f.path);
    expect(paths).toContain('dist/lib/index.d.ts');
    expect(paths.filter((p) => !p.startsWith('dist/lib/') && !['package.json', 'README.md'].includes(p))).toEqual([]);
  }, 90_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('compiles a consumer of the core that has neither redis nor cache-manager installed', async () => {
    const result = await typeCheck('core', CORE_APP, CORE_PACKAGES);
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
    const installed = await readdir(join(work, 'core/node_modules'));
    expect(installed).not.toContain('redis');
    expect(installed).not.toContain('cache-manager');
  }, 60_000);

  it('compiles a consumer of nest-session/redis and nest-session/cache-manager that has both peers', async () => {
    const result = await typeCheck('engines', ENGINES_APP, [...CORE_PACKAGES, ...ENGINE_PACKAGES]);
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  }, 60_000);

  it('compiles a consumer of nest-session/postgres that passes its own pg.Pool (pg and @types/pg installed)', async () => {
    const result = await typeCheck('postgres', POSTGRES_APP, [...CORE_PACKAGES, ...POSTGRES_PACKAGES]);
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  }, 60_000);

  it('compiles a consumer of nest-session/postgres that has neither pg nor @types/pg (a URL only)', async () => {
    const result = await typeCheck('postgres-url', POSTGRES_URL_ONLY_APP, CORE_PACKAGES);
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  }, 60_000);

  it('compiles a consumer of nest-session/terminus and nest-session/opentelemetry with their peers', async () => {
    const result = await typeCheck('operations', OPERATIONS_APP, [...CORE_PACKAGES, '@nestjs/terminus', '@opentelemetry/api']);
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  }, 60_000);

  it("fails a consumer that imports nest-session/redis without redis: TS2307 for 'redis'", async () => {
    const result = await typeCheck('no-redis', REDIS_WITHOUT_REDIS_APP, CORE_PACKAGES);
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/error TS2307: Cannot find module 'redis'/);
  }, 60_000);
});
