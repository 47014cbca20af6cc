--[[
flush.lua: make a conversation's collecting batch due at once (the console's "flush").

Guarantees: a batch being collected gets deadline = now and agenda score = now, so
the next claim takes it without waiting out its window. A conversation a worker
holds (lock) is left alone: its batch is already being answered, and ack.lua
reschedules what arrived meanwhile. A claimed batch waiting in flight (handed back)
is made due at once too. Idempotent: flushing twice changes nothing more.

KEYS[1] conv:deadlines                               ZSET   member = conversation, score = due ms
KEYS[2] conv:{channel}:{account}:{contact}:msgs      LIST   batch being collected (read only here)
KEYS[3] conv:{channel}:{account}:{contact}:deadline  STRING unix ms the collecting batch is due
KEYS[4] conv:{channel}:{account}:{contact}:lock      STRING claim token (read only here)
KEYS[5] conv:{channel}:{account}:{contact}:inflight  LIST   claimed batch (read only here)

ARGV[1] now     unix ms
ARGV[2] member  agenda member: {channel}:{account}:{contact}
ARGV[3] ttl_ms  lifetime of the conversation's keys

Reply: {status, due_ms}
  status 0 = nothing to answer (no collecting batch, nothing in flight)
         1 = flushed: due at due_ms (= now)
         2 = a worker holds it now: nothing changed, due_ms = 0
]]
local rcall = redis.call
local agenda, msgs, deadline_key, lock, inflight = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now_arg, member, ttl_arg = ARGV[1], ARGV[2], ARGV[3]

if rcall('EXISTS', lock) == 1 then
  return {2, 0}
end
local collecting = rcall('LLEN', msgs)
if collecting == 0 and rcall('LLEN', inflight) == 0 then
  return {0, 0}
end
if collecting > 0 then
  rcall('SET', deadline_key, now_arg, 'PX', ttl_arg)
end
local score = rcall('ZSCORE', agenda, member)
if not score or tonumber(score) > tonumber(now_arg) then
  rcall('ZADD', agenda, now_arg, member)
end
return {1, tonumber(now_arg)}
