import { randomInt } from 'node:crypto';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { lifetimeMs } from '../cache/lifetime.js';
import { isNoScriptError, LuaScript } from './lua-script.js';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { assertCacheIdentifier, assertIdentifier } from '../cache/identifier.js';
import type {
  BackendEntry,
  BackendWrite,
  TaggableBackend,
  WriteBatch,
  WriteGuard,
  WriteResult,
} from '../cache/taggable-backend.interface.js';

/**
 * The part of a standalone node-redis (v5) client the backend uses. Every `createClient()`
 * client fits, whatever its modules, scripts or RESP version.
 */
export interface RedisCommandClient {
  sendCommand(args: readonly string[]): Promise<unknown>;
}

/**
 * The part of a node-redis (v5) Redis Cluster client (`createCluster()`) the backend uses:
 * commands routed by their first key, and the master nodes (for `flush()`, which scans each).
 */
export interface RedisClusterCommandClient {
  sendCommand(firstKey: string | undefined, isReadonly: boolean | undefined, args: string[]): Promise<unknown>;
  /** The cluster's master nodes (`cluster.masters`). */
  readonly masters: readonly unknown[];
  /** A connected client of one of `masters` (`cluster.nodeClient(node)`). */
  nodeClient(node: unknown): Promise<RedisCommandClient>;
}

