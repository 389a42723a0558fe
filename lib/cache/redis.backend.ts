import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { lifetimeMs } from './lifetime.js';
import { isNoScriptError, LuaScript } from './lua-script.js';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { assertCacheIdentifier, assertIdentifier } from './identifier.js';
import type {
  BackendEntry,
  BackendWrite,
  TaggableBackend,
  WriteBatch,
  WriteGuard,
  WriteResult,
} from './taggable-backend.interface.js';

/**
 * The part of a node-redis (v5) client the backend uses. Every `createClient()` client fits,
 * whatever its modules, scripts or RESP version.
 */
export interface RedisCommandClient {
  sendCommand(args: readonly string[]): Promise<unknown>;
}

/** Options of {@link RedisBackend}. */
export interface RedisBackendOptions {
  /**
   * A connected node-redis v5 client (`createClient()`) of a standalone Redis or Valkey, not a
   * `createCluster()` or `createSentinel()` client. The backend never connects or closes it. The
   * client's reconnect and offline-queue settings decide how long an operation waits while
   * Redis is unreachable; an operation that fails throws `StoreUnavailableException`.
   */
  client: RedisCommandClient;
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
}

const DEFAULT_PREFIX = 'sess:';
const DEFAULT_SAFETY_TTL_MARGIN = 3600;
/** Entries collected per script run when `collectGarbage()` has no limit: bounds how long one run blocks Redis. */
const GC_CHUNK = 1000;
/** Keys per SCAN step and per UNLINK in `flush()`. */
const FLUSH_BATCH = 1000;
/** `has()` reads only this many leading bytes: enough for the expiry header. */
const HEADER_BYTES = 32;

/*
 * Key layout (P = prefix; P contains no braces, so the text before the first `{` of a key names
 * its owner and backends with different prefixes can never collide):
 *
 *   P{group}rest   an entry (a string, see below). The group of an id is the text before its
 *                  first `.`, rest is the remainder including that dot: `sess:s:{k3J9}.cart`,
 *                  `sess:m:{k3J9}` for an id without a dot.
 *   P{tag}#tag     a set of the ids carrying `tag`.
 *   P{}#expiry     one sorted set: id -> expiry epoch ms, for entries that have a lifetime.
 *
 * The braces are Redis Cluster hash tags: all entries of one group and the set of the tag named
 * like that group hash to one slot. A session's storage entries (`storageId.key`, tagged with
 * `storageId`) therefore share one slot with their guard entry and their tag set, which is what
 * the slot-group rule of `TaggableBackend` promises callers.
 *
 * An entry is one string `<expiry ms or 0>\n<tags separated by spaces>\n<data>` (identifiers and
 * tags contain neither spaces nor newlines, the data may contain anything), so a read is one GET
 * and many reads are one MGET, decoded here; scripts find an entry's tags in the entry itself.
 *
 * Expiry is checked against this process's clock (`Date.now()`), not Redis `TIME`: reads stay
 * plain GET/MGET answered without a script, and the check agrees with the session manager's own
 * inactivity checks and with MemoryBackend. The cost is that application servers need synchronised
 * clocks (NTP): a skew of s seconds moves expiry by s. Native TTLs (Redis' clock) add
 * `safetyTtlMargin`, far more than any sane skew, so Redis never drops an entry before it expired.
 *
 * Every mutation is one Lua script (EVALSHA; SCRIPT LOAD pipelined with the first use, EVAL when
 * Redis answers NOSCRIPT after a restart or failover), so on one Redis each operation is atomic
 * and costs one round trip: entries, tag sets and the expiry index change together or not at all.
 *
 * Redis Cluster: the layout is cluster-ready, but this class drives a standalone client only;
 * here a script also updates keys of other slots (the global expiry set, metadata tag sets). In
 * a cluster a script may only touch keys of one slot, so a cluster driver keeps the scripts that
 * must be atomic to one slot - `write()` with a guard (entries, guard and same-group tag sets of
 * one session) and `getByTag()` of a storage tag, whose members share its group - and sends the
 * index upkeep that crosses slots as per-key commands in the same pipeline: ZADD/ZREM on the
 * single global expiry set, SADD on tag sets of other groups (metadata tags such as "all
 * sessions"). Garbage collection and multi-group operations (flushByTag of a tag spanning
 * groups) then run as pipelines of per-key commands rather than one script. Readers already
 * verify tag sets and GC already verifies expiry records against the entries (see below), which
 * is what makes that upkeep safe outside the atomic script.
 *
 * Tag sets are pruned lazily: a reader drops members whose entry is gone or no longer carries the
 * tag, so a membership left behind by anything (a native-TTL expiry, a manual DEL) costs one
 * check once. Tag sets get a native TTL as long as their longest-living member's, so leftovers
 * disappear even if nothing ever reads them. Garbage collection likewise checks each due record
 * against the entry (re-scoring it if the entry was given a longer life by hand).
 */

