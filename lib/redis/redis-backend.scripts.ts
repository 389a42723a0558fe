import { LuaScript } from './lua-script.js';

/*
 * The Lua scripts of RedisBackend: their source and their names. Every script gets
 * KEYS = [one key of its slot] and ARGV = prefix, now, then its own arguments (see each).
 *
 * On a Redis Cluster, one slot per script: every script below touches the keys of one cluster
 * slot only:
 *
 *   WRITE    one group: its entries, the guard entry and the group's own tag set (the tag named
 *            like the group). `write()` with a guard is this one script, atomic: the guard check,
 *            the sets, the removes and the fence update apply together or not at all.
 *   DROP     one group: removes entries (`remove()`, the foreign members of `flushByTag()`,
 *            expired entries for `collectGarbage()`) and answers what they were.
 *   BY_TAG   one tag set: reads (or flushes) the members of the tag's own group there and then,
 *            and answers the other members for the caller to read.
 *   TAG_ADD, TAG_FORGET, EXPIRY_ADD, EXPIRY_FIX   one index key: tag-set and expiry-index upkeep.
 *
 * On a standalone Redis every key is in one place, so writes use `standaloneWriteScript()`
 * instead: WRITE, DROP (of `remove()`) and BY_TAG (of `flushByTag()`) as units of one call, with
 * the index upkeep of other slots (TAG_ADD, TAG_FORGET, EXPIRY_ADD, EXPIRY_FIX removals) done by
 * the unit itself ("fold"), with the same version and score checks. The Lua is the same
 * functions (`writeUnit`, `dropUnit`, `byTagUnit`), so both paths keep the same guarantees.
 *
 * Scripts run by EVALSHA; on a standalone client SCRIPT LOAD rides with the first use, on a
 * cluster each node learns a script through EVAL when it first answers NOSCRIPT (as after a
 * restart or failover).
 */

/** Head of the per-slot scripts: ARGV[1] is the prefix, ARGV[2] the clock (see `LUA_FUNCTIONS`). */
const LUA_PER_SLOT_HEAD = `
local prefix = ARGV[1]
local now = tonumber(ARGV[2])
`;

/** Shared functions of every script: key layout and entry format, with `prefix` and `now` set by the head. */
const LUA_FUNCTIONS = `

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
  local space = string.find(value, ' ', 1, true)
  return string.sub(value, 1, space - 1), string.sub(value, space + 1, a - 1), string.sub(value, a + 1, b - 1), string.sub(value, b + 1), b
end

local function isLive(expiry)
  local e = tonumber(expiry)
  return e == 0 or e > now
end

local function hasTag(tags, tag)
  return string.find(' ' .. tags .. ' ', ' ' .. tag .. ' ', 1, true) ~= nil
end

-- Adds members (a flat list of score, id) to a tag set; the set lives as long as its
-- longest-living member (pttl 0 = forever). One PTTL before the ZADD says both whether the set
-- existed (-2: no) and its TTL (ZADD leaves a TTL as it is).
local function addMembers(key, pttl, members)
  local current = redis.call('PTTL', key)
  for i = 1, #members, 1000 do
    redis.call('ZADD', key, unpack(members, i, math.min(i + 999, #members)))
  end
  if pttl == 0 then
    if current >= 0 then redis.call('PERSIST', key) end
  elseif current == -2 or (current >= 0 and current < pttl) then
    redis.call('PEXPIRE', key, pttl)
  end
end

-- Standalone only (the index keys are in other slots on a cluster): a member goes if its score
-- is still \`score\` (TAG_FORGET, EXPIRY_FIX removal), an expiry record is added (EXPIRY_ADD).
local function dropMember(key, id, score)
  local seen = redis.call('ZSCORE', key, id)
  if seen and tonumber(seen) == tonumber(score) then redis.call('ZREM', key, id) end
end

local function addExpiry(id, expiry, pttl)
  local key = prefix .. '{}#expiry'
  redis.call('ZADD', key, expiry, id)
  local current = redis.call('PTTL', key)
  if pttl > 0 and (current == -1 or (current >= 0 and current < pttl)) then redis.call('PEXPIRE', key, pttl) end
end
`;

