/**
 * Garbage collection and find-by-tag at scale (`npm run bench:gc`).
 *
 * For each size N (10k, 100k, 1M sessions) it fills fresh MemoryBackends the way sessions are
 * stored (per session: one metadata entry tagged `session`, one data entry and the write guard
 * in the storage cache, tagged with the storage id), with a fixed 1,000 expired sessions and a
 * fixed 100 carrying the tag `bench`, then measures through SessionManager:
 *
 * - GC: one `collectGarbage()` run removing the 1,000 expired sessions (metadata, tag
 *   memberships, data), median of 7 runs, each with 1,000 freshly expired sessions;
 * - find-by-tag: iterating `getSessionsByTag('bench')` (100 remote sessions), median of 25;
 * - memory per session: heap and array-buffer growth after a full V8 GC (node --expose-gc)
 *   divided by N (the MemoryBackend keeps its indexes in typed arrays, outside `heapUsed`).
 *
 * Both times must stay flat as N grows (O(expired) and O(matches)); an O(N) scan would show
 * up as a ~100x ratio on the 1M row. Options: `--sizes=10000,100000` to pick sizes.
 */
import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { MemoryBackend } from '../lib/cache/memory.backend.js';
import { SessionManager } from '../lib/manager/session.manager.js';
import { SessionContext } from '../lib/session/session.context.js';
import { resolveSessionOptions } from '../lib/nest/session-options.resolver.js';
import { ALL_SESSIONS_TAG, SessionStore } from '../lib/session/session.store.js';

const EXPIRED = 1_000;
const TAGGED = 100;
const TAG = 'bench';
const GC_RUNS = 7;
const FIND_RUNS = 25;
const TIMEOUT_S = 3600;
const FILL_CHUNK = 10_000;
/** `--verbose`: print every single run's time to stderr. */
const VERBOSE = process.argv.includes('--verbose');

interface Row {
  readonly size: number;
  readonly fillMs: number;
  readonly gcMs: number;
  readonly removed: number;
  readonly findMs: number;
  readonly found: number;
  readonly bytesPerSession: number;
}

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error('Run with node --expose-gc (npm run bench:gc does).');
  process.exit(1);
}
const collectHeap = gc;

function sizesFromArgs(): number[] {
  const arg = process.argv.find((a) => a.startsWith('--sizes='));
  if (arg === undefined) return [10_000, 100_000, 1_000_000];
  return arg
    .slice('--sizes='.length)
    .split(',')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > EXPIRED + TAGGED);
}

/** `count` random base64url ids of `bytes` bytes each, from one randomBytes call. */
function randomIds(count: number, bytes: number): string[] {
  const pool = randomBytes(count * bytes);
  const ids = new Array<string>(count);
  for (let i = 0; i < count; i++) ids[i] = pool.toString('base64url', i * bytes, (i + 1) * bytes);
  return ids;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Stores `count` sessions directly in the backends, as the SessionStore lays them out. */
async function fill(
  store: SessionStore,
  metadata: MemoryBackend,
  storage: MemoryBackend,
  count: number,
  kind: 'live' | 'expired' | 'tagged',
): Promise<void> {
  const cartData = store.storageCache.encode(['book', 'pen']);
  for (let done = 0; done < count; done += FILL_CHUNK) {
    const n = Math.min(FILL_CHUNK, count - done);
    const sessionIds = randomIds(n, 24);
    const storageIds = randomIds(n, 16);
    const now = Date.now();
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const storageId = storageIds[i]!;
      const expired = kind === 'expired';
      const meta = {
        storageId,
        createdAt: now,
        // An expired one was last active (timeout - 1 s) ago: store and backend agree it expires in 1 s.
        lastActivity: expired ? now - (TIMEOUT_S - 1) * 1000 : now,
        tags: kind === 'tagged' ? [TAG] : [],
      };
      const tags = kind === 'tagged' ? [ALL_SESSIONS_TAG, SessionStore.customTag(TAG)] : [ALL_SESSIONS_TAG];
      writes.push(metadata.set(sessionIds[i]!, JSON.stringify(meta), tags, expired ? 1 : TIMEOUT_S));
      writes.push(
        storage.write(
          { sets: [{ id: `${storageId}.cart`, data: cartData, tags: [storageId] }] },
          { id: `${storageId}.~guard`, fence: 1, create: true, tags: [storageId] },
        ),
      );
    }
    await Promise.all(writes);
  }
}