/** Options of {@link RedisBackend}. */
export interface RedisBackendOptions {
  /**
   * A connected node-redis v5 client: `createClient()` (standalone Redis or Valkey) or
   * `createCluster()` (Redis Cluster >= 7, told apart by its `masters`). Not a
   * `createSentinel()` client. The backend never connects or closes it. The client's reconnect
   * and offline-queue settings decide how long an operation waits while Redis is unreachable;
   * an operation that fails throws `StoreUnavailableException`.
   */
  client: RedisCommandClient | RedisClusterCommandClient;
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
/** Expiry records visited per round of `collectGarbage()`: bounds the size of one round. */
const GC_CHUNK = 1000;
/** Keys per SCAN step and per UNLINK in `flush()`. */
const FLUSH_BATCH = 1000;
/** `has()` reads only this many leading bytes: enough for the header line (expiry and version). */
const HEADER_BYTES = 48;
/** Write versions are random integers below this (exact as sorted-set scores). */
const VERSION_LIMIT = 2 ** 48;

/*
 * Key layout (P = prefix; P contains no braces, so the text before the first `{` of a key names
 * its owner and backends with different prefixes can never collide):
 *
 *   P{group}rest   an entry (a string, see below). The group of an id is the text before its
 *                  first `.`, rest is the remainder including that dot: `sess:s:{k3J9}.cart`,
 *                  `sess:m:{k3J9}` for an id without a dot.
 *   P{tag}#tag     a sorted set of the ids carrying `tag`, scored with the version of the write
 *                  that added them (see "Versions" below).
 *   P{}#expiry     one sorted set: id -> expiry epoch ms, for entries that have a lifetime.
 *
 * The braces are Redis Cluster hash tags: all entries of one group and the tag set named like
 * that group hash to one slot. A session's storage entries (`storageId.key`, tagged with
 * `storageId`) therefore share one slot with their guard entry and their tag set, which is what
 * the slot-group rule of `TaggableBackend` promises callers. (An id starting with a dot has an
 * empty group, `P{}.x`: Redis then hashes the whole key, so such an id is a slot of its own.)
 *
 * An entry is one string `<expiry ms or 0> <version>\n<tags separated by spaces>\n<data>`
 * (identifiers and tags contain neither spaces nor newlines, the data may contain anything), so
 * a read is one GET and many reads are one MGET, decoded here; scripts find an entry's tags in
 * the entry itself.
 *
 * Expiry is checked against this process's clock (`Date.now()`), not Redis `TIME`: reads stay
 * plain GET/MGET answered without a script, and the check agrees with the session manager's own
 * inactivity checks and with MemoryBackend. The cost is that application servers need synchronised
 * clocks (NTP): a skew of s seconds moves expiry by s. Native TTLs (Redis' clock) add
 * `safetyTtlMargin`, far more than any sane skew, so Redis never drops an entry before it expired.
 *
 * One slot per script. Every Lua script touches the keys of one cluster slot only, so the same
 * code runs on a standalone Redis and on a Redis Cluster:
 *
 *   WRITE    one group: its entries, the guard entry and the group's own tag set (the tag named
 *            like the group). `write()` with a guard is this one script, atomic: the guard check,
 *            the sets, the removes and the fence update apply together or not at all.
 *   DROP     one group: removes entries (`remove()`, the foreign members of `flushByTag()`,
 *            expired entries for `collectGarbage()`) and answers what they were.
 *   BY_TAG   one tag set: reads (or flushes) the members of the tag's own group there and then,
 *            and answers the other members for the caller to read.
 *   TAG_ADD, TAG_FORGET, EXPIRY_FIX   one index key: tag-set and expiry-index upkeep.
 *
 * Index upkeep whose keys lie in other slots (the expiry index, tag sets of other groups, such as
 * the metadata tags "all sessions" or a user's tag) is sent as separate commands. Additions go
 * in the same tick as the entry script (node-redis pipelines them: one round trip on a
 * standalone client, one per node in parallel on a cluster) and are queued before it: TAG_ADD
 * of each foreign tag set and one ZADD on the expiry index. Removals of foreign memberships and
 * expiry records that only the script's answer names (the old tags of an overwritten or removed
 * entry) follow in a second round trip, only when there are any. A guarded write sends its
 * foreign additions only after the guard allowed it, so a refused write changes nothing anywhere.
 *
 * What a crash or a failing node between those commands can leave, and why it is harmless:
 * - a tag-set member whose entry is gone, or no longer carries the tag: readers check every
 *   member against the entry and prune it (one check, once); tag sets also get a native TTL as
 *   long as their longest-living member's, so leftovers disappear even if nothing reads them;
 * - an expiry record whose entry is gone, has no lifetime or lives longer: garbage collection
 *   checks every due record against the entry before removing anything, and drops or re-scores
 *   the record;
 * - an entry without its expiry record: invisible once expired (reads check the header), and
 *   Redis drops it by its native TTL (lifetime + `safetyTtlMargin`), but garbage collection
 *   does not hand it over for clean-up;
 * - an entry without a foreign tag membership (its TAG_ADD failed, e.g. that node was down;
 *   the write then reports the failure): the next write of the entry adds it again.
 *
 * Versions. Every write stamps the entries it stores with a random version, kept in the entry
 * header and as the member's score in each tag set it adds the entry to. A membership is only
 * ever removed from outside the entry's slot by TAG_FORGET, which compares the score with the
 * version it saw: a removal that arrives after the id was stored again (with a new version) leaves
 * the new membership alone, whatever order the commands reach the nodes in. Likewise EXPIRY_FIX
 * drops or re-scores a record only if it still has the score that was seen.
 *
 * Scripts run by EVALSHA; on a standalone client SCRIPT LOAD rides with the first use, on a
 * cluster each node learns a script through EVAL when it first answers NOSCRIPT (as after a
 * restart or failover).
 *
 * Multi-group operations are per group: an unguarded `write()` whose ids span groups runs one
 * WRITE per group (each atomic, sent together); `getMany()` on a cluster sends one MGET per
 * group; `flush()` on a cluster scans every master. The expiry index is one sorted set, one key
 * in one slot: every write with a lifetime adds a ZADD there, so on a cluster that slot's node
 * carries the index load (one small command per write), which keeps garbage collection
 * O(expired) with one range read per chunk.
 */

/** Shared head of the per-slot scripts: key layout and entry format, mirrored by `entryKey()`/`parseHeader()` below. */
const LUA_PRELUDE = `
local prefix = ARGV[1]
local now = tonumber(ARGV[2])

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

local function groupOf(id)
  local dot = string.find(id, '.', 1, true)
  if dot then return string.sub(id, 1, dot - 1) end
  return id
end

-- "<expiry> <version>\\n<tags>\\n<data>" -> expiry, version (strings), tags, data, end of the header
local function parse(value)
  local a = string.find(value, '\\n', 1, true)
  local b = string.find(value, '\\n', a + 1, true)
  local head = string.sub(value, 1, a - 1)
  local space = string.find(head, ' ', 1, true)
  local expiry, version = head, '0'
  if space then
    expiry = string.sub(head, 1, space - 1)
    version = string.sub(head, space + 1)
  end
  return expiry, version, string.sub(value, a + 1, b - 1), string.sub(value, b + 1), b
end

local function isLive(expiry)
  local e = tonumber(expiry)
  return e == 0 or e > now
end

local function hasTag(tags, tag)
  return string.find(' ' .. tags .. ' ', ' ' .. tag .. ' ', 1, true) ~= nil
end

-- Adds members (a flat list of score, id) to a tag set; the set lives as long as its
-- longest-living member (pttl 0 = forever).
local function addMembers(key, pttl, members)
  local existed = redis.call('EXISTS', key)
  for i = 1, #members, 1000 do
    redis.call('ZADD', key, unpack(members, i, math.min(i + 999, #members)))
  end
  if pttl == 0 then
    if existed == 1 then redis.call('PERSIST', key) end
  elseif existed == 0 then
    redis.call('PEXPIRE', key, pttl)
  else
    local current = redis.call('PTTL', key)
    if current >= 0 and current < pttl then redis.call('PEXPIRE', key, pttl) end
  end
end
`;

/**
 * KEYS: a key of the group's slot. ARGV: prefix, now, group ('' = none), guard id ('' = no
 * guard), fence, create ('1'/'0'), guard value without its data ("0 <version>\\n<tags>\\n"),
 * number of sets, then id, encoded value, native TTL ms ('0' = none) per set, then the ids to
 * remove. Every id is of `group` (or, for group '', the one id of its slot).
 *
 * Answers {status, created ('1'/'0'), then what the caller must clean up in other slots:
 * 'T', tag, id, version (a foreign membership of an old entry) / 'E', id, expiry (its expiry
 * record)}.
 */
const WRITE_SCRIPT = `${LUA_PRELUDE}
local group = ARGV[3]
local cleanup = {}

-- Notes the foreign memberships and the expiry record of an old entry that must go.
local function forget(id, expiry, version, tags, keptTags, newExpiry)
  for tag in string.gmatch(tags, '%S+') do
    if tag ~= group and (keptTags == nil or not hasTag(keptTags, tag)) then
      cleanup[#cleanup + 1] = 'T'
      cleanup[#cleanup + 1] = tag
      cleanup[#cleanup + 1] = id
      cleanup[#cleanup + 1] = version
    end
  end
  if expiry ~= '0' and newExpiry == '0' then
    cleanup[#cleanup + 1] = 'E'
    cleanup[#cleanup + 1] = id
    cleanup[#cleanup + 1] = expiry
  end
end

local function store(id, value, pttl)
  local key = entryKey(id)
  local expiry, version, tags = parse(value)
  local own = group ~= '' and hasTag(tags, group)
  local old = redis.call('GET', key)
  if old then
    local oldExpiry, oldVersion, oldTags = parse(old)
    if group ~= '' and not own and hasTag(oldTags, group) then redis.call('ZREM', tagKey(group), id) end
    forget(id, oldExpiry, oldVersion, oldTags, tags, expiry)
  end
  if pttl > 0 then
    redis.call('SET', key, value, 'PX', pttl)
  else
    redis.call('SET', key, value)
  end
  if own then addMembers(tagKey(group), pttl, {version, id}) end
end

local guardId = ARGV[4]
local fence = ARGV[5]
local created = '0'
if guardId ~= '' then
  local current = redis.call('GET', entryKey(guardId))
  local live = false
  if current then
    local expiry, _, _, data = parse(current)
    if isLive(expiry) then
      live = true
      local stored = tonumber(data)
      if stored and stored > tonumber(fence) then return {'fenced', '0'} end
    end
  end
  if not live then
    if ARGV[6] ~= '1' then return {'missing', '0'} end
    -- An expired guard entry counts as missing and is replaced.
    store(guardId, ARGV[7] .. fence, 0)
    created = '1'
  end
end

local i = 9
for _ = 1, tonumber(ARGV[8]) do
  store(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]))
  i = i + 3
end
for j = i, #ARGV do
  local id = ARGV[j]
  local key = entryKey(id)
  local value = redis.call('GET', key)
  if value then
    local expiry, version, tags = parse(value)
    redis.call('DEL', key)
    if group ~= '' and hasTag(tags, group) then redis.call('ZREM', tagKey(group), id) end
    forget(id, expiry, version, tags, nil, '0')
  end
end

if guardId ~= '' then
  -- Keeps the guard's tags, expiry and native TTL; a batch that removed it (a destroy) wins.
  local key = entryKey(guardId)
  local current = redis.call('GET', key)
  if current then
    local _, _, _, _, headerEnd = parse(current)
    redis.call('SET', key, string.sub(current, 1, headerEnd) .. fence, 'KEEPTTL')
  end
end
local result = {'ok', created}
for _, v in ipairs(cleanup) do result[#result + 1] = v end
return result
`;

/**
 * KEYS: a key of the group's slot. ARGV: prefix, now, group ('' = none), mode, tag, with data
 * ('1'/'0'), then the ids (all of `group`). Modes: 'any' removes every entry, 'tagged' those
 * carrying `tag`, 'expired' those expired at `now`. Answers 6 strings per id: id, code ('gone':
 * no entry, 'kept': not removed, 'live' / 'dead': removed while live / expired), expiry,
 * version, tags, data (only with data, and only for removed entries).
 */
const DROP_SCRIPT = `${LUA_PRELUDE}
local group = ARGV[3]
local mode = ARGV[4]
local tag = ARGV[5]
local withData = ARGV[6] == '1'
local result = {}
for j = 7, #ARGV do
  local id = ARGV[j]
  local key = entryKey(id)
  local value = redis.call('GET', key)
  if not value then
    for _, v in ipairs({id, 'gone', '0', '0', '', ''}) do result[#result + 1] = v end
  else
    local expiry, version, tags, data = parse(value)
    local drop
    if mode == 'any' then drop = true
    elseif mode == 'tagged' then drop = hasTag(tags, tag)
    else drop = not isLive(expiry) end
    local code = 'kept'
    if drop then
      redis.call('DEL', key)
      if group ~= '' and hasTag(tags, group) then redis.call('ZREM', tagKey(group), id) end
      if isLive(expiry) then code = 'live' else code = 'dead' end
    end
    if not (drop and withData) then data = '' end
    for _, v in ipairs({id, code, expiry, version, tags, data}) do result[#result + 1] = v end
  end
end
return result
`;

/**
 * KEYS: the tag set. ARGV: prefix, now, tag, mode ('ids', 'data' or 'flush'). Members of the
 * tag's own group live in this slot: they are read (or, for 'flush', removed when they carry the
 * tag) here, and pruned when their entry is gone or no longer carries the tag. Answers
 * {local results ([id, data, ...] for 'data', [id, ...] otherwise; nothing for 'flush'),
 * other members [id, score, ...], clean-up ('T', tag, id, version / 'E', id, expiry, as
 * WRITE_SCRIPT) and the number of live entries removed}.
 */
const BY_TAG_SCRIPT = `${LUA_PRELUDE}
local setKey = KEYS[1]
local tag = ARGV[3]
local mode = ARGV[4]
local found, foreign, cleanup = {}, {}, {}
local removed = 0
local members = redis.call('ZRANGE', setKey, 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local id = members[i]
  if groupOf(id) ~= tag then
    foreign[#foreign + 1] = id
    foreign[#foreign + 1] = members[i + 1]
  else
    local key = entryKey(id)
    local value = redis.call('GET', key)
    local expiry, version, tags, data
    if value then expiry, version, tags, data = parse(value) end
    if not value or not hasTag(tags, tag) then
      redis.call('ZREM', setKey, id)
    elseif mode == 'flush' then
      redis.call('DEL', key)
      redis.call('ZREM', setKey, id)
      for other in string.gmatch(tags, '%S+') do
        if other ~= tag then
          for _, v in ipairs({'T', other, id, version}) do cleanup[#cleanup + 1] = v end
        end
      end
      if expiry ~= '0' then
        for _, v in ipairs({'E', id, expiry}) do cleanup[#cleanup + 1] = v end
      end
      if isLive(expiry) then removed = removed + 1 end
    elseif isLive(expiry) then
      found[#found + 1] = id
      if mode == 'data' then found[#found + 1] = data end
    end
  end
end
return {found, foreign, cleanup, removed}
`;

/** KEYS: a tag set. ARGV: prefix, now, native TTL ms ('0' = forever), then version, id pairs. */
const TAG_ADD_SCRIPT = `${LUA_PRELUDE}
local members = {}
for i = 4, #ARGV do members[#members + 1] = ARGV[i] end
addMembers(KEYS[1], tonumber(ARGV[3]), members)
return 1
`;

/** KEYS: a tag set. ARGV: prefix, now, then id, version pairs: each member goes if its score is still that version. */
const TAG_FORGET_SCRIPT = `
local removed = 0
for i = 3, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
`;

/**
 * KEYS: the expiry index. ARGV: prefix, now, then id, seen score, new score ('' = remove)
 * triples: each record changes only if its score is still the one seen. Answers how many did.
 */
const EXPIRY_FIX_SCRIPT = `
local changed = 0
for i = 3, #ARGV, 3 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == '' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    end
    changed = changed + 1
  end
end
return changed
`;

const SCRIPTS = {
  write: new LuaScript(WRITE_SCRIPT),
  drop: new LuaScript(DROP_SCRIPT),
  byTag: new LuaScript(BY_TAG_SCRIPT),
  tagAdd: new LuaScript(TAG_ADD_SCRIPT),
  tagForget: new LuaScript(TAG_FORGET_SCRIPT),
  expiryFix: new LuaScript(EXPIRY_FIX_SCRIPT),
} as const;

const NO_TAGS: readonly string[] = Object.freeze([]);
const NO_WRITES: readonly BackendWrite[] = Object.freeze([]);

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

/** What one DROP answered for one id. */
interface DropRecord {
  readonly id: string;
  readonly code: 'gone' | 'kept' | 'live' | 'dead';
  readonly expiry: string;
  readonly version: string;
  readonly tags: string;
  readonly data: string;
}

/**
 * Index upkeep in other slots, collected while an operation runs and sent together:
 * memberships to add or forget per tag set, expiry records to add or fix.
 */
class IndexWork {
  readonly adds = new Map<string, { pttl: number; pairs: string[] }>();
  readonly forgets = new Map<string, string[]>();
  readonly expiryAdds: string[] = [];
  readonly expiryFixes: string[] = [];

