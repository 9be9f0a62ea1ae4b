-- 多层限流的准入脚本：先检查全部层，全部通过才计数；任何一层超限都不消耗其他层的额度。
--
-- 算法：分桶滑动窗口。每层一个哈希，字段 r / t 是窗口内请求数 / token 数的总和，ro / to 是最旧的
-- 未过期桶号，r<桶号> / t<桶号> 是各桶的计数。窗口覆盖当前桶与之前的 B 个桶：比名义窗口多出不到
-- 一个桶宽，所以任何长度为窗口的时间段内都不会超过上限（只会在边界少放，不会多放）。
-- rw / tw 是计数时的桶宽：配置改了窗口（桶宽随之改变）时旧桶号没法与新桶号比较，这一种计数从头开始。
-- 时间取 Redis 自己的 TIME：各网关实例的时钟偏差不影响计数；集群中全部键在同一个槽、同一个节点上。
-- 全部数值参数先校验（整数、在范围内）再做任何写入：越界时报错，不留下半截写入。
--
-- 开销：脚本在 Redis 的单线程里执行，每次 redis.call 与每次数字转字符串都不便宜（本机各约 1.5–3 µs 与 0.3 µs），
-- 所以每层只读一次、写一次，桶号字段名按桶宽只拼一次，过期时间只在打开新桶时设（它到最后一个桶移出窗口为止）。
--
-- 探查：响应缓存也在这个 Redis 里时，调用方把缓存条目的键作为最后一个键传进来，脚本顺带 GET 它——
-- 命中的请求只计请求数、不预留 token（条目存在时本次预留为 0），查缓存与准入合成一次往返。
--
-- KEYS[i]：第 i 层的哈希键；探查时最后一个键是要读的键（不算一层）。
-- ARGV[1] 桶数 B；ARGV[2] 本请求预留的 token 数；ARGV[3] token 桶宽（毫秒）；ARGV[4] 单个数值的上限；
-- ARGV[5] 是否探查（0 或 1）；之后每层三个：请求数上限（0 表示不限）、请求桶宽（毫秒）、token 上限（0 表示不限）。
-- 返回判定；探查时返回 { 判定, 读到的值（键不存在时为空）}。判定为
-- { 1, token 桶号, 最紧的请求层号, 它的剩余请求数, 它完全恢复的毫秒数, 最紧的 token 层号, 剩余 token, 恢复毫秒数 }
-- （“最紧”按剩余额度、再按上限取最小，相同时取靠前的层；没有这种上限时层号为 0），
-- 或拒绝时 { 0, 层号（从 1 起）, 种类（0 请求 / 1 token）, 可重试的毫秒数（-1 表示永远不行）}。
local tonumber, floor = tonumber, math.floor
-- 双精度浮点数能精确表示的最大整数：单个数值的上限不能超过它
local EXACT = 2 ^ 53

-- 校验一个数值参数：必须是 [low, high] 内的整数，否则报错（此时还没有任何写入）
local function integer(value, low, high, what)
  local n = tonumber(value)
  if not n or n % 1 ~= 0 or n < low or n > high then
    error('限流脚本的参数 ' .. what .. ' 不是 ' .. low .. ' 到 ' .. high .. ' 之间的整数：' .. tostring(value))
  end
  return n
end

local max = integer(ARGV[4], 1, EXACT, '数值上限')
local buckets = integer(ARGV[1], 1, max, '桶数')
local cost = integer(ARGV[2], 0, max, 'token 预留')
local tok_width = integer(ARGV[3], 1, max, 'token 桶宽')
local probe = integer(ARGV[5], 0, 1, '探查标记')
-- 每层参数从这里之后开始
local FIRST = 5
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + floor(tonumber(time[2]) / 1000)
local tok_now = floor(now / tok_width)
local tok_field = 't' .. tok_now
-- 各层的请求桶宽通常相同：当前桶号与字段名按桶宽只算一次
local req_fields = {}
local layers = {}
for i = 1, #KEYS - probe do
  local base = FIRST + (i - 1) * 3
  local req_width = integer(ARGV[base + 2], 1, max, '请求桶宽')
  local field = req_fields[req_width]
  if not field then
    field = { floor(now / req_width) }
    field[2] = 'r' .. field[1]
    req_fields[req_width] = field
  end
  layers[i] = {
    key = KEYS[i],
    req_limit = integer(ARGV[base + 1], 0, max, '请求数上限'),
    req_width = req_width,
    tok_limit = integer(ARGV[base + 3], 0, max, 'token 上限'),
    req_now = field[1],
    req_field = field[2],
  }
end

