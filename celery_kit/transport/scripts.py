"""Lua scripts of the kit's Redis transport: every step that must not be split in two.

Key layout is kombu's (queue lists ``q``, ``q<sep>1`` … ``q<sep>9``, hash ``unacked``, sorted
set ``unacked_index``), so depth metrics, KEDA list triggers and Flower keep working. Scores
are the Redis server's clock (``TIME``), so worker clocks do not matter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.client import Pipeline

__all__ = [
    "ACK",
    "COUNT_BY_LIST",
    "DUE",
    "MOVE",
    "POP",
    "PUT",
    "RENEW",
    "RESTORE",
    "WAKE_TOKEN",
    "put",
]

#: The single member of a wake-up sorted set (score 0).
WAKE_TOKEN = "1"

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

#: The one put step: the message goes to the left of its list (the priority sub-list the
#: publisher chose) and the queue's consumers get a wake-up token, the token after the
#: message (a token alone only wakes someone). Two forms of the same two commands, kept
#: side by side so they cannot drift apart: ``PUT`` is a Lua function other scripts start
#: with (the delay mover, atomic with its ``ZREM``); ``put`` queues the same commands on a
#: pipeline (publish: one round trip, no script).
PUT = (
    """
local function put(list, wake, payload)
  redis.call('LPUSH', list, payload)
  redis.call('ZADD', wake, 0, '"""
    + WAKE_TOKEN
    + """')
end
"""
)


def put(pipe: Pipeline, list_key: str, wake_key: str, payload: str | bytes) -> None:
    """Queue the put step (same commands as ``PUT``) on ``pipe``; the caller executes."""
    pipe.lpush(list_key, payload)
    pipe.zadd(wake_key, {WAKE_TOKEN: 0})


#: Move due delayed messages into their queues, earliest first. A delay-set member is
#: ``<list>\n<wake>\n<payload>`` (full key names, so the mover needs nothing else; kombu's
#: JSON payload has no raw newline, so it is stored as is, not encoded twice), scored by
#: its due time (epoch seconds); the publish path stores it with a plain ``ZADD``.
#: For each due member, ``put`` and ``ZREM`` in the same script, so a message is in the
#: delay set or in its queue, never both, never neither (a SIGKILLed mover leaves the rest
#: of the batch where it was).
#: The list/wake keys come from the members (not declared in KEYS: the kit's transport
#: runs on one Redis server, as kombu's does; Redis Cluster is not supported).
#: A member that is not ``<list>\n<wake>\n<payload>`` goes to the malformed list.
#: KEYS: delay set, malformed list. ARGV: now (epoch s), limit.
#: Returns ``{taken, lag_1..lag_moved}``: members taken from the set (moved or set aside),
#: then how late (s, by ARGV now) each moved message was.
MOVE = (
    PUT
    + """
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2],
  'WITHSCORES')
local now = tonumber(ARGV[1])
local out = {#due / 2}
for i = 1, #due, 2 do
  local member = due[i]
  local a = string.find(member, '\\n', 1, true)
  local b = a and string.find(member, '\\n', a + 1, true)
  if b and a > 1 and b > a + 1 then
    put(string.sub(member, 1, a - 1), string.sub(member, a + 1, b - 1), string.sub(member, b + 1))
    out[#out + 1] = string.format('%.6f', now - tonumber(due[i + 1]))
  else
    redis.call('LPUSH', KEYS[2], due[i])
  end
  redis.call('ZREM', KEYS[1], due[i])
end
return out
"""
)

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

#: Delayed messages per destination list (the first line of each member), for depth
#: metrics. O(N) in the delay set, server-side (no payload crosses the network).
#: KEYS: delay set. Returns ``{list_1, n_1, list_2, n_2, ...}``.
COUNT_BY_LIST = """
local counts = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local list = string.match(member, '^([^\\n]+)\\n')
  if list then counts[list] = (counts[list] or 0) + 1 end
end
local out = {}
for list, n in pairs(counts) do
  out[#out + 1] = list
  out[#out + 1] = n
end
return out
"""