  add(tag: string, id: string, version: string, pttl: number): void {
    const entry = this.adds.get(tag);
    if (entry === undefined) {
      this.adds.set(tag, { pttl, pairs: [version, id] });
      return;
    }
    entry.pairs.push(version, id);
    entry.pttl = entry.pttl === 0 || pttl === 0 ? 0 : Math.max(entry.pttl, pttl);
  }

  forget(tag: string, id: string, version: string): void {
    const pairs = this.forgets.get(tag);
    if (pairs === undefined) this.forgets.set(tag, [id, version]);
    else pairs.push(id, version);
  }

  /** `next` '' removes the record; either way only if its score is still `seen`. */
  fixExpiry(id: string, seen: string, next: string): void {
    this.expiryFixes.push(id, seen, next);
  }

  /** Takes the 'T' / 'E' clean-up records a script answered, from `offset` on. */
  takeCleanup(flat: readonly unknown[], offset: number): void {
    for (let i = offset; i < flat.length; ) {
      if (flat[i] === 'T') {
        this.forget(String(flat[i + 1]), String(flat[i + 2]), String(flat[i + 3]));
        i += 4;
      } else {
        this.fixExpiry(String(flat[i + 1]), String(flat[i + 2]), '');
        i += 3;
      }
    }
  }