/**
 * KEYS: a key of the group's slot. ARGV: prefix, now, group ('' = none), guard id ('' = no
 * guard), fence, create ('1'/'0'), created guard's value without its data
 * ("<expiry> <version>\\n<tags>\\n"), guard expiry ('' = keep the guard's), guard native TTL
 * ms ('0' with a kept expiry), lock key ('' = the caller's fence counts), that lock's fence
 * counter key, the counter's TTL ms ('0' = none), the most entries the group may hold after
 * the write ('0' = no cap; 'full' otherwise, nothing written), the prefix of uncounted
 * entries after "<group>." ('' = none), number of ids that must be live, those ids, number of sets,
 * then id, encoded value, native TTL ms ('0' = none) per set, then the ids to remove. Every id
 * is of `group` (or, for group '', the one id of its slot).
 *
 * Retention: in a guarded group whose guard has a native TTL, no entry of the group (a member
 * of its own tag set) is stored with a shorter native TTL than the guard's, and a write that
 * gives the guard a new expiry extends every member and the tag set to it (O(members), only on
 * such writes), so nothing of a session outlives its guard natively, or dies before it.
 *
 * With a lock key (an unlocked write, `WriteGuard.unlocked`): the lock must be free ('locked'
 * otherwise, nothing written), and the fence is drawn here as RedisLocker's ACQUIRE draws it,
 * max(counter + 1, Redis time in µs), and stored in the counter, so the lock's next holder gets
 * a greater one and a holder whose lock expired before is fenced off: an acquire, a guarded
 * write and a release in one step. The lock key shares the guard's hash tag (`{storageId}`).
 *
 * Answers {status, created ('1'/'0'), then what the caller must clean up in other slots:
 * 'T', tag, id, version (a foreign membership of an old entry) / 'E', id, expiry (its expiry
 * record)}.
 */
