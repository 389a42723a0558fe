import { randomInt } from 'node:crypto';
import { checkedGuard, checkedMustExist, checkedWrite, gcLimit, secondsOption } from '../cache/backend-arguments.js';
import { assertCacheIdentifier } from '../cache/identifier.js';
import { expiryAt } from '../cache/lifetime.js';
import { attemptStore } from '../cache/store-failure.js';
import { runInOrder, type WriteOrder } from '../cache/write-ticket.js';
import type {
  BackendEntry,
  BackendWrite,
  TaggableBackend,
  WriteBatch,
  WriteGuard,
  WriteResult,
  TagPage,
} from '../cache/taggable-backend.interface.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { assertRedisPrefix, bySlotUnit, groupBy, groupOf, hashTagOf, RedisBackendKeys, slotUnit } from './redis-backend.keys.js';
import { BACKEND_SCRIPTS, dropRecordsOf, type DropRecord } from './redis-backend.scripts.js';
import {
  isRedisClusterClient,
  RedisTransport,
  settleAll,
  SUPPORTED_REDIS_CLIENTS,
  type RedisClusterCommandClient,
  type RedisCommandClient,
} from './redis-client.adapter.js';
import {
  decodeEntry,
  encodeEntry,
  encodeGuardHead,
  HEADER_BYTES,
  isLive,
  isLiveHeader,
  parseEntry,
} from './redis-entry.codec.js';
import { IndexUpkeep, IndexWork } from './redis-index.upkeep.js';
import { RedisWriteCoalescer, SKIPPED } from './redis-write.coalescer.js';
import type { RedisLocker } from './redis.locker.js';
import { adaptIoRedis, isIoRedisClient, type IoRedisClient, type IoRedisClusterClient } from './ioredis-client.adapter.js';

// The client types are part of the options; they belong to the client adapters.
export type { RedisClusterCommandClient, RedisCommandClient } from './redis-client.adapter.js';
export type { IoRedisClient, IoRedisClusterClient } from './ioredis-client.adapter.js';

/** Options of {@link RedisBackend}. */
export interface RedisBackendOptions {
  /**
   * A connected client: node-redis 5 or 6 `createClient()` (standalone Redis or Valkey) or
   * `createCluster()` (Redis Cluster >= 7, told apart by its `masters`), or ioredis 5 or 6
   * `new Redis()` or `new Redis.Cluster()`, as it is (adapted here, as `fromIoRedis` does). Not
   * a `createSentinel()` client. The backend never connects or closes it. The client's reconnect
   * and offline-queue settings decide how long an operation waits while Redis is unreachable;
   * an operation that fails throws `StoreUnavailableException`.
   */
  client: RedisCommandClient | RedisClusterCommandClient | IoRedisClient | IoRedisClusterClient;
  /**
   * Prepended to every key, so several applications (and the metadata and storage caches of
   * one application, e.g. `sess:m:` and `sess:s:`) can share one Redis database. It must not
   * contain `{` or `}` (they delimit Redis Cluster hash tags).
   * @default 'sess:'
   */
  prefix?: string;
  /**
   * Seconds added to an entry's lifetime for the Redis-native TTL. Until then an expired entry
   * stays stored (invisible to reads) so that garbage collection can still find it and hand it
   * over for clean-up; if garbage collection never runs, Redis drops it after the margin.
   * @default 3600
   */
  safetyTtlMargin?: number;
  /**
   * A `RedisLocker` on the same Redis (same database), whose locks guarded writes with
   * `WriteGuard.unlocked` check in their script: a commit that holds no lock then costs one
   * round trip instead of acquire + write + release. `createRedisSessionStores` sets it for its
   * storage backend. @default undefined (unlocked writes are refused)
   */
  locker?: RedisLocker;
}

const DEFAULT_PREFIX = 'sess:';
const DEFAULT_SAFETY_TTL_MARGIN = 3600;
/** Expiry records visited per round of `collectGarbage()`: bounds the size of one round. */
const GC_CHUNK = 1000;
/** Keys per SCAN step and per UNLINK in `flush()`. */
const FLUSH_BATCH = 1000;
/** Write versions are random integers below this (exact as sorted-set scores). */
const VERSION_LIMIT = 2 ** 48;
const NO_TAGS: readonly string[] = Object.freeze([]);
const NO_WRITES: readonly BackendWrite[] = Object.freeze([]);

/**
 * What backends built together share (`createRedisSessionStores`): on a standalone Redis, the
 * write coalescer that sends their same-tick writes as one script call.
 * @internal
 */
export interface RedisBackendShared {
  readonly writes?: RedisWriteCoalescer;
}

/** The options as a JavaScript caller may pass them: the constructor checks what the types above promise. */
type UntypedRedisBackendOptions = Omit<RedisBackendOptions, 'client'> & {
  client?: Partial<RedisCommandClient> | Partial<RedisClusterCommandClient> | IoRedisClient | IoRedisClusterClient | null;
};