  get empty(): boolean {
    return this.adds.size === 0 && this.forgets.size === 0 && this.expiryAdds.length === 0 && this.expiryFixes.length === 0;
  }
}

/** How the backend reaches Redis: one standalone client, or a cluster that routes by key. */
interface Transport {
  readonly cluster: boolean;
  send(key: string, readonly: boolean, args: string[]): Promise<unknown>;
  /** Clients of every master (one for a standalone Redis), for SCAN. */
  masters(): Promise<RedisCommandClient[]>;
}

/** Whether a client is a cluster client (`createCluster()`): only those have `masters`. */
export function isRedisClusterClient(client: unknown): client is RedisClusterCommandClient {
  return typeof client === 'object' && client !== null && 'masters' in client;
}

function transportOf(client: RedisCommandClient | RedisClusterCommandClient): Transport {
  if (isRedisClusterClient(client)) {
    return {
      cluster: true,
      send: (key, readonly, args) => client.sendCommand(key, readonly, args),
      masters: () => Promise.all(client.masters.map((node) => client.nodeClient(node))),
    };
  }
  return {
    cluster: false,
    send: (_key, _readonly, args) => client.sendCommand(args),
    masters: async () => [client],
  };
}

/**
 * Cache backend on Redis or Redis Cluster (node-redis v5), for sessions shared by many
 * processes. Key layout, atomicity and cost: see the comment above. In short: reads are one
 * GET, MGET or GETRANGE (a `getByTag` of a group's own tag one script), a write is one script
 * per group plus its index upkeep in the same round trip, tag look-ups O(matches),
 * `collectGarbage` O(expired) through an expiry sorted set, `write()` atomic with its guard.
 * Redis errors surface as `StoreUnavailableException`.
 */
export class RedisBackend implements TaggableBackend {
  readonly name = 'redis';