const WRITE_FUNCTION = `
local function writeUnit(A, fold)
  local group = A[3]
  local cleanup = {}
  local guardId = A[4]
  local fence = A[5]
  local guardExpiry = A[8]
  local guardPttl = tonumber(A[9])
  -- Native TTL ms every own-group entry stored gets at least (0 = none): the guard's.
  local retain = 0
  -- The guard entry's value as this write leaves it (false: none), so the final guard update
  -- needs no second read.
  local guardValue = false
  -- True when the cap check saw the group's own tag set empty: every member is then one this
  -- write stores, with at least the guard's TTL, so extending them to it is a no-op.
  local freshGroup = false

  -- Gives a key at least \`pttl\` ms of native life (a key without TTL gets one; a missing key is left).
  local function extend(key, pttl)
    local current = redis.call('PTTL', key)
    if current == -1 or (current >= 0 and current < pttl) then redis.call('PEXPIRE', key, pttl) end
  end

  -- The foreign memberships and the expiry record of an old entry that must go: removed here
  -- when folded (standalone), else noted for the caller.
  local function forget(id, expiry, version, tags, keptTags, newExpiry)
    for tag in string.gmatch(tags, '%S+') do
      if tag ~= group and (keptTags == nil or not hasTag(keptTags, tag)) then
        if fold then
          dropMember(tagKey(tag), id, version)
        else
          cleanup[#cleanup + 1] = 'T'
          cleanup[#cleanup + 1] = tag
          cleanup[#cleanup + 1] = id
          cleanup[#cleanup + 1] = version
        end
      end
    end
    if expiry ~= '0' and newExpiry == '0' then
      if fold then
        dropMember(prefix .. '{}#expiry', id, expiry)
      else
        cleanup[#cleanup + 1] = 'E'
        cleanup[#cleanup + 1] = id
        cleanup[#cleanup + 1] = expiry
      end
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
    if own and retain > 0 and (pttl == 0 or pttl < retain) then pttl = retain end
    if pttl > 0 then
      redis.call('SET', key, value, 'PX', pttl)
    else
      redis.call('SET', key, value)
    end
    if id == guardId then guardValue = value end
    if own then addMembers(tagKey(group), pttl, {version, id}) end
    if fold then
      -- Standalone: the foreign tag sets and the expiry record in this same step.
      for tag in string.gmatch(tags, '%S+') do
        if tag ~= group then addMembers(tagKey(tag), pttl, {version, id}) end
      end
      if expiry ~= '0' then addExpiry(id, expiry, pttl) end
    end
  end

  local lockKey = A[10]
  local drawnFence = nil
  if lockKey ~= '' then
    if redis.call('EXISTS', lockKey) == 1 then return {'locked', '0'} end
    local t = redis.call('TIME')
    local drawn = tonumber(redis.call('GET', A[11]) or '0') + 1
    local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
    if clock > drawn then drawn = clock end
    drawnFence = string.format('%.0f', drawn)
    fence = drawnFence
  end

  local maxEntries = tonumber(A[13])
  local i = 16
  for _ = 1, tonumber(A[15]) do
    local value = redis.call('GET', entryKey(A[i]))
    if not value or not isLive(parse(value)) then return {'missing', '0'} end
    i = i + 1
  end

  if maxEntries > 0 and group ~= '' then
    -- The group's entries after this write (its own tag set holds them and the guard): members
    -- added by the sets, minus members the removes drop. Checked before anything is written
    -- (the guard may be created below).
    -- Entries named <group>.<uncounted prefix>... (bags) are not counted, nor is the guard.
    local setKey = tagKey(group)
    local skip = A[14] ~= '' and (group .. '.' .. A[14]) or nil
    local function counted(id)
      return id ~= guardId and (skip == nil or string.sub(id, 1, #skip) ~= skip)
    end
    local added = 0
    local j = i + 1
    for _ = 1, tonumber(A[i]) do
      if counted(A[j]) and not redis.call('ZSCORE', setKey, A[j]) then added = added + 1 end
      j = j + 3
    end
    -- Only a write that adds entries can exceed the cap: the usual rewrite of existing keys
    -- skips the O(entries) count.
    if added > 0 then
      local count = added
      local members = redis.call('ZRANGE', setKey, 0, -1)
      freshGroup = #members == 0
      for _, id in ipairs(members) do
        if counted(id) then count = count + 1 end
      end
      for k = j, #A do
        if counted(A[k]) and redis.call('ZSCORE', setKey, A[k]) then count = count - 1 end
      end
      if count > maxEntries then return {'full', '0'} end
    end
  end

  local created = '0'
  if guardId ~= '' then
    local current = redis.call('GET', entryKey(guardId))
    local live = false
    if current then
      local expiry, _, _, data = parse(current)
      if isLive(expiry) then
        live = true
        guardValue = current
        local stored = tonumber(data)
        if stored and stored > tonumber(fence) then return {'fenced', '0'} end
      end
    end
    if not live then
      if A[6] ~= '1' then return {'missing', '0'} end
      -- An expired guard entry counts as missing and is replaced.
      store(guardId, A[7] .. fence, guardPttl)
      created = '1'
    end
    if guardExpiry ~= '' then
      retain = guardPttl
    else
      local pttl = redis.call('PTTL', entryKey(guardId))
      if pttl > 0 then retain = pttl end
    end
  end

  if drawnFence then
    if tonumber(A[12]) > 0 then
      redis.call('SET', A[11], drawnFence, 'PX', A[12])
    else
      redis.call('SET', A[11], drawnFence)
    end
  end

  local sets = tonumber(A[i])
  i = i + 1
  for _ = 1, sets do
    store(A[i], A[i + 1], tonumber(A[i + 2]))
    i = i + 3
  end
  for j = i, #A do
    local id = A[j]
    local key = entryKey(id)
    local value = redis.call('GET', key)
    if value then
      local expiry, version, tags = parse(value)
      redis.call('DEL', key)
      if group ~= '' and hasTag(tags, group) then redis.call('ZREM', tagKey(group), id) end
      forget(id, expiry, version, tags, nil, '0')
      if id == guardId then guardValue = false end
    end
  end

  if guardId ~= '' then
    -- Keeps the guard's tags (and its expiry and native TTL unless a new one is given); a batch
    -- that removed it (a destroy) wins.
    local key = entryKey(guardId)
    local current = guardValue
    if current then
      local _, version, tags, _, headerEnd = parse(current)
      if guardExpiry == '' then
        redis.call('SET', key, string.sub(current, 1, headerEnd) .. fence, 'KEEPTTL')
      else
        -- A guard this write created holds exactly this already (value, TTL, expiry record).
        if created ~= '1' then
          redis.call('SET', key, guardExpiry .. ' ' .. version .. '\\n' .. tags .. '\\n' .. fence, 'PX', guardPttl)
          if fold then addExpiry(guardId, guardExpiry, guardPttl) end
        end
        if group ~= '' and not (created == '1' and freshGroup) then
          local setKey = tagKey(group)
          for _, id in ipairs(redis.call('ZRANGE', setKey, 0, -1)) do
            if id ~= guardId then extend(entryKey(id), guardPttl) end
          end
          extend(setKey, guardPttl)
        end
      end
    end
  end
  local result = {'ok', created}
  for _, v in ipairs(cleanup) do result[#result + 1] = v end
  return result
end
`;

/**
 * KEYS: a key of the group's slot. ARGV: prefix, now, group ('' = none), mode, tag, with data
 * ('1'/'0'), then the ids (all of `group`). Modes: 'any' removes every entry, 'tagged' those
 * carrying `tag`, 'expired' those expired at `now`. Answers 6 strings per id: id, code ('gone':
 * no entry, 'kept': not removed, 'live' / 'dead': removed while live / expired), expiry,
 * version, tags, data (only with data, and only for removed entries).
 */