/** Shared head of every script: key layout and entry format, mirrored by `entryKey()`/`decode()` below. */
const LUA_PRELUDE = `
local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local expiryKey = KEYS[1]

local function entryKey(id)
  local dot = string.find(id, '.', 1, true)
  if dot then
    return prefix .. '{' .. string.sub(id, 1, dot - 1) .. '}' .. string.sub(id, dot)
  end
  return prefix .. '{' .. id .. '}'
end

local function tagKey(tag)
  return prefix .. '{' .. tag .. '}#tag'
end

-- "<expiry>\\n<tags>\\n<data>" -> expiry (string), tags, data, end of the header
local function parse(value)
  local a = string.find(value, '\\n', 1, true)
  local b = string.find(value, '\\n', a + 1, true)
  return string.sub(value, 1, a - 1), string.sub(value, a + 1, b - 1), string.sub(value, b + 1), b
end

local function isLive(expiry)
  local e = tonumber(expiry)
  return e == 0 or e > now
end

local function hasTag(tags, tag)
  return string.find(' ' .. tags .. ' ', ' ' .. tag .. ' ', 1, true) ~= nil
end

-- Removes an entry, its tag memberships and its expiry record; answers whether it was live.
local function drop(id, key, value)
  local expiry, tags = parse(value)
  for tag in string.gmatch(tags, '%S+') do
    redis.call('SREM', tagKey(tag), id)
  end
  redis.call('DEL', key)
  if expiry ~= '0' then
    redis.call('ZREM', expiryKey, id)
  end
  return isLive(expiry)
end
`;

/**
 * ARGV: prefix, now, guard id ('' = no guard), fence, create ('1'/'0'), guard tags, number of
 * sets, then id, encoded value, native TTL ms ('0' = none) per set, then the ids to remove.
 */
