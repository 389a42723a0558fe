import { LuaScript } from './lua-script.js';

/*
 * The Lua scripts of RedisLocker. Each touches the keys of one lock key only (lock, fence,
 * queue, lease, and the tombstones of abandoned tokens), which share the `{key}` hash tag: one
 * cluster slot. Wake-ups name one waiter: a script publishes the token of the waiter whose
 * turn it is, on the lock's channel (PUBLISH, or SPUBLISH on a cluster), and nothing else.
 */

/**
 * Lua prelude of the scripts that look at the queue: drops the tickets of waiters that stopped
 * refreshing them (process died or stalled) and sets `now` (Redis time, ms) and `dead` (the
 * tickets it dropped).
 */
function dropDeadWaiters(queue: string, lease: string): string {
  return `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGE', ${lease}, '-inf', now, 'BYSCORE', 'LIMIT', 0, 100)
if #dead > 0 then
  redis.call('ZREM', ${lease}, unpack(dead))
  redis.call('ZREM', ${queue}, unpack(dead))
end
`;
}

/**
 * KEYS: lock, fence, queue, lease, the token's tombstone. ARGV: token, ttl ms, fence ttl ms,
 * waiter ttl ms, enqueue, channel, publish command ('PUBLISH', or 'SPUBLISH' on a cluster: the
 * channel shares the lock's hash tag, so the message stays on the lock's node). Returns
 * {1, fence} when taken, else {0, ms until worth retrying without a message}.
 *
 * The fence is max(last fence of this key + 1, Redis time in microseconds): the clock part
 * makes it exceed every fence handed out earlier for any key of this Redis, also for a new
 * key or after the key's counter expired (the storage guard it is compared with never
 * expires); the counter part keeps it increasing for the key should the clock step back.
 * Microseconds since 1970 stay below 2^53 (exact in Lua's doubles and JS numbers) until
 * 2255; the value is written with '%.0f', as Lua's tostring would round it to 14 digits.
 * TIME before writes is allowed: scripts replicate their effects, not their source (the
 * default since Redis 5, the only mode in 7). `t` is the TIME reply of the prelude.
 *
 * A token whose caller gave up on an attempt of unknown outcome has a tombstone (see ABANDON):
 * an ACQUIRE of it that reaches Redis late neither takes the lock nor queues.
 *
 * The queue (ZSET token -> arrival number) makes waiting fair across processes: a free lock
 * goes only to the first queued token, or to anyone when nobody queues. `lease` (ZSET token ->
 * deadline, Redis time) drops tickets of waiters that stopped refreshing them. Wake-ups name
 * one waiter: the channel message is the token of the waiter whose turn it is. When dropping
 * dead tickets leaves a free lock to somebody else, that waiter is woken here, since no release
 * will come to do it.
 */
const ACQUIRE = `
if redis.call('EXISTS', KEYS[5]) == 1 then return {0, 0} end
${dropDeadWaiters('KEYS[3]', 'KEYS[4]')}
local token = ARGV[1]
local held = redis.call('EXISTS', KEYS[1]) == 1
if not held then
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if head == nil or head == token then
    redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
    if head ~= nil then
      redis.call('ZREM', KEYS[3], token)
      redis.call('ZREM', KEYS[4], token)
    end
    local fence = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
    local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
    if clock > fence then fence = clock end
    local value = string.format('%.0f', fence)
    if tonumber(ARGV[3]) > 0 then
      redis.call('SET', KEYS[2], value, 'PX', ARGV[3])
    else
      redis.call('SET', KEYS[2], value)
    end
    return {1, fence}
  end
  if #dead > 0 then redis.call(ARGV[7], ARGV[6], head) end
end
if ARGV[5] ~= '1' then return {0, 0} end
local waiterTtl = tonumber(ARGV[4])
if not redis.call('ZSCORE', KEYS[3], token) then
  local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  local number = 1
  if last[2] then number = tonumber(last[2]) + 1 end
  redis.call('ZADD', KEYS[3], number, token)
end
redis.call('ZADD', KEYS[4], now + waiterTtl, token)
redis.call('PEXPIRE', KEYS[3], waiterTtl)
redis.call('PEXPIRE', KEYS[4], waiterTtl)
if held then return {0, redis.call('PTTL', KEYS[1])} end
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
return {0, tonumber(redis.call('ZSCORE', KEYS[4], head)) - now}
`;

/**
 * KEYS: lock, queue, lease. ARGV: token, channel, publish command. Wakes only the first live waiter,
 * by publishing its token: waking all of them would make every release cost one acquire
 * attempt per waiter, O(waiters^2) per queue. Dead tickets are dropped first, so a waiter that
 * died long ago is not the one woken; one that died recently (ticket still valid) is, and the
 * others get past it by refreshing their tickets (within `waiterTtl`).
 */
const RELEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
${dropDeadWaiters('KEYS[2]', 'KEYS[3]')}
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if head then redis.call(ARGV[3], ARGV[2], head) end
return 1
`;

/** KEYS: lock. ARGV: token, ttl ms. */
const EXTEND = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;

/**
 * KEYS: lock, queue, lease. ARGV: token, channel, publish command. A waiter gives up its place; if that leaves a
 * free lock to the next in line, wake it.
 */
const CANCEL = `
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if removed == 1 and redis.call('EXISTS', KEYS[1]) == 0 then
  ${dropDeadWaiters('KEYS[2]', 'KEYS[3]')}
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if head then redis.call(ARGV[3], ARGV[2], head) end
end
return removed
`;

/**
 * KEYS: lock, queue, lease, the token's tombstone. ARGV: token, channel, publish command,
 * tombstone ttl ms. Run for a token whose ACQUIRE failed on the client side (timeout, lost
 * connection) and so may have run, may still run, or never will: releases the lock if that
 * token got it, takes its ticket out of the queue (waking the next in line when that leaves
 * the lock free), and leaves a tombstone so that an ACQUIRE of the token arriving later takes
 * nothing. Idempotent. Returns 1 when the token held the lock.
 */
const ABANDON = `
local held = redis.call('GET', KEYS[1]) == ARGV[1]
if held then redis.call('DEL', KEYS[1]) end
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if (held or removed == 1) and redis.call('EXISTS', KEYS[1]) == 0 then
  ${dropDeadWaiters('KEYS[2]', 'KEYS[3]')}
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if head then redis.call(ARGV[3], ARGV[2], head) end
end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
if held then return 1 end
return 0
`;

export const LOCK_SCRIPTS = {
  acquire: new LuaScript(ACQUIRE),
  release: new LuaScript(RELEASE),
  extend: new LuaScript(EXTEND),
  cancel: new LuaScript(CANCEL),
  abandon: new LuaScript(ABANDON),
};