/*
 * Where each part lives: the key layout in `redis-backend.keys.ts`, the entry format in
 * `redis-entry.codec.ts`, the Lua scripts in `redis-backend.scripts.ts`, index upkeep in other
 * slots (and what a crash between commands can leave) in `redis-index.upkeep.ts`, how commands
 * and scripts reach a client or a cluster in `redis-client.adapter.ts`.
 *
 * Expiry is checked against this process's clock (`Date.now()`), not Redis `TIME`: reads stay
 * plain GET/MGET answered without a script, and the check agrees with the session manager's own
 * inactivity checks and with MemoryBackend. The cost is that application servers need synchronised
 * clocks (NTP): a skew of s seconds moves expiry by s. Native TTLs (Redis' clock) add
 * `safetyTtlMargin`, far more than any sane skew, so Redis never drops an entry before it expired.
 *
 * Versions. Every write stamps the entries it stores with a random version, kept in the entry
 * header and as the member's score in each tag set it adds the entry to. A membership is only
 * ever removed from outside the entry's slot by TAG_FORGET, which compares the score with the
 * version it saw: a removal that arrives after the id was stored again (with a new version) leaves
 * the new membership alone, whatever order the commands reach the nodes in. Likewise EXPIRY_FIX
 * drops or re-scores a record only if it still has the score that was seen.
 *
 * Standalone Redis: no slots to respect, so a write (and a `remove()`, a `flushByTag()`) is one
 * script call with its index upkeep inside, and what the backends sharing a write coalescer
 * issue in one tick is one call (`redis-write.coalescer.ts`); everything below about upkeep in
 * other slots then concerns garbage collection and reads only.
 *
 * Multi-group operations are per group: an unguarded `write()` whose ids span groups runs one
 * WRITE per group (each atomic, sent together); `getMany()` on a cluster sends one MGET per
 * group; `flush()` on a cluster scans every master. The expiry index is one sorted set, one key
 * in one slot: every write with a lifetime adds a ZADD there, so on a cluster that slot's node
 * carries the index load (one small command per write), which keeps garbage collection
 * O(expired) with one range read per chunk.
 */

/** One entry of a `write()`, validated and encoded. */
interface EncodedWrite {
  readonly id: string;
  readonly value: string;
  readonly tags: readonly string[];
  /** Expiry epoch ms, 0 = never. */
  readonly expiry: number;
  /** Native TTL ms, 0 = none. */
  readonly pttl: number;
}

/**
 * Cache backend on Redis or Redis Cluster (node-redis 5 or 6, ioredis 5 or 6), for sessions shared by many
 * processes. Key layout, atomicity and cost: see the comments above and in the files they name. In short: reads are one
 * GET, MGET or GETRANGE (a `getByTag` of a group's own tag one script), a write is one script
 * per group plus its index upkeep in the same round trip, tag look-ups O(matches),
 * `collectGarbage` O(expired) through an expiry sorted set, `write()` atomic with its guard.
 * Redis errors surface as `StoreUnavailableException`.
 */

export class RedisBackend implements TaggableBackend {
  readonly name = 'redis';

  /** The key prefix in use (see {@link RedisBackendOptions.prefix}). */
  readonly prefix: string;
  private readonly transport: RedisTransport;
  private readonly keys: RedisBackendKeys;
  private readonly upkeep: IndexUpkeep;
  private readonly marginMs: number;
  private readonly locker: RedisLocker | undefined;
  /** Standalone only: writes and removals go through here, index upkeep folded in (one call). */
  private readonly writes: RedisWriteCoalescer | undefined;
  /** This backend's prefix in the coalescer's script. */
  private readonly prefixIndex: number = 0;

  /** Guarded writes honour `WriteGuard.maxEntries` in their script. */
  readonly capsGroupEntries = true;

  /** The locker whose locks unlocked guarded writes check (see {@link RedisBackendOptions.locker}). */
  get checksLocksOf(): object | undefined {
    return this.locker;
  }

  /** Standalone: dependent writes (`WriteOrder`) of the backends sharing the coalescer chain inside one script call. */
  get ordersWrites(): boolean {
    return this.writes !== undefined;
  }

  /** Standalone: `WriteBatch.mustMatch` and `WriteGuard.copyFrom` are units of the coalescer's script (MATCH, COPY). */
  get movesGroups(): boolean {
    return this.writes !== undefined;
  }

  /** Standalone: `WriteGuard.copyUnlocked` is checked in the COPY unit (the source's lock key and guard in one `MGET`). */
  get copiesUnlocked(): boolean {
    return this.writes !== undefined;
  }

  private lockOrder: object | undefined;

  /** The locker sharing this backend's connection, in order (set by `createRedisSessionStores`; see `TaggableBackend`). */
  get ordersAfterLocksOf(): object | undefined {
    return this.lockOrder;
  }

  /**
   * Declares that `locker` sends its commands on this backend's standalone connection, in the
   * order they are issued (the same client), so reads sent after its `acquire()` returned run
   * after that acquire. Ignored on a cluster (other slots are other connections).
   * @internal `createRedisSessionStores` only.
   */
  orderAfterLocksOf(locker: object): void {
    if (this.writes !== undefined) this.lockOrder = locker;
  }

