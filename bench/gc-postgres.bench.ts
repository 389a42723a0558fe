/**
 * Garbage collection and find-by-tag at scale on PostgreSQL (`npm run bench:gc:postgres`), the
 * counterpart of gc.bench.ts (MemoryBackend).
 *
 * For each size N (10k, 100k, 1M sessions by default) it fills a fresh database the way
 * sessions are stored (per session: one metadata row tagged "all sessions", one data row and
 * the write guard in the storage namespace, tagged with the storage id), with a fixed 1,000
 * expired sessions and a fixed 100 carrying the tag `bench`, then measures through
 * SessionManager:
 *
 * - GC: one `collectGarbage()` run removing the 1,000 expired sessions (metadata, tag
 *   memberships, data), median of 5 runs, each with 1,000 freshly expired sessions;
 * - find-by-tag: iterating `getSessionsByTag('bench')` (100 remote sessions), median of 15.
 *
 * Both must stay flat as N grows (O(expired) through the expiry index, O(matches) through the
 * tags table's key). The live sessions are inserted with `generate_series` (one statement per
 * 100k rows) so that filling 1M sessions takes a minute, not an hour; the expired and tagged
 * ones go through the backend as a request would write them. Options: `--sizes=10000,100000`,
 * `--url=postgres://...` (default $BENCH_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/postgres;
 * a database `nsbench_gc_<pid>` is created there and dropped at the end).
 */
import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import pg from 'pg';
import { SessionManager } from '../lib/manager/session.manager.js';
import { resolveSessionOptions } from '../lib/nest/session-options.resolver.js';
import { createPostgresSessionStores, type PostgresSessionStores } from '../lib/postgres/index.js';
import { SessionContext } from '../lib/session/session.context.js';
import { ALL_SESSIONS_TAG, SessionStore } from '../lib/session/session.store.js';

const EXPIRED = 1_000;
const TAGGED = 100;
const TAG = 'bench';
const GC_RUNS = 5;
const FIND_RUNS = 15;
const TIMEOUT_S = 3600;
const BULK_CHUNK = 100_000;

interface Row {
  readonly size: number;
  readonly fillMs: number;
  readonly gcMs: number;
  readonly findMs: number;
}