const DROP_FUNCTION = `
local function dropUnit(A, fold)
  local group = A[3]
  local mode = A[4]
  local tag = A[5]
  local withData = A[6] == '1'
  local result = {}
  for j = 7, #A do
    local id = A[j]
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
        if fold then
          for other in string.gmatch(tags, '%S+') do
            if other ~= group then dropMember(tagKey(other), id, version) end
          end
          if expiry ~= '0' then dropMember(prefix .. '{}#expiry', id, expiry) end
        end
      end
      if not (drop and withData) then data = '' end
      for _, v in ipairs({id, code, expiry, version, tags, data}) do result[#result + 1] = v end
    end
  end
  return result
end
`;

/**
 * KEYS: the tag set. ARGV: prefix, now, tag, mode ('ids', 'data' or 'flush'). Members of the
 * tag's own group live in this slot: they are read (or, for 'flush', removed when they carry the
 * tag) here, and pruned when their entry is gone or no longer carries the tag. Answers
 * {local results ([id, data, ...] for 'data', [id, ...] otherwise; nothing for 'flush'),
 * other members [id, score, ...], clean-up ('T', tag, id, version / 'E', id, expiry, as
 * WRITE_SCRIPT) and the number of live entries removed}.
 */
const BY_TAG_FUNCTION = `
local function byTagUnit(A, fold)
  local tag = A[3]
  local setKey = tagKey(tag)
  local mode = A[4]
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
            if fold then
              dropMember(tagKey(other), id, version)
            else
              for _, v in ipairs({'T', other, id, version}) do cleanup[#cleanup + 1] = v end
            end
          end
        end
        if expiry ~= '0' then
          if fold then
            dropMember(prefix .. '{}#expiry', id, expiry)
          else
            for _, v in ipairs({'E', id, expiry}) do cleanup[#cleanup + 1] = v end
          end
        end
        if isLive(expiry) then removed = removed + 1 end
      elseif isLive(expiry) then
        found[#found + 1] = id
        if mode == 'data' then found[#found + 1] = data end
      end
    end
  end
  return {found, foreign, cleanup, removed}
end
`;

/**
 * KEYS: the tag set. ARGV: prefix, now, tag, ZSCAN cursor, count. One ZSCAN step (O(count)):
 * members of the tag's own group are checked here (stale memberships pruned), the others are
 * answered with their scores for the caller to check. Ids are unique within the reply.
 * Answers {next cursor ('0' = done), live local ids, other members [id, score, ...]}.
 */
const TAG_PAGE_SCRIPT = `${LUA_PER_SLOT_HEAD}${LUA_FUNCTIONS}
local setKey = KEYS[1]
local tag = ARGV[3]
local reply = redis.call('ZSCAN', setKey, ARGV[4], 'COUNT', tonumber(ARGV[5]))
local members = reply[2]
local found, foreign, seen = {}, {}, {}
for i = 1, #members, 2 do
  local id = members[i]
  if not seen[id] then
    seen[id] = true
    if groupOf(id) ~= tag then
      foreign[#foreign + 1] = id
      foreign[#foreign + 1] = members[i + 1]
    else
      local value = redis.call('GET', entryKey(id))
      local expiry, version, tags
      if value then expiry, version, tags = parse(value) end
      if not value or not hasTag(tags, tag) then
        redis.call('ZREM', setKey, id)
      elseif isLive(expiry) then
        found[#found + 1] = id
      end
    end
  end
end
return {reply[1], found, foreign}
`;

/** KEYS: a tag set. ARGV: prefix, now, native TTL ms ('0' = forever), then version, id pairs. */
const TAG_ADD_SCRIPT = `${LUA_PER_SLOT_HEAD}${LUA_FUNCTIONS}
local members = {}
for i = 4, #ARGV do members[#members + 1] = ARGV[i] end
addMembers(KEYS[1], tonumber(ARGV[3]), members)
return 1
`;

/**
 * KEYS: the expiry index. ARGV: prefix, now, native TTL ms of the longest-living entry added,
 * then expiry, id pairs. The index lives at least as long as that entry natively, so it
 * disappears with the entries it indexes if garbage collection stops.
 */