  /**
   * @param shared what backends built together share (internal; `createRedisSessionStores`).
   * @throws InvalidOptionException for a missing or unsupported client (the message names the
   *   supported ones), an ioredis client that is not connected, a prefix with braces or a
   *   negative margin.
   */
  constructor(options: RedisBackendOptions, shared?: RedisBackendShared) {
    const raw = (options as UntypedRedisBackendOptions | null | undefined)?.client;
    // ioredis (checked first: its clients have a `sendCommand` of another shape) is adapted here.
    const client = isIoRedisClient(raw) ? adaptIoRedis(raw, false) : raw;
    if (typeof client?.sendCommand !== 'function') {
      throw InvalidOptionException.create('redis.client', `must be ${SUPPORTED_REDIS_CLIENTS}, connected`);
    }
    if (isRedisClusterClient(client) && typeof (client as Partial<RedisClusterCommandClient>).nodeClient !== 'function') {
      throw InvalidOptionException.create(
        'redis.client',
        `is a cluster client of no supported kind: it must be ${SUPPORTED_REDIS_CLIENTS}`,
      );
    }
    const commands = client as RedisCommandClient | RedisClusterCommandClient;
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    assertRedisPrefix('redis.prefix', prefix);
    const margin = secondsOption('redis.safetyTtlMargin', options.safetyTtlMargin ?? DEFAULT_SAFETY_TTL_MARGIN, true);
    if (isRedisClusterClient(commands)) this.transport = new RedisTransport(commands);
    else {
      this.writes = shared?.writes ?? new RedisWriteCoalescer(commands);
      this.prefixIndex = this.writes.register(prefix);
      this.transport = new RedisTransport(this.writes.ordered());
    }
    this.keys = new RedisBackendKeys(prefix);
    this.upkeep = new IndexUpkeep(this.transport, this.keys);
    this.prefix = prefix;
    this.marginMs = margin * 1000;
    this.locker = options.locker;
  }

  /**
   * What a backend built beside this one on the same client passes as its second constructor
   * argument to share this one's write coalescer (standalone).
   * @internal
   */
  get shared(): RedisBackendShared {
    return { writes: this.writes };
  }

  /** The Redis key of an entry (see the key layout in `redis-backend.keys.ts`); exposed for tests and tooling. */
  entryKey(id: string): string {
    return this.keys.entryKey(id);
  }

  /** The Redis key of the sorted set of ids carrying `tag`. */
  tagKey(tag: string): string {
    return this.keys.tagKey(tag);
  }

  /** The Redis key of the expiry index (a sorted set: id -> expiry epoch ms). */
  get expiryIndexKey(): string {
    return this.keys.expiryKey;
  }

  /** @throws StoreUnavailableException when Redis fails. */
  async get(id: string): Promise<string | undefined> {
    const key = this.entryKey(id);
    const raw = await this.attempt('get', () => this.transport.send(key, true, ['GET', key]));
    return decodeEntry(raw, Date.now());
  }

  /** One MGET (on a cluster one per group, sent together). @throws StoreUnavailableException when Redis fails. */
  async getMany(ids: readonly string[]): Promise<(string | undefined)[]> {
    if (ids.length === 0) return [];
    const raw = await this.attempt('getMany', () => this.readRaw(ids));
    const now = Date.now();
    return raw.map((value) => decodeEntry(value, now));
  }

  /**
   * One script when every member is of the tag's own group (a session's storage); members of
   * other groups are then read with MGET and checked. Prunes stale memberships on the way.
   * @throws StoreUnavailableException when Redis fails.
   */
  async getByTag(tag: string): Promise<BackendEntry[]> {
    const flat = await this.attempt('getByTag', () => this.readTag(tag, true));
    const entries: BackendEntry[] = [];
    for (let i = 0; i < flat.length; i += 2) entries.push({ id: flat[i]!, data: flat[i + 1]! });
    return entries;
  }

  /** Reads only the entry's header (GETRANGE), not its data. @throws StoreUnavailableException when Redis fails. */
  async has(id: string): Promise<boolean> {
    const key = this.entryKey(id);
    const head = await this.attempt('has', () =>
      this.transport.send(key, true, ['GETRANGE', key, '0', String(HEADER_BYTES - 1)]),
    );
    return isLiveHeader(head, Date.now());
  }

  /**
   * @throws InvalidArgumentException for a bad id, tag, lifetime or data (nothing is stored).
   * @throws StoreUnavailableException when Redis fails.
   */
  async set(id: string, data: string, tags?: readonly string[], lifetime?: number): Promise<void> {
    await this.write({ sets: [{ id, data, tags: tags ?? NO_TAGS, lifetime }] });
  }

  /** `order`: see `WriteOrder`. @throws StoreUnavailableException when Redis fails. */
  async remove(id: string, order?: WriteOrder): Promise<boolean> {
    return this.inOrder(
      order,
      () => this.removeNow(id, order),
      (existed) => existed,
      false,
    );
  }

