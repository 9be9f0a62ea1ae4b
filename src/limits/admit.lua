-- 多层限流的准入脚本：先检查全部层，全部通过才计数；任何一层超限都不消耗其他层的额度。
--
-- 算法：分桶滑动窗口。每层一个哈希，字段 r / t 是窗口内请求数 / token 数的总和，ro / to 是最旧的
-- 未过期桶号，r<桶号> / t<桶号> 是各桶的计数。窗口覆盖当前桶与之前的 B 个桶：比名义窗口多出不到
-- 一个桶宽，所以任何长度为窗口的时间段内都不会超过上限（只会在边界少放，不会多放）。
-- rw / tw 是计数时的桶宽：配置改了窗口（桶宽随之改变）时旧桶号没法与新桶号比较，这一种计数从头开始。
-- 时间取 Redis 自己的 TIME：各网关实例的时钟偏差不影响计数；集群中全部键在同一个槽、同一个节点上。
-- 全部数值参数先校验（整数、在范围内）再做任何写入：越界时报错，不留下半截写入。
--
-- KEYS[i]：第 i 层的哈希键。
-- ARGV[1] 桶数 B；ARGV[2] 本请求预留的 token 数；ARGV[3] token 桶宽（毫秒）；ARGV[4] 单个数值的上限；
-- 之后每层三个：请求数上限（0 表示不限）、请求桶宽（毫秒）、token 上限（0 表示不限）。
-- 返回：{ 1, 0, 0, 0, token 桶号, 每层四个数：剩余请求数、请求额度完全恢复的毫秒数、剩余 token、token 额度完全恢复的毫秒数 }，
-- 或拒绝时 { 0, 层号（从 1 起）, 种类（0 请求 / 1 token）, 可重试的毫秒数（-1 表示永远不行）}。
-- 双精度浮点数能精确表示的最大整数：单个数值的上限不能超过它
local EXACT = 2 ^ 53

-- 校验一个数值参数：必须是 [low, high] 内的整数，否则报错（此时还没有任何写入）
local function integer(value, low, high, what)
  local n = tonumber(value)
  if not n or n ~= math.floor(n) or n < low or n > high then
    error('限流脚本的参数 ' .. what .. ' 不是 ' .. low .. ' 到 ' .. high .. ' 之间的整数：' .. tostring(value))
  end
  return n
end

local max = integer(ARGV[4], 1, EXACT, '数值上限')
local buckets = integer(ARGV[1], 1, max, '桶数')
local cost = integer(ARGV[2], 0, max, 'token 预留')
local tok_width = integer(ARGV[3], 1, max, 'token 桶宽')
local layers = {}
for i = 1, #KEYS do
  local base = 4 + (i - 1) * 3
  layers[i] = {
    key = KEYS[i],
    req_limit = integer(ARGV[base + 1], 0, max, '请求数上限'),
    req_width = integer(ARGV[base + 2], 1, max, '请求桶宽'),
    tok_limit = integer(ARGV[base + 3], 0, max, 'token 上限'),
  }
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- 桶宽变了：旧桶号按旧桶宽编号，留着它们会让总和与重试时间（可达一个小时）都不对，删掉这一种计数的全部字段
local function rewidth(key, kind, width)
  local stored = tonumber(redis.call('HGET', key, kind .. 'w'))
  if stored and stored ~= width then
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if string.sub(field, 1, 1) == kind then
        redis.call('HDEL', key, field)
      end
    end
  end
end

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

-- 计入一种计数：总和与当前桶各加 amount，第一次计数时记下最旧桶号与桶宽
local function add(key, kind, current, amount, width)
  redis.call('HINCRBY', key, kind, amount)
  redis.call('HINCRBY', key, kind .. current, amount)
  redis.call('HSETNX', key, kind .. 'o', current)
  redis.call('HSETNX', key, kind .. 'w', width)
end

-- 第一遍：只检查，不计数
for i, l in ipairs(layers) do
  l.req_now = math.floor(now / l.req_width)
  l.tok_now = math.floor(now / tok_width)
  if l.req_limit > 0 then
    rewidth(l.key, 'r', l.req_width)
    l.req_used = advance(l.key, 'r', l.req_now)
    if l.req_used + 1 > l.req_limit then
      return { 0, i, 0, wait_ms(l.key, 'r', l.req_now, l.req_width, l.req_used, 1, l.req_limit) }
    end
  end
  if l.tok_limit > 0 then
    rewidth(l.key, 't', tok_width)
    l.tok_used = advance(l.key, 't', l.tok_now)
    if l.tok_used + cost > l.tok_limit then
      return { 0, i, 1, wait_ms(l.key, 't', l.tok_now, tok_width, l.tok_used, cost, l.tok_limit) }
    end
  end
end

-- 第二遍：全部通过，逐层计数并报告剩余额度；键在窗口（加两个桶）内没有新计数就自动过期
local out = { 1, 0, 0, 0, math.floor(now / tok_width) }
for _, l in ipairs(layers) do
  local ttl = 0
  if l.req_limit > 0 then
    add(l.key, 'r', l.req_now, 1, l.req_width)
    table.insert(out, l.req_limit - l.req_used - 1)
    table.insert(out, (l.req_now + buckets + 1) * l.req_width - now)
    ttl = (buckets + 2) * l.req_width
  else
    table.insert(out, -1)
    table.insert(out, 0)
  end
  if l.tok_limit > 0 then
    if cost > 0 then
      add(l.key, 't', l.tok_now, cost, tok_width)
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