const WRITE_SCRIPT = `${LUA_PRELUDE}
-- A tag set lives as long as its longest-living member (pttl 0 = a member that never expires).
local function addMember(tag, id, pttl)
  local key = tagKey(tag)
  local existed = redis.call('EXISTS', key)
  redis.call('SADD', key, id)
  if pttl == 0 then
    if existed == 1 then redis.call('PERSIST', key) end
  elseif existed == 0 then
    redis.call('PEXPIRE', key, pttl)
  else
    local current = redis.call('PTTL', key)
    if current >= 0 and current < pttl then redis.call('PEXPIRE', key, pttl) end
  end
end

local function store(id, value, pttl)
  local key = entryKey(id)
  local expiry, tags = parse(value)
  local old = redis.call('GET', key)
  if old then
    local oldExpiry, oldTags = parse(old)
    for tag in string.gmatch(oldTags, '%S+') do
      if not hasTag(tags, tag) then redis.call('SREM', tagKey(tag), id) end
    end
    if oldExpiry ~= '0' and expiry == '0' then redis.call('ZREM', expiryKey, id) end
  end
  if pttl > 0 then
    redis.call('SET', key, value, 'PX', pttl)
  else
    redis.call('SET', key, value)
  end
  for tag in string.gmatch(tags, '%S+') do addMember(tag, id, pttl) end
  if expiry ~= '0' then redis.call('ZADD', expiryKey, expiry, id) end
end

local guardId = ARGV[3]
local fence = ARGV[4]
if guardId ~= '' then
  local current = redis.call('GET', entryKey(guardId))
  local live = false
  if current then
    local expiry, _, data = parse(current)
    if isLive(expiry) then
      live = true
      local stored = tonumber(data)
      if stored and stored > tonumber(fence) then return 'fenced' end
    end
  end
  if not live then
    if ARGV[5] ~= '1' then return 'missing' end
    -- An expired guard entry counts as missing and is replaced.
    store(guardId, '0\\n' .. ARGV[6] .. '\\n' .. fence, 0)
  end
end

local i = 8
for _ = 1, tonumber(ARGV[7]) do
  store(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]))
  i = i + 3
end
for j = i, #ARGV do
  local key = entryKey(ARGV[j])
  local value = redis.call('GET', key)
  if value then drop(ARGV[j], key, value) end
end

if guardId ~= '' then
  -- Keeps the guard's tags, expiry and native TTL; a batch that removed it (a destroy) wins.
  local key = entryKey(guardId)
  local current = redis.call('GET', key)
  if current then
    local _, _, _, headerEnd = parse(current)
    redis.call('SET', key, string.sub(current, 1, headerEnd) .. fence, 'KEEPTTL')
  end
end
return 'ok'
`;

/** ARGV: prefix, now, id. Answers 1 if a live entry was removed. */
const REMOVE_SCRIPT = `${LUA_PRELUDE}
local key = entryKey(ARGV[3])
local value = redis.call('GET', key)
if value and drop(ARGV[3], key, value) then return 1 end
return 0
`;

/** ARGV: prefix, now, tag, '1' to answer data too. Answers [id, data, id, data, ...] or [id, ...]. */
const BY_TAG_SCRIPT = `${LUA_PRELUDE}
local tag = ARGV[3]
local withData = ARGV[4] == '1'
local setKey = tagKey(tag)
local result = {}
for _, id in ipairs(redis.call('SMEMBERS', setKey)) do
  local value = redis.call('GET', entryKey(id))
  if not value then
    redis.call('SREM', setKey, id)
  else
    local expiry, tags, data = parse(value)
    if not hasTag(tags, tag) then
      redis.call('SREM', setKey, id)
    elseif isLive(expiry) then
      result[#result + 1] = id
      if withData then result[#result + 1] = data end
    end
  end
end
return result
`;

/** ARGV: prefix, now, tag. Removes expired members too; answers how many live ones went. */
const FLUSH_TAG_SCRIPT = `${LUA_PRELUDE}
local tag = ARGV[3]
local setKey = tagKey(tag)
local removed = 0
for _, id in ipairs(redis.call('SMEMBERS', setKey)) do
  local key = entryKey(id)
  local value = redis.call('GET', key)
  if value then
    local _, tags = parse(value)
    if hasTag(tags, tag) and drop(id, key, value) then removed = removed + 1 end
  end
end
redis.call('DEL', setKey)
return removed
`;

/**
 * ARGV: prefix, now, limit. Walks the expiry index from the oldest record; each record visited
 * is removed or re-scored past now, so the loop ends and costs O(expired + stale records).
 * Answers [id, data, id, data, ...], oldest expiry first.
 */
const GC_SCRIPT = `${LUA_PRELUDE}
local limit = tonumber(ARGV[3])
local result = {}
local found = 0
while found < limit do
  local ids = redis.call('ZRANGEBYSCORE', expiryKey, '-inf', ARGV[2], 'LIMIT', 0, limit - found)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local key = entryKey(id)
    local value = redis.call('GET', key)
    if not value then
      redis.call('ZREM', expiryKey, id)
    else
      local expiry, _, data = parse(value)
      if expiry == '0' then
        redis.call('ZREM', expiryKey, id)
      elseif isLive(expiry) then
        redis.call('ZADD', expiryKey, expiry, id)
      else
        drop(id, key, value)
        result[#result + 1] = id
        result[#result + 1] = data
        found = found + 1
      end
    end
  end
end
return result
`;


