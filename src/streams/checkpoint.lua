--[[
  Applies one incremental checkpoint of a partition atomically, unless it would move the covered events
  offset backwards (a late write from a fenced or slower owner must never replace a newer checkpoint).

  Layout (K = KEYS[1]):
    K          hash: offset (next events offset to replay), meta (msgpack partition metadata),
               gens ("<current>,<previous>" idempotency generation ids), written_ms,
               counts ("a,p,t,cur,prev": entries per part after this write, checked on restore)
    K:a K:p K:t  hashes: account / payment / token id -> msgpack entity
    K:i:<gen>  hash per idempotency generation: command id -> msgpack outcome event
  Generation keys are derived from K (single Redis; in a cluster K would carry a {hash tag}).

  KEYS[1..4]  K, K:a, K:p, K:t
  ARGV[1]  events offset the checkpoint covers (decimal)     ARGV[2]  written_ms
  ARGV[3]  meta bytes                                         ARGV[4]  full: "1" rewrites every part
  ARGV[5]  current generation id                              ARGV[6]  previous generation id or ""
  ARGV[7]  "1": rewrite the current generation whole          ARGV[8]  same for the previous generation
  ARGV[9..13]  entries of accounts, payments, tokens, current records, previous records: each a blob of
               frames [u32 BE id length][id][u32 BE value length][value] (one argument per part, whatever
               the number of entries: a full checkpoint of a large partition has hundreds of thousands)
  Returns  1 when written, 0 when refused because the stored offset is newer, or because a delta (not full)
           finds no stored checkpoint to apply to (Redis lost its data: FLUSHALL, restart without
           persistence); written alone it would claim to cover entities it does not hold. The caller
           then sends a full checkpoint.
]]
local current = redis.call('HGET', KEYS[1], 'offset')
if current and tonumber(current) > tonumber(ARGV[1]) then
  return 0
end
if not current and ARGV[4] ~= '1' then
  return 0
end
local gen_key = function(gen) return KEYS[1] .. ':i:' .. gen end
local cur, prev = ARGV[5], ARGV[6]
local old_gens = redis.call('HGET', KEYS[1], 'gens') or ''
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
end
for gen in string.gmatch(old_gens, '[^,]+') do
  if ARGV[4] == '1' or (gen ~= cur and gen ~= prev) then redis.call('DEL', gen_key(gen)) end
end
if ARGV[7] == '1' then redis.call('DEL', gen_key(cur)) end
if ARGV[8] == '1' and prev ~= '' then redis.call('DEL', gen_key(prev)) end

local targets = { KEYS[2], KEYS[3], KEYS[4], gen_key(cur), prev ~= '' and gen_key(prev) or nil }
for t = 1, 5 do
  local blob = ARGV[8 + t]
  local pos, size = 1, #blob
  while pos <= size do
    local id_len, value_len
    id_len, pos = struct.unpack('>I4', blob, pos)
    local id = string.sub(blob, pos, pos + id_len - 1)
    value_len, pos = struct.unpack('>I4', blob, pos + id_len)
    redis.call('HSET', targets[t], id, string.sub(blob, pos, pos + value_len - 1))
    pos = pos + value_len
  end
end
-- Part sizes as written: a restore that finds other sizes (a key evicted or deleted by hand) must not
-- trust the checkpoint.
local counts = redis.call('HLEN', KEYS[2]) .. ',' .. redis.call('HLEN', KEYS[3]) .. ',' .. redis.call('HLEN', KEYS[4])
  .. ',' .. redis.call('HLEN', gen_key(cur)) .. ',' .. (prev ~= '' and redis.call('HLEN', gen_key(prev)) or 0)
redis.call('HSET', KEYS[1], 'offset', ARGV[1], 'meta', ARGV[3], 'gens', cur .. ',' .. prev, 'written_ms', ARGV[2],
  'counts', counts)
return 1
