--[[
behind.lua: the claim holder puts its batch behind an older batch of the same
conversation that PostgreSQL holds as unfinished (being sent, or owning messages it
must answer) but that Redis lost, so that the older one is answered first.

Guarantees: only the holder of the matching token acts. The claimed batch's messages
rejoin the collecting batch in platform order (timestamp, then id), keeping the
collecting batch's deadline (or now, when there is none); the older batch becomes the
in-flight batch under its own id, due at once, and the lock is released. The next
claim resumes the older batch (it sends its committed text, or generates one for the
messages it owns); once it is acknowledged, the messages put back are the next batch.
Nothing is lost: every entry is in the collecting or the in-flight list.

KEYS[1] conv:deadlines                               ZSET   member = conversation, score = due ms
KEYS[2] conv:{channel}:{account}:{contact}:msgs      LIST   batch being collected, JSON
KEYS[3] conv:{channel}:{account}:{contact}:inflight  LIST   claimed batch, JSON
KEYS[4] conv:{channel}:{account}:{contact}:lock      STRING claim token
KEYS[5] conv:{channel}:{account}:{contact}:state     HASH   batch, started, inflight_started, claims, supersedes
KEYS[6] conv:{channel}:{account}:{contact}:deadline  STRING unix ms the collecting batch is due

ARGV[1]   now         unix ms
ARGV[2]   member      agenda member: {channel}:{account}:{contact}
ARGV[3]   token       the claim token
ARGV[4]   older_id    the older batch's id
ARGV[5]   started_ms  unix ms of the older batch's first message
ARGV[6]   ttl_ms      lifetime of the conversation's keys
ARGV[7..] entry       the older batch's messages, JSON, oldest first

Reply: 1 = the older batch is in flight, due now; 0 = lost (token does not match;
nothing changed)
]]
local rcall = redis.call
local agenda, msgs, inflight, lock, state, deadline_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now, member, token, older = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local older_started, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])

if rcall('GET', lock) ~= token then
  return 0
end

-- The claimed messages rejoin the collecting ones, in platform order; the older
-- batch's own are left out (a claim may have carried some of them back).
local skip = {}
for i = 7, #ARGV do
  skip[cjson.decode(ARGV[i]).id] = true
end
local all = {}
for _, key in ipairs({inflight, msgs}) do
  for _, raw in ipairs(rcall('LRANGE', key, 0, -1)) do
    local e = cjson.decode(raw)
    if not skip[e.id] then
      all[#all + 1] = {e.ts, e.id, raw}
    end
  end
end
table.sort(all, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)
local started = tonumber(rcall('HGET', state, 'inflight_started') or now)
local collecting = tonumber(rcall('HGET', state, 'started'))
if collecting and collecting < started then started = collecting end

rcall('DEL', inflight, msgs, lock)
for _, e in ipairs(all) do
  rcall('RPUSH', msgs, e[3])
end
for i = 7, #ARGV do
  rcall('RPUSH', inflight, ARGV[i])
end
rcall('HDEL', state, 'claims', 'supersedes')
rcall('HSET', state, 'batch', older, 'inflight_started', older_started)
if #all > 0 then
  rcall('HSET', state, 'started', started)
  if rcall('EXISTS', deadline_key) == 0 then
    rcall('SET', deadline_key, now, 'PX', ttl)
  end
  rcall('PEXPIRE', msgs, ttl)
else
  rcall('HDEL', state, 'started')
end
rcall('PEXPIRE', inflight, ttl)
rcall('PEXPIRE', state, ttl)
rcall('ZADD', agenda, now, member)
return 1
