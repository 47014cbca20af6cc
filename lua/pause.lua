--[[
pause.lua: hand a conversation to a human, atomically.

Guarantees: once this returns, append.lua puts the conversation's messages in
history only, claim.lua claims nothing of it (and takes it off the agenda), and
extend.lua tells a worker holding a batch of it to drop that batch unsent. The
mode key has no TTL: it lasts until resume.lua deletes it. PostgreSQL holds the
record (who, when, why, until when); this key only mirrors it, so the value is
the pause time, for people reading Redis by hand. Idempotent.

KEYS[1] conv:{channel}:{account}:{contact}:mode      STRING exists while a human has the conversation

ARGV[1] now       unix ms (stored as the value)

Reply: 1 = paused now; 0 = was paused already (nothing changed)
]]
local rcall = redis.call
local mode_key = KEYS[1]
local now_arg = ARGV[1]

if rcall('SET', mode_key, now_arg, 'NX') then
  return 1
end
return 0
