-- token 预留的结算：把准入时记在某个桶上的预留改成实际用量。
-- 该桶已移出窗口时什么也不做：它已经不再占用额度，改它只会让总和与各桶不一致。
-- 先校验参数、算出全部新值并检查范围，最后才写：任何一个数越界都报错且不留下半截写入
-- （否则写了桶却加不了总和，之后每次准入都会在这个键上出错，直到它过期）。
--
-- KEYS：有 token 上限的各层哈希键。
-- ARGV[1] 桶数 B；ARGV[2] token 桶宽（毫秒）；ARGV[3] 准入时的 token 桶号；ARGV[4] 实际减预留（可正可负）；
-- ARGV[5] 单次结算量的上限。
-- 返回：调整了的键数。
-- 双精度浮点数能精确表示的最大整数：写回的计数不能超过它
local EXACT = 2 ^ 53

-- 校验一个数值：必须是 [low, high] 内的整数，否则报错（此时还没有任何写入）
local function integer(value, low, high, what)
  local n = tonumber(value)
  if not n or n ~= math.floor(n) or n < low or n > high then
    error('结算脚本的 ' .. what .. ' 不是 ' .. low .. ' 到 ' .. high .. ' 之间的整数：' .. tostring(value))
  end
  return n
end

local max = integer(ARGV[5], 1, EXACT, '数值上限')
local buckets = integer(ARGV[1], 1, max, '桶数')
local width = integer(ARGV[2], 1, max, 'token 桶宽')
local bucket = integer(ARGV[3], 0, EXACT, 'token 桶号')
local delta = integer(ARGV[4], -max, max, '结算量')
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if bucket < math.floor(now / width) - buckets then
  return 0
end
local field = 't' .. bucket
local plan = {}
for _, key in ipairs(KEYS) do
  local count = tonumber(redis.call('HGET', key, field))
  if count then
    local value = math.max(0, count + delta)
    local total = (tonumber(redis.call('HGET', key, 't')) or 0) + value - count
    integer(value, 0, EXACT, '桶内计数')
    integer(total, -EXACT, EXACT, 'token 总和')
    table.insert(plan, { key = key, value = value, change = value - count })
  end
end
for _, p in ipairs(plan) do
  redis.call('HSET', p.key, field, p.value)
  redis.call('HINCRBY', p.key, 't', p.change)
end
return #plan