  private async removeNow(id: string, order: WriteOrder | undefined): Promise<boolean> {
    assertCacheIdentifier(id, 'cache entry identifier');
    return this.attempt('remove', async () => {
      if (this.writes !== undefined) {
        // Standalone: one call, the index clean-up inside it.
        const unit = slotUnit(id);
        const args = [unit.startsWith('.') ? '' : unit, 'any', '', '0', id];
        const reply = await this.writes.submit('d', this.prefixIndex, Date.now(), this.entryKey(id), args, order);
        if (reply === SKIPPED) return false;
        return dropRecordsOf(reply as string[])[0]?.code === 'live';
      }
      const work = new IndexWork();
      const records = await this.drop(slotUnit(id), [id], 'any', '', false);
      work.forgetRemoved(records);
      await this.upkeep.send(work);
      return records[0]?.code === 'live';
    });
  }

  /**
   * The sets and removes of each group are one script, atomic. With a `guard` or `mustExist`,
   * every id must be of the group of the guard (or of the first `mustExist` id), the slot-group
   * rule of `TaggableBackend`: the conditions, the sets, the removes and the guard update are
   * then one atomic script, and a refused write changes no entry (index records it sent along
   * in the same round trip are pruned later, see `redis-index.upkeep.ts`). Without either, a
   * batch spanning groups is applied group by group.
   * @throws InvalidArgumentException for a bad id, tag, lifetime, data or fence, or a guarded
   *   or conditional batch with an id outside its group (nothing is written).
   * @throws StoreUnavailableException when Redis fails (then nothing was written with a guard
   *   or `mustExist`; without, some groups may have been).
   */
  async write(batch: WriteBatch, guard?: WriteGuard, order?: WriteOrder): Promise<WriteResult> {
    return this.inOrder(
      order,
      () => this.writeNow(batch, guard, order),
      (result) => result === 'ok',
      'skipped',
    );
  }

