import { LuaLibrary } from './lua-library.js';
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
 * On a standalone Redis every key is in one place, so writes use `STANDALONE_WRITE`
 * instead: WRITE, DROP (of `remove()`) and BY_TAG (of `flushByTag()`) as units of one call, with
 * the index upkeep of other slots (TAG_ADD, TAG_FORGET, EXPIRY_ADD, EXPIRY_FIX removals) done by
 * the unit itself ("fold"), with the same version and score checks. The Lua is the same
 * functions (`writeUnit`, `dropUnit`, `byTagUnit`), so both paths keep the same guarantees.
 *
 * Scripts run by EVALSHA; on a standalone client SCRIPT LOAD rides with the first use, on a
 * cluster each node learns a script through EVAL when it first answers NOSCRIPT (as after a
 * restart or failover). STANDALONE_WRITE is a Redis function where the server has them (see
 * `lua-library.ts`), loaded the same way.
 */

/** Head of the per-slot scripts: ARGV[1] is the prefix, ARGV[2] the clock (see `LUA_FUNCTIONS`). */
const LUA_PER_SLOT_HEAD = `
local prefix = ARGV[1]
local now = ARGV[2]
`;

/**
 * Shared functions of every script: key layout and entry format, with `prefix` and `now` (the
 * clock, epoch ms as a decimal string) set by the head. Every step counts: in Redis' Lua a
 * string call or a tonumber() costs hundreds of machine instructions, a redis.call thousands,
 * so the hot paths compare decimal strings instead of converting them, and read each value once.
 */
