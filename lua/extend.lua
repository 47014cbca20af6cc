--[[
extend.lua: heartbeat of a claimed batch.

Guarantees: only the holder of the matching token extends the lock and pushes the
agenda score to the new lease end; a late worker whose lease was taken over
changes nothing. Tells the holder how many messages arrived since its claim, so it
can supersede its unsent reply. While the conversation is paused for a human (its
mode key exists), the holder is told to drop the batch: the lease is extended (so
the holder can still ack) but the agenda score is left alone.

KEYS[1] conv:deadlines                               ZSET   member = conversation, score = due ms
KEYS[2] conv:{channel}:{account}:{contact}:lock      STRING claim token
KEYS[3] conv:{channel}:{account}:{contact}:msgs      LIST   messages collected since the claim
KEYS[4] conv:{channel}:{account}:{contact}:inflight  LIST   the claimed batch
KEYS[5] conv:{channel}:{account}:{contact}:state     HASH   batch id, start times, counters
KEYS[6] conv:{channel}:{account}:{contact}:mode      STRING exists while a human has the conversation (read only here)

ARGV[1] now       unix ms
ARGV[2] member    agenda member: {channel}:{account}:{contact}
ARGV[3] token     the claim token
ARGV[4] lease_ms  new lease, from now
ARGV[5] ttl_ms    lifetime of the conversation's keys: the batch's own keys must
                  outlive a long generation or a long send retry

Reply: {status, pending}
  status 0 = lost (token does not match; nothing changed), 1 = extended,
         2 = paused for a human: lease extended, drop the batch without sending
  pending = messages waiting in msgs
]]
local rcall = redis.call
local agenda, lock, msgs, inflight, state, mode_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now, member, token, lease = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
-- Redis formats each number handed to redis.call with %.17g, which costs more than
-- the call: lease and ttl go on as the strings they came as.
local lease_arg, ttl_arg = ARGV[4], ARGV[5]

if rcall('GET', lock) ~= token then
  return {0, rcall('LLEN', msgs)}
end
rcall('PEXPIRE', lock, lease_arg)
rcall('PEXPIRE', inflight, ttl_arg)
rcall('PEXPIRE', state, ttl_arg)
if rcall('EXISTS', mode_key) == 1 then
  return {2, rcall('LLEN', msgs)}
end
rcall('ZADD', agenda, string.format('%d', now + lease), member)
return {1, rcall('LLEN', msgs)}
