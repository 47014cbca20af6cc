--[[
requeue.lua: give a claimed batch back without answering it.

Guarantees: only the holder of the matching token acts; the lock is released and
the batch keeps its id, so nothing is lost. Two uses:
  mode 0, hand back (shutdown): the batch stays in flight as it is and is due at
          once, for any instance to resume; messages collected meanwhile keep their
          own window (claim.lua merges them only once they are due);
  mode 1, supersede (new messages arrived during generation): the in-flight
          messages rejoin the collecting batch in platform order (timestamp, then
          id), due at the new messages' deadline, never past the first message +
          max wait, and at once when together they fill a batch (as append.lua
          does), so the next claim answers everything at once.

KEYS[1] conv:deadlines                               ZSET   member = conversation, score = due ms
KEYS[2] conv:{channel}:{account}:{contact}:msgs      LIST   batch being collected, JSON
KEYS[3] conv:{channel}:{account}:{contact}:inflight  LIST   claimed batch, JSON
KEYS[4] conv:{channel}:{account}:{contact}:lock      STRING claim token
KEYS[5] conv:{channel}:{account}:{contact}:state     HASH   started, inflight_started, supersedes
KEYS[6] conv:{channel}:{account}:{contact}:deadline  STRING unix ms the collecting batch is due

ARGV[1] now          unix ms
ARGV[2] member       agenda member: {channel}:{account}:{contact}
ARGV[3] token        the claim token
ARGV[4] mode         0 = hand back, 1 = supersede
ARGV[5] max_wait_ms  cap after the batch's first message
ARGV[6] ttl_ms       lifetime of the conversation's keys
ARGV[7] max_messages batch size that is due at once

Reply: {status, due_ms}
  status 0 = lost (token does not match; nothing changed), 1 = requeued
]]
local rcall = redis.call
local agenda, msgs, inflight, lock, state, deadline_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now, member, token = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local mode, max_wait, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local max_messages = tonumber(ARGV[7])

if rcall('GET', lock) ~= token then
  return {0, 0}
end

if mode == 0 then
  rcall('DEL', lock)
  rcall('ZADD', agenda, now, member)
  return {1, now}
end

local all = {}
for _, key in ipairs({inflight, msgs}) do
  for _, raw in ipairs(rcall('LRANGE', key, 0, -1)) do
    local e = cjson.decode(raw)
    all[#all + 1] = {e.ts, e.id, raw}
  end
end
table.sort(all, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)
rcall('DEL', inflight, msgs, lock)
for _, e in ipairs(all) do
  rcall('RPUSH', msgs, e[3])
end

local started = tonumber(rcall('HGET', state, 'inflight_started') or now)
local newer = tonumber(rcall('HGET', state, 'started'))
if newer and newer < started then started = newer end
rcall('HSET', state, 'started', started)
rcall('HDEL', state, 'inflight_started')

rcall('HINCRBY', state, 'supersedes', 1)
local due = tonumber(rcall('GET', deadline_key)) or now
if started + max_wait < due then due = started + max_wait end
if #all >= max_messages then due = now end
rcall('SET', deadline_key, due, 'PX', ttl)
rcall('PEXPIRE', msgs, ttl)
rcall('PEXPIRE', state, ttl)
rcall('ZADD', agenda, due, member)
return {1, due}