  /** The key prefix in use (see {@link RedisBackendOptions.prefix}). */
  readonly prefix: string;
  private readonly transport: Transport;
  private readonly marginMs: number;
  private readonly expiryKey: string;
  /** Scripts whose SCRIPT LOAD was sent on the (standalone) client. */
  private readonly loaded = new Set<LuaScript>();

  /** @throws InvalidOptionException for a missing client, a prefix with braces or a negative margin. */
  constructor(options: RedisBackendOptions) {
    if (options === undefined || options === null || typeof options.client?.sendCommand !== 'function') {
      throw InvalidOptionException.create('redis.client', 'must be a connected node-redis v5 client (createClient() or createCluster())');
    }
    if (isRedisClusterClient(options.client) && typeof options.client.nodeClient !== 'function') {
      throw InvalidOptionException.create('redis.client', 'a cluster client must be a node-redis v5 createCluster() client');
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
    this.transport = transportOf(options.client);
    this.prefix = prefix;
    this.marginMs = margin * 1000;
    this.expiryKey = `${prefix}{}#expiry`;
  }

  /** The Redis key of an entry (see the key layout above); exposed for tests and tooling. */
  entryKey(id: string): string {
    const dot = id.indexOf('.');
    return dot < 0 ? `${this.prefix}{${id}}` : `${this.prefix}{${id.slice(0, dot)}}${id.slice(dot)}`;
  }

  /** The Redis key of the sorted set of ids carrying `tag`. */
  tagKey(tag: string): string {
    return `${this.prefix}{${tag}}#tag`;
  }

  /** The Redis key of the expiry index (a sorted set: id -> expiry epoch ms). */
  get expiryIndexKey(): string {
    return this.expiryKey;
  }

  /** @throws StoreUnavailableException when Redis fails. */
  async get(id: string): Promise<string | undefined> {
    const key = this.entryKey(id);
    const raw = await this.attempt('get', () => this.transport.send(key, true, ['GET', key]));
    return decode(raw, Date.now());
  }

  /** One MGET (on a cluster one per group, sent together). @throws StoreUnavailableException when Redis fails. */
  async getMany(ids: readonly string[]): Promise<(string | undefined)[]> {
    if (ids.length === 0) return [];
    const raw = await this.attempt('getMany', () => this.readRaw(ids));
    const now = Date.now();
    return raw.map((value) => decode(value, now));
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
    const head = await this.attempt('has', () => this.transport.send(key, true, ['GETRANGE', key, '0', String(HEADER_BYTES - 1)]));
    if (typeof head !== 'string' || head.indexOf('\n') < 0) return false;
    const expiry = headerExpiry(head);
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
    assertCacheIdentifier(id, 'cache entry identifier');
    return this.attempt('remove', async () => {
      const work = new IndexWork();
      const records = await this.drop(slotUnit(id), [id], 'any', '', false);
      this.forgetRecords(records, work);
      await this.sendIndexWork(work);
      return records[0]?.code === 'live';
    });
  }

  /**
   * The sets and removes of each group are one script, atomic. With a `guard`, every id must be
   * of the guard's group (the slot-group rule of `TaggableBackend`): the guard check, the sets,
   * the removes and the guard update are then one atomic script, and a refused write changes
   * nothing. Without a guard, a batch spanning groups is applied group by group.
   * @throws InvalidArgumentException for a bad id, tag, lifetime, data or fence, or a guarded
   *   batch with an id outside the guard's group (nothing is written).
   * @throws StoreUnavailableException when Redis fails (then nothing was written with a guard;
   *   without one, some groups may have been).
   */
  async write(batch: WriteBatch, guard?: WriteGuard): Promise<WriteResult> {
    const sets = batch.sets ?? NO_WRITES;
    const removes = batch.removes ?? NO_TAGS;
    if (sets.length === 0 && removes.length === 0 && guard === undefined) return 'ok';

    // Validate and encode everything first: a bad entry must not leave half a batch applied.
    const now = Date.now();
    const version = String(randomInt(1, VERSION_LIMIT));
    let guardUnit: string | undefined;
    let guardTags: readonly string[] = NO_TAGS;
    if (guard !== undefined) {
      assertCacheIdentifier(guard.id, 'cache entry identifier');
      if (typeof guard.fence !== 'number' || Number.isNaN(guard.fence)) {
        throw new InvalidArgumentException(
          `Invalid fence ${String(guard.fence)} for guard entry "${guard.id}": it must be a number.`,
        );
      }
      guardTags = guard.tags ?? NO_TAGS;
      guardTags.forEach((tag) => assertIdentifier(tag, 'cache tag'));
      guardUnit = slotUnit(guard.id);
    }
    const units = new Map<string, { sets: EncodedWrite[]; removes: string[] }>();
    const unitOf = (id: string) => {
      const unit = slotUnit(id);
      if (guardUnit !== undefined && unit !== guardUnit) {
        throw new InvalidArgumentException(
          `Cannot write cache entry "${id}" with guard entry "${guard!.id}": a guarded batch keeps every id in the ` +
            `guard's group (the text before the first "."), so that one atomic script can apply it.`,
        );
      }
      let entry = units.get(unit);
      if (entry === undefined) units.set(unit, (entry = { sets: [], removes: [] }));
      return entry;
    };
    if (guardUnit !== undefined) unitOf(guard!.id);
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
      const pttl = entryLifetimeMs === 0 ? 0 : Math.ceil(entryLifetimeMs + this.marginMs);
      unitOf(write.id).sets.push({
        id: write.id,
        value: `${expiry} ${version}\n${tags.join(' ')}\n${write.data}`,
        tags,
        expiry,
        pttl,
      });
    }
    for (const id of removes) {
      assertCacheIdentifier(id, 'cache entry identifier');
      unitOf(id).removes.push(id);
    }

    // Memberships in tag sets of other groups and expiry records, for every entry stored.
    const additions = new IndexWork();
    for (const { sets: unitSets } of units.values()) {
      for (const write of unitSets) {
        const group = groupOf(write.id);
        for (const tag of write.tags) if (tag !== group) additions.add(tag, write.id, version, write.pttl);
        if (write.expiry !== 0) additions.expiryAdds.push(String(write.expiry), write.id);
      }
    }

    return this.attempt('write', async () => {
      if (guard === undefined) {
        // Additions first, in the same tick as the scripts: no extra round trip, and a crash in
        // between leaves at most a membership or record without its entry (pruned later).
        const indexed = this.indexPromises(additions);
        const written = [...units].map(([unit, part]) => this.runWrite(unit, part, now));
        const replies = await settleAll([...indexed, ...written]);
        const cleanup = new IndexWork();
        for (const reply of replies.slice(indexed.length)) cleanup.takeCleanup(reply as unknown[], 2);
        await this.sendIndexWork(cleanup);
        return 'ok';
      }
      const [unit, part] = [...units][0]!;
      const reply = (await this.runWrite(unit, part, now, guard, `0 ${version}\n${guardTags.join(' ')}\n`)) as unknown[];
      const status = String(reply[0]) as WriteResult;
      if (status !== 'ok') return status;
      // Allowed: now the additions in other slots, with the clean-up the script asked for.
      if (reply[1] === '1') {
        const group = groupOf(guard.id);
        for (const tag of guardTags) if (tag !== group) additions.add(tag, guard.id, version, 0);
      }
      additions.takeCleanup(reply, 2);
      await this.sendIndexWork(additions);
      return 'ok';
    });
  }