const SCRIPTS = {
  write: new LuaScript(WRITE_SCRIPT),
  remove: new LuaScript(REMOVE_SCRIPT),
  byTag: new LuaScript(BY_TAG_SCRIPT),
  flushTag: new LuaScript(FLUSH_TAG_SCRIPT),
  gc: new LuaScript(GC_SCRIPT),
} as const;

const NO_TAGS: readonly string[] = Object.freeze([]);
const NO_WRITES: readonly BackendWrite[] = Object.freeze([]);

/**
 * Cache backend on Redis (node-redis v5), for sessions shared by many processes. Key layout,
 * atomicity and cost: see the comment above. In short: one command per operation (GET, MGET,
 * GETRANGE or one script), tag look-ups O(matches), `collectGarbage` O(expired) through an
 * expiry sorted set, `write()` atomic with its guard. Redis errors surface as
 * `StoreUnavailableException`.
 */
export class RedisBackend implements TaggableBackend {
  readonly name = 'redis';

  /** The key prefix in use (see {@link RedisBackendOptions.prefix}). */
  readonly prefix: string;
  private readonly client: RedisCommandClient;
  private readonly marginMs: number;
  private readonly expiryKey: string;
  /** Scripts whose SCRIPT LOAD was sent on this client. */
  private readonly loaded = new Set<LuaScript>();

