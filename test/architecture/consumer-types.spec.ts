import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';

/**
 * Packs the library as `npm pack` would publish it and type-checks small consumer apps against
 * the tarball with `skipLibCheck: false`: a consumer without the optional peers (`redis`,
 * `cache-manager`, ...) must compile against the core entry, one with ioredis and without
 * `redis` against 'nest-session/redis', one with the peers against the engine entries (with
 * node-redis' own option types passed in), and one that imports `redis` without having it must
 * fail (which proves the peers are really absent from the others). Beside the compiles, the
 * emitted declarations of every `exports` entry are scanned, imports followed, for the packages
 * they name: an entry may name only the required peers and its own optional peer.
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
/** One tsc run over a consumer takes 10-60 s on a loaded 2-core machine. */
const COMPILE_TIMEOUT = 180_000;

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

/** 'nest-session/redis' with neither node-redis nor ioredis installed (the URL path loads `redis` at run time only). */
const REDIS_WITHOUT_CLIENTS_APP = `
import { createRedisSessionStores, type RedisSessionClientOptions, type RedisSessionClusterOptions } from 'nest-session/redis';

const clientOptions: RedisSessionClientOptions = { name: 'app', database: 1, socket: { tls: true, host: 'redis.internal', servername: 'redis.internal' } };
const cluster: RedisSessionClusterOptions = { rootNodes: [{ url: 'redis://10.0.0.1:7000' }], defaults: { password: 'secret', socket: { keepAlive: true } } };
export const stores = createRedisSessionStores({ url: 'redis://127.0.0.1:6379', clientOptions });
export const onCluster = createRedisSessionStores({ cluster });
`;

/** An ioredis-only app: its own client, standalone and cluster, and the hand-built parts. */
const IOREDIS_APP = `
import { Redis, Cluster } from 'ioredis';
import { createRedisSessionStores, fromIoRedis, RedisBackend, RedisLocker, type RedisSessionStores } from 'nest-session/redis';

const client = new Redis('redis://127.0.0.1:6379', { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
export const stores: Promise<RedisSessionStores> = createRedisSessionStores({ client, prefix: 'app:' });
export const onCluster = createRedisSessionStores({ client: new Cluster([{ host: '127.0.0.1', port: 7000 }], { shardedSubscribers: true }) });
const adapted = fromIoRedis(client);
export const parts = [new RedisBackend({ client: adapted, prefix: 'own:' }), new RedisLocker({ client: adapted })] as const;
// The raw clients, as the factory takes them.
const raw = new Cluster([{ host: '127.0.0.1', port: 7000 }], { shardedSubscribers: true });
export const rawParts = [
  new RedisBackend({ client, prefix: 'raw:' }),
  new RedisLocker({ client, subscriber: client.duplicate() }),
  new RedisBackend({ client: raw }),
  new RedisLocker({ client: raw }),
] as const;
`;

/** node-redis' own option and client types fit the engine's (checked with the node-redis the repository has). */
const NODE_REDIS_TYPES_APP = `
import { createClient, createCluster, type RedisClientOptions, type RedisClusterOptions } from 'redis';
import { createRedisSessionStores } from 'nest-session/redis';

const clientOptions: Omit<RedisClientOptions, 'url'> = { name: 'app', database: 2, RESP: 3, socket: { tls: true, host: 'h', rejectUnauthorized: true } };
const clusterOptions: RedisClusterOptions = { rootNodes: [{ url: 'redis://h:7000' }], defaults: { username: 'u', password: 'p' }, useReplicas: true };
export const fromOptions = [
  createRedisSessionStores({ url: 'redis://h:6379', clientOptions }),
  createRedisSessionStores({ cluster: clusterOptions }),
];

export async function ownClients(): Promise<void> {
  const resp3 = createClient({ url: 'redis://h:6379', RESP: 3 });
  const stores = await createRedisSessionStores({ client: resp3 });
  // The client's own type flows through, with every node-redis command on it.
  const same: typeof resp3 = stores.client;
  await same.keys('app:*');
  const cluster = createCluster({ rootNodes: [{ url: 'redis://h:7000' }] });
  const onCluster = await createRedisSessionStores({ client: cluster });
  await onCluster.client.get('k');
}
`;

