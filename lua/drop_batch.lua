--[[
drop_batch.lua: drop messages from the batch being collected, unanswered (the
console's "drop"; PostgreSQL has already marked them handled).

Guarantees: the given ids leave the collecting batch; other messages (ones that
arrived after the operator looked) stay, with their deadline. When the batch is left
empty its deadline and start go, and the conversation leaves the agenda unless a
worker holds it or a claimed batch waits in flight (their score stands). History is
kept: the messages were said. Idempotent: ids no longer there are skipped.

KEYS[1] conv:deadlines                               ZSET   member = conversation, score = due ms
KEYS[2] conv:{channel}:{account}:{contact}:msgs      LIST   batch being collected, JSON
KEYS[3] conv:{channel}:{account}:{contact}:deadline  STRING unix ms the collecting batch is due
KEYS[4] conv:{channel}:{account}:{contact}:state     HASH   started = ms of the batch's first message
KEYS[5] conv:{channel}:{account}:{contact}:lock      STRING claim token (read only here)
KEYS[6] conv:{channel}:{account}:{contact}:inflight  LIST   claimed batch (read only here)

ARGV[1]    member  agenda member: {channel}:{account}:{contact}
ARGV[2..]  id      database ids of the messages to drop

Reply: {removed, left}
  removed = entries taken out of the collecting batch
  left    = entries still collecting
]]
local rcall = redis.call
local agenda, msgs, deadline_key, state, lock, inflight =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local member = ARGV[1]
local drop = {}
for i = 2, #ARGV do drop[tonumber(ARGV[i])] = true end

local removed = 0
for _, raw in ipairs(rcall('LRANGE', msgs, '0', '-1')) do
  if drop[cjson.decode(raw).id] then
    removed = removed + rcall('LREM', msgs, 1, raw)
  end
end
local left = rcall('LLEN', msgs)
if left == 0 then
  rcall('DEL', deadline_key)
  rcall('HDEL', state, 'started')
  if rcall('EXISTS', lock, inflight) == 0 then
    rcall('ZREM', agenda, member)
  end
end
return {removed, left}
