-- 美元预算的准入脚本：先检查全部预算，全部够用才一起扣下预留；任何一个不够都不动其他的。
-- 金额一律是整数纳美元（十亿分之一美元），Lua 的双精度数在 2^53 以内是精确的（约九百万美元）。
--
-- KEYS[i]：第 i 个预算周期的计数键（同一个密钥的键带同一个哈希标签，Redis Cluster 下在同一槽位）。
-- ARGV[1]：本请求预留的金额；之后每个键两个：上限、计数键的过期秒数（周期结束后再留一段）。
-- 返回：{ 1, 0, 0 } 放行；{ 0, 键号（从 1 起）, 已用金额 } 拒绝。
local reserve = tonumber(ARGV[1])
for i = 1, #KEYS do
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  if spent + reserve > tonumber(ARGV[2 * i]) then
    return { 0, i, spent }
  end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], reserve)
  redis.call('EXPIRE', KEYS[i], ARGV[2 * i + 1])
end
return { 1, 0, 0 }
