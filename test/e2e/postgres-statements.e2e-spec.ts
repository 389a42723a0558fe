import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, HttpCode, Inject, Logger, Module, Post, Req, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import connectPgSimple from 'connect-pg-simple';
import session from 'express-session';
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
 * What a request of the bench's scenarios (read, write, new session, login, and "hot": many
 * parallel writes to one session) costs in PostgreSQL, for ours and for the bench's peer
 * (express-session + connect-pg-simple), on a private cluster where nothing else runs. Every
 * figure is a count, the same on every run and machine, unlike the bench's timings:
 *
 * - round trips: waits on the database on a request's path (statements sent while another of
 *   the same request is in flight share its round trip);
 * - statements: what the app sends through its pool; each `pool.query` is its own transaction
 *   (autocommit: neither app runs BEGIN/COMMIT on these paths), so statements = transactions;
 * - server statements: what PostgreSQL executes for them, the statements inside our plpgsql
 *   functions included (`pg_stat_statements` with `track = all`);
 * - xids: transaction ids assigned, i.e. transactions (and subtransactions) that wrote;
 * - WAL records, and the WAL flushes the requests waited for (`pg_stat_wal.wal_sync`, about
 *   5 ms each on the bench's disk; the WAL writer's timer and autovacuum are off, so a flush
 *   counted is one a committing statement waited for; a commit that wrote no WAL, such as the
 *   lock traffic on UNLOGGED tables, waits for none).
 *
 * The table is printed (`console.log`); the assertions pin ours and the peer.
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
function describeStatement(text: string, values: readonly unknown[] | undefined): string {
  const call = /"nest_session_([a-z_]+)"\(/.exec(text)?.[1];
  if (call === 'batch') {
    const [kinds, namespaces] = values as [string[], string[]];
    return `batch(${kinds.map((kind, i) => `${kind} ${areaOf(namespaces[i])}`).join(', ')})`;
  }
  const area = areaOf(values?.[0]);
  const verb = call ?? text.trim().split(/\s+/, 1)[0]!.toLowerCase();
  return area === '' ? verb : `${verb} ${area}`;
}

/**
 * A pool that records the statements run through `query()` (the only path of both apps
 * besides our locker's LISTEN connection) and counts round trips: a statement sent while none
 * is in flight starts one.
 */
class RecordingPool implements PostgresPool {
  readonly log: string[] = [];
  roundTrips = 0;
  private inFlight = 0;

  constructor(private readonly inner: pg.Pool) {}

  query(query: PostgresQuery | string, values?: unknown[]): Promise<PostgresResult> {
    const text = typeof query === 'string' ? query : query.text;
    this.log.push(describeStatement(text, typeof query === 'string' ? values : query.values));
    if (this.inFlight++ === 0) this.roundTrips++;
    const result = typeof query === 'string' ? this.inner.query(query, values) : this.inner.query(query as pg.QueryConfig);
    return result.finally(() => {
      this.inFlight--;
    });
  }

  connect(): Promise<PostgresPoolClient> {
    return this.inner.connect();
  }

  end(): Promise<void> {
    return this.inner.end();
  }

  /** The statements `action` sent (also those it sent without waiting for them, such as a lock release). */
  async between(action: () => Promise<void>): Promise<string[]> {
    const start = this.log.length;
    await action();
    await this.idle();
    return this.log.slice(start);
  }

  /** Once no statement is in flight: a request's last statements may be sent without being waited for. */
  async idle(): Promise<void> {
    while (this.inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

let counter = 0;

/** The bench's routes (bench/apps/ours.app.ts), through the public SessionInterface. */
@Controller()
class OursController {
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

  /** Not a bench route: a commit that writes metadata (a tag), ours only. */
  @Post('tag')
  @HttpCode(200)
  async tag(): Promise<{ ok: boolean }> {
    await this.session.addTag(`tag${++counter}`);
    return { ok: true };
  }
}

interface PeerRequest {
  session: session.Session & { n?: number; user?: string };
}

/** The peer's routes (bench/apps/express-session.app.ts), through `req.session`. */
@Controller()
class PeerController {
  @Get('read')
  read(@Req() req: PeerRequest): { value: number | null } {
    return { value: req.session.n ?? null };
  }

  @Post('write')
  @HttpCode(200)
  write(@Req() req: PeerRequest): { ok: boolean } {
    req.session.n = ++counter;
    return { ok: true };
  }

  /** Login as express-session's README shows it: regenerate (new id), then store the user. */
  @Post('login')
  @HttpCode(200)
  async login(@Req() req: PeerRequest): Promise<{ ok: boolean }> {
    await new Promise<void>((resolve, reject) => req.session.regenerate((error?: Error) => (error ? reject(error) : resolve())));
    req.session.user = `user${++counter}`;
    return { ok: true };
  }
}

@Module({ controllers: [PeerController] })
class PeerModule {}

/** What one request costs, averaged over the requests of a measurement. */
interface Cost {
  readonly roundTrips: number;
  readonly statements: number;
  readonly serverStatements: number;
  readonly xids: number;
  readonly walRecords: number;
  readonly walFlushes: number;
}

/** Requests per measurement, each on a fresh stored session (a stray flush of the WAL writer's timer is then within the margin). */
const REPEAT = 5;
/** Parallel requests of the "hot" scenario, all on one session. */
const HOT = 8;

type Scenario = 'read' | 'write' | 'new session' | 'login' | 'hot' | 'tag commit';
type AppName = 'ours' | 'peer';

describe('PostgreSQL round trips, statements and transactions per request (the bench scenarios, Express): ours and connect-pg-simple', () => {
  let server: PostgresServer;
  let admin: pg.Client;
  const pools = {} as Record<AppName, RecordingPool>;
  const apps = {} as Record<AppName, INestApplication>;
  const costs = new Map<string, Cost>();

  beforeAll(async () => {
    Logger.overrideLogger(['error', 'warn']);
    server = await PostgresServer.start();
    const settings = new pg.Client({ connectionString: server.url });
    await settings.connect();
    await settings.query(`ALTER SYSTEM SET wal_writer_delay = '10s'`);
    await settings.query(`ALTER SYSTEM SET autovacuum = off`);
    await settings.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
    await settings.end();
    await server.stop('fast');
    await server.launch();
    admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query('CREATE EXTENSION pg_stat_statements');
    await admin.query(`ALTER SYSTEM SET pg_stat_statements.track = 'all'`);
    await admin.query('SELECT pg_reload_conf()');
    await admin.query('CREATE SCHEMA peer');

    // Connections close when idle: an exiting backend reports its WAL statistics at once (an
    // idle one may wait 10 s when it reported less than a second before).
    pools.ours = new RecordingPool(testPool(server.url, { idleTimeoutMillis: 200 }));
    const stores = await createPostgresSessionStores({ pool: pools.ours, prefix: PREFIX });
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
      controllers: [OursController],
    })
    class OursModule {}
    apps.ours = await NestFactory.create(OursModule, new ExpressAdapter(), { logger: ['error', 'warn'] });
    await apps.ours.init();

    // The peer as the bench sets it up (bench/apps/express-session-postgres.app.ts), without its pruning timer.
    pools.peer = new RecordingPool(testPool(server.url, { idleTimeoutMillis: 200 }));
    const PgStore = connectPgSimple(session);
    const store = new PgStore({
      pool: pools.peer as unknown as pg.Pool,
      schemaName: 'peer',
      tableName: 'session',
      createTableIfMissing: true,
      pruneSessionInterval: false,
      ttl: 3600,
    });
    const peer = await NestFactory.create<NestExpressApplication>(PeerModule, new ExpressAdapter(), {
      logger: ['error', 'warn'],
    });
    peer.use(
      session({
        name: 'sid',
        secret: 'statements-secret-0123456789abcdef',
        resave: false,
        saveUninitialized: false,
        store,
        cookie: { httpOnly: true, sameSite: 'lax', secure: false, path: '/' },
      }),
    );
    await peer.init();
    apps.peer = peer;
  }, 60_000);

  afterAll(async () => {
    await apps.ours?.close();
    await apps.peer?.close();
    await pools.peer?.end();
    await admin?.end();
    await server?.destroy();
  }, 30_000);

  afterAll(() => {
    const scenarios: Scenario[] = ['read', 'write', 'new session', 'login', 'hot', 'tag commit'];
    const columns: [keyof Cost, string][] = [
      ['roundTrips', 'round trips'],
      ['statements', 'statements'],
      ['serverStatements', 'server stmts'],
      ['xids', 'xids'],
      ['walRecords', 'WAL records'],
      ['walFlushes', 'WAL flushes'],
    ];
    const lines = [`per request      app   ${columns.map(([, label]) => label.padStart(12)).join(' ')}`];
    for (const scenario of scenarios) {
      for (const app of ['ours', 'peer'] as const) {
        const cost = costs.get(`${scenario} ${app}`);
        if (cost === undefined) continue;
        const cells = columns.map(([key]) =>
          (Number.isNaN(cost[key]) ? '-' : (Math.round(cost[key] * 10) / 10).toString()).padStart(12),
        );
        lines.push(`${scenario.padEnd(16)} ${app.padEnd(5)} ${cells.join(' ')}`);
      }
    }
    console.log(lines.join('\n'));
  });

  /** Server-side counters: statements executed (nested ones too), WAL records, xids assigned, WAL flushes. */
  async function serverCounters(): Promise<{ statements: number; walRecords: number; xid: number }> {
    const { rows } = await admin.query<{ statements: string | null; wal: string | null; xid: string }>(
      `SELECT (SELECT sum(calls) FROM pg_stat_statements
                 WHERE query NOT ILIKE '%pg_stat%' AND query NOT ILIKE '%pg_current_snapshot%') AS statements,
              (SELECT sum(wal_records) FROM pg_stat_statements
                 WHERE toplevel AND query NOT ILIKE '%pg_stat%' AND query NOT ILIKE '%pg_current_snapshot%') AS wal,
              pg_snapshot_xmax(pg_current_snapshot())::text AS xid`,
    );
    const row = rows[0]!;
    return { statements: Number(row.statements ?? 0), walRecords: Number(row.wal ?? 0), xid: Number(row.xid) };
  }

  /** The WAL flushes so far, read once the backends that did them have exited and reported. */
  async function settledWalFlushes(): Promise<number> {
    const read = async () => Number((await admin.query<{ n: string }>('SELECT wal_sync AS n FROM pg_stat_wal')).rows[0]!.n);
    let last = await read();
    for (let stable = 0, i = 0; stable < 6 && i < 40; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      const now = await read();
      stable = now === last ? stable + 1 : 0;
      last = now;
    }
    return last;
  }

  /** What `work` costs, divided by the `requests` it makes; recorded for the table. */
  async function measure(name: string, app: AppName, requests: number, work: () => Promise<void>): Promise<Cost> {
    const pool = pools[app];
    const flushes = await settledWalFlushes();
    const before = await serverCounters();
    const statements = pool.log.length;
    const roundTrips = pool.roundTrips;
    await work();
    const after = await serverCounters();
    const cost: Cost = {
      roundTrips: (pool.roundTrips - roundTrips) / requests,
      statements: (pool.log.length - statements) / requests,
      serverStatements: (after.statements - before.statements) / requests,
      xids: (after.xid - before.xid) / requests,
      walRecords: (after.walRecords - before.walRecords) / requests,
      walFlushes: ((await settledWalFlushes()) - flushes) / requests,
    };
    costs.set(`${name} ${app}`, cost);
    return cost;
  }

  async function storedSession(app: AppName): Promise<Browser> {
    const browser = new Browser(apps[app]);
    expect((await browser.post('/write')).status).toBe(200);
    expect(browser.cookie).toBeDefined();
    return browser;
  }

  /** REPEAT requests, each on a fresh session from `session()` (prepared before the measurement). */
  async function perRequest(
    name: Scenario,
    app: AppName,
    session: () => Promise<Browser>,
    request: (browser: Browser) => Promise<void>,
  ): Promise<Cost> {
    const browsers: Browser[] = [];
    for (let i = 0; i < REPEAT; i++) browsers.push(await session());
    return measure(name, app, REPEAT, async () => {
      for (const browser of browsers) {
        await request(browser);
        await pools[app].idle();
      }
    });
  }

  /** The statements of one request on a fresh session, as a list. */
  async function statementsOf(app: AppName, browser: Browser, request: (browser: Browser) => Promise<void>): Promise<string[]> {
    return pools[app].between(() => request(browser));
  }

  const read = async (browser: Browser) => {
    const res = await browser.get('/read');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ value: expect.any(Number) });
  };
  const write = async (browser: Browser) => {
    expect((await browser.post('/write')).status).toBe(200);
    expect(browser.cookie).toBeDefined();
  };
  const login = async (browser: Browser) => {
    const before = browser.cookie;
    expect((await browser.post('/login')).status).toBe(200);
    expect(browser.cookie).toBeDefined();
    expect(browser.cookie).not.toBe(before);
  };

  /** HOT parallel writes with one session's cookie. */
  async function hot(app: AppName): Promise<Cost> {
    const first = await storedSession(app);
    const browsers = Array.from({ length: HOT }, () => {
      const browser = new Browser(apps[app]);
      browser.cookie = first.cookie;
      return browser;
    });
    const cost = await measure('hot', app, HOT, async () => {
      const results = await Promise.all(browsers.map((browser) => browser.post('/write')));
      expect(results.map((res) => res.status)).toEqual(browsers.map(() => 200));
      await pools[app].idle();
    });
    // Round trips overlap between parallel requests: each request's own are those of a lone write.
    const only = { ...cost, roundTrips: Number.NaN };
    costs.set(`hot ${app}`, only);
    return only;
  }

  it('read one key', async () => {
    // The metadata (resume), then the one key the handler reads: no transaction that writes.
    expect(await statementsOf('ours', await storedSession('ours'), read)).toEqual(['select metadata', 'select storage']);
    // The peer reads its one row, then touches it (its expiry rewritten on every request).
    expect(await statementsOf('peer', await storedSession('peer'), read)).toEqual(['select', 'update']);
    const ours = await perRequest('read', 'ours', () => storedSession('ours'), read);
    expect(ours).toMatchObject({ roundTrips: 2, statements: 2, serverStatements: 2, xids: 0, walRecords: 0 });
    expect(ours.walFlushes).toBeLessThanOrEqual(0.2);
    const peer = await perRequest('read', 'peer', () => storedSession('peer'), read);
    expect(peer).toMatchObject({ roundTrips: 2, statements: 2, serverStatements: 2, xids: 1 });
    expect(peer.walFlushes).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('write one key', async () => {
    // Resume, then one unlocked commit (lock check, fresh fence, the key cap counted, guard and
    // entry in one call): one WAL flush. No read of the session's keys first (capsGroupEntries).
    expect(await statementsOf('ours', await storedSession('ours'), write)).toEqual(['select metadata', 'write storage']);
    // The peer: its row read, then upserted.
    expect(await statementsOf('peer', await storedSession('peer'), write)).toEqual(['select', 'insert']);
    const ours = await perRequest('write', 'ours', () => storedSession('ours'), write);
    expect(ours).toMatchObject({ roundTrips: 2, statements: 2, xids: 1 });
    expect(ours.walFlushes).toBeGreaterThanOrEqual(1);
    expect(ours.walFlushes).toBeLessThanOrEqual(1.2);
    const peer = await perRequest('write', 'peer', () => storedSession('peer'), write);
    expect(peer).toMatchObject({ roundTrips: 2, statements: 2, serverStatements: 2, xids: 1 });
    expect(peer.walFlushes).toBeGreaterThanOrEqual(1);
    expect(ours.serverStatements).toBe(WRITE_SERVER_STATEMENTS);
  }, 60_000);

  it('new session + write one key', async () => {
    // Metadata and storage (with its creating guard) in one tick: one statement, one WAL flush.
    expect(await statementsOf('ours', new Browser(apps.ours), write)).toEqual(['batch(write metadata, write storage)']);
    expect(await statementsOf('peer', new Browser(apps.peer), write)).toEqual(['insert']);
    const fresh = (app: AppName) => async () => new Browser(apps[app]);
    const ours = await perRequest('new session', 'ours', fresh('ours'), write);
    expect(ours).toMatchObject({ roundTrips: 1, statements: 1 });
    expect(ours.walFlushes).toBeGreaterThanOrEqual(1);
    expect(ours.walFlushes).toBeLessThanOrEqual(1.2);
    const peer = await perRequest('new session', 'peer', fresh('peer'), write);
    expect(peer).toMatchObject({ roundTrips: 1, statements: 1, serverStatements: 1, xids: 1 });
    expect(ours.serverStatements).toBe(CREATE_SERVER_STATEMENTS);
    // One subtransaction in batch: two xids.
    expect(ours.xids).toBe(2);
  }, 60_000);

  it('login (id renewal) of a stored session', async () => {
    const browser = await storedSession('ours');
    const first = await statementsOf('ours', browser, login);
    const again = await statementsOf('ours', browser, login);
    expect(first).toEqual(LOGIN);
    expect(again).toEqual(LOGIN);
    // The peer: its row read, regenerate's destroy of the old id, the new row's upsert.
    expect(await statementsOf('peer', await storedSession('peer'), login)).toEqual(['select', 'delete', 'insert']);
    const ours = await perRequest('login', 'ours', () => storedSession('ours'), login);
    expect(ours).toMatchObject({ roundTrips: LOGIN_ROUND_TRIPS, statements: LOGIN.length });
    expect(ours.walFlushes).toBeGreaterThanOrEqual(LOGIN_FLUSHES);
    expect(ours.walFlushes).toBeLessThanOrEqual(LOGIN_FLUSHES + 0.2);
    const peer = await perRequest('login', 'peer', () => storedSession('peer'), login);
    expect(peer).toMatchObject({ roundTrips: 3, statements: 3, serverStatements: 3, xids: 2 });
    expect(peer.walFlushes).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('a commit that writes metadata (a tag) of a stored session, ours only', async () => {
    const tag = async (browser: Browser) => {
      expect((await browser.post('/tag')).status).toBe(200);
    };
    // Resume; then, nobody holding the lock, one statement: the metadata unchanged since the
    // resume (mustMatch), the storage's guard an unlocked write (lock free, fresh fence, new
    // lifetime), the new metadata, each only if the ones before applied. One WAL flush.
    expect(await statementsOf('ours', await storedSession('ours'), tag)).toEqual([
      'select metadata',
      'batch(write metadata, write storage, write metadata)',
    ]);
    const ours = await perRequest('tag commit', 'ours', () => storedSession('ours'), tag);
    expect(ours).toMatchObject({ roundTrips: 2, statements: 2 });
    expect(ours.walFlushes).toBeGreaterThanOrEqual(1);
    expect(ours.walFlushes).toBeLessThanOrEqual(1.2);
  }, 60_000);

  it(`hot: ${HOT} parallel writes to one session`, async () => {
    // Unlocked commits of one session queue on its lock row, not on the session lock: the same
    // two statements as a lone write, nothing refused and retried.
    const ours = await hot('ours');
    expect(ours).toMatchObject({ statements: 2, xids: 1 });
    expect(ours.serverStatements).toBe(WRITE_SERVER_STATEMENTS);
    const peer = await hot('peer');
    expect(peer).toMatchObject({ statements: 2, serverStatements: 2, xids: 1 });
  }, 60_000);
});

/**
 * Ours, per request, while nobody holds the session's lock (schema version 7): the resume, then
 * one `batch` statement: the metadata checked unchanged since the resume, the fresh storage with
 * the old one's entries copied server-side (inside the copy, the old storage's lock checked free
 * and its guard live, no fence drawn: version 5 to 6 sent an unlocked write of the old guard
 * first), the old id removed, the new metadata, the old storage flushed, each only if the ones it
 * requires applied. 2 statements in 2 round trips, 1 WAL flush (under the lock, as before version
 * 5: 7 statements in 5 round trips and 2 flushes; 10 and 5 before the batcher).
 */
const LOGIN = ['select metadata', 'batch(write metadata, write storage, remove metadata, write metadata, flush storage)'];
const LOGIN_ROUND_TRIPS = 2;
const LOGIN_FLUSHES = 1;
/**
 * Statements PostgreSQL runs for ours' write of one key: the resume's read, the `write` call and
 * the 4 statements inside it (version 5): the lock row's fence with the group's advisory lock
 * (the row created free on a session's first unlocked write: the same one statement), the key
 * cap's count, the guard with the entry, the entry's tag rows. 8 before version 5 (the fence, the
 * advisory lock, the guard and the entry each a statement of its own), 12 on a session's first
 * unlocked write (its lock row looked for and created in 4 more).
 */
const WRITE_SERVER_STATEMENTS = 6;
/**
 * The same for a new session's `batch` call: the metadata entry with its tag rows (one
 * statement since version 5: a fresh entry has no tag rows to retag), the storage's advisory
 * lock, key count, guard look-up, and its guard, entry and tag rows; and the foreign-key checks
 * of the 5 tag rows. 12 before version 5.
 */
const CREATE_SERVER_STATEMENTS = 11;