  private async writeNow(batch: WriteBatch, guard: WriteGuard | undefined, order: WriteOrder | undefined): Promise<WriteResult> {
    const sets = batch.sets ?? NO_WRITES;
    const removes = batch.removes ?? NO_TAGS;
    const mustExist = checkedMustExist(batch.mustExist);
    if (batch.mustMatch !== undefined && batch.mustMatch.length > 0) return this.matchNow(batch, guard, order);
    if (guard?.copyFrom !== undefined && (this.writes === undefined || guard.create !== true || guard.unlocked === true)) {
      throw new InvalidArgumentException(
        'WriteGuard.copyFrom needs a standalone RedisBackend of createRedisSessionStores (movesGroups) and a creating guard (create: true, not unlocked).',
      );
    }
    if (guard?.copyUnlocked === true && guard.copyFrom !== undefined && this.locker === undefined) {
      throw new InvalidArgumentException(
        'WriteGuard.copyUnlocked needs a RedisBackend created with the `locker` option (its locks are checked in the write).',
      );
    }
    if (guard?.copyFrom !== undefined) {
      assertCacheIdentifier(guard.copyFrom, 'group to copy');
      if (guard.copyFrom.includes('.') || guard.copyFrom === groupOf(guard.id)) {
        throw InvalidArgumentException.fromStore(
          `WriteGuard.copyFrom must name another group (an id without "."), got "${guard.copyFrom}" for guard "${guard.id}".`,
        );
      }
    }
    if (sets.length === 0 && removes.length === 0 && guard === undefined && mustExist.length === 0) {
      return order === undefined
        ? 'ok'
        : runInOrder(
            order,
            () => Promise.resolve<WriteResult>('ok'),
            () => true,
            'skipped',
          );
    }

    // Validate and encode everything first: a bad entry must not leave half a batch applied.
    const now = Date.now();
    const version = String(randomInt(1, VERSION_LIMIT));
    let guardTags: readonly string[] = NO_TAGS;
    let guardExpiry = 0;
    if (guard !== undefined) {
      guardTags = checkedGuard(guard);
      if (guard.unlocked === true && this.locker === undefined) {
        throw new InvalidArgumentException(
          'An unlocked guarded write needs a RedisBackend created with the `locker` option (its locks are checked in the write).',
        );
      }
      guardExpiry = guard.lifetime === undefined ? 0 : expiryAt(guard.id, guard.lifetime, now);
    }
    const guardPttl = guardExpiry === 0 ? 0 : Math.ceil(guardExpiry - now + this.marginMs);
    const anchor = guard?.id ?? mustExist[0];
    const anchorUnit = anchor === undefined ? undefined : slotUnit(anchor);
    const units = new Map<string, { sets: EncodedWrite[]; removes: string[] }>();
    const unitOf = (id: string) => {
      const unit = slotUnit(id);
      if (anchorUnit !== undefined && unit !== anchorUnit) {
        throw InvalidArgumentException.fromStore(
          `Cannot write cache entry "${id}" with guard or condition entry "${anchor!}": a guarded or conditional batch ` +
            `keeps every id in the group of that entry (the text before the first "."), so that one atomic script can apply it.`,
        );
      }
      let entry = units.get(unit);
      if (entry === undefined) units.set(unit, (entry = { sets: [], removes: [] }));
      return entry;
    };
    if (anchor !== undefined) unitOf(anchor);
    mustExist.forEach(unitOf);
    for (const write of sets) {
      const tags = checkedWrite(write);
      const expiry = expiryAt(write.id, write.lifetime, now);
      // The native TTL outlives the entry by the margin (see RedisBackendOptions.safetyTtlMargin).
      const pttl = expiry === 0 ? 0 : Math.ceil(expiry - now + this.marginMs);
      unitOf(write.id).sets.push({ id: write.id, value: encodeEntry(expiry, version, tags, write.data), tags, expiry, pttl });
    }
    for (const id of removes) {
      assertCacheIdentifier(id, 'cache entry identifier');
      unitOf(id).removes.push(id);
    }

    const guardHead = guard === undefined ? '' : encodeGuardHead(guardExpiry, version, guardTags);
    const guardLife = { expiry: guardExpiry, pttl: guardPttl };
    if (this.writes !== undefined) {
      // A chained write is one script unit: a batch across groups waits for its prerequisites instead.
      if (order !== undefined && anchor === undefined && units.size !== 1) {
        return runInOrder(
          order,
          () => this.writeNow(batch, guard, undefined),
          (result) => result === 'ok',
          'skipped',
        );
      }
      // Standalone: each unit is one script unit with its index upkeep inside (see `redis-write.coalescer.ts`).
      return this.attempt('write', async () => {
        if (anchor === undefined && order !== undefined) {
          const [unit, part] = [...units][0]!;
          const reply = await this.runWrite(unit, part, now, mustExist, undefined, '', undefined, order);
          return reply === SKIPPED ? 'skipped' : 'ok';
        }
        if (anchor === undefined) {
          await settleAll([...units].map(([unit, part]) => this.runWrite(unit, part, now, mustExist)));
          return 'ok';
        }
        const [unit, part] = [...units][0]!;
        const reply = await this.runWrite(unit, part, now, mustExist, guard, guardHead, guardLife, order);
        if (reply === SKIPPED) return 'skipped';
        return String((reply as unknown[])[0]) as WriteResult;
      });
    }

    // Index upkeep in other slots for every entry stored: `early` goes out with the scripts (no
    // extra round trip), `late` only after a guard allowed the write. A guard's own expiry
    // record is early, so that refreshing a session's lifetime costs no second round trip; if
    // the write is refused, garbage collection re-scores or drops the record (it checks each).
    const early = new IndexWork();
    const late = guard === undefined ? early : new IndexWork();
    for (const { sets: unitSets } of units.values()) {
      for (const write of unitSets) {
        const group = groupOf(write.id);
        for (const tag of write.tags) if (tag !== group) late.add(tag, write.id, version, write.pttl);
        if (write.expiry !== 0) late.addExpiry(write.id, write.expiry, write.pttl);
      }
    }
    if (guardExpiry !== 0) early.addExpiry(guard!.id, guardExpiry, guardPttl);

    return this.attempt('write', async () => {
      if (anchor === undefined) {
        // Additions first, in the same tick as the scripts: no extra round trip, and a crash in
        // between leaves at most a membership or record without its entry (pruned later).
        const indexed = this.upkeep.start(early);
        const written = [...units].map(([unit, part]) => this.runWrite(unit, part, now, mustExist));
        const replies = await settleAll([...indexed, ...written]);
        const cleanup = new IndexWork();
        for (const reply of replies.slice(indexed.length)) cleanup.takeCleanup(reply as unknown[], 2);
        await this.upkeep.send(cleanup);
        return 'ok';
      }
      const [unit, part] = [...units][0]!;
      const indexed = this.upkeep.start(early);
      const written = this.runWrite(unit, part, now, mustExist, guard, guardHead, guardLife);
      const replies = await settleAll([...indexed, written]);
      const reply = replies.at(-1) as unknown[];
      const status = String(reply[0]) as WriteResult;
      if (status !== 'ok') return status;
      // Allowed: now the additions in other slots, with the clean-up the script asked for.
      const rest = guard === undefined ? new IndexWork() : late;
      if (guard !== undefined && reply[1] === '1') {
        const group = groupOf(guard.id);
        for (const tag of guardTags) if (tag !== group) rest.add(tag, guard.id, version, guardPttl);
      }
      rest.takeCleanup(reply, 2);
      await this.upkeep.send(rest);
      return 'ok';
    });
  }

  /**
   * Removes every key under this backend's prefix: SCAN (on every master of a cluster) +
   * UNLINK, O(keys in the database) as any full flush is. Keys of other prefixes are untouched.
   * @throws StoreUnavailableException when Redis fails (some keys may be gone by then).
   */
  async flush(): Promise<void> {
    const pattern = this.keys.pattern;
    await this.attempt('flush', async () => {
      for (const node of await this.transport.masters()) {
        let cursor = '0';
        do {
          const [next, keys] = (await node.sendCommand(['SCAN', cursor, 'MATCH', pattern, 'COUNT', String(FLUSH_BATCH)])) as [
            unknown,
            string[],
          ];
          cursor = String(next);
          if (keys.length === 0) continue;
          if (!this.transport.cluster) {
            await node.sendCommand(['UNLINK', ...keys]);
            continue;
          }
          // A multi-key command on a cluster needs one slot: one UNLINK per hash tag.
          const byHashTag = groupBy(keys, hashTagOf);
          await settleAll([...byHashTag.values()].map((list) => this.transport.send(list[0]!, false, ['UNLINK', ...list])));
        } while (cursor !== '0');
      }
    });
  }