/** The negative control: a consumer that imports \`redis\` without having it fails, so the others really lack it. */
const IMPORTS_MISSING_REDIS_APP = `
import { createClient } from 'redis';

export const client = createClient();
`;

/** What an ioredis consumer adds: ioredis and the packages its declarations import. */
const IOREDIS_PACKAGES = ['ioredis', 'redis-errors', 'denque'];

/**
 * The packages an entry's declarations may name beyond the required peers, dependencies and
 * Node's built-ins: only its own optional peer. A new entry must be added here.
 */
const ENTRY_OPTIONAL_PEERS: Record<string, string[]> = {
  '.': [],
  './redis': [],
  './cache-manager': ['cache-manager'],
  './postgres': [],
  './terminus': ['@nestjs/terminus'],
  './opentelemetry': ['@opentelemetry/api'],
  './cli': ['nest-commander'],
};

/** The package a bare specifier names: `@scope/name` or `name` (`node:` built-ins as `node:`). */
function packageOf(specifier: string): string {
  if (specifier.startsWith('node:')) return 'node:';
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** Every module specifier a declaration file names: imports, re-exports, \`import('x')\` types, \`/// <reference types>\`. */
function specifiersOf(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found = source.typeReferenceDirectives.map((ref) => ref.fileName);
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const expression = node.moduleReference.expression;
      if (ts.isStringLiteral(expression)) found.push(expression.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/**
 * The packages the declarations reachable from `entry` (a .d.ts in the package) name, following
 * relative imports and the package's own entries (`nest-session/x`) through `exports`.
 */
async function packagesNamedFrom(
  packageDir: string,
  entry: string,
  exportsMap: Record<string, { types?: string }>,
): Promise<Map<string, string>> {
  const named = new Map<string, string>(); // package -> first file naming it
  const seen = new Set<string>();
  const queue = [join(packageDir, entry)];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const specifier of specifiersOf(file, await readFile(file, 'utf8'))) {
      if (specifier.startsWith('.')) {
        queue.push(resolve(dirname(file), specifier.replace(/\.js$/, '.d.ts')));
      } else if (specifier === 'nest-session' || specifier.startsWith('nest-session/')) {
        const types = exportsMap['.' + specifier.slice('nest-session'.length)]?.types;
        if (types === undefined) throw new Error(`${file} imports ${specifier}, which is not an entry`);
        queue.push(join(packageDir, types));
      } else if (!named.has(packageOf(specifier))) {
        named.set(packageOf(specifier), relative(packageDir, file));
      }
    }
  }
  return named;
}

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
  }, COMPILE_TIMEOUT);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it(
    'compiles a consumer of the core that has neither redis nor cache-manager installed',
    async () => {
      const result = await typeCheck('core', CORE_APP, CORE_PACKAGES);
      expect(result.output).toBe('');
      expect(result.ok).toBe(true);
      const installed = await readdir(join(work, 'core/node_modules'));
      expect(installed).not.toContain('redis');
      expect(installed).not.toContain('cache-manager');
    },
    COMPILE_TIMEOUT,
  );

  it(
    'compiles a consumer of nest-session/redis and nest-session/cache-manager that has both peers',
    async () => {
      const result = await typeCheck('engines', ENGINES_APP, [...CORE_PACKAGES, ...ENGINE_PACKAGES]);
      expect(result.output).toBe('');
      expect(result.ok).toBe(true);
    },
    COMPILE_TIMEOUT,
  );

  it(
    'compiles a consumer of nest-session/postgres that passes its own pg.Pool (pg and @types/pg installed)',
    async () => {
      const result = await typeCheck('postgres', POSTGRES_APP, [...CORE_PACKAGES, ...POSTGRES_PACKAGES]);
      expect(result.output).toBe('');
      expect(result.ok).toBe(true);
    },
    COMPILE_TIMEOUT,
  );

  it(
    'compiles a consumer of nest-session/postgres that has neither pg nor @types/pg (a URL only)',
    async () => {
      const result = await typeCheck('postgres-url', POSTGRES_URL_ONLY_APP, CORE_PACKAGES);
      expect(result.output).toBe('');
      expect(result.ok).toBe(true);
    },
    COMPILE_TIMEOUT,
  );

  it(
    'compiles a consumer of nest-session/terminus and nest-session/opentelemetry with their peers',
    async () => {
      const result = await typeCheck('operations', OPERATIONS_APP, [...CORE_PACKAGES, '@nestjs/terminus', '@opentelemetry/api']);
      expect(result.output).toBe('');
      expect(result.ok).toBe(true);
    },
    COMPILE_TIMEOUT,
  );

  it(
    'compiles a consumer of nest-session/redis that has neither redis nor ioredis (a URL, options of its own types)',
    async () => {
      const result = await typeCheck('redis-url', REDIS_WITHOUT_CLIENTS_APP, CORE_PACKAGES);
      expect(result.output).toBe('');
      expect(result.ok).toBe(true);
    },
    COMPILE_TIMEOUT,
  );

  it(
    'compiles an ioredis consumer of nest-session/redis that does not have redis',
    async () => {
      const result = await typeCheck('ioredis', IOREDIS_APP, [...CORE_PACKAGES, ...IOREDIS_PACKAGES]);
      expect(result.output).toBe('');
      expect(result.ok).toBe(true);
      const installed = await readdir(join(work, 'ioredis/node_modules'));
      expect(installed).not.toContain('redis');
      expect(installed).not.toContain('@redis');
    },
    COMPILE_TIMEOUT,
  );

  it(
    "accepts node-redis' own option types and clients (RESP 3, cluster), and hands the client back with its type",
    async () => {
      const result = await typeCheck('node-redis-types', NODE_REDIS_TYPES_APP, [...CORE_PACKAGES, ...ENGINE_PACKAGES]);
      expect(result.output).toBe('');
      expect(result.ok).toBe(true);
    },
    COMPILE_TIMEOUT,
  );

  it(
    'fails a consumer that imports redis without having it (TS2307): the consumers above really lack it',
    async () => {
      const result = await typeCheck('imports-missing-redis', IMPORTS_MISSING_REDIS_APP, CORE_PACKAGES);
      expect(result.ok).toBe(false);
      expect(result.output).toMatch(/error TS2307: Cannot find module 'redis'/);
    },
    COMPILE_TIMEOUT,
  );

  it(
    'names in the declarations of each entry only the required peers, the dependencies, Node and its own optional peer',
    async () => {
      const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
        exports: Record<string, { types?: string }>;
        dependencies: Record<string, string>;
        peerDependencies: Record<string, string>;
        peerDependenciesMeta: Record<string, { optional?: boolean }>;
      };
      const entries = Object.keys(manifest.exports).filter((e) => e !== './package.json');
      expect(Object.keys(ENTRY_OPTIONAL_PEERS).sort()).toEqual(entries.sort());
      const optional = Object.keys(manifest.peerDependencies).filter((p) => manifest.peerDependenciesMeta[p]?.optional === true);
      expect(optional).toEqual(
        expect.arrayContaining([
          'redis',
          'ioredis',
          'pg',
          'cache-manager',
          '@nestjs/terminus',
          '@opentelemetry/api',
          'nest-commander',
        ]),
      );
      // The packages whose types a consumer of the core gets anyway (the types of `cron` name luxon).
      const required = [
        'node:',
        'node',
        ...Object.keys(manifest.peerDependencies).filter((p) => !optional.includes(p)),
        ...Object.keys(manifest.dependencies),
      ];
      const packageDir = join(work, 'package');
      const found: Record<string, Record<string, string>> = {};
      for (const entry of entries) {
        const named = await packagesNamedFrom(packageDir, manifest.exports[entry]!.types!, manifest.exports);
        const allowed = [...required, ...ENTRY_OPTIONAL_PEERS[entry]!];
        found[entry] = Object.fromEntries([...named].filter(([pkg]) => !allowed.includes(pkg)));
      }
      expect(found).toEqual(Object.fromEntries(entries.map((e) => [e, {}])));
    },
    COMPILE_TIMEOUT,
  );
});
