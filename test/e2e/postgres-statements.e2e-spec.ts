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
import { Browser } from '../support/http.js';
import { createTestDatabase, testPool, type TestDatabase } from '../support/postgres.js';

/**
 * What a request of the bench's scenarios (read, write, new session, login) costs in
 * PostgreSQL: every statement the engine sends through its pool is recorded. Each
 * `pool.query` is its own transaction (autocommit), so statements = transactions here; the
 * engine never runs BEGIN/COMMIT outside `migrate()`.
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

describe('PostgreSQL statements per request (the bench scenarios, Express)', () => {
  let db: TestDatabase;
  let pool: RecordingPool;
  let app: INestApplication;

  beforeAll(async () => {
    Logger.overrideLogger(['error', 'warn']);
    db = await createTestDatabase();
    pool = new RecordingPool(testPool(db.url));
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
    await db?.drop();
  });

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
  });

  it('write one key', async () => {
    const browser = await storedSession();
    const statements = await pool.between(async () => {
      expect((await browser.post('/write')).status).toBe(200);
    });
    // Resume, then one unlocked commit (lock check, fresh fence, the key cap counted, guard and
    // entry in one call): one WAL flush. No read of the session's keys first (capsGroupEntries).
    expect(statements).toEqual(['select metadata', 'write storage']);
  });

  it('new session + write one key', async () => {
    const browser = new Browser(app);
    const statements = await pool.between(async () => {
      expect((await browser.post('/write')).status).toBe(200);
    });
    expect(browser.cookie).toBeDefined();
    // Metadata and storage (with its creating guard) in one tick: one statement, one WAL flush.
    expect(statements).toEqual(['batch(write metadata, write storage)']);
  });

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
    // Resume; lock (UNLOGGED: no WAL flush) and read fresh; the old storage's guard check (the
    // fence) beside the read of its data to copy; then the old id dies in the same transaction
    // as the new storage is written; then the new metadata, with the old storage's flush; unlock.
    // 8 statements, 3 of them commits that wait for a WAL flush (5 before the batcher).
    const login = [
      'select metadata',
      'lock_acquire lock',
      'select metadata',
      'select storage',
      'write storage',
      'batch(remove metadata, write storage)',
      'batch(write metadata, flush storage)',
      'lock_release lock',
    ];
    expect(statements).toEqual(login);
    expect(again).toEqual(login);
  });
});