  /** @throws InvalidOptionException for a missing client, a prefix with braces or a negative margin. */
  constructor(options: RedisBackendOptions) {
    if (options === undefined || options === null || typeof options.client?.sendCommand !== 'function') {
      throw InvalidOptionException.create('redis.client', 'must be a connected node-redis v5 client');
    }
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
      throw InvalidOptionException.create(
        'redis.prefix',
        `must be a string without "{" and "}" (they delimit Redis Cluster hash tags), got ${JSON.stringify(prefix)}`,
      );
    }
    const margin = options.safetyTtlMargin ?? DEFAULT_SAFETY_TTL_MARGIN;
    if (typeof margin !== 'number' || !Number.isFinite(margin) || margin < 0) {
      throw InvalidOptionException.create('redis.safetyTtlMargin', `must be a number of seconds >= 0, got ${String(margin)}`);
    }
    this.client = options.client;
    this.prefix = prefix;
    this.marginMs = margin * 1000;
    this.expiryKey = `${prefix}{}#expiry`;
  }

  /** The Redis key of an entry (see the key layout above); exposed for tests and tooling. */
  entryKey(id: string): string {
    const dot = id.indexOf('.');
    return dot < 0 ? `${this.prefix}{${id}}` : `${this.prefix}{${id.slice(0, dot)}}${id.slice(dot)}`;
  }

  /** The Redis key of the set of ids carrying `tag`. */
  tagKey(tag: string): string {
    return `${this.prefix}{${tag}}#tag`;
  }

  /** The Redis key of the expiry index (a sorted set: id -> expiry epoch ms). */
  get expiryIndexKey(): string {
    return this.expiryKey;
  }

  /** @throws StoreUnavailableException when Redis fails. */
  async get(id: string): Promise<string | undefined> {
    const raw = await this.command('get', ['GET', this.entryKey(id)]);
    return decode(raw, Date.now());
  }

  /** One MGET. @throws StoreUnavailableException when Redis fails. */
  async getMany(ids: readonly string[]): Promise<(string | undefined)[]> {
    if (ids.length === 0) return [];
    const raw = await this.command('getMany', ['MGET', ...ids.map((id) => this.entryKey(id))]);
    const now = Date.now();
    return (raw as unknown[]).map((value) => decode(value, now));
  }

  /** One script; prunes stale tag memberships on the way. @throws StoreUnavailableException when Redis fails. */
  async getByTag(tag: string): Promise<BackendEntry[]> {
    const flat = (await this.script('getByTag', SCRIPTS.byTag, [tag, '1'])) as string[];
    const entries: BackendEntry[] = [];
    for (let i = 0; i < flat.length; i += 2) entries.push({ id: flat[i]!, data: flat[i + 1]! });
    return entries;
  }

  /** Reads only the entry's header (GETRANGE), not its data. @throws StoreUnavailableException when Redis fails. */
  async has(id: string): Promise<boolean> {
    const head = await this.command('has', ['GETRANGE', this.entryKey(id), '0', String(HEADER_BYTES - 1)]);
    if (typeof head !== 'string' || head.length === 0) return false;
    const expiry = Number(head.slice(0, head.indexOf('\n')));
    return expiry === 0 || expiry > Date.now();
  }

  /**
   * @throws InvalidArgumentException for a bad id, tag, lifetime or data (nothing is stored).
   * @throws StoreUnavailableException when Redis fails.
   */
  async set(id: string, data: string, tags?: readonly string[], lifetime?: number): Promise<void> {
    await this.write({ sets: [{ id, data, tags: tags ?? NO_TAGS, lifetime }] });
  }

  /** @throws StoreUnavailableException when Redis fails. */
  async remove(id: string): Promise<boolean> {
    return (await this.script('remove', SCRIPTS.remove, [id])) === 1;
  }

  /**
   * One script: the guard check, the sets, the removes and the guard update are atomic.
   * @throws InvalidArgumentException for a bad id, tag, lifetime, data or fence (nothing is written).
   * @throws StoreUnavailableException when Redis fails (then nothing was written either).
   */
  async write(batch: WriteBatch, guard?: WriteGuard): Promise<WriteResult> {
    const sets = batch.sets ?? NO_WRITES;
    const removes = batch.removes ?? NO_TAGS;
    if (sets.length === 0 && removes.length === 0 && guard === undefined) return 'ok';

    // Validate and encode everything first: a bad entry must not leave half a batch applied.
    const now = Date.now();
    const args: string[] = [];
    if (guard === undefined) {
      args.push('', '0', '0', '');
    } else {
      assertCacheIdentifier(guard.id, 'cache entry identifier');
      if (typeof guard.fence !== 'number' || Number.isNaN(guard.fence)) {
        throw new InvalidArgumentException(
          `Invalid fence ${String(guard.fence)} for guard entry "${guard.id}": it must be a number.`,
        );
      }
      const guardTags = guard.tags ?? NO_TAGS;
      guardTags.forEach((tag) => assertIdentifier(tag, 'cache tag'));
      args.push(guard.id, String(guard.fence), guard.create === true ? '1' : '0', guardTags.join(' '));
    }
    args.push(String(sets.length));
    for (const write of sets) {
      assertCacheIdentifier(write.id, 'cache entry identifier');
      if (typeof write.data !== 'string') {
        throw new InvalidArgumentException(
          `Cannot store cache entry "${write.id}": its data must be a string, got ${typeof write.data}.`,
        );
      }
      const tags = write.tags ?? NO_TAGS;
      tags.forEach((tag) => assertIdentifier(tag, 'cache tag'));
      const entryLifetimeMs = lifetimeMs(write.id, write.lifetime);
      const expiry = entryLifetimeMs === 0 ? 0 : now + entryLifetimeMs;
      const nativeTtl = entryLifetimeMs === 0 ? 0 : Math.ceil(entryLifetimeMs + this.marginMs);
      args.push(write.id, `${expiry}\n${tags.join(' ')}\n${write.data}`, String(nativeTtl));
    }
    for (const id of removes) {
      assertCacheIdentifier(id, 'cache entry identifier');
      args.push(id);
    }

    return (await this.script('write', SCRIPTS.write, args, now)) as WriteResult;
  }

  /**
   * Removes every key under this backend's prefix: SCAN + UNLINK, O(keys in the database) as
   * any full flush is. Keys of other prefixes are untouched.
   * @throws StoreUnavailableException when Redis fails (some keys may be gone by then).
   */
  async flush(): Promise<void> {
    const pattern = `${escapeGlob(this.prefix)}{*`;
    await this.attempt('flush', async () => {
      let cursor = '0';
      do {
        const [next, keys] = (await this.client.sendCommand([
          'SCAN',
          cursor,
          'MATCH',
          pattern,
          'COUNT',
          String(FLUSH_BATCH),
        ])) as [string, string[]];
        cursor = String(next);
        if (keys.length > 0) await this.client.sendCommand(['UNLINK', ...keys]);
      } while (cursor !== '0');
    });
  }

  /** Removes expired carriers of the tag too, but counts only live ones. @throws StoreUnavailableException when Redis fails. */
  async flushByTag(tag: string): Promise<number> {
    return Number(await this.script('flushByTag', SCRIPTS.flushTag, [tag]));
  }

  /** @throws StoreUnavailableException when Redis fails. */
  async findIdentifiersByTag(tag: string): Promise<string[]> {
    return (await this.script('findIdentifiersByTag', SCRIPTS.byTag, [tag, '0'])) as string[];
  }

  /**
   * One script per call with a `limit`; without one, scripts of at most 1000 entries each until
   * nothing is due, so a large backlog never blocks Redis in one long script.
   * @throws InvalidArgumentException for a negative or NaN limit.
   * @throws StoreUnavailableException when Redis fails (entries answered before were removed).
   */
  async collectGarbage(limit?: number): Promise<BackendEntry[]> {
    if (limit !== undefined && (typeof limit !== 'number' || Number.isNaN(limit) || limit < 0)) {
      throw new InvalidArgumentException(
        `Invalid garbage collection limit ${String(limit)}: use a number >= 0, or omit it for no limit.`,
      );
    }
    const max = limit ?? Infinity;
    const collected: BackendEntry[] = [];
    while (collected.length < max) {
      const chunk = Math.min(GC_CHUNK, max - collected.length);
      const flat = (await this.script('collectGarbage', SCRIPTS.gc, [String(Math.floor(chunk))])) as string[];
      for (let i = 0; i < flat.length; i += 2) collected.push({ id: flat[i]!, data: flat[i + 1]! });
      if (flat.length / 2 < chunk || chunk < 1) break;
    }
    return collected;
  }

  /** Owns nothing: the client was passed in and is closed by its owner. */
  async close(): Promise<void> {}

  private async command(operation: string, args: string[]): Promise<unknown> {
    return this.attempt(operation, () => this.client.sendCommand(args));
  }

  /** Runs a script with ARGV = prefix, now, ...args and KEYS = [expiry index]. */
  private async script(operation: string, script: LuaScript, args: readonly string[], now = Date.now()): Promise<unknown> {
    const tail = ['1', this.expiryKey, this.prefix, String(now), ...args];
    return this.attempt(operation, async () => {
      if (!this.loaded.has(script)) {
        this.loaded.add(script);
        // Sent in the same tick as the EVALSHA below, so it rides the same round trip and runs first.
        this.client.sendCommand(['SCRIPT', 'LOAD', script.source]).catch(() => this.loaded.delete(script));
      }
      try {
        return await this.client.sendCommand(['EVALSHA', script.sha, ...tail]);
      } catch (error) {
        // Matched by message: the client may come from another copy of node-redis than ours.
        if (!isNoScriptError(error)) throw error;
        // Redis lost its script cache (restart, failover, SCRIPT FLUSH): EVAL runs and caches it.
        return await this.client.sendCommand(['EVAL', script.source, ...tail]);
      }
    });
  }

  private async attempt<T>(operation: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw StoreUnavailableException.create(`redis ${operation}`, error);
    }
  }
}

/** The data of an encoded entry, or `undefined` if it is missing, not ours or expired at `now`. */
function decode(raw: unknown, now: number): string | undefined {
  if (typeof raw !== 'string') return undefined;
  const a = raw.indexOf('\n');
  const b = a < 0 ? -1 : raw.indexOf('\n', a + 1);
  if (b < 0) return undefined;
  const expiry = Number(raw.slice(0, a));
  return expiry !== 0 && expiry <= now ? undefined : raw.slice(b + 1);
}

/** Escapes Redis glob metacharacters so a prefix matches only itself. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