function arg(name: string): string | undefined {
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

function sizesFromArgs(): number[] {
  const sizes = arg('sizes');
  if (sizes === undefined) return [10_000, 100_000, 1_000_000];
  return sizes
    .split(',')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > EXPIRED + TAGGED);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const randomId = (bytes: number) => randomBytes(bytes).toString('base64url');

/** Writes `count` sessions through the backends, as SessionStore lays them out. */
async function writeSessions(store: SessionStore, stores: PostgresSessionStores, count: number, kind: 'expired' | 'tagged') {
  const cart = store.storageCache.encode(['book', 'pen']);
  const now = Date.now();
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    const storageId = randomId(16);
    const expired = kind === 'expired';
    const meta = {
      storageId,
      createdAt: now,
      // Last active (timeout - 1 s) ago: store and backend agree it expires in 1 s.
      lastActivity: expired ? now - (TIMEOUT_S - 1) * 1000 : now,
      tags: kind === 'tagged' ? [TAG] : [],
    };
    const tags = kind === 'tagged' ? [ALL_SESSIONS_TAG, SessionStore.customTag(TAG)] : [ALL_SESSIONS_TAG];
    writes.push(stores.metadataBackend.set(randomId(24), JSON.stringify(meta), tags, expired ? 1 : TIMEOUT_S));
    writes.push(
      stores.storageBackend.write(
        { sets: [{ id: `${storageId}.cart`, data: cart, tags: [storageId] }] },
        { id: `${storageId}.~guard`, fence: 1, create: true, tags: [storageId] },
      ),
    );
    if (writes.length >= 200) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
}

/** Inserts `count` live sessions with generate_series, `BULK_CHUNK` per statement. */
async function bulkLive(pool: pg.Pool, stores: PostgresSessionStores, store: SessionStore, count: number): Promise<void> {
  const m = stores.metadataBackend.namespace;
  const s = stores.storageBackend.namespace;
  const cart = store.storageCache.encode(['book', 'pen']);
  const now = Date.now();
  const expires = new Date(now + TIMEOUT_S * 1000).toISOString();
  for (let from = 1; from <= count; from += BULK_CHUNK) {
    const to = Math.min(count, from + BULK_CHUNK - 1);
    const range = [from, to];
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO nest_session_entries (namespace, id, value, expires_at)
         SELECT $3, 'live' || g || '.m', json_build_object('storageId', 'st' || g, 'createdAt', $4::bigint,
           'lastActivity', $4::bigint, 'tags', json_build_array())::text, $5::timestamptz
         FROM generate_series($1::int, $2::int) g`,
        [...range, m, now, expires],
      );
      await client.query(
        `INSERT INTO nest_session_tags (namespace, tag, id) SELECT $3, $4, 'live' || g || '.m' FROM generate_series($1::int, $2::int) g`,
        [...range, m, ALL_SESSIONS_TAG],
      );
      await client.query(
        `INSERT INTO nest_session_entries (namespace, id, value, expires_at, fence)
         SELECT $3, 'st' || g || k.suffix, CASE WHEN k.suffix = '.cart' THEN $4 ELSE '1' END, NULL,
                CASE WHEN k.suffix = '.cart' THEN NULL ELSE 1 END
         FROM generate_series($1::int, $2::int) g, (VALUES ('.cart'), ('.~guard')) AS k(suffix)`,
        [...range, s, cart],
      );
      await client.query(
        `INSERT INTO nest_session_tags (namespace, tag, id)
         SELECT $3, 'st' || g, 'st' || g || k.suffix FROM generate_series($1::int, $2::int) g, (VALUES ('.cart'), ('.~guard')) AS k(suffix)`,
        [...range, s],
      );
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }
  await pool.query('ANALYZE nest_session_entries');
  await pool.query('ANALYZE nest_session_tags');
}

async function measure(serverUrl: string, size: number): Promise<Row> {
  const name = `nsbench_gc_${process.pid}_${size}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 10 });
  pool.on('error', () => undefined);
  const stores = await createPostgresSessionStores({ pool });
  try {
    await stores.migrate();
    const options = resolveSessionOptions({
      metadataBackend: stores.metadataBackend,
      storageBackend: stores.storageBackend,
      locker: stores.locker,
      inactivityTimeout: TIMEOUT_S,
      garbageCollection: { probability: 0, cron: false, maximumPerRun: EXPIRED },
    });
    const store = new SessionStore(options);
    const manager = new SessionManager(store, new SessionContext());

    const fillStart = performance.now();
    await bulkLive(pool, stores, store, size - EXPIRED - TAGGED);
    await writeSessions(store, stores, TAGGED, 'tagged');
    const fillMs = performance.now() - fillStart;

    const gcTimes: number[] = [];
    for (let run = 0; run < GC_RUNS; run++) {
      await writeSessions(store, stores, EXPIRED, 'expired');
      await sleep(1100);
      const start = performance.now();
      const removed = await manager.collectGarbage();
      gcTimes.push(performance.now() - start);
      if (removed !== EXPIRED) throw new Error(`GC removed ${removed} sessions, expected ${EXPIRED}`);
    }
    const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM nest_session_entries');
    if (Number(rows[0]!.n) !== 3 * (size - EXPIRED)) {
      throw new Error(
        `After GC: ${rows[0]!.n} rows; expected ${3 * (size - EXPIRED)} (every expired session with its data gone)`,
      );
    }

    const findTimes: number[] = [];
    for (let run = 0; run < FIND_RUNS; run++) {
      const start = performance.now();
      let found = 0;
      for await (const session of manager.getSessionsByTag(TAG)) if (session.getTags().includes(TAG)) found++;
      findTimes.push(performance.now() - start);
      if (found !== TAGGED) throw new Error(`find-by-tag found ${found} sessions, expected ${TAGGED}`);
    }
    return { size, fillMs, gcMs: median(gcTimes), findMs: median(findTimes) };
  } finally {
    await stores.close();
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

async function main(): Promise<void> {
  Logger.overrideLogger(['error', 'warn']);
  const serverUrl = arg('url') ?? process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const rows: Row[] = [];
  for (const size of sizesFromArgs()) {
    process.stderr.write(`filling ${size.toLocaleString('en-US')} sessions...\n`);
    rows.push(await measure(serverUrl, size));
  }
  const base = rows[0]!;
  console.log(
    `\nSession GC and find-by-tag, PostgresBackend, Node ${process.version} (median of ${GC_RUNS} GC runs, ${FIND_RUNS} look-ups)\n`,
  );
  console.log(
    '| sessions | GC run (1,000 expired) | GC vs first row | find-by-tag (100 matches) | find vs first row | fill time |',
  );
  console.log('|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.size.toLocaleString('en-US')} | ${r.gcMs.toFixed(1)} ms | ${(r.gcMs / base.gcMs).toFixed(2)}x | ` +
        `${r.findMs.toFixed(2)} ms | ${(r.findMs / base.findMs).toFixed(2)}x | ${(r.fillMs / 1000).toFixed(1)} s |`,
    );
  }
  const last = rows[rows.length - 1]!;
  const ratio = Math.max(last.gcMs / base.gcMs, last.findMs / base.findMs);
  console.log(`\n${ratio <= 2 ? 'Flat' : 'NOT flat'}: the largest row is within ${ratio.toFixed(2)}x of the first.`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
