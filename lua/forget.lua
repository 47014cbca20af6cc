--[[
forget.lua: erase everything Redis holds of one conversation, atomically.

Guarantees: afterwards no key of the conversation exists and it is on no agenda,
so nothing of it is claimed, resumed or sent from Redis again. A worker that held
the lock finds it gone: extend.lua answers "lost", ack.lua and requeue.lua
"stale", and none of them writes anything back. The next message of the person
starts from nothing (append.lua finds no history and asks for a hydrate, which
reads what PostgreSQL still has: nothing, once the rows are deleted). Idempotent:
a second call finds nothing and changes nothing.

All keys share the conversation's hash tag, agenda included (keys.rs puts a
conversation and its shard's agenda in one slot), so one call does it all.

KEYS[1] conv:{channel}:{account}:{contact}:history   LIST   recent messages, JSON
KEYS[2] conv:{channel}:{account}:{contact}:msgs      LIST   batch being collected, JSON
KEYS[3] conv:{channel}:{account}:{contact}:inflight  LIST   claimed batch, JSON
KEYS[4] conv:{channel}:{account}:{contact}:deadline  STRING unix ms the collecting batch is due
KEYS[5] conv:{channel}:{account}:{contact}:lock      STRING claim token
KEYS[6] conv:{channel}:{account}:{contact}:state     HASH   batch, started, claims, ...
KEYS[7] conv:deadlines                               ZSET   member = conversation, score = due ms
KEYS[8] conv:{channel}:{account}:{contact}:mode      STRING exists while a human agent has the conversation

ARGV[1] member  agenda member: {channel}:{account}:{contact}

Reply: {keys_deleted, on_agenda, batch_id}
  keys_deleted = how many of KEYS[1..6] and KEYS[8] existed (all are gone now)
  on_agenda    = 1 if the member was on the agenda (removed now), else 0
  batch_id     = the claimed batch's id from state ('' when none): a worker may
                 still be finishing it, and the caller sweeps its rows after
]]
local rcall = redis.call
local history, msgs, inflight, deadline_key, lock, state, agenda, mode_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local member = ARGV[1]

local batch = rcall('HGET', state, 'batch') or ''
local deleted = rcall('DEL', history, msgs, inflight, deadline_key, lock, state, mode_key)
local on_agenda = rcall('ZREM', agenda, member)
return {deleted, on_agenda, batch}
