--[[
ack.lua: finish a claimed batch (reply sent, or failed for good).

Guarantees: only the holder of the matching token acts; a stale token changes
nothing. The in-flight batch is dropped, the lock released, the reply added to
history in platform order (timestamp, then id: a message sent after the reply may
be stored before its ack) and once (a hydrate may have read it from the database
already), when history is there (a missing one is hydrated from the database on
the next message), and the conversation either leaves the agenda or, when messages
arrived meanwhile, is rescheduled at their own deadline: they are the next batch,
answered after this one. A batch that failed without a reply (its responder refused
it: content policy, too long) can be acked with `forget`: its messages leave history
too, or every later context would carry them and be refused the same way.

KEYS[1] conv:deadlines                               ZSET   member = conversation, score = due ms
KEYS[2] conv:{channel}:{account}:{contact}:inflight  LIST   claimed batch, JSON
KEYS[3] conv:{channel}:{account}:{contact}:lock      STRING claim token
KEYS[4] conv:{channel}:{account}:{contact}:state     HASH   batch, claims, supersedes, inflight_started
KEYS[5] conv:{channel}:{account}:{contact}:msgs      LIST   messages collected since the claim
KEYS[6] conv:{channel}:{account}:{contact}:deadline  STRING unix ms the collecting batch is due
KEYS[7] conv:{channel}:{account}:{contact}:history   LIST   recent messages, JSON

ARGV[1] now            unix ms
ARGV[2] member         agenda member: {channel}:{account}:{contact}
ARGV[3] token          the claim token
ARGV[4] history_limit  entries kept in history
ARGV[5] ttl_ms         lifetime of the conversation's keys
ARGV[6] forget         1 = drop the in-flight messages from history (by id), 0 = keep
ARGV[7..] reply        entries to add to history (our reply's parts, as PostgreSQL
                       recorded them), JSON; may be none

Reply: {status, next_due_ms}
  status 0 = stale token, nothing changed; 1 = done, off the agenda;
         2 = rescheduled at next_due_ms for the messages that arrived meanwhile
]]
local rcall = redis.call
local agenda, inflight, lock, state, msgs, deadline_key, history =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local member, token = ARGV[2], ARGV[3]
-- Redis formats each number handed to redis.call with %.17g, which costs more than
-- the call: history_limit and ttl go on as the strings they came as.
local keep_from, ttl_arg = '-' .. ARGV[4], ARGV[5]

if rcall('GET', lock) ~= token then
  return {0, 0}
end

-- insert `entry` where (ts, id) puts it into list `key` of length `n`, unless it
-- is there; almost always it is newer than the tail, so walk back from there.
-- Returns the list's new length.
local function insert_ordered(key, n, entry)
  local new = cjson.decode(entry)
  for i = n - 1, 0, -1 do
    local raw = rcall('LINDEX', key, i)
    local e = cjson.decode(raw)
    if e.id == new.id then return n end
    if e.ts < new.ts or (e.ts == new.ts and e.id < new.id) then
      if i == n - 1 then
        return rcall('RPUSH', key, entry)
      end
      return rcall('LINSERT', key, 'AFTER', raw, entry)
    end
  end
  return rcall('LPUSH', key, entry)
end

if ARGV[6] == '1' then
  local gone = {}
  for _, raw in ipairs(rcall('LRANGE', inflight, '0', '-1')) do
    gone[cjson.decode(raw).id] = true
  end
  -- by id: a hydrate may have written the same message from PostgreSQL's row
  for _, raw in ipairs(rcall('LRANGE', history, '0', '-1')) do
    if gone[cjson.decode(raw).id] then
      rcall('LREM', history, '0', raw)
    end
  end
end

local n = #ARGV >= 7 and rcall('LLEN', history) or 0
if n > 0 then
  for i = 7, #ARGV do
    n = insert_ordered(history, n, ARGV[i])
  end
  rcall('LTRIM', history, keep_from, '-1')
  rcall('PEXPIRE', history, ttl_arg)
end
rcall('HDEL', state, 'batch', 'claims', 'supersedes', 'inflight_started')

if rcall('LLEN', msgs) > 0 then
  rcall('DEL', inflight, lock)
  local due = rcall('GET', deadline_key) or ARGV[1]
  rcall('ZADD', agenda, due, member)
  return {2, tonumber(due)}
end
rcall('DEL', inflight, lock, deadline_key)
rcall('ZREM', agenda, member)
return {1, 0}