  /** Removes expired carriers of the tag too, but counts only live ones. @throws StoreUnavailableException when Redis fails. */
  async flushByTag(tag: string, order?: WriteOrder): Promise<number> {
    return this.inOrder(
      order,
      () => this.flushByTagNow(tag, order),
      () => true,
      0,
    );
  }

  /**
   * The fence counter key of the lock named `tag` when `tag` is a group of this backend's locker
   * (a storage id): a flushed group is gone for good, so its counter goes with it instead of
   * staying for the locker's `fenceTtl` (one key per login, regenerate or destroy otherwise). A
   * group written again later draws its fences from Redis' clock, as a new one does. '' = none.
   */
  private fenceCounterOf(tag: string): string {
    return this.locker === undefined || tag.includes('.') ? '' : this.locker.fencingKeysOf(tag).fence;
  }

  private async flushByTagNow(tag: string, order: WriteOrder | undefined): Promise<number> {
    return this.attempt('flushByTag', async () => {
      const tagKey = this.tagKey(tag);
      // Standalone: through the coalescer (a destroy's metadata removals ride along), clean-up inside.
      const args = [tag, 'flush', this.fenceCounterOf(tag)];
      const sent = this.writes?.submit('f', this.prefixIndex, Date.now(), tagKey, args, order);
      const reply = await (sent ?? this.runScript('byTag', tagKey, args));
      if (reply === SKIPPED) return 0;
      const [, foreign, cleanup, removed] = reply as [unknown, string[], unknown[], unknown];
      const work = new IndexWork();
      work.takeCleanup(cleanup, 0);
      let count = Number(removed);
      if (foreign.length > 0) {
        const scores = scoresOf(foreign);
        const answers = await settleAll(
          [...bySlotUnit(scores.keys(), (id) => id)].map(([unit, ids]) => this.drop(unit, ids, 'tagged', tag, false)),
        );
        for (const record of answers.flat()) {
          if (record.code === 'live') count++;
          if (record.code === 'live' || record.code === 'dead') work.forgetRemoved([record]);
          else work.forget(tag, record.id, scores.get(record.id)!);
        }
      }
      await this.upkeep.send(work);
      return count;
    });
  }

  /** @throws StoreUnavailableException when Redis fails. */
  async findIdentifiersByTag(tag: string): Promise<string[]> {
    return this.attempt('findIdentifiersByTag', () => this.readTag(tag, false));
  }

  /**
   * Rounds of at most 1000 due records: one range read of the expiry index, one DROP script per
   * group checking each candidate against its entry (only expired entries go), then the
   * clean-up of their memberships and records. Stale records are dropped or re-scored on the
   * way, so each is visited once.
   * @throws InvalidArgumentException for a negative or NaN limit.
   * @throws StoreUnavailableException when Redis fails (entries answered before were removed).
   */
  /**
   * One ZSCAN step over the tag set per page (one script in the tag set's slot), then one MGET
   * of that page's members of other groups: O(limit). ZSCAN returns every member present during
   * the whole iteration (scores, the write versions, may change meanwhile: they do not move a
   * member in the scan order); a repeat across pages can only follow a rehash of the set.
   */
  async findIdentifiersByTagPage(tag: string, cursor: string | undefined, limit: number): Promise<TagPage> {
    const count = Math.max(1, Math.floor(limit));
    if (cursor !== undefined && !/^\d+$/.test(cursor))
      throw InvalidArgumentException.fromStore(`Invalid tag page cursor "${cursor}".`);
    return this.attempt('findIdentifiersByTagPage', async () => {
      const [next, found, foreign] = (await this.runScript('tagPage', this.tagKey(tag), [tag, cursor ?? '0', String(count)])) as [
        string,
        string[],
        string[],
      ];
      const ids = [...found, ...(await this.liveForeign(tag, foreign, false))];
      return next === '0' ? { ids } : { ids, cursor: next };
    });
  }

