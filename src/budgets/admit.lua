-- 美元预算的准入脚本：先检查全部预算，全部够用才一起扣下预留；任何一个不够都不动其他的。
-- 金额一律是整数纳美元（十亿分之一美元），Lua 的双精度数在 2^53 以内是精确的（约九百万美元）。
--
-- KEYS[i]：第 i 个预算周期的计数键（同一个密钥的键带同一个哈希标签，Redis Cluster 下在同一槽位）。
-- ARGV[1]：本请求预留的金额；之后每个键三个：上限、计数键的过期秒数（周期结束后再留一段）、要不要切断越线的流（1 或 0）。
-- 返回：{ 1, 余量, 0 } 放行，余量是扣下预留后、要切流的周期里最少还剩的金额（没有这样的周期时为 -1）；
--       { 0, 键号（从 1 起）, 已用金额 } 拒绝。
local reserve = tonumber(ARGV[1])
local headroom = -1
for i = 1, #KEYS do
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  local limit = tonumber(ARGV[3 * i - 1])
  if spent + reserve > limit then
    return { 0, i, spent }
  end
  local left = limit - spent - reserve
  if ARGV[3 * i + 1] == '1' and (headroom < 0 or left < headroom) then
    headroom = left
  end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], reserve)
  redis.call('EXPIRE', KEYS[i], ARGV[3 * i])
end
return { 1, headroom, 0 }
