--[[
claim.lua: take one due conversation's batch, atomically.

Guarantees: at most one claimer holds a conversation (SET NX PX with a token). The
collecting batch moves to in-flight, where it stays until ack.lua (sent) or
requeue.lua (handed back), so a crashed worker loses nothing: the agenda score is
pushed to the lease's end, and when the lease runs out the batch is due again and
the next claim resumes it under the same batch id. A resumed batch takes the
newer messages too if their own deadline has passed; otherwise they stay for the
next batch. A conversation whose lock is held is pushed back to the lock's expiry
instead of being returned again and again. A conversation paused for a human (its
mode key exists) is claimed by nobody: it leaves the agenda, and its collected and
in-flight messages stay where they are for resume.lua.

KEYS[1] conv:deadlines                               ZSET   member = conversation, score = due ms
KEYS[2] conv:{channel}:{account}:{contact}:msgs      LIST   batch being collected, JSON
KEYS[3] conv:{channel}:{account}:{contact}:inflight  LIST   claimed batch, JSON
KEYS[4] conv:{channel}:{account}:{contact}:lock      STRING claim token
KEYS[5] conv:{channel}:{account}:{contact}:state     HASH   batch, started, inflight_started, claims, supersedes,
                                                            unhydrated (append.lua)
KEYS[6] conv:{channel}:{account}:{contact}:deadline  STRING unix ms the collecting batch is due
KEYS[7] conv:{channel}:{account}:{contact}:history   LIST   recent messages, JSON (read only here)
KEYS[8] conv:{channel}:{account}:{contact}:mode      STRING exists while a human has the conversation (read only here)

ARGV[1] now       unix ms
ARGV[2] member    agenda member: {channel}:{account}:{contact}
ARGV[3] token     fresh random claim token (also the batch id of a new batch)
ARGV[4] lease_ms  how long the claim holds without a heartbeat
ARGV[5] ttl_ms    lifetime of the conversation's keys

Reply:
  {0}                      not due (no score, or score in the future): someone else has it
  {1, retry_at_ms}         locked by another worker; rescheduled at the lock's expiry
  {2}                      nothing to answer; removed from the agenda
  {4}                      paused for a human; removed from the agenda, nothing moved
  {3, batch_id, claims, supersedes, started_ms, due_ms, n_entries, entry × n_entries, history_entry...}
                           claimed: the agenda score that made it due, the
                           in-flight entries, oldest first, then the history,
                           oldest first (none when the key is missing or not
                           hydrated yet: the worker reads PostgreSQL then), so
                           the worker needs no second round trip to build its
                           context
]]
local rcall = redis.call
local agenda, msgs, inflight, lock, state, deadline_key, history, mode_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now, member, token = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local lease, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
-- Redis formats each number handed to redis.call with %.17g, which costs more than
-- the call: arguments that come as ARGV go on as the strings they are, integers
-- computed here through %d.
local now_arg, lease_arg, ttl_arg = ARGV[1], ARGV[4], ARGV[5]

local score = rcall('ZSCORE', agenda, member)
if not score or tonumber(score) > now then
  return {0}
end

-- Paused for a human: no claim. resume.lua puts it back on the agenda.
if rcall('EXISTS', mode_key) == 1 then
  rcall('ZREM', agenda, member)
  return {4}
end

-- Take the lock first (one call where a check and a set would be two); the rare
-- claim that finds nothing to answer gives it back.
if not rcall('SET', lock, token, 'NX', 'PX', lease_arg) then
  local pttl = rcall('PTTL', lock)
  if pttl < 0 then pttl = lease end
  rcall('ZADD', agenda, string.format('%d', now + pttl), member)
  return {1, now + pttl}
end

local n_msgs, n_inflight = rcall('LLEN', msgs), rcall('LLEN', inflight)
if n_msgs == 0 and n_inflight == 0 then
  rcall('DEL', lock, deadline_key)
  rcall('ZREM', agenda, member)
  rcall('HDEL', state, 'batch', 'claims', 'supersedes', 'inflight_started')
  return {2}
end

-- The state is read once and written once: each call costs more than the Lua around it.
local st = rcall('HMGET', state, 'started', 'batch', 'inflight_started', 'supersedes', 'unhydrated')
local collecting_since, batch, started = st[1], st[2], st[3]
local supersedes = tonumber(st[4]) or 0
local collecting_taken = false
if n_inflight == 0 then
  rcall('RENAME', msgs, inflight)
  rcall('DEL', deadline_key)
  started = collecting_since or now_arg
  collecting_taken = true
elseif n_msgs > 0 then
  local due = tonumber(rcall('GET', deadline_key))
  if not due or due <= now then
    local all = {}
    for _, key in ipairs({inflight, msgs}) do
      for _, raw in ipairs(rcall('LRANGE', key, '0', '-1')) do
        local e = cjson.decode(raw)
        all[#all + 1] = {e.ts, e.id, raw}
      end
    end
    table.sort(all, function(a, b)
      if a[1] ~= b[1] then return a[1] < b[1] end
      return a[2] < b[2]
    end)
    rcall('DEL', inflight, msgs, deadline_key)
    for _, e in ipairs(all) do
      rcall('RPUSH', inflight, e[3])
    end
    collecting_taken = true
  end
end

batch = batch or token
started = started or now_arg
rcall('HSET', state, 'batch', batch, 'inflight_started', started)
if collecting_taken then
  rcall('HDEL', state, 'started')
end
local claims = rcall('HINCRBY', state, 'claims', 1)

rcall('ZADD', agenda, string.format('%d', now + lease), member)
rcall('PEXPIRE', inflight, ttl_arg)
rcall('PEXPIRE', state, ttl_arg)

local entries = rcall('LRANGE', inflight, '0', '-1')
local reply = {3, batch, claims, supersedes, tonumber(started), tonumber(score), #entries}
for _, raw in ipairs(entries) do
  reply[#reply + 1] = raw
end
if not st[5] then
  for _, raw in ipairs(rcall('LRANGE', history, '0', '-1')) do
    reply[#reply + 1] = raw
  end
end
return reply
