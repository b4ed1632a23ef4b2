-- Writes a result durably, then publishes it (the Centrifugo pattern): a subscriber that misses
-- the PUBLISH during a reconnect finds the result in the replay stream by its sequence number.
-- Idempotent on the dedupe field: a task redelivered after a worker crash gets no second seq.
--
-- KEYS[1]  session state hash   (epoch, seq, dedupe fields)
-- KEYS[2]  session replay stream (entry id = "<seq>-1", field m = the published message)
-- ARGV[1]  channel to publish on, unless the session's state names its current gateway
--          (field "reply"): a session that resumed on another gateway is followed there
-- ARGV[2]  dedupe field, e.g. "f::12" for the final of segment 12
-- ARGV[3]  payload (JSON)
-- ARGV[4]  replay stream max length
-- ARGV[5]  TTL in seconds for both keys
-- ARGV[6]  epoch to use if the session has none (its state expired or was never written)
-- ARGV[7]  "PUBLISH" to publish here. Empty on Redis Cluster: a script may only touch its own
--          slot, and the gateway's channel lives in another, so the caller SPUBLISHes the
--          returned message (again after a redelivery: the gateway drops the duplicate by seq).
-- Returns {fresh (1|0), seq, channel, message}. The message is returned only for the caller to
-- publish (ARGV[7] empty); it is false otherwise, or when a duplicate's entry has already left
-- the replay stream.
local publish_here = ARGV[7] == 'PUBLISH'
local channel = redis.call('HGET', KEYS[1], 'reply') or ARGV[1]
local done = redis.call('HGET', KEYS[1], ARGV[2])
if done then
  local msg = false
  if not publish_here then
    local entry = redis.call('XRANGE', KEYS[2], done .. '-1', done .. '-1')
    if entry[1] then
      msg = entry[1][2][2]
    end
  end
  return {0, tonumber(done), channel, msg}
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local msg = epoch .. ':' .. seq .. ' ' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[2], seq)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-1', 'm', msg)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
if publish_here then
  redis.call('PUBLISH', channel, msg)
  return {1, seq, channel, false}
end
return {1, seq, channel, msg}