  async collectGarbage(limit?: number): Promise<BackendEntry[]> {
    const max = Math.floor(gcLimit(limit));
    const collected: BackendEntry[] = [];
    await this.attempt('collectGarbage', async () => {
      while (collected.length < max) {
        const wanted = Math.min(GC_CHUNK, max - collected.length);
        const now = Date.now();
        const { expiryKey } = this.keys;
        const flat = (await this.transport.send(expiryKey, true, [
          'ZRANGEBYSCORE',
          expiryKey,
          '-inf',
          String(now),
          'WITHSCORES',
          'LIMIT',
          '0',
          String(wanted),
        ])) as string[];
        if (flat.length === 0) break;
        const seen = scoresOf(flat);
        const records = new Map<string, DropRecord>();
        const answers = await settleAll(
          [...bySlotUnit(seen.keys(), (id) => id)].map(([unit, ids]) => this.drop(unit, ids, 'expired', '', true, now)),
        );
        for (const record of answers.flat()) records.set(record.id, record);
        const work = new IndexWork();
        let found = 0;
        for (const [id, score] of seen) {
          const record = records.get(id)!;
          if (record.code === 'dead' || record.code === 'live') {
            collected.push({ id, data: record.data });
            found++;
            work.forgetRemoved([record], score);
          } else if (record.code === 'kept' && record.expiry !== '0') {
            work.fixExpiry(id, score, record.expiry); // a live entry given a longer life
          } else {
            work.fixExpiry(id, score, ''); // entry gone, or without lifetime now
          }
        }
        const changed = await this.upkeep.send(work);
        if (flat.length / 2 < wanted) break;
        // Every record seen changed under us (another collector, concurrent writes): stop rather than spin.
        if (found === 0 && changed === 0) break;
      }
    });
    return collected;
  }

  /** Owns nothing: the client was passed in and is closed by its owner. */
  async close(): Promise<void> {}

  // ---- internals -------------------------------------------------------------------------

  /** Raw values aligned with `ids`: one MGET, or on a cluster one per group. */
  private async readRaw(ids: readonly string[]): Promise<unknown[]> {
    if (!this.transport.cluster) {
      const first = this.entryKey(ids[0]!);
      return (await this.transport.send(first, true, ['MGET', ...ids.map((id) => this.entryKey(id))])) as unknown[];
    }
    const groups = [...bySlotUnit(ids.keys(), (index) => ids[index]!).values()];
    const replies = await settleAll(
      groups.map((indexes) => {
        const keys = indexes.map((i) => this.entryKey(ids[i]!));
        return this.transport.send(keys[0]!, true, ['MGET', ...keys]) as Promise<unknown[]>;
      }),
    );
    const raw = new Array<unknown>(ids.length);
    groups.forEach((indexes, g) => indexes.forEach((index, k) => (raw[index] = replies[g]![k])));
    return raw;
  }

  /** Live carriers of `tag`: [id, data, ...] with data, else [id, ...]. Prunes stale memberships. */
  private async readTag(tag: string, withData: boolean): Promise<string[]> {
    const tagKey = this.tagKey(tag);
    const args = [tag, withData ? 'data' : 'ids'];
    // Right behind a queued write (a storage move's guard check, then its copy): one call, in order.
    const reply = this.writes?.pending === true ? this.writes.submit('f', this.prefixIndex, Date.now(), tagKey, args) : undefined;
    const [found, foreign] = (await (reply ?? this.runScript('byTag', tagKey, args))) as [string[], string[]];
    if (foreign.length === 0) return found;
    return [...found, ...(await this.liveForeign(tag, foreign, withData))];
  }

  /** Of tag members in other slots ([id, score, ...]), the live carriers ([id, data, ...] with data); prunes stale ones. */
  private async liveForeign(tag: string, foreign: readonly string[], withData: boolean): Promise<string[]> {
    if (foreign.length === 0) return [];
    const ids: string[] = [];
    const scores: string[] = [];
    for (let i = 0; i < foreign.length; i += 2) {
      ids.push(foreign[i]!);
      scores.push(foreign[i + 1]!);
    }
    const raw = await this.readRaw(ids);
    const now = Date.now();
    const result: string[] = [];
    const stale = new IndexWork();
    raw.forEach((value, i) => {
      const id = ids[i]!;
      const entry = typeof value === 'string' ? parseEntry(value) : undefined;
      if (entry === undefined || !entry.tags.split(' ').includes(tag)) {
        stale.forget(tag, id, scores[i]!);
      } else if (isLive(entry.expiry, now)) {
        result.push(id);
        if (withData) result.push(entry.data);
      }
    });
    await this.upkeep.send(stale);
    return result;
  }

  /** One DROP script for ids of one slot unit. */
  private async drop(
    unit: string,
    ids: readonly string[],
    mode: 'any' | 'tagged' | 'expired',
    tag: string,
    withData: boolean,
    now = Date.now(),
  ): Promise<DropRecord[]> {
    const group = unit.startsWith('.') ? '' : unit;
    const key = this.keys.unitKey(unit, ids[0]!);
    return dropRecordsOf((await this.runScript('drop', key, [group, mode, tag, withData ? '1' : '0', ...ids], now)) as string[]);
  }