  /**
   * Removes every key under this backend's prefix: SCAN (on every master of a cluster) +
   * UNLINK, O(keys in the database) as any full flush is. Keys of other prefixes are untouched.
   * @throws StoreUnavailableException when Redis fails (some keys may be gone by then).
   */
  async flush(): Promise<void> {
    const pattern = `${escapeGlob(this.prefix)}{*`;
    await this.attempt('flush', async () => {
      for (const node of await this.transport.masters()) {
        let cursor = '0';
        do {
          const [next, keys] = (await node.sendCommand(['SCAN', cursor, 'MATCH', pattern, 'COUNT', String(FLUSH_BATCH)])) as [
            string,
            string[],
          ];
          cursor = String(next);
          if (keys.length === 0) continue;
          if (!this.transport.cluster) {
            await node.sendCommand(['UNLINK', ...keys]);
            continue;
          }
          // A multi-key command on a cluster needs one slot: one UNLINK per hash tag.
          const byHashTag = new Map<string, string[]>();
          for (const key of keys) {
            const tag = hashTagOf(key);
            const list = byHashTag.get(tag);
            if (list === undefined) byHashTag.set(tag, [key]);
            else list.push(key);
          }
          await settleAll([...byHashTag.values()].map((list) => this.transport.send(list[0]!, false, ['UNLINK', ...list])));
        } while (cursor !== '0');
      }
    });
  }

