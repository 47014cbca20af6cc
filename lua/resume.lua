--[[
resume.lua: give a paused conversation back to the bot, atomically.

Guarantees: the mode key is gone, so append.lua batches new messages again. The
collecting batch becomes exactly the given entries (the contact's messages after
the human agent's last one, still unanswered in PostgreSQL, in platform order):
whatever was collecting before the pause was the human's to answer, and the
caller has marked it so. The batch is due at due_ms; the conversation goes on
the agenda then, or at once when a batch waits in flight with no worker (it is
resumed first, as always), unless a worker holds the lock (its ack reschedules).
With no entries and nothing in flight, nothing is scheduled.

KEYS[1] conv:{channel}:{account}:{contact}:mode      STRING exists while a human has the conversation
KEYS[2] conv:{channel}:{account}:{contact}:msgs      LIST   batch being collected, JSON, oldest first
KEYS[3] conv:{channel}:{account}:{contact}:deadline  STRING unix ms when the batch is due
KEYS[4] conv:{channel}:{account}:{contact}:state     HASH   started = ms of the batch's first message
KEYS[5] conv:{channel}:{account}:{contact}:lock      STRING claim token (read only here)
KEYS[6] conv:{channel}:{account}:{contact}:inflight  LIST   claimed batch (read only here)
KEYS[7] conv:deadlines                               ZSET   member = conversation, score = due ms

ARGV[1]    now       unix ms
ARGV[2]    member    agenda member: {channel}:{account}:{contact}
ARGV[3]    due_ms    when the new batch is due, unix ms
ARGV[4]    ttl_ms    lifetime of the conversation's keys
ARGV[5..]  entry     one JSON entry per argument, platform order: {"id":<db id>,"ts":<platform ms>,...}

Reply: {was_paused, batch_len, scheduled_ms}
  was_paused   = 1 when the mode key existed, else 0
  batch_len    = entries now collecting
  scheduled_ms = the agenda score set, 0 when none was
]]
local rcall = redis.call
local mode_key, msgs, deadline_key, state, lock, inflight, agenda =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now, member, due = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local now_arg, due_arg, ttl_arg = ARGV[1], ARGV[3], ARGV[4]

local was_paused = rcall('DEL', mode_key)
rcall('DEL', msgs, deadline_key)
rcall('HDEL', state, 'started')
local n = #ARGV - 4
for i = 5, #ARGV do
  rcall('RPUSH', msgs, ARGV[i])
end
if n > 0 then
  rcall('SET', deadline_key, due_arg, 'PX', ttl_arg)
  rcall('HSET', state, 'started', now_arg)
  rcall('PEXPIRE', msgs, ttl_arg)
  rcall('PEXPIRE', state, ttl_arg)
end

local scheduled = 0
if rcall('EXISTS', lock) == 0 then
  if rcall('EXISTS', inflight) == 1 then
    scheduled = now
  elseif n > 0 then
    scheduled = due
  end
  if scheduled > 0 then
    rcall('ZADD', agenda, string.format('%d', scheduled), member)
  end
end
return {was_paused, n, scheduled}
