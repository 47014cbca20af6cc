--[[
hydrate.lua: merge rows read from the database into a conversation's history.

Guarantees: history ends up holding every entry it held plus every given row whose
id it lacked, in platform order (timestamp, then id), trimmed to the newest
history_limit, and no longer marked unhydrated (append.lua). Idempotent: two
instances hydrating the same conversation at once, or an append racing with a
hydrate, lose nothing and duplicate nothing.

KEYS[1] conv:{channel}:{account}:{contact}:history   LIST   recent messages, JSON, oldest first
KEYS[2] conv:{channel}:{account}:{contact}:state     HASH   unhydrated = 1 until history is whole

ARGV[1]    ttl_ms         lifetime of the key
ARGV[2]    history_limit  entries kept
ARGV[3..]  entry          one JSON row per argument: {"id":<db id>,"ts":<platform ms>,...}

Reply: number of rows added (0 when history already had them all)
]]
local rcall = redis.call
local history, state = KEYS[1], KEYS[2]
local ttl, limit = tonumber(ARGV[1]), tonumber(ARGV[2])

local all, seen = {}, {}
for _, raw in ipairs(rcall('LRANGE', history, 0, -1)) do
  local e = cjson.decode(raw)
  seen[e.id] = true
  all[#all + 1] = {e.ts, e.id, raw}
end
local added = 0
for i = 3, #ARGV do
  local e = cjson.decode(ARGV[i])
  if not seen[e.id] then
    seen[e.id] = true
    added = added + 1
    all[#all + 1] = {e.ts, e.id, ARGV[i]}
  end
end
rcall('HDEL', state, 'unhydrated')
if added == 0 then
  return 0
end

table.sort(all, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)
rcall('DEL', history)
local first = math.max(1, #all - limit + 1)
for i = first, #all do
  rcall('RPUSH', history, all[i][3])
end
rcall('PEXPIRE', history, ttl)
return added
