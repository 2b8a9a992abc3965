"""Lua scripts of the kit's Redis transport: every step that must not be split in two.

Key layout is kombu's (queue lists ``q``, ``q<sep>1`` … ``q<sep>9``, hash ``unacked``, sorted
set ``unacked_index``), so depth metrics, KEDA list triggers and Flower keep working. Scores
are the Redis server's clock (``TIME``), so worker clocks do not matter.
"""

from __future__ import annotations

__all__ = ["ACK", "DUE", "POP", "RENEW", "RESTORE"]

#: Take the first message of the first non-empty list and, in the same step, record it as
#: unacknowledged (a message is never "taken" without being recorded).
#: KEYS: unacked_index, unacked, malformed list, list_1..list_n, wake_1..wake_m.
#: ARGV: n, malformed cap, then per list: wake index, record flag ('1'/'0'), and the JSON
#: string of its queue name.
#: The first non-empty list is found by bisection with multi-key EXISTS (an idle pop is
#: one EXISTS; a pop among 50 lists about 7 calls, not one RPOP per empty list).
#: The delivery tag is read without decoding the message when kombu's encoding makes it
#: unambiguous (exactly one ``"delivery_tag": "`` in the payload), else with cjson.
#: The unacked entry is kombu's ``[payload, exchange, routing_key]`` with the anonymous
#: exchange and the queue's name: a restore goes back to the queue it was taken from.
#: Returns ``{i, payload, status, tag}`` (status 1: recorded under ``tag``, 0: no-ack
#: queue, -1: malformed and moved aside) or nil. While the popped queue still holds
#: messages it leaves the wake-up token, so the next idle consumer wakes too (a backlog is
#: shared, not drained by one).
#: Wake-up keys are sorted sets with the single member "1" (``BZPOPMIN`` blocks on many;
#: a sorted set cannot be mistaken for a queue by tools that scan lists, and holds at
#: most one token without a check).
POP = """
local n = tonumber(ARGV[1])
local lists = {}
for i = 1, n do lists[i] = KEYS[3 + i] end
if redis.call('EXISTS', unpack(lists)) == 0 then return false end
local lo, hi = 1, n
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  if redis.call('EXISTS', unpack(lists, lo, mid)) > 0 then hi = mid else lo = mid + 1 end
end
local i = lo
local item = redis.call('RPOP', KEYS[3 + i])
if not item then return false end
local base = 2 + 3 * (i - 1)
local status = 0
local tag = false
if ARGV[base + 2] == '1' then
  local marker = '"delivery_tag": "'
  local _, e = string.find(item, marker, 1, true)
  if e and not string.find(item, marker, e + 1, true) then
    local q = string.find(item, '"', e + 1, true)
    if q then tag = string.sub(item, e + 1, q - 1) end
    if tag and string.find(tag, string.char(92), 1, true) then tag = nil end
  end
  if not tag then
    local ok, msg = pcall(cjson.decode, item)
    if ok and type(msg) == 'table' and type(msg['properties']) == 'table' then
      tag = msg['properties']['delivery_tag']
    end
  end
  if type(tag) ~= 'string' or tag == '' then
    redis.call('LPUSH', KEYS[3], item)
    redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[2]) - 1)
    return {i, item, -1, false}
  end
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[1], tonumber(t[1]) + tonumber(t[2]) / 1000000, tag)
  redis.call('HSET', KEYS[2], tag, '[' .. item .. ',"",' .. ARGV[base + 3] .. ']')
  status = 1
end
local w = ARGV[base + 1]
for j = i, n do
  if ARGV[2 + 3 * (j - 1) + 1] == w and redis.call('LLEN', KEYS[3 + j]) > 0 then
    redis.call('ZADD', KEYS[3 + n + tonumber(w)], 0, '1')
    break
  end
end
return {i, item, status, tag}
"""

#: Acknowledge: forget the given delivery tags. KEYS: unacked_index, unacked. ARGV: tags.
ACK = """
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
return #ARGV
"""

#: Deferred acks, then renewal of held messages in one step. ``ZADD XX`` only touches
#: entries that still exist, so an acknowledged message is never resurrected.
#: KEYS: unacked_index, unacked. ARGV: k, k tags to ack, then tags to renew.
#: Returns the renewed tags that were no longer there (restored or acked elsewhere).
RENEW = """
local k = tonumber(ARGV[1])
if k > 0 then
  local acks = {}
  for i = 2, 1 + k do acks[#acks + 1] = ARGV[i] end
  redis.call('ZREM', KEYS[1], unpack(acks))
  redis.call('HDEL', KEYS[2], unpack(acks))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local missing = {}
for i = 2 + k, #ARGV do
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', now, ARGV[i]) == 0 then
    missing[#missing + 1] = ARGV[i]
  end
end
return missing
"""

#: Which entries are older than the visibility timeout (server clock)?
#: KEYS: unacked_index. ARGV: visibility timeout (s), limit.
#: Returns ``{ceiling, {tag, ...}}``; the ceiling is passed back to RESTORE.
DUE = """
local t = redis.call('TIME')
local ceil = tonumber(t[1]) + tonumber(t[2]) / 1000000 - tonumber(ARGV[1])
local ceil_s = string.format('%.6f', ceil)
return {ceil_s, redis.call('ZRANGE', KEYS[1], '-inf', ceil_s, 'BYSCORE', 'LIMIT', 0, ARGV[2])}
"""

#: Put one unacknowledged message back, only if it is still unacknowledged and its score
#: is at most the ceiling (so a message renewed or acked meanwhile stays where it is).
#: KEYS: unacked_index, unacked, list_1..list_m, wake_1..wake_m.
#: ARGV: tag, ceiling ('+inf': unconditional), payload, leftmost ('1'/'0'), m.
RESTORE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  if ARGV[2] ~= '+inf' or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
elseif ARGV[2] ~= '+inf' and tonumber(score) > tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local m = tonumber(ARGV[5])
for i = 1, m do
  if ARGV[4] == '1' then
    redis.call('LPUSH', KEYS[2 + i], ARGV[3])
  else
    redis.call('RPUSH', KEYS[2 + i], ARGV[3])
  end
  redis.call('ZADD', KEYS[2 + m + i], 0, '1')
end
return 1
"""