const LUA_FUNCTIONS = `
-- Zeros that pad Redis TIME's microseconds to 6 digits, by their length (no string call).
local PAD = {'00000', '0000', '000', '00', '0', ''}

-- Whether decimal strings without leading zeros compare a > b (numbers of 16 digits and more
-- lose precision in Lua, and tonumber() costs more than comparing).
local function above(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

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

-- "<expiry> <version>\\n<tags>\\n<data>" -> expiry, version, tags (strings), start of the data.
-- One pattern match: string calls cost far more in Redis' Lua than their work suggests.
local function head(value)
  local expiry, version, tags, start = string.match(value, '^(%S*) (%S*)\\n([^\\n]*)\\n()')
  if not start then error('not an entry of this store') end
  return expiry, version, tags, start
end

-- head() and the data: expiry, version, tags, data, end of the header
local function parse(value)
  local expiry, version, tags, start = head(value)
  return expiry, version, tags, string.sub(value, start), start - 1
end

local function isLive(expiry)
  return expiry == '0' or above(expiry, now)
end

local function hasTag(tags, tag)
  if tags == tag then return true end
  return string.find(' ' .. tags .. ' ', ' ' .. tag .. ' ', 1, true) ~= nil
end

-- Native ms an index set that must live longer is given beyond what it needs: under load, most
-- writes to a shared set ("all sessions", the expiry index) then find it long enough and skip
-- the PEXPIRE. It outlives its longest-living member by at most this.
local SLACK = 500

-- An index key whose TTL (\`current\`, ms) is shorter than \`pttl\` gets pttl + SLACK.
local function lengthen(key, pttl, current)
  if current >= 0 and current < pttl then redis.call('PEXPIRE', key, pttl + SLACK) end
end

-- Sets a tag set's TTL after members with native TTL \`pttl\` (0 = forever) were added: the set lives
-- as long as its longest-living member (and at most SLACK more). \`current\` is its PTTL before the
-- ZADD (-2: it did not exist; ZADD leaves a TTL as it is).
local function keepMembersTtl(key, pttl, current)
  if pttl == 0 then
    if current >= 0 then redis.call('PERSIST', key) end
  elseif current == -2 then
    redis.call('PEXPIRE', key, pttl)
  else
    lengthen(key, pttl, current)
  end
end

-- Adds one member (score, id) to a tag set.
local function addMember(key, pttl, score, id)
  local current = redis.call('PTTL', key)
  redis.call('ZADD', key, score, id)
  keepMembersTtl(key, pttl, current)
end

-- Adds members (a flat list of score, id) to a tag set.
local function addMembers(key, pttl, members)
  local current = redis.call('PTTL', key)
  for i = 1, #members, 1000 do
    redis.call('ZADD', key, unpack(members, i, math.min(i + 999, #members)))
  end
  keepMembersTtl(key, pttl, current)
end

-- Standalone only (the index keys are in other slots on a cluster): an entry's foreign membership
-- or expiry record goes with it (TAG_FORGET, EXPIRY_FIX removal), an expiry record is added
-- (EXPIRY_ADD). Written in the same atomic step as every version of the entry, such a member
-- always holds the entry's current version or expiry, so unlike TAG_FORGET on a cluster (where
-- a later write may have re-added it meanwhile) no score check is needed.
local function dropMember(key, id)
  redis.call('ZREM', key, id)
end

local function addExpiry(id, expiry, pttl)
  local key = prefix .. '{}#expiry'
  redis.call('ZADD', key, expiry, id)
  local current = redis.call('PTTL', key)
  if pttl > 0 then
    if current == -1 then
      redis.call('PEXPIRE', key, pttl)
    else
      lengthen(key, pttl, current)
    end
  end
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
-- A fence drawn as RedisLocker's ACQUIRE draws it: max(counter + 1, Redis time in µs), from the
-- lock's fence counter (false: none yet).
local function drawFence(counter)
  local t = redis.call('TIME')
  local fence = t[1] .. PAD[#t[2]] .. t[2]
  if counter and not above(fence, counter) then fence = string.format('%.0f', tonumber(counter) + 1) end
  return fence
end

-- Whether a guard's stored fence is newer than the writer's: the write is then refused.
local function fencedOff(stored, fence)
  return stored ~= fence and tonumber(stored) ~= nil and above(stored, fence)
end

-- Whether an entry is "0 <version>\\n<group>\\n<data>": no expiry of its own, tagged with its group only.
local function plainEntry(value, groupLine)
  if string.sub(value, 1, 2) ~= '0 ' then return false end
  local a = string.find(value, '\\n', 3, true)
  return a ~= nil and string.sub(value, a, a + #groupLine - 1) == groupLine
end

-- The usual commit in far fewer Lua steps (each costs more than its work in Redis' Lua):
-- existing entries of the group, tagged with the group only and without an expiry or a native
-- TTL of their own, rewritten the same way, under a live guard with a lifetime that stays, and
-- nothing removed. Answers nil, having written nothing, for any other write (the general path
-- then decides); else WRITE's answer. Same outcome as the general path: no index changes (no
-- foreign tags, no expiry records; the entries stay members of the group's tag set, which lives
-- at least as long as the guard) and the same native TTLs: such an entry has the guard's TTL
-- (it got the guard's on every write and is extended with it), so it keeps it (KEEPTTL).
local function fastRewrite(A)
  local group = A[3]
  local n = #A
  local sets = tonumber(A[16])
  if n ~= 16 + sets * 3 or sets == 0 then return nil end
  local groupLine = '\\n' .. group .. '\\n'
  local skip = #group + 1
  for k = 17, n, 3 do
    if A[k] == A[4] or A[k + 2] ~= '0' or not plainEntry(A[k + 1], groupLine) then return nil end
  end
  local lockKey = A[10]
  local groupKey = prefix .. '{' .. group .. '}'
  local keys = {}
  local first = 1
  if lockKey ~= '' then
    keys[1] = lockKey
    keys[2] = A[11]
    first = 3
  end
  local guardKey = groupKey .. string.sub(A[4], skip)
  keys[first] = guardKey
  for k = 1, sets do keys[first + k] = groupKey .. string.sub(A[14 + k * 3], skip) end
  local values = redis.call('MGET', unpack(keys))
  local guard = values[first]
  if not guard then return nil end
  for k = 1, sets do
    local old = values[first + k]
    if not old or not plainEntry(old, groupLine) then return nil end
  end
  -- The guard: "<expiry> <version>\\n<tags>\\n<fence>", with an expiry (so a native TTL), live.
  local space = string.find(guard, ' ', 1, true)
  local expiry = string.sub(guard, 1, space - 1)
  if expiry == '0' or not above(expiry, now) then return nil end
  local a = string.find(guard, '\\n', space, true)
  local b = string.find(guard, '\\n', a + 1, true)
  local fence = A[5]
  if lockKey ~= '' then
    if values[1] then return {'locked', '0'} end
    fence = drawFence(values[2])
  end
  local stored = string.sub(guard, b + 1)
  if fencedOff(stored, fence) then return {'fenced', '0'} end
  if lockKey ~= '' then
    if A[12] ~= '0' then
      redis.call('SET', A[11], fence, 'PX', A[12])
    else
      redis.call('SET', A[11], fence)
    end
  end
  for k = 1, sets do redis.call('SET', keys[first + k], A[15 + k * 3], 'KEEPTTL') end
  redis.call('SET', guardKey, string.sub(guard, 1, b) .. fence, 'KEEPTTL')
  return {'ok', '0'}
end

-- A guard created together with the first entries of a fresh group (a new session's storage, a
-- login's new storage): the guard and its entries tagged with the group only, the entries
-- without an expiry or a native TTL of their own, no lock to check, nothing that must exist,
-- nothing removed, within the cap. Answers nil, having written nothing, when the write is not
-- that, or the guard, an entry or the group's tag set exists already (the general path then
-- decides, e.g. replacing an expired guard); else WRITE's answer. Same outcome as the general
-- path: the guard with its native TTL and expiry record, the entries with the guard's TTL, and
-- the group's tag set with all of them (no extension pass: the group was empty).
local function freshCreate(A)
  local group = A[3]
  local n = #A
  local sets = tonumber(A[16])
  if n ~= 16 + sets * 3 or sets > 900 then return nil end
  if A[13] ~= '0' and sets > tonumber(A[13]) then return nil end
  local groupLine = '\\n' .. group .. '\\n'
  -- The guard's head "<expiry> <version>\\n<group>\\n", with the expiry it is given.
  local guardHead = A[7]
  local space = string.find(guardHead, ' ', 1, true)
  if not space or string.sub(guardHead, 1, space - 1) ~= A[8] then return nil end
  local a = string.find(guardHead, '\\n', space, true)
  if not a or string.sub(guardHead, a) ~= groupLine then return nil end
  for k = 17, n, 3 do
    if A[k] == A[4] or A[k + 2] ~= '0' or not plainEntry(A[k + 1], groupLine) then return nil end
  end
  local groupKey = prefix .. '{' .. group .. '}'
  local skip = #group + 1
  local keys = {groupKey .. string.sub(A[4], skip)}
  for k = 1, sets do keys[k + 1] = groupKey .. string.sub(A[14 + k * 3], skip) end
  local values = redis.call('MGET', unpack(keys))
  for k = 1, sets + 1 do
    if values[k] then return nil end
  end
  local setKey = groupKey .. '#tag'
  if redis.call('EXISTS', setKey) == 1 then return nil end
  local pttl = A[9]
  redis.call('SET', keys[1], guardHead .. A[5], 'PX', pttl)
  local members = {string.sub(guardHead, space + 1, a - 1), A[4]}
  for k = 1, sets do
    local value = A[15 + k * 3]
    redis.call('SET', keys[k + 1], value, 'PX', pttl)
    members[#members + 1] = string.sub(value, 3, string.find(value, '\\n', 3, true) - 1)
    members[#members + 1] = A[14 + k * 3]
  end
  redis.call('ZADD', setKey, unpack(members))
  redis.call('PEXPIRE', setKey, pttl)
  addExpiry(A[4], A[8], tonumber(pttl))
  return {'ok', '1'}
end

local function writeUnit(A, fold)
  if A[6] == '1' and A[8] ~= '' and A[10] == '' and A[15] == '0' and A[4] ~= '' and A[3] ~= '' and fold then
    local fresh = freshCreate(A)
    if fresh then return fresh end
  end
  if A[8] == '' and A[15] == '0' and A[4] ~= '' and A[3] ~= '' then
    local fast = fastRewrite(A)
    if fast then return fast end
  end
  local group = A[3]
  local cleanup = {}
  local guardId = A[4]
  local fence = A[5]
  local guardExpiry = A[8]
  local guardPttl = tonumber(A[9])
  -- Native TTL ms every own-group entry stored gets at least (0 = none): the guard's.
  local retain = 0
  -- The guard entry as this write leaves it (false: none) and the start of its data, so the final
  -- guard update needs no second read.
  local guardValue = false
  local guardStart = 0
  -- True when the cap check saw the group's own tag set empty: every member is then one this
  -- write stores, with at least the guard's TTL, so extending them to it is a no-op.
  local freshGroup = false
  -- Every id of a unit is of \`group\`: its key is the group's key and the rest of the id.
  local groupKey = group ~= '' and (prefix .. '{' .. group .. '}') or false
  local groupLength = #group + 1
  local function keyOf(id)
    if groupKey then return groupKey .. string.sub(id, groupLength) end
    return entryKey(id)
  end
  -- The entries this unit has read or written (id -> value, false: none), so each is read once.
  local seen = {}
  local function current(id, key)
    local value = seen[id]
    if value == nil then
      value = redis.call('GET', key)
      seen[id] = value
    end
    return value
  end
  local guardKey = guardId ~= '' and keyOf(guardId)
  -- Additions to the group's own tag set (score, id, ...), sent as one ZADD by flushOwn().
  local ownAdds = {}
  local ownPttl = -1
  local function flushOwn()
    if #ownAdds > 0 then
      addMembers(tagKey(group), ownPttl, ownAdds)
      ownAdds = {}
      ownPttl = -1
    end
  end

  -- Gives a key at least \`pttl\` ms of native life (a key without TTL gets one; a missing key is left).
  local function extend(key, pttl)
    local ttl = redis.call('PTTL', key)
    if ttl == -1 or (ttl >= 0 and ttl < pttl) then redis.call('PEXPIRE', key, pttl) end
  end

  -- The foreign memberships and the expiry record of an old entry that must go: removed here
  -- when folded (standalone), else noted for the caller.
  local function forget(id, expiry, version, tags, keptTags, newExpiry)
    if tags ~= group and tags ~= '' then
      for tag in string.gmatch(tags, '%S+') do
        if tag ~= group and (keptTags == nil or not hasTag(keptTags, tag)) then
          if fold then
            dropMember(tagKey(tag), id)
          else
            cleanup[#cleanup + 1] = 'T'
            cleanup[#cleanup + 1] = tag
            cleanup[#cleanup + 1] = id
            cleanup[#cleanup + 1] = version
          end
        end
      end
    end
    if expiry ~= '0' and newExpiry == '0' then
      if fold then
        dropMember(prefix .. '{}#expiry', id)
      else
        cleanup[#cleanup + 1] = 'E'
        cleanup[#cleanup + 1] = id
        cleanup[#cleanup + 1] = expiry
      end
    end
  end

  local function store(id, value, pttl)
    local key = keyOf(id)
    local expiry, version, tags, start = head(value)
    local own = group ~= '' and hasTag(tags, group)
    local old = current(id, key)
    -- Whether the entry is in the group's tag set already.
    local wasOwn = false
    if old then
      local oldExpiry, oldVersion, oldTags = head(old)
      wasOwn = group ~= '' and hasTag(oldTags, group)
      if wasOwn and not own then
        flushOwn()
        redis.call('ZREM', tagKey(group), id)
      end
      forget(id, oldExpiry, oldVersion, oldTags, tags, expiry)
    end
    if own and retain > 0 and (pttl == 0 or pttl < retain) then pttl = retain end
    if pttl > 0 then
      redis.call('SET', key, value, 'PX', pttl)
    else
      redis.call('SET', key, value)
    end
    seen[id] = value
    if id == guardId then
      guardValue = value
      guardStart = start
    end
    -- A member's score (the version) only matters in foreign tag sets, and the own set lives at
    -- least as long as the guard: an entry that stays a member with the guard's TTL changes nothing there.
    if own and not (wasOwn and retain > 0 and pttl == retain) then
      ownAdds[#ownAdds + 1] = version
      ownAdds[#ownAdds + 1] = id
      -- The set lives as long as its longest-living member (0 = forever wins).
      if pttl == 0 or ownPttl == 0 then ownPttl = 0 elseif pttl > ownPttl then ownPttl = pttl end
    end
    if fold then
      -- Standalone: the foreign tag sets and the expiry record in this same step.
      if tags ~= group and tags ~= '' then
        for tag in string.gmatch(tags, '%S+') do
          if tag ~= group then addMember(tagKey(tag), pttl, version, id) end
        end
      end
      if expiry ~= '0' then addExpiry(id, expiry, pttl) end
    end
  end

  local lockKey = A[10]
  local drawnFence = nil
  if lockKey ~= '' then
    local lock = redis.call('MGET', lockKey, A[11])
    if lock[1] then return {'locked', '0'} end
    drawnFence = drawFence(lock[2])
    fence = drawnFence
  end

  local maxEntries = tonumber(A[13])
  local i = 16
  for _ = 1, tonumber(A[15]) do
    local value = current(A[i], keyOf(A[i]))
    if not value or not isLive(head(value)) then return {'missing', '0'} end
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
      -- An entry carrying the group's tag is a member of its tag set (both change together).
      if counted(A[j]) then
        local old = current(A[j], keyOf(A[j]))
        if not old or not hasTag(select(3, head(old)), group) then added = added + 1 end
      end
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
    local value = current(guardId, guardKey)
    local live = false
    if value then
      local expiry, _, _, start = head(value)
      if isLive(expiry) then
        live = true
        guardValue = value
        guardStart = start
        local stored = string.sub(value, start)
        if fencedOff(stored, fence) then return {'fenced', '0'} end
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
    elseif A[i] ~= '0' then
      -- Only entries stored below need it.
      local pttl = redis.call('PTTL', guardKey)
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
  flushOwn()
  for j = i, #A do
    local id = A[j]
    local key = keyOf(id)
    local value = current(id, key)
    if value then
      local expiry, version, tags = head(value)
      redis.call('DEL', key)
      seen[id] = false
      if group ~= '' and hasTag(tags, group) then redis.call('ZREM', tagKey(group), id) end
      forget(id, expiry, version, tags, nil, '0')
      if id == guardId then guardValue = false end
    end
  end

  if guardValue then
    -- Keeps the guard's tags (and its expiry and native TTL unless a new one is given); a batch
    -- that removed it (a destroy) wins.
    if guardExpiry == '' then
      redis.call('SET', guardKey, string.sub(guardValue, 1, guardStart - 1) .. fence, 'KEEPTTL')
    else
      -- A guard this write created holds exactly this already (value, TTL, expiry record).
      if created ~= '1' then
        local _, version, tags = head(guardValue)
        redis.call('SET', guardKey, guardExpiry .. ' ' .. version .. '\\n' .. tags .. '\\n' .. fence, 'PX', guardPttl)
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
  local result = {'ok', created}
  for _, v in ipairs(cleanup) do result[#result + 1] = v end
  return result
end
`;