  /** One WRITE script for one slot unit; `mustExist` only for the unit they belong to. */
  private runWrite(
    unit: string,
    part: { sets: readonly EncodedWrite[]; removes: readonly string[] },
    now: number,
    mustExist: readonly string[],
    guard?: WriteGuard,
    guardHead = '',
    guardLife = { expiry: 0, pttl: 0 },
    order?: WriteOrder,
  ): Promise<unknown> {
    const group = unit.startsWith('.') ? '' : unit;
    const firstId = guard?.id ?? mustExist[0] ?? part.sets[0]?.id ?? part.removes[0]!;
    const key = this.keys.unitKey(unit, firstId);
    const args = [group];
    if (guard === undefined) args.push('', '0', '0', '', '', '0');
    else {
      args.push(guard.id, String(guard.fence), guard.create === true ? '1' : '0', guardHead);
      args.push(guardLife.expiry === 0 ? '' : String(guardLife.expiry), String(guardLife.pttl));
    }
    if (guard?.unlocked === true) {
      const lock = this.locker!.fencingKeysOf(groupOf(guard.id));
      args.push(lock.lock, lock.fence, String(lock.fenceTtl));
    } else args.push('', '', '0');
    args.push(guard?.maxEntries === undefined ? '0' : String(guard.maxEntries), guard?.uncountedPrefix ?? '');
    args.push(String(mustExist.length), ...mustExist);
    args.push(String(part.sets.length));
    for (const write of part.sets) args.push(write.id, write.value, String(write.pttl));
    args.push(...part.removes);
    if (this.writes !== undefined) {
      // COPY: the source group and its lock key ('' = unchecked) first, then the WRITE unit's arguments.
      if (guard?.copyFrom !== undefined) {
        const sourceLock = guard.copyUnlocked === true ? this.locker!.fencingKeysOf(guard.copyFrom).lock : '';
        return this.writes.submit('c', this.prefixIndex, now, key, [guard.copyFrom, sourceLock, ...args], order);
      }
      return this.writes.submit('w', this.prefixIndex, now, key, args, order);
    }
    return this.runScript('write', key, args, now);
  }

  /**
   * A `mustMatch` batch (standalone, `movesGroups`): one MATCH unit, writing nothing; the batch
   * may hold nothing else (a check beside the writes it guards, chained by `WriteOrder`).
   */
  private async matchNow(batch: WriteBatch, guard: WriteGuard | undefined, order: WriteOrder | undefined): Promise<WriteResult> {
    const matches = batch.mustMatch!;
    if (
      this.writes === undefined ||
      guard !== undefined ||
      (batch.sets?.length ?? 0) > 0 ||
      (batch.removes?.length ?? 0) > 0 ||
      (batch.mustExist?.length ?? 0) > 0
    ) {
      throw new InvalidArgumentException(
        'WriteBatch.mustMatch needs a standalone RedisBackend of createRedisSessionStores (movesGroups), in a batch of its own (no sets, removes, mustExist or guard).',
      );
    }
    const args: string[] = [];
    for (const { id, data } of matches) {
      assertCacheIdentifier(id, 'cache entry identifier');
      if (typeof data !== 'string') throw new InvalidArgumentException('WriteBatch.mustMatch: data must be a string.');
      args.push(id, data);
    }
    return this.attempt('write', async () => {
      const reply = await this.writes!.submit('m', this.prefixIndex, Date.now(), this.entryKey(matches[0]!.id), args, order);
      if (reply === SKIPPED) return 'skipped';
      return String((reply as unknown[])[0]) as WriteResult;
    });
  }

  /** Runs a backend script with KEYS = [key] and ARGV = prefix, now, ...args, routed by `key`. */
  private runScript(
    name: keyof typeof BACKEND_SCRIPTS,
    key: string,
    args: readonly string[],
    now = Date.now(),
  ): Promise<unknown> {
    return this.transport.evalScript(BACKEND_SCRIPTS[name], key, [this.prefix, String(now), ...args]);
  }

  /**
   * A write honouring `order` (see `WriteOrder`): on a standalone Redis `run` chains it in the
   * coalescer's script; on a cluster it waits for its prerequisites here. A write that throws
   * did not apply, whatever became of its ticket.
   */
  private async inOrder<T>(
    order: WriteOrder | undefined,
    run: () => Promise<T>,
    applied: (result: T) => boolean,
    skipped: T,
  ): Promise<T> {
    if (order === undefined) return run();
    if (this.writes === undefined) return runInOrder(order, () => run(), applied, skipped);
    try {
      return await run();
    } catch (error) {
      order.ticket?.settle(false);
      throw error;
    }
  }

  private attempt<T>(operation: string, work: () => Promise<T>): Promise<T> {
    return attemptStore(`redis ${operation}`, work);
  }
}

/**
 * A ZRANGE WITHSCORES reply as id -> score: flat `[id, score, ...]` strings on RESP2, pairs
 * `[[id, score], ...]` with numeric scores on RESP3 (node-redis 6's default protocol).
 */
function scoresOf(flat: readonly (string | readonly [string, string | number])[]): Map<string, string> {
  const scores = new Map<string, string>();
  if (flat.length > 0 && Array.isArray(flat[0])) {
    for (const pair of flat as readonly (readonly [string, string | number])[]) scores.set(pair[0], String(pair[1]));
    return scores;
  }
  for (let i = 0; i < flat.length; i += 2) scores.set(flat[i] as string, flat[i + 1] as string);
  return scores;
}
