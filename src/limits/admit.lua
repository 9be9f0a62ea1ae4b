-- 多层限流的准入脚本：先检查全部层，全部通过才计数；任何一层超限都不消耗其他层的额度。
--
-- 算法：分桶滑动窗口。每层一个哈希，字段 r / t 是窗口内请求数 / token 数的总和，ro / to 是最旧的
-- 未过期桶号，r<桶号> / t<桶号> 是各桶的计数。窗口覆盖当前桶与之前的 B 个桶：比名义窗口多出不到
-- 一个桶宽，所以任何长度为窗口的时间段内都不会超过上限（只会在边界少放，不会多放）。
-- 时间取 Redis 自己的 TIME：各网关实例的时钟偏差不影响计数；集群中全部键在同一个槽、同一个节点上。
--
-- KEYS[i]：第 i 层的哈希键。
-- ARGV[1] 桶数 B；ARGV[2] 本请求预留的 token 数；ARGV[3] token 桶宽（毫秒）；
-- 之后每层三个：请求数上限（0 表示不限）、请求桶宽（毫秒）、token 上限（0 表示不限）。
-- 返回：{ 1, 0, 0, 0, token 桶号, 每层四个数：剩余请求数、请求额度完全恢复的毫秒数、剩余 token、token 额度完全恢复的毫秒数 }，
-- 或拒绝时 { 0, 层号（从 1 起）, 种类（0 请求 / 1 token）, 可重试的毫秒数（-1 表示永远不行）}。
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local buckets = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local tok_width = tonumber(ARGV[3])

-- 把一种计数推进到当前桶：移出窗口的桶从总和中减去并删除，返回窗口内的总和
local function advance(key, kind, current)
  local oldest = tonumber(redis.call('HGET', key, kind .. 'o'))
  if not oldest then
    return 0
  end
  local total = tonumber(redis.call('HGET', key, kind)) or 0
  local floor = current - buckets
  if oldest < floor then
    for b = oldest, math.min(floor - 1, oldest + buckets) do
      total = total - (tonumber(redis.call('HGET', key, kind .. b)) or 0)
      redis.call('HDEL', key, kind .. b)
    end
    if total < 0 then
      total = 0
    end
    redis.call('HSET', key, kind, total, kind .. 'o', floor)
  end
  return total
end

-- 要等多久（毫秒）窗口里才腾得出 need：从最旧的桶起累计它们移出窗口后释放的量
local function wait_ms(key, kind, current, width, used, need, limit)
  if need > limit then
    return -1
  end
  local excess = used + need - limit
  local oldest = tonumber(redis.call('HGET', key, kind .. 'o')) or current
  for b = math.max(oldest, current - buckets), current do
    excess = excess - (tonumber(redis.call('HGET', key, kind .. b)) or 0)
    if excess <= 0 then
      return (b + buckets + 1) * width - now
    end
  end
  return (current + buckets + 1) * width - now
end

-- 计入一种计数：总和与当前桶各加 amount，第一次计数时记下最旧桶号
local function add(key, kind, current, amount)
  redis.call('HINCRBY', key, kind, amount)
  redis.call('HINCRBY', key, kind .. current, amount)
  redis.call('HSETNX', key, kind .. 'o', current)
end

-- 第一遍：只检查，不计数
local layers = {}
for i = 1, #KEYS do
  local base = 3 + (i - 1) * 3
  local l = {
    key = KEYS[i],
    req_limit = tonumber(ARGV[base + 1]),
    req_width = tonumber(ARGV[base + 2]),
    tok_limit = tonumber(ARGV[base + 3]),
  }
  l.req_now = math.floor(now / l.req_width)
  l.tok_now = math.floor(now / tok_width)
  if l.req_limit > 0 then
    l.req_used = advance(l.key, 'r', l.req_now)
    if l.req_used + 1 > l.req_limit then
      return { 0, i, 0, wait_ms(l.key, 'r', l.req_now, l.req_width, l.req_used, 1, l.req_limit) }
    end
  end
  if l.tok_limit > 0 then
    l.tok_used = advance(l.key, 't', l.tok_now)
    if l.tok_used + cost > l.tok_limit then
      return { 0, i, 1, wait_ms(l.key, 't', l.tok_now, tok_width, l.tok_used, cost, l.tok_limit) }
    end
  end
  layers[i] = l
end

-- 第二遍：全部通过，逐层计数并报告剩余额度；键在窗口（加两个桶）内没有新计数就自动过期
local out = { 1, 0, 0, 0, math.floor(now / tok_width) }
for _, l in ipairs(layers) do
  local ttl = 0
  if l.req_limit > 0 then
    add(l.key, 'r', l.req_now, 1)
    table.insert(out, l.req_limit - l.req_used - 1)
    table.insert(out, (l.req_now + buckets + 1) * l.req_width - now)
    ttl = (buckets + 2) * l.req_width
  else
    table.insert(out, -1)
    table.insert(out, 0)
  end
  if l.tok_limit > 0 then
    if cost > 0 then
      add(l.key, 't', l.tok_now, cost)
    end
    table.insert(out, l.tok_limit - l.tok_used - cost)
    table.insert(out, (l.tok_now + buckets + 1) * tok_width - now)
    ttl = math.max(ttl, (buckets + 2) * tok_width)
  else
    table.insert(out, -1)
    table.insert(out, 0)
  end
  redis.call('PEXPIRE', l.key, ttl)
end
return out