/**
 * Standalone only (units of the write library, see STANDALONE_WRITE).
 *
 * MATCH: id, data, ... pairs (`WriteBatch.mustMatch`). Answers {'ok'} when every entry is live
 * and holds exactly that data, else {'changed'}. Writes nothing.
 *
 * COPY: the source group, the key of its lock ('' = none: `WriteGuard.copyUnlocked` checks that
 * lock free and the source's guard live, else {'locked', '0'} or {'missing', '0'}, nothing
 * written), then a WRITE unit's arguments for a fresh group with a creating guard
 * (`WriteGuard.copyFrom`). The source's entries (members of its own tag set but its guard, as
 * they are now) join the write's sets under the new group's ids, unless the write sets or
 * removes them; the write's removes are then void (the new group holds nothing else). An entry
 * that is not plain ("0 <version>\\n<source>\\n<data>": an expiry or another tag of its own)
 * cannot be moved as such: {'changed', '0'}, nothing written. Otherwise WRITE's answer, from the
 * same code (the fresh-group fast path when it applies).
 */
const MOVE_FUNCTIONS = `
local function matchUnit(A)
  for k = 3, #A, 2 do
    local value = redis.call('GET', entryKey(A[k]))
    if not value then return {'changed'} end
    local expiry, _, _, start = head(value)
    local data = A[k + 1]
    if not isLive(expiry) or #value - start + 1 ~= #data or string.sub(value, start) ~= data then return {'changed'} end
  end
  return {'ok'}
end

local function copyUnit(A, fold)
  local from = A[3]
  local fromLock = A[4]
  local W = {A[1], A[2]}
  for k = 5, #A do W[k - 2] = A[k] end
  local group = W[3]
  local s = 16 + tonumber(W[15])
  local sets = tonumber(W[s])
  local last = s + sets * 3
  -- Ids the write names (set or removed) are not copied.
  local named = {}
  for k = s + 1, last, 3 do named[W[k]] = true end
  for k = last + 1, #W do named[W[k]] = true end
  local skip = #from + 1
  local guardSuffix = string.sub(W[4], #group + 1)
  local ids = {}
  local keys = {}
  local fromKey = prefix .. '{' .. from .. '}'
  if fromLock ~= '' then
    -- WriteGuard.copyUnlocked: the source's lock free, its guard live; no fence is drawn (the
    -- source is not written here, and the caller flushes it once the move is published).
    local checked = redis.call('MGET', fromLock, fromKey .. guardSuffix)
    if checked[1] then return {'locked', '0'} end
    if not checked[2] or not isLive(head(checked[2])) then return {'missing', '0'} end
  end
  for _, id in ipairs(redis.call('ZRANGE', tagKey(from), 0, -1)) do
    local suffix = string.sub(id, skip)
    local moved = group .. suffix
    if suffix ~= guardSuffix and not named[moved] then
      ids[#ids + 1] = moved
      keys[#keys + 1] = fromKey .. suffix
    end
  end
  -- Beyond what one MGET and the fast path take: the caller moves under the lock instead.
  if #keys > 900 then return {'changed', '0'} end
  -- The write's sets, then the copies, then no removes.
  local C = {}
  for k = 1, last do C[k] = W[k] end
  if #keys > 0 then
    local fromLine = '\\n' .. from .. '\\n'
    local values = redis.call('MGET', unpack(keys))
    local n = last
    for k = 1, #keys do
      local value = values[k]
      if value then
        if not plainEntry(value, fromLine) then return {'changed', '0'} end
        local a = string.find(value, '\\n', 3, true)
        C[n + 1] = ids[k]
        C[n + 2] = string.sub(value, 1, a) .. group .. string.sub(value, a + skip)
        C[n + 3] = '0'
        n = n + 3
        sets = sets + 1
      end
    end
  end
  C[s] = tostring(sets)
  return writeUnit(C, fold)
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
            if other ~= group then dropMember(tagKey(other), id) end
          end
          if expiry ~= '0' then dropMember(prefix .. '{}#expiry', id) end
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
 * KEYS: the tag set. ARGV: prefix, now, tag, mode ('ids', 'data' or 'flush'), for 'flush' the
 * key of the group's lock fence counter to delete with it ('' or absent: none). Members of the
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
  -- Members of the tag's own group are read with one MGET per 1,000 and removed with one DEL
  -- and one ZREM per 1,000 (each redis.call costs more than its work); the others are answered.
  local ids, keys = {}, {}
  local groupKey = prefix .. '{' .. tag .. '}'
  local skip = #tag + 1
  for i = 1, #members, 2 do
    local id = members[i]
    if groupOf(id) ~= tag then
      foreign[#foreign + 1] = id
      foreign[#foreign + 1] = members[i + 1]
    else
      ids[#ids + 1] = id
      keys[#keys + 1] = groupKey .. string.sub(id, skip)
    end
  end
  -- Memberships to drop (entry gone, no longer tagged, or flushed) and the flushed entries' keys.
  local gone, flushed = {}, {}
  for first = 1, #keys, 1000 do
    local last = math.min(first + 999, #keys)
    local values = redis.call('MGET', unpack(keys, first, last))
    for k = first, last do
      local id = ids[k]
      local value = values[k - first + 1]
      local expiry, version, tags, start
      if value then expiry, version, tags, start = head(value) end
      if not value or not hasTag(tags, tag) then
        gone[#gone + 1] = id
      elseif mode == 'flush' then
        flushed[#flushed + 1] = keys[k]
        gone[#gone + 1] = id
        if tags ~= tag then
          for other in string.gmatch(tags, '%S+') do
            if other ~= tag then
              if fold then
                dropMember(tagKey(other), id)
              else
                for _, v in ipairs({'T', other, id, version}) do cleanup[#cleanup + 1] = v end
              end
            end
          end
        end
        if expiry ~= '0' then
          if fold then
            dropMember(prefix .. '{}#expiry', id)
          else
            for _, v in ipairs({'E', id, expiry}) do cleanup[#cleanup + 1] = v end
          end
        end
        if isLive(expiry) then removed = removed + 1 end
      elseif isLive(expiry) then
        found[#found + 1] = id
        if mode == 'data' then found[#found + 1] = string.sub(value, start) end
      end
    end
  end
  for first = 1, #flushed, 1000 do
    redis.call('DEL', unpack(flushed, first, math.min(first + 999, #flushed)))
  end
  for first = 1, #gone, 1000 do
    redis.call('ZREM', setKey, unpack(gone, first, math.min(first + 999, #gone)))
  end
  -- A flushed group is gone for good: its lock's fence counter goes with it (it lived for the
  -- locker's fenceTtl, a key per login or destroy). Same hash tag as the group's keys.
  if mode == 'flush' and A[5] and A[5] ~= '' then redis.call('DEL', A[5]) end
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
 * The standalone write script of the backends sharing one {@link RedisWriteCoalescer}, as a
 * Redis function (EVAL script where functions are unavailable): one call runs any number of
 * units, in order, each as WRITE or DROP would, with the index upkeep folded in (tag sets and
 * expiry records of other slots are in the same Redis). KEYS: one key (unused). ARGV: the
 * number of key prefixes, those prefixes, then per unit `w<n>` (WRITE), `d<n>` (DROP), `f<n>`
 * (BY_TAG), `m<n>` (MATCH) or `c<n>` (COPY, see MOVE_FUNCTIONS), n the 1-based index of the backend's prefix, the unit's clock, the number of its
 * arguments, then those arguments (WRITE's or DROP's after prefix and clock). Answers one reply
 * per unit. A unit that refuses (missing, fenced, locked, full, changed) has written nothing and does
 * not stop the next one, unless that one is chained to it: a head `w<n>/<p>,<q>` names the
 * 1-based positions of earlier units it requires, and it runs only if each applied (WRITE 'ok',
 * DROP removed a live entry, BY_TAG ran, MATCH and COPY 'ok'); otherwise its reply is 'skipped'. The prefixes are
 * arguments, so one library serves every app on the server.
 */
export const STANDALONE_WRITE = new LuaLibrary(
  'nestsession_write',
  `
