--[[
  Reads a partition checkpoint atomically: the offset, the metadata and every part in one step, so a
  checkpoint written concurrently (an in-flight write of a previous owner, or of this node before a
  rebuild) can never be read half old, half new; parts newer than the offset would be replayed twice.
  Layout: see checkpoint.lua.

  KEYS[1..4]  K, K:a, K:p, K:t
  Returns  nil when there is no checkpoint, else
           { offset, meta, gens, counts, accounts[], payments[], tokens[], current records[], previous records[] }
]]
local head = redis.call('HMGET', KEYS[1], 'offset', 'meta', 'gens', 'counts')
if not head[1] or not head[2] or not head[3] then
  return nil
end
local cur, prev = string.match(head[3], '^([^,]*),(.*)$')
local current_records = redis.call('HVALS', KEYS[1] .. ':i:' .. cur)
local previous_records = {}
if prev ~= '' then previous_records = redis.call('HVALS', KEYS[1] .. ':i:' .. prev) end
return {
  head[1], head[2], head[3], head[4] or '',
  redis.call('HVALS', KEYS[2]), redis.call('HVALS', KEYS[3]), redis.call('HVALS', KEYS[4]),
  current_records, previous_records,
}
