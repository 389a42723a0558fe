import { LuaScript } from './lua-script.js';

/*
 * The Lua scripts of RedisLocker. Each touches the keys of one lock key only (lock, fence,
 * queue, lease), which share the `{key}` hash tag: one cluster slot. Wake-ups name one waiter:
 * a script publishes the token of the waiter whose turn it is, on the lock's channel (PUBLISH,
 * or SPUBLISH on a cluster), and nothing else.
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
 * KEYS: lock, fence, queue, lease. ARGV: token, ttl ms, fence ttl ms, waiter ttl ms, enqueue,
 * channel, publish command ('PUBLISH', or 'SPUBLISH' on a cluster: the channel shares the
 * lock's hash tag, so the message stays on the lock's node). Returns {1, fence} when taken, else {0, ms until worth retrying without a message}.
 *
 * The queue (ZSET token -> arrival number) makes waiting fair across processes: a free lock
 * goes only to the first queued token, or to anyone when nobody queues. `lease` (ZSET token ->
 * deadline, Redis time) drops tickets of waiters that stopped refreshing them. Wake-ups name
 * one waiter: the channel message is the token of the waiter whose turn it is. When dropping
 * dead tickets leaves a free lock to somebody else, that waiter is woken here, since no release
 * will come to do it.
 */
const ACQUIRE = `${dropDeadWaiters('KEYS[3]', 'KEYS[4]')}
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
    local fence = redis.call('INCR', KEYS[2])
    if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
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

export const LOCK_SCRIPTS = {
  acquire: new LuaScript(ACQUIRE),
  release: new LuaScript(RELEASE),
  extend: new LuaScript(EXTEND),
  cancel: new LuaScript(CANCEL),
};