  /** Removes expired carriers of the tag too, but counts only live ones. @throws StoreUnavailableException when Redis fails. */
  async flushByTag(tag: string): Promise<number> {
    return this.attempt('flushByTag', async () => {
      const tagKey = this.tagKey(tag);
      const [, foreign, cleanup, removed] = (await this.runScript(SCRIPTS.byTag, tagKey, [tag, 'flush'])) as [
        unknown,
        string[],
        unknown[],
        number,
      ];
      const work = new IndexWork();
      work.takeCleanup(cleanup, 0);
      let count = Number(removed);
      if (foreign.length > 0) {
        const scores = new Map<string, string>();
        const byUnit = new Map<string, string[]>();
        for (let i = 0; i < foreign.length; i += 2) {
          scores.set(foreign[i]!, foreign[i + 1]!);
          const unit = slotUnit(foreign[i]!);
          const list = byUnit.get(unit);
          if (list === undefined) byUnit.set(unit, [foreign[i]!]);
          else list.push(foreign[i]!);
        }
        const answers = await settleAll([...byUnit].map(([unit, ids]) => this.drop(unit, ids, 'tagged', tag, false)));
        for (const record of answers.flat()) {
          if (record.code === 'live') count++;
          if (record.code === 'live' || record.code === 'dead') this.forgetRecords([record], work);
          else work.forget(tag, record.id, scores.get(record.id)!);
        }
      }
      await this.sendIndexWork(work);
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
  async collectGarbage(limit?: number): Promise<BackendEntry[]> {
    if (limit !== undefined && (typeof limit !== 'number' || Number.isNaN(limit) || limit < 0)) {
      throw new InvalidArgumentException(
        `Invalid garbage collection limit ${String(limit)}: use a number >= 0, or omit it for no limit.`,
      );
    }
    const max = limit === undefined ? Infinity : Math.floor(limit);
    const collected: BackendEntry[] = [];
    await this.attempt('collectGarbage', async () => {
      while (collected.length < max) {
        const wanted = Math.min(GC_CHUNK, max - collected.length);
        const now = Date.now();
        const flat = (await this.transport.send(this.expiryKey, true, [
          'ZRANGEBYSCORE', this.expiryKey, '-inf', String(now), 'WITHSCORES', 'LIMIT', '0', String(wanted),
        ])) as string[];
        if (flat.length === 0) break;
        const seen = new Map<string, string>();
        const byUnit = new Map<string, string[]>();
        for (let i = 0; i < flat.length; i += 2) {
          seen.set(flat[i]!, flat[i + 1]!);
          const unit = slotUnit(flat[i]!);
          const list = byUnit.get(unit);
          if (list === undefined) byUnit.set(unit, [flat[i]!]);
          else list.push(flat[i]!);
        }
        const records = new Map<string, DropRecord>();
        const answers = await settleAll([...byUnit].map(([unit, ids]) => this.drop(unit, ids, 'expired', '', true, now)));
        for (const record of answers.flat()) records.set(record.id, record);
        const work = new IndexWork();
        let found = 0;
        for (const [id, score] of seen) {
          const record = records.get(id)!;
          if (record.code === 'dead' || record.code === 'live') {
            collected.push({ id, data: record.data });
            found++;
            this.forgetRecords([record], work, score);
          } else if (record.code === 'kept' && record.expiry !== '0') {
            work.fixExpiry(id, score, record.expiry); // a live entry given a longer life
          } else {
            work.fixExpiry(id, score, ''); // entry gone, or without lifetime now
          }
        }
        const changed = await this.sendIndexWork(work);
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
    const byUnit = new Map<string, number[]>();
    ids.forEach((id, index) => {
      const unit = slotUnit(id);
      const list = byUnit.get(unit);
      if (list === undefined) byUnit.set(unit, [index]);
      else list.push(index);
    });
    const groups = [...byUnit.values()];
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
    const [found, foreign] = (await this.runScript(SCRIPTS.byTag, tagKey, [tag, withData ? 'data' : 'ids'])) as [
      string[],
      string[],
    ];
    if (foreign.length === 0) return found;
    const ids: string[] = [];
    const scores: string[] = [];
    for (let i = 0; i < foreign.length; i += 2) {
      ids.push(foreign[i]!);
      scores.push(foreign[i + 1]!);
    }
    const raw = await this.readRaw(ids);
    const now = Date.now();
    const result = [...found];
    const stale = new IndexWork();
    raw.forEach((value, i) => {
      const id = ids[i]!;
      const entry = typeof value === 'string' ? parseEntry(value) : undefined;
      if (entry === undefined || !entry.tags.split(' ').includes(tag)) {
        stale.forget(tag, id, scores[i]!);
      } else if (entry.expiry === 0 || entry.expiry > now) {
        result.push(id);
        if (withData) result.push(entry.data);
      }
    });
    await this.sendIndexWork(stale);
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
    const key = group === '' ? this.entryKey(ids[0]!) : this.tagKey(group);
    const flat = (await this.runScript(SCRIPTS.drop, key, [group, mode, tag, withData ? '1' : '0', ...ids], now)) as string[];
    const records: DropRecord[] = [];
    for (let i = 0; i < flat.length; i += 6) {
      records.push({
        id: flat[i]!,
        code: flat[i + 1] as DropRecord['code'],
        expiry: flat[i + 2]!,
        version: flat[i + 3]!,
        tags: flat[i + 4]!,
        data: flat[i + 5]!,
      });
    }
    return records;
  }

  /**
   * Notes the foreign memberships and the expiry record of removed entries for clean-up.
   * `seenScore`: the expiry record's score as read from the index (default: the entry's expiry).
   */
  private forgetRecords(records: readonly DropRecord[], work: IndexWork, seenScore?: string): void {
    for (const record of records) {
      if (record.code !== 'live' && record.code !== 'dead') continue;
      const group = groupOf(record.id);
      for (const tag of record.tags.split(' ')) {
        if (tag !== '' && tag !== group) work.forget(tag, record.id, record.version);
      }
      if (seenScore !== undefined) work.fixExpiry(record.id, seenScore, '');
      else if (record.expiry !== '0') work.fixExpiry(record.id, record.expiry, '');
    }
  }

  /** One WRITE script for one slot unit. */
  private runWrite(
    unit: string,
    part: { sets: readonly EncodedWrite[]; removes: readonly string[] },
    now: number,
    guard?: WriteGuard,
    guardHead = '',
  ): Promise<unknown> {
    const group = unit.startsWith('.') ? '' : unit;
    const firstId = guard?.id ?? part.sets[0]?.id ?? part.removes[0]!;
    const key = group === '' ? this.entryKey(firstId) : this.tagKey(group);
    const args = [group];
    if (guard === undefined) args.push('', '0', '0', '');
    else args.push(guard.id, String(guard.fence), guard.create === true ? '1' : '0', guardHead);
    args.push(String(part.sets.length));
    for (const write of part.sets) args.push(write.id, write.value, String(write.pttl));
    args.push(...part.removes);
    return this.runScript(SCRIPTS.write, key, args, now);
  }

  /** The commands of `work`, sent in the same tick; the promises of their replies. */
  private indexPromises(work: IndexWork): Promise<unknown>[] {
    const promises: Promise<unknown>[] = [];
    for (const [tag, { pttl, pairs }] of work.adds) {
      promises.push(this.runScript(SCRIPTS.tagAdd, this.tagKey(tag), [String(pttl), ...pairs]));
    }
    if (work.expiryAdds.length > 0) {
      promises.push(this.transport.send(this.expiryKey, false, ['ZADD', this.expiryKey, ...work.expiryAdds]));
    }
    for (const [tag, pairs] of work.forgets) {
      promises.push(this.runScript(SCRIPTS.tagForget, this.tagKey(tag), pairs));
    }
    if (work.expiryFixes.length > 0) {
      promises.push(this.runScript(SCRIPTS.expiryFix, this.expiryKey, work.expiryFixes));
    }
    return promises;
  }

  /** Sends `work` and waits for it; answers how many expiry records EXPIRY_FIX changed. */
  private async sendIndexWork(work: IndexWork): Promise<number> {
    if (work.empty) return 0;
    const replies = await settleAll(this.indexPromises(work));
    return work.expiryFixes.length > 0 ? Number(replies.at(-1)) : 0;
  }

  /** Runs a script with KEYS = [key] and ARGV = prefix, now, ...args, routed by `key`. */
  private async runScript(script: LuaScript, key: string, args: readonly string[], now = Date.now()): Promise<unknown> {
    const tail = ['1', key, this.prefix, String(now), ...args];
    if (!this.transport.cluster && !this.loaded.has(script)) {
      this.loaded.add(script);
      // Sent in the same tick as the EVALSHA below, so it rides the same round trip and runs
      // first. (On a cluster it would reach one node only; there NOSCRIPT teaches each node.)
      this.transport.send(key, false, ['SCRIPT', 'LOAD', script.source]).catch(() => this.loaded.delete(script));
    }
    try {
      return await this.transport.send(key, false, ['EVALSHA', script.sha, ...tail]);
    } catch (error) {
      // Matched by message: the client may come from another copy of node-redis than ours.
      if (!isNoScriptError(error)) throw error;
      // Redis lost its script cache (restart, failover, SCRIPT FLUSH) or a cluster node has not
      // seen it yet: EVAL runs and caches it.
      return await this.transport.send(key, false, ['EVAL', script.source, ...tail]);
    }
  }

  private async attempt<T>(operation: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw StoreUnavailableException.create(`redis ${operation}`, error);
    }
  }
}

/** Group of an id: the text before its first `.` (the whole id without one). */
function groupOf(id: string): string {
  const dot = id.indexOf('.');
  return dot < 0 ? id : id.slice(0, dot);
}

/**
 * What decides an id's cluster slot: its group, or for an id with an empty group (`.x`, whose
 * key Redis hashes whole) the id itself, marked by its leading dot.
 */
function slotUnit(id: string): string {
  const group = groupOf(id);
  return group === '' ? id : group;
}

/** The hash tag of a key (text between the first `{` and the next `}`), or the key when it has none. */
function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/** Expiry of a header line `<expiry> <version>` (or a bare `<expiry>`). */
function headerExpiry(head: string): number {
  const end = head.search(/[ \n]/);
  return Number(end < 0 ? head : head.slice(0, end));
}

/** An encoded entry's parts, or `undefined` if it is not ours. */
function parseEntry(raw: string): { expiry: number; tags: string; data: string } | undefined {
  const a = raw.indexOf('\n');
  const b = a < 0 ? -1 : raw.indexOf('\n', a + 1);
  if (b < 0) return undefined;
  return { expiry: headerExpiry(raw.slice(0, a)), tags: raw.slice(a + 1, b), data: raw.slice(b + 1) };
}

/** The data of an encoded entry, or `undefined` if it is missing, not ours or expired at `now`. */
function decode(raw: unknown, now: number): string | undefined {
  if (typeof raw !== 'string') return undefined;
  const entry = parseEntry(raw);
  if (entry === undefined) return undefined;
  return entry.expiry !== 0 && entry.expiry <= now ? undefined : entry.data;
}

/** Waits for every promise (none is left unobserved), then answers them or throws the first failure. */
async function settleAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/** Escapes Redis glob metacharacters so a prefix matches only itself. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
