import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, HttpCode, Inject, Logger, Module, Post, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { SessionInterface, SessionModule } from 'nest-session';
import {
  createPostgresSessionStores,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQuery,
  type PostgresResult,
} from 'nest-session/postgres';
import pg from 'pg';
import { Browser } from '../support/http.js';
import { testPool } from '../support/postgres.js';
import { PostgresServer } from '../support/postgres-server.js';

/**
 * What a request of the bench's scenarios (read, write, new session, login) costs in
 * PostgreSQL: every statement the engine sends through its pool is recorded. Each
 * `pool.query` is its own transaction (autocommit), so statements = transactions here; the
 * engine never runs BEGIN/COMMIT outside `migrate()`. And the WAL flushes the requests wait
 * for (`pg_stat_wal.wal_sync`, about 5 ms each on the bench's disk), on a private cluster
 * where nothing else runs: the WAL writer's timer and autovacuum are off, so a flush counted
 * is one a committing statement waited for (a commit that wrote no WAL, such as the lock
 * traffic on UNLOGGED tables, waits for none).
 */
const PREFIX = 'st:';

function areaOf(namespace: unknown): string {
  const name = typeof namespace === 'string' ? namespace : '';
  return name === `${PREFIX}m` ? 'metadata' : name === `${PREFIX}s` ? 'storage' : name.startsWith(PREFIX) ? 'lock' : '';
}

/**
 * One recorded statement: which function (or statement) on which area (metadata, storage,
 * lock); a `batch` call lists its operations: `batch(write storage, remove metadata)`.
 */
