-- 美元预算的结算脚本：把实际金额与预留之差（可正可负，整数纳美元）加到本请求扣过的每个计数键上。
-- 键已过期（周期早就结束）时不再写回，免得留下没有过期时间的键。
--
-- KEYS[i]：准入时扣过预留的计数键；ARGV[1]：差额。
local delta = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], delta)
  end
end
return 1
