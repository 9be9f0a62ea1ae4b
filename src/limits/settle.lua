-- token 预留的结算：把准入时记在某个桶上的预留改成实际用量。
-- 该桶已移出窗口时什么也不做：它已经不再占用额度，改它只会让总和与各桶不一致。
--
-- KEYS：有 token 上限的各层哈希键。
-- ARGV[1] 桶数 B；ARGV[2] token 桶宽（毫秒）；ARGV[3] 准入时的 token 桶号；ARGV[4] 实际减预留（可正可负）。
-- 返回：调整了的键数。
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local buckets = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
local bucket = tonumber(ARGV[3])
local delta = tonumber(ARGV[4])
if bucket < math.floor(now / width) - buckets then
  return 0
end
local adjusted = 0
for _, key in ipairs(KEYS) do
  local field = 't' .. bucket
  local count = tonumber(redis.call('HGET', key, field))
  if count then
    local value = math.max(0, count + delta)
    redis.call('HSET', key, field, value)
    redis.call('HINCRBY', key, 't', value - count)
    adjusted = adjusted + 1
  end
end
return adjusted
