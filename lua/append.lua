--[[
append.lua: add one stored message to its conversation, atomically.

Guarantees: the message lands in history (platform order: timestamp, then id) and,
when it triggers a reply, in the batch being collected (same order). A history
found missing is marked unhydrated until hydrate.lua has merged the database's rows
into it: until then every append asks for a hydrate again (the last one may have
failed), and claim.lua leaves it out of the claim (the worker reads PostgreSQL). The batch
deadline slides to now + window, never past the batch's first message + max wait,
to now + grace after a menu choice, and to now when the batch is full. The
conversation is put on the agenda at its deadline unless a worker holds its lock
(then the lease end stays its score and ack.lua reschedules it) or a claimed batch
waits in flight to be resumed (handed back, its worker gone, or waiting out the
platform's Retry-After: its own score stands, and the claim that resumes it, or the
ack after, takes the new messages in turn). A claimer sees the message in exactly
one batch: this one, or the next. While the conversation is paused for a human
(its mode key exists, see pause.lua), the message lands in history only: it starts
no batch and does not put the conversation on the agenda.

KEYS[1] conv:{channel}:{account}:{contact}:history   LIST   recent messages, JSON, oldest first
KEYS[2] conv:{channel}:{account}:{contact}:msgs      LIST   batch being collected, JSON, oldest first
KEYS[3] conv:{channel}:{account}:{contact}:deadline  STRING unix ms when the batch is due
KEYS[4] conv:{channel}:{account}:{contact}:state     HASH   started = ms of the batch's first message,
                                                            unhydrated = 1 until history is whole
KEYS[5] conv:{channel}:{account}:{contact}:lock      STRING claim token (read only here)
KEYS[6] conv:{channel}:{account}:{contact}:inflight  LIST   claimed batch (read only here)
KEYS[7] conv:deadlines                               ZSET   member = conversation, score = due ms
KEYS[8] conv:{channel}:{account}:{contact}:mode      STRING exists while a human has the conversation (read only here)

ARGV[1]  now            unix ms
ARGV[2]  entry          the message as JSON: {"id":<db id>,"ts":<platform ms>,...}
ARGV[3]  id             the entry's db id (integer)
ARGV[4]  ts             the entry's platform timestamp, unix ms
ARGV[5]  mode           0 = history only (reaction), 1 = message, 2 = menu choice
ARGV[6]  window_ms      sliding window
ARGV[7]  max_wait_ms    cap after the batch's first message
ARGV[8]  max_messages   batch size that is due at once
ARGV[9]  grace_ms       delay after a menu choice
ARGV[10] ttl_ms         lifetime of the conversation's keys
ARGV[11] history_limit  entries kept in history
ARGV[12] member         agenda member: {channel}:{account}:{contact}
ARGV[13] reconcile      1 = skip if the id is already in msgs or inflight (re-batching);
                        0 = skip (mode 1, 2) only if it is already in flight

Reply: {status, deadline_ms, batch_len, paused}
  status 0 = appended; 1 = appended, history was missing or is not hydrated yet:
         hydrate it from the database (hydrate.lua); 2 = already tracked (in the
         batch or in flight in reconcile mode, in flight otherwise), nothing changed
  deadline_ms = when the batch is due (0 in mode 0 or status 2)
  batch_len   = messages in the collecting batch
  paused      = 1 when the conversation is paused for a human (history only), else 0
]]
local rcall = redis.call
local history, msgs, deadline_key, state, lock, inflight, agenda, mode_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now = tonumber(ARGV[1])
local entry = ARGV[2]
local id = tonumber(ARGV[3])
local ts = tonumber(ARGV[4])
local mode = tonumber(ARGV[5])
local window, max_wait = tonumber(ARGV[6]), tonumber(ARGV[7])
local max_messages, grace = tonumber(ARGV[8]), tonumber(ARGV[9])
local member = ARGV[12]
local reconcile = ARGV[13] == '1'
-- Redis formats each number handed to redis.call with %.17g, which costs more than
-- the call: arguments that come as ARGV go on as the strings they are, integers
-- computed here through %d.
local now_arg, ttl_arg, keep_from = ARGV[1], ARGV[10], '-' .. ARGV[11]

-- true when list `key` holds an entry with this id
local function contains(key)
  for _, raw in ipairs(rcall('LRANGE', key, '0', '-1')) do
    if cjson.decode(raw).id == id then return true end
  end
  return false
end

-- insert the entry where (ts, id) puts it into list `key` of length `n`; webhooks
-- can arrive out of order, but almost never do, so look at the tail first and walk
-- back only when needed. An entry already there is left alone: a client that
-- resends the call after a lost reply must not add the message twice. Returns the
-- list's new length (each push returns it: no LLEN after).
local function insert_ordered(key, n)
  for i = n - 1, 0, -1 do
    local raw = rcall('LINDEX', key, i)
    local e = cjson.decode(raw)
    if e.id == id then return n end
    if e.ts < ts or (e.ts == ts and e.id < id) then
      if i == n - 1 then
        return rcall('RPUSH', key, entry)
      end
      return rcall('LINSERT', key, 'AFTER', raw, entry)
    end
  end
  return rcall('LPUSH', key, entry)
end

if reconcile and (contains(msgs) or contains(inflight)) then
  return {2, 0, rcall('LLEN', msgs), 0}
end
-- Appended twice (its webhook and a catch-up after a Redis outage, at the same
-- moment): an id already in the batch is left alone by insert_ordered, and one
-- already claimed is not collected again for the next batch.
if not reconcile and mode ~= 0 and contains(inflight) then
  return {2, 0, rcall('LLEN', msgs), 0}
end

-- The state is read once: each call costs more than the Lua around it.
local st = rcall('HMGET', state, 'started', 'unhydrated')
-- A list is never empty in Redis: length 0 means the key is missing.
local n_history = rcall('LLEN', history)
local status = 0
if n_history == 0 or st[2] then
  status = 1
  if not st[2] then
    rcall('HSET', state, 'unhydrated', '1')
  end
  -- the flag lives as long as the history it describes (refreshed below)
  rcall('PEXPIRE', state, ttl_arg)
end
if not (reconcile and contains(history)) then
  insert_ordered(history, n_history)
  rcall('LTRIM', history, keep_from, '-1')
end
rcall('PEXPIRE', history, ttl_arg)

if mode == 0 then
  return {status, 0, rcall('LLEN', msgs), 0}
end
-- Paused for a human: the message is theirs to answer; it is in history (their
-- context on resume), and nothing schedules a reply.
if rcall('EXISTS', mode_key) == 1 then
  return {status, 0, rcall('LLEN', msgs), 1}
end

local n_msgs = rcall('LLEN', msgs)
local started = tonumber(st[1])
if n_msgs == 0 or not started then
  started = now
  rcall('HSET', state, 'started', now_arg)
end
local len = insert_ordered(msgs, n_msgs)

local due = now + window
if mode == 2 and now + grace < due then due = now + grace end
if started + max_wait < due then due = started + max_wait end
if len >= max_messages then due = now end

local due_arg = string.format('%d', due)
rcall('SET', deadline_key, due_arg, 'PX', ttl_arg)
rcall('PEXPIRE', msgs, ttl_arg)
rcall('PEXPIRE', state, ttl_arg)
if rcall('EXISTS', lock, inflight) == 0 then
  rcall('ZADD', agenda, due_arg, member)
end
return {status, due, len, 0}