async function measure(size: number): Promise<Row> {
  collectHeap();
  const usedBefore = process.memoryUsage();
  const heapBefore = usedBefore.heapUsed + usedBefore.arrayBuffers;
  const metadataBackend = new MemoryBackend();
  const storageBackend = new MemoryBackend();
  const options = resolveSessionOptions({
    metadataBackend,
    storageBackend,
    inactivityTimeout: TIMEOUT_S,
    garbageCollection: { probability: 0, cron: false, maximumPerRun: EXPIRED },
  });
  const store = new SessionStore(options);
  const manager = new SessionManager(store, new SessionContext());

  const fillStart = performance.now();
  await fill(store, metadataBackend, storageBackend, EXPIRED, 'expired');
  const expiresAt = Date.now() + 1000;
  await fill(store, metadataBackend, storageBackend, TAGGED, 'tagged');
  await fill(store, metadataBackend, storageBackend, size - EXPIRED - TAGGED, 'live');
  const fillMs = performance.now() - fillStart;

  collectHeap();
  const usedAfter = process.memoryUsage();
  const bytesPerSession = (usedAfter.heapUsed + usedAfter.arrayBuffers - heapBefore) / size;

  const gcTimes: number[] = [];
  let removed = 0;
  for (let run = 0; run < GC_RUNS; run++) {
    if (run > 0) {
      await fill(store, metadataBackend, storageBackend, EXPIRED, 'expired');
    }
    const expiry = run === 0 ? expiresAt : Date.now() + 1000;
    // No forced V8 GC here: on a big heap its background sweeping outlasts the wait and the
    // measured run would pay for it (a forced GC runs once, after the fill, for the memory figure).
    await sleep(Math.max(0, expiry - Date.now()) + 100);
    const start = performance.now();
    removed = await manager.collectGarbage();
    gcTimes.push(performance.now() - start);
    if (removed !== EXPIRED) throw new Error(`GC removed ${removed} sessions, expected ${EXPIRED}`);
  }
  // Every run removed exactly its expired sessions with their data: the live ones are left.
  const stats = { metadata: metadataBackend.stats(), storage: storageBackend.stats() };
  if (stats.metadata.entries !== size - EXPIRED || stats.storage.entries !== 2 * (size - EXPIRED)) {
    throw new Error(
      `After GC: ${JSON.stringify(stats)}; expected ${size - EXPIRED} metadata and ${2 * (size - EXPIRED)} storage entries`,
    );
  }

  if (VERBOSE) process.stderr.write(`  ${size}: GC runs ${gcTimes.map((t) => t.toFixed(2)).join(', ')} ms\n`);
  const findTimes: number[] = [];
  let found = 0;
  for (let run = 0; run < FIND_RUNS; run++) {
    const start = performance.now();
    found = 0;
    for await (const session of manager.getSessionsByTag(TAG)) {
      if (session.getTags().includes(TAG)) found++;
    }
    findTimes.push(performance.now() - start);
    if (found !== TAGGED) throw new Error(`find-by-tag found ${found} sessions, expected ${TAGGED}`);
  }

  await metadataBackend.close();
  await storageBackend.close();
  return { size, fillMs, gcMs: median(gcTimes), removed, findMs: median(findTimes), found, bytesPerSession };
}

function format(rows: Row[]): string {
  const base = rows[0]!;
  const lines = [
    '| sessions | GC run (1,000 expired) | GC vs first row | find-by-tag (100 matches) | find vs first row | memory per session | fill time |',
    '|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.size.toLocaleString('en-US')} | ${r.gcMs.toFixed(2)} ms | ${(r.gcMs / base.gcMs).toFixed(2)}x | ` +
        `${r.findMs.toFixed(3)} ms | ${(r.findMs / base.findMs).toFixed(2)}x | ${Math.round(r.bytesPerSession)} B | ${(r.fillMs / 1000).toFixed(1)} s |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  Logger.overrideLogger(['error', 'warn']);
  // Warm-up (not reported): lets the JIT compile the hot paths, so the first row is not slower
  // for reasons that have nothing to do with its size.
  await measure(5_000);
  collectHeap();
  const rows: Row[] = [];
  for (const size of sizesFromArgs()) {
    process.stderr.write(`filling ${size.toLocaleString('en-US')} sessions...\n`);
    rows.push(await measure(size));
    collectHeap();
  }
  console.log(
    `\nSession GC and find-by-tag, MemoryBackend, Node ${process.version} (median of ${GC_RUNS} GC runs, ${FIND_RUNS} look-ups)\n`,
  );
  console.log(format(rows));
  const last = rows[rows.length - 1]!;
  const flat = last.gcMs / rows[0]!.gcMs <= 2 && last.findMs / rows[0]!.findMs <= 2;
  console.log(
    `\n${flat ? 'Flat' : 'NOT flat'}: the largest row is within ${Math.max(last.gcMs / rows[0]!.gcMs, last.findMs / rows[0]!.findMs).toFixed(2)}x of the first.`,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
