--[[
restore.lua: put back a batch that PostgreSQL says owned messages, being sent or
generated again, when Redis lost it (restart without persistence, FLUSHALL,
failover), so that it is resumed.

Guarantees: acts only when Redis knows nothing of a batch for this conversation:
no lock, nothing in flight, no batch id in state. A live worker (lock held), a
handed-back batch waiting for its claim (in flight), or a batch Redis still tracks
is left alone. The entries become the in-flight batch under the given batch id,
due at once; the next claim resumes it: it sends its committed text, or
generates one for the messages it owns.

KEYS[1] conv:deadlines                               ZSET   member = conversation, score = due ms
KEYS[2] conv:{channel}:{account}:{contact}:inflight  LIST   claimed batch, JSON
KEYS[3] conv:{channel}:{account}:{contact}:lock      STRING claim token
KEYS[4] conv:{channel}:{account}:{contact}:state     HASH   batch, inflight_started

ARGV[1]   now         unix ms
ARGV[2]   member      agenda member: {channel}:{account}:{contact}
ARGV[3]   batch_id    the batch PostgreSQL holds as owning the entries
ARGV[4]   started_ms  unix ms of the batch's first message
ARGV[5]   ttl_ms      lifetime of the conversation's keys
ARGV[6..] entry       the batch's messages, JSON, oldest first

Reply: 1 = restored, due now; 0 = Redis still tracks a batch here, nothing changed
]]
local rcall = redis.call
local agenda, inflight, lock, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, member, batch = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local started, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])

if rcall('EXISTS', lock) == 1 or rcall('LLEN', inflight) > 0 or rcall('HEXISTS', state, 'batch') == 1 then
  return 0
end
for i = 6, #ARGV do
  rcall('RPUSH', inflight, ARGV[i])
end
rcall('HSET', state, 'batch', batch, 'inflight_started', started)
rcall('PEXPIRE', inflight, ttl)
rcall('PEXPIRE', state, ttl)
rcall('ZADD', agenda, now, member)
return 1