-- 探查的键存在（缓存命中）：本次不预留 token；redis.call 对不存在的键返回 false，回复里是空值
local probed = false
if probe == 1 then
  probed = redis.call('GET', KEYS[#KEYS])
  if probed then
    cost = 0
  end
end

-- 回复：探查时连同读到的值一起返回，否则只返回判定（回复越短，调用方解析越省）
local function reply(verdict)
  if probe == 1 then
    return { verdict, probed }
  end
  return verdict
end

-- 一层的状态：一次 HMGET 取回两种计数的桶宽、最旧桶号、总和与当前桶；通过后一次 HSET 写回
local function load(l)
  local v = redis.call('HMGET', l.key, 'rw', 'ro', 'r', l.req_field, 'tw', 'to', 't', tok_field)
  l.r = { w = tonumber(v[1]), o = tonumber(v[2]), total = tonumber(v[3]) or 0, cur = tonumber(v[4]) or 0 }
  l.t = { w = tonumber(v[5]), o = tonumber(v[6]), total = tonumber(v[7]) or 0, cur = tonumber(v[8]) or 0 }
end

-- 桶宽变了：旧桶号按旧桶宽编号，留着它们会让总和与重试时间（可达一个小时）都不对，删掉这一种计数的全部字段
local function rewidth(key, kind, state, width)
  if state.w and state.w ~= width then
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if string.sub(field, 1, 1) == kind then
        redis.call('HDEL', key, field)
      end
    end
    state.w, state.o, state.total, state.cur = nil, nil, 0, 0
  end
end

-- 把一种计数推进到当前桶：移出窗口的桶从总和中减去并删除，返回窗口内的总和
local function advance(key, kind, state, current)
  if not state.o then
    return 0
  end
  local oldest = current - buckets
  if state.o < oldest then
    local total = state.total
    for b = state.o, math.min(oldest - 1, state.o + buckets) do
      total = total - (tonumber(redis.call('HGET', key, kind .. b)) or 0)
      redis.call('HDEL', key, kind .. b)
    end
    state.total, state.o = math.max(total, 0), oldest
    redis.call('HSET', key, kind, state.total, kind .. 'o', oldest)
  end
  return state.total
end

-- 要等多久（毫秒）窗口里才腾得出 need：从最旧的桶起累计它们移出窗口后释放的量（只在拒绝时走到）
local function wait_ms(key, kind, state, current, width, need, limit)
  if need > limit then
    return -1
  end
  local excess = state.total + need - limit
  for b = math.max(state.o or current, current - buckets), current do
    excess = excess - (tonumber(redis.call('HGET', key, kind .. b)) or 0)
    if excess <= 0 then
      return (b + buckets + 1) * width - now
    end
  end
  return (current + buckets + 1) * width - now
end

-- 计入一种计数：把总和、当前桶、（第一次计数时的）最旧桶号与桶宽追加到这一层的 HSET 参数里；
-- 返回是否打开了新桶（这时要把键的过期时间推到新桶移出窗口之后）
local function add(fields, kind, state, field, current, amount, width)
  local n = #fields
  fields[n + 1], fields[n + 2] = kind, state.total + amount
  fields[n + 3], fields[n + 4] = field, state.cur + amount
  n = n + 4
  if not state.o then
    fields[n + 1], fields[n + 2] = kind .. 'o', current
    n = n + 2
  end
  if not state.w then
    fields[n + 1], fields[n + 2] = kind .. 'w', width
  end
  return state.cur == 0
end

-- 第一遍：只检查，不计数
for i, l in ipairs(layers) do
  load(l)
  if l.req_limit > 0 then
    rewidth(l.key, 'r', l.r, l.req_width)
    if advance(l.key, 'r', l.r, l.req_now) + 1 > l.req_limit then
      return reply({ 0, i, 0, wait_ms(l.key, 'r', l.r, l.req_now, l.req_width, 1, l.req_limit) })
    end
  end
  if l.tok_limit > 0 then
    rewidth(l.key, 't', l.t, tok_width)
    if advance(l.key, 't', l.t, tok_now) + cost > l.tok_limit then
      return reply({ 0, i, 1, wait_ms(l.key, 't', l.t, tok_now, tok_width, cost, l.tok_limit) })
    end
  end
end

-- 最紧的一层：剩余额度更少，或相同时上限更小（相同时保留靠前的层）
local function tighter(best, remaining, limit)
  return best == nil or remaining < best[1] or (remaining == best[1] and limit < best[2])
end

-- 第二遍：全部通过，逐层一次 HSET 计数，记下最紧的一层；打开新桶时把键的过期时间设到两种计数的当前桶都移出窗口之后
local req_best, tok_best
for i, l in ipairs(layers) do
  local fields, opened = {}, false
  local deadline = 0
  if l.req_limit > 0 then
    opened = add(fields, 'r', l.r, l.req_field, l.req_now, 1, l.req_width)
    local remaining = l.req_limit - l.r.total - 1
    if tighter(req_best, remaining, l.req_limit) then
      req_best = { remaining, l.req_limit, i, (l.req_now + buckets + 1) * l.req_width - now }
    end
    deadline = (l.req_now + buckets + 2) * l.req_width
  end
  if l.tok_limit > 0 then
    if cost > 0 then
      opened = add(fields, 't', l.t, tok_field, tok_now, cost, tok_width) or opened
    end
    local remaining = l.tok_limit - l.t.total - cost
    if tighter(tok_best, remaining, l.tok_limit) then
      tok_best = { remaining, l.tok_limit, i, (tok_now + buckets + 1) * tok_width - now }
    end
    deadline = math.max(deadline, (tok_now + buckets + 2) * tok_width)
  end
  if #fields > 0 then
    redis.call('HSET', l.key, unpack(fields))
    if opened then
      redis.call('PEXPIREAT', l.key, deadline)
    end
  end
end
req_best = req_best or { -1, 0, 0, 0 }
tok_best = tok_best or { -1, 0, 0, 0 }
return reply({ 1, tok_now, req_best[3], req_best[1], req_best[4], tok_best[3], tok_best[1], tok_best[4] })