local prefix
local now
${LUA_FUNCTIONS}${WRITE_FUNCTION}${MOVE_FUNCTIONS}${DROP_FUNCTION}${BY_TAG_FUNCTION}`,
  `
-- The prefixes are ARGV[2..], so prefix n is ARGV[n + 1].
local out = {}
local applied = {}
local i = tonumber(ARGV[1]) + 2
local count = #ARGV
while i <= count do
  local unit = ARGV[i]
  local run = true
  if #unit == 2 then
    -- The usual head: one kind letter, one prefix digit (48 is the byte of '0').
    prefix = ARGV[string.byte(unit, 2) - 47]
  else
    local slash = string.find(unit, '/', 2, true)
    if slash then
      -- A chained unit: it runs only if every unit it names (by position) applied.
      for required in string.gmatch(string.sub(unit, slash + 1), '%d+') do
        if not applied[tonumber(required)] then run = false end
      end
      prefix = ARGV[tonumber(string.sub(unit, 2, slash - 1)) + 1]
    else
      prefix = ARGV[tonumber(string.sub(unit, 2)) + 1]
    end
  end
  now = ARGV[i + 1]
  local n = tonumber(ARGV[i + 2])
  local kind = string.byte(unit, 1)
  local reply = 'skipped'
  local ok = false
  if run then
    local A
    if n <= 2000 then
      -- One table constructor (unpack is bounded by Lua's C stack, hence the loop for long units).
      A = {prefix, ARGV[i + 1], unpack(ARGV, i + 3, i + 2 + n)}
    else
      A = {prefix, ARGV[i + 1]}
      for k = 1, n do A[k + 2] = ARGV[i + 2 + k] end
    end
    if kind == 119 then -- 'w'
      reply = writeUnit(A, true)
      ok = reply[1] == 'ok'
    elseif kind == 100 then -- 'd'
      reply = dropUnit(A, true)
      for r = 2, #reply, 6 do
        if reply[r] == 'live' then ok = true end
      end
    elseif kind == 99 then -- 'c'
      reply = copyUnit(A, true)
      ok = reply[1] == 'ok'
    elseif kind == 109 then -- 'm'
      reply = matchUnit(A)
      ok = reply[1] == 'ok'
    else
      reply = byTagUnit(A, true)
      ok = true
    end
  end
  out[#out + 1] = reply
  applied[#out] = ok
  i = i + 3 + n
end
return out`,
);