function describeStatement(query: PostgresQuery): string {
  const text = query.text;
  const call = /"nest_session_([a-z_]+)"\(/.exec(text)?.[1];
  if (call === 'batch') {
    const [kinds, namespaces] = query.values as [string[], string[]];
    return `batch(${kinds.map((kind, i) => `${kind} ${areaOf(namespaces[i])}`).join(', ')})`;
  }
  const area = areaOf(query.values?.[0]);
  const verb = call ?? text.trim().split(/\s+/, 1)[0]!.toLowerCase();
  return area === '' ? verb : `${verb} ${area}`;
}

/** A pool that records the statements run through `query()` (the engine's only path besides LISTEN). */
class RecordingPool implements PostgresPool {
  readonly log: string[] = [];

  constructor(private readonly inner: PostgresPool) {}

  query(query: PostgresQuery): Promise<PostgresResult> {
    this.log.push(describeStatement(query));
    return this.inner.query(query);
  }

  connect(): Promise<PostgresPoolClient> {
    return this.inner.connect();
  }

  end(): Promise<void> {
    return this.inner.end();
  }

  async between(action: () => Promise<void>): Promise<string[]> {
    const start = this.log.length;
    await action();
    return this.log.slice(start);
  }
}

let counter = 0;

/** The bench's routes (bench/apps/ours.app.ts), through the public SessionInterface. */
@Controller()
class BenchLikeController {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  @Get('read')
  async read(): Promise<{ value: number | null }> {
    if (!this.session.isStarted()) return { value: null };
    return { value: ((await this.session.getData('n')) as number | undefined) ?? null };
  }

  @Post('write')
  @HttpCode(200)
  async write(): Promise<{ ok: boolean }> {
    this.session.start();
    await this.session.putData('n', ++counter);
    return { ok: true };
  }

  @Post('login')
  @HttpCode(200)
  login(): { ok: boolean } {
    this.session.bindToUser(`user${++counter}`);
    return { ok: true };
  }
}

/** Requests per WAL flush count (a stray flush of the WAL writer's timer is then within the margin). */
const REPEAT = 5;

describe('PostgreSQL statements and WAL flushes per request (the bench scenarios, Express)', () => {
  let server: PostgresServer;
  let admin: pg.Client;
  let pool: RecordingPool;
  let app: INestApplication;

  beforeAll(async () => {
    Logger.overrideLogger(['error', 'warn']);
    server = await PostgresServer.start();
    admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query(`ALTER SYSTEM SET wal_writer_delay = '10s'`);
    await admin.query(`ALTER SYSTEM SET autovacuum = off`);
    await admin.query('SELECT pg_reload_conf()');
    // Connections close when idle: an exiting backend reports its WAL statistics at once (an
    // idle one may wait 10 s when it reported less than a second before).
    pool = new RecordingPool(testPool(server.url, { idleTimeoutMillis: 200 }));
    const stores = await createPostgresSessionStores({ pool, prefix: PREFIX });
    await stores.migrate();
    @Module({
      imports: [
        SessionModule.forRoot({
          cookie: { name: 'sid' },
          metadataBackend: stores.metadataBackend,
          storageBackend: stores.storageBackend,
          locker: stores.locker,
          garbageCollection: { probability: 0, cron: false },
        }),
      ],
      controllers: [BenchLikeController],
    })
    class BenchLikeModule {}
    app = await NestFactory.create(BenchLikeModule, new ExpressAdapter(), { logger: ['error', 'warn'] });
    await app.init();
  });

  afterAll(async () => {
    await app?.close();
    await pool?.end();
    await admin?.end();
    await server?.destroy();
  }, 30_000);

  /** The WAL flushes `work` waited for, read once the backends that did it have exited and reported. */
  async function walFlushes(work: () => Promise<void>): Promise<number> {
    const read = async () => Number((await admin.query<{ n: string }>('SELECT wal_sync AS n FROM pg_stat_wal')).rows[0]!.n);
    const settled = async () => {
      let last = await read();
      for (let stable = 0, i = 0; stable < 6 && i < 40; i++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        const now = await read();
        stable = now === last ? stable + 1 : 0;
        last = now;
      }
      return last;
    };
    const before = await settled();
    await work();
    return (await settled()) - before;
  }

  /** `request` REPEAT times, each on a fresh stored session from `session()`; answers the flushes. */
  async function flushesOf(session: () => Promise<Browser>, request: (browser: Browser) => Promise<void>): Promise<number> {
    const browsers: Browser[] = [];
    for (let i = 0; i < REPEAT; i++) browsers.push(await session());
    return walFlushes(async () => {
      for (const browser of browsers) await request(browser);
    });
  }

  async function storedSession(): Promise<Browser> {
    const browser = new Browser(app);
    expect((await browser.post('/write')).status).toBe(200);
    expect(browser.cookie).toBeDefined();
    return browser;
  }

  it('read one key', async () => {
    const browser = await storedSession();
    const statements = await pool.between(async () => {
      expect((await browser.get('/read')).body).toEqual({ value: expect.any(Number) });
    });
    // The metadata (resume), then the one key the handler reads: no transaction that writes.
    expect(statements).toEqual(['select metadata', 'select storage']);
    const flushes = await flushesOf(storedSession, async (browser) => {
      expect((await browser.get('/read')).status).toBe(200);
    });
    expect(flushes).toBeLessThanOrEqual(1);
  }, 30_000);

  it('write one key', async () => {
    const browser = await storedSession();
    const statements = await pool.between(async () => {
      expect((await browser.post('/write')).status).toBe(200);
    });
    // Resume, then one unlocked commit (lock check, fresh fence, the key cap counted, guard and
    // entry in one call): one WAL flush. No read of the session's keys first (capsGroupEntries).
    expect(statements).toEqual(['select metadata', 'write storage']);
    const flushes = await flushesOf(storedSession, async (browser) => {
      expect((await browser.post('/write')).status).toBe(200);
    });
    expect(flushes).toBeGreaterThanOrEqual(REPEAT);
    expect(flushes).toBeLessThanOrEqual(REPEAT + 1);
  }, 30_000);

  it('new session + write one key', async () => {
    const browser = new Browser(app);
    const statements = await pool.between(async () => {
      expect((await browser.post('/write')).status).toBe(200);
    });
    expect(browser.cookie).toBeDefined();
    // Metadata and storage (with its creating guard) in one tick: one statement, one WAL flush.
    expect(statements).toEqual(['batch(write metadata, write storage)']);
    const flushes = await flushesOf(
      async () => new Browser(app),
      async (browser) => {
        expect((await browser.post('/write')).status).toBe(200);
      },
    );
    expect(flushes).toBeGreaterThanOrEqual(REPEAT);
    expect(flushes).toBeLessThanOrEqual(REPEAT + 1);
  }, 30_000);

  it('login (id renewal) of a stored session', async () => {
    const browser = await storedSession();
    const before = browser.cookie;
    const statements = await pool.between(async () => {
      expect((await browser.post('/login')).status).toBe(200);
    });
    expect(browser.cookie).not.toBe(before);
    const again = await pool.between(async () => {
      expect((await browser.post('/login')).status).toBe(200);
    });
    // Resume; lock (UNLOGGED: no WAL flush) and read fresh; the old storage's guard check (it
    // raises the guard's fence to the lock's) beside the read of its data to copy; then the
    // whole chain in one statement: the guard checked again (unchanged: nothing written), the
    // new storage, the old id removed, the new metadata, the old storage flushed, each only if
    // the ones it requires applied; unlock. 7 statements, 2 of them commits that wait for a WAL
    // flush (8 and 3 with a statement per step of the chain, 10 and 5 before the batcher).
    const login = [
      'select metadata',
      'lock_acquire lock',
      'select metadata',
      'select storage',
      'write storage',
      'batch(write storage, write storage, remove metadata, write metadata, flush storage)',
      'lock_release lock',
    ];
    expect(statements).toEqual(login);
    expect(again).toEqual(login);
    const flushes = await flushesOf(storedSession, async (browser) => {
      expect((await browser.post('/login')).status).toBe(200);
    });
    expect(flushes).toBeGreaterThanOrEqual(2 * REPEAT);
    expect(flushes).toBeLessThanOrEqual(2 * REPEAT + 1);
  }, 30_000);
});