const EXPIRY_ADD_SCRIPT = `
for i = 4, #ARGV, 1000 do
  redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local pttl = tonumber(ARGV[3])
local current = redis.call('PTTL', KEYS[1])
if current == -1 or (current >= 0 and current < pttl) then redis.call('PEXPIRE', KEYS[1], pttl) end
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

const WRITE_SCRIPT = `${LUA_PER_SLOT_HEAD}${LUA_FUNCTIONS}${WRITE_FUNCTION}
return writeUnit(ARGV, false)
`;

const DROP_SCRIPT = `${LUA_PER_SLOT_HEAD}${LUA_FUNCTIONS}${DROP_FUNCTION}
return dropUnit(ARGV, false)
`;

const BY_TAG_SCRIPT = `${LUA_PER_SLOT_HEAD}${LUA_FUNCTIONS}${BY_TAG_FUNCTION}
return byTagUnit(ARGV, false)
`;

export const BACKEND_SCRIPTS = {
  write: new LuaScript(WRITE_SCRIPT),
  drop: new LuaScript(DROP_SCRIPT),
  byTag: new LuaScript(BY_TAG_SCRIPT),
  tagPage: new LuaScript(TAG_PAGE_SCRIPT),
  tagAdd: new LuaScript(TAG_ADD_SCRIPT),
  tagForget: new LuaScript(TAG_FORGET_SCRIPT),
  expiryAdd: new LuaScript(EXPIRY_ADD_SCRIPT),
  expiryFix: new LuaScript(EXPIRY_FIX_SCRIPT),
} as const;

/** What one DROP answered for one id. */
export interface DropRecord {
  readonly id: string;
  readonly code: 'gone' | 'kept' | 'live' | 'dead';
  readonly expiry: string;
  readonly version: string;
  readonly tags: string;
  readonly data: string;
}

/** The records of a DROP reply (6 strings per id). */
export function dropRecordsOf(flat: readonly string[]): DropRecord[] {
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
 * The standalone write script of the backends sharing one {@link RedisWriteCoalescer}: their
 * key prefixes are part of the source (one SCRIPT LOAD per client, not a prefix per call), and
 * one call runs any number of units, in order, each as WRITE or DROP would, with the index
 * upkeep folded in (tag sets and expiry records of other slots are in the same Redis). KEYS:
 * one key (unused). ARGV: per unit `w<n>` (WRITE), `d<n>` (DROP) or `f<n>` (BY_TAG), n the 1-based
 * index of the backend's prefix, the unit's clock, the number of its arguments, then those
 * arguments (WRITE's or DROP's after prefix and clock). Answers one reply per unit. A unit that
 * refuses (missing, fenced, locked, full) has written nothing and does not stop the next one,
 * unless that one is chained to it: a head `w<n>/<p>,<q>` names the 1-based positions of earlier
 * units it requires, and it runs only if each applied (WRITE 'ok', DROP removed a live entry,
 * BY_TAG ran); otherwise its reply is 'skipped'.
 */
export function standaloneWriteScript(prefixes: readonly string[]): LuaScript {
  return new LuaScript(`
local prefix
local now
local PREFIXES = {${prefixes.map(luaString).join(', ')}}
${LUA_FUNCTIONS}${WRITE_FUNCTION}${DROP_FUNCTION}${BY_TAG_FUNCTION}
local out = {}
local applied = {}
local i = 1
while i <= #ARGV do
  local head = ARGV[i]
  local slash = string.find(head, '/', 2, true)
  local run = true
  if slash then
    -- A chained unit: it runs only if every unit it names (by position) applied.
    for required in string.gmatch(string.sub(head, slash + 1), '%d+') do
      if not applied[tonumber(required)] then run = false end
    end
    prefix = PREFIXES[tonumber(string.sub(head, 2, slash - 1))]
  else
    prefix = PREFIXES[tonumber(string.sub(head, 2))]
  end
  now = tonumber(ARGV[i + 1])
  local n = tonumber(ARGV[i + 2])
  local kind = string.sub(head, 1, 1)
  local reply = 'skipped'
  local ok = false
  if run then
    local A = {prefix, ARGV[i + 1]}
    for k = 1, n do A[k + 2] = ARGV[i + 2 + k] end
    if kind == 'w' then
      reply = writeUnit(A, true)
      ok = reply[1] == 'ok'
    elseif kind == 'd' then
      reply = dropUnit(A, true)
      for r = 2, #reply, 6 do
        if reply[r] == 'live' then ok = true end
      end
    else
      reply = byTagUnit(A, true)
      ok = true
    end
  end
  out[#out + 1] = reply
  applied[#out] = ok
  i = i + 3 + n
end
return out
`);
}

/** A Lua string literal of `text`: bytes other than letters, digits and `:_-.` as decimal escapes. */
function luaString(text: string): string {
  let literal = "'";
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte);
    literal += /[A-Za-z0-9:_\-.]/.test(char) ? char : `\\${String(byte).padStart(3, '0')}`;
  }
  return `${literal}'`;
}
