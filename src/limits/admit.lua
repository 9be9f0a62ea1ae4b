-- 多层限流的准入脚本：一次调用判定一批请求（同时在等 Redis 的准入由网关合成一批）。
-- 每个请求先检查自己的全部层，全部通过才计数；任何一层超限都不消耗其他层的额度。
-- 批内的请求按顺序逐个判定，前面放行的计数对后面的请求可见，结果与逐个调用脚本完全相同。
--
-- 算法：分桶滑动窗口。每层一个哈希，字段 r / t 是窗口内请求数 / token 数的总和，ro / to 是最旧的
-- 未过期桶号，r<桶号> / t<桶号> 是各桶的计数。窗口覆盖当前桶与之前的 B 个桶：比名义窗口多出不到
-- 一个桶宽，所以任何长度为窗口的时间段内都不会超过上限（只会在边界少放，不会多放）。
-- rw / tw 是计数时的桶宽：配置改了窗口（桶宽随之改变）时旧桶号没法与新桶号比较，这一种计数从头开始。
-- 时间取 Redis 自己的 TIME（整批一次）：各网关实例的时钟偏差不影响计数；集群中全部键在同一个槽、同一个节点上。
-- 全部数值参数先校验（整数、在范围内）再做任何写入：越界时报错，不留下半截写入。
--
-- 开销：脚本在 Redis 的单线程里执行，每次 redis.call 都不便宜（本机约 1.5–3 µs），所以同一个键在一批里
-- 只读一次（HMGET）、最后只写一次（HSET）：一批请求共用的全局层、同一个密钥或 IP 的层不随请求数增加调用。
-- 过期时间只在打开新桶时设（它到最后一个桶移出窗口为止）。
--
-- 探查：响应缓存也在这个 Redis 里时，请求带上缓存条目的键，脚本顺带 GET 它（同一批里同一个键只读一次）——
-- 命中的请求只计请求数、不预留 token（条目存在时本次预留为 0），查缓存与准入合成一次往返。
--
-- KEYS：本批用到的全部键（各层的哈希键与探查的键），参数里按序号（从 1 起）引用。
-- ARGV[1] 单个数值的上限；ARGV[2] 桶数 B；ARGV[3] token 桶宽（毫秒）；ARGV[4] 层参数组数 S；ARGV[5] 本批的请求数 N。
-- 之后 S 组层参数（一批里各层的上限通常只有几种，每种只传、只校验一次），每组三个：
-- 请求数上限（0 表示不限）、请求桶宽（毫秒）、token 上限（0 表示不限）。
-- 再之后每个请求：预留的 token 数、探查的键序号（0 表示不探查）、层数 L，再每层两个：哈希键序号、层参数组序号。
-- 返回 N 个 { 判定, 探查读到的值（没有探查或键不存在时为空）}，判定为
-- { 1, token 桶号, 最紧的请求层号, 它的剩余请求数, 它完全恢复的毫秒数, 最紧的 token 层号, 剩余 token, 恢复毫秒数 }
-- （“最紧”按剩余额度、再按上限取最小，相同时取靠前的层；没有这种上限时层号为 0），
-- 或拒绝时 { 0, 层号（从 1 起）, 种类（0 请求 / 1 token）, 可重试的毫秒数（-1 表示永远不行）}。
local tonumber, floor = tonumber, math.floor
-- 双精度浮点数能精确表示的最大整数：单个数值的上限不能超过它
local EXACT = 2 ^ 53
-- 全局参数的个数：层参数组从这之后开始
local HEADER = 5
-- 每组层参数的个数
local PER_SPEC = 3
-- 每个请求在层之前的参数个数（预留、探查的键序号、层数）
local PER_REQUEST = 3
-- 每层的参数个数（哈希键序号、层参数组序号）
local PER_LAYER = 2

-- 校验一个数值参数：必须是 [low, high] 内的整数，否则报错（此时还没有任何写入）
local function integer(value, low, high, what)
  local n = tonumber(value)
  if not n or n % 1 ~= 0 or n < low or n > high then
    error('限流脚本的参数 ' .. what .. ' 不是 ' .. low .. ' 到 ' .. high .. ' 之间的整数：' .. tostring(value))
  end
  return n
end

local max = integer(ARGV[1], 1, EXACT, '数值上限')
local buckets = integer(ARGV[2], 1, max, '桶数')
local tok_width = integer(ARGV[3], 1, max, 'token 桶宽')
local spec_count = integer(ARGV[4], 0, max, '层参数组数')
local count = integer(ARGV[5], 1, max, '请求数')
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + floor(tonumber(time[2]) / 1000)
local tok_now = floor(now / tok_width)
local tok_field = 't' .. tok_now

-- 先读出并校验全部参数（任何一个越界都在写入之前报错）：层参数组各是 { 请求数上限, 请求桶宽, token 上限 }，
-- 请求按顺序平铺在 nums 里（预留、探查的键序号、层数，再每层键序号与层参数组），starts[j] 是第 j 个请求的开头
local specs = {}
local at = HEADER + 1
for g = 1, spec_count do
  specs[g] = {
    integer(ARGV[at], 0, max, '请求数上限'),
    integer(ARGV[at + 1], 1, max, '请求桶宽'),
    integer(ARGV[at + 2], 0, max, 'token 上限'),
  }
  at = at + PER_SPEC
end
local keys = #KEYS
local nums, starts, m = {}, {}, 0
for j = 1, count do
  local n = integer(ARGV[at + 2], 0, keys, '层数')
  starts[j] = m + 1
  nums[m + 1] = integer(ARGV[at], 0, max, 'token 预留')
  nums[m + 2] = integer(ARGV[at + 1], 0, keys, '探查的键序号')
  nums[m + 3] = n
  m, at = m + PER_REQUEST, at + PER_REQUEST
  for _ = 1, n do
    nums[m + 1] = integer(ARGV[at], 1, keys, '哈希键序号')
    nums[m + 2] = integer(ARGV[at + 1], 1, spec_count, '层参数组序号')
    m, at = m + PER_LAYER, at + PER_LAYER
  end
end

-- 一种计数在某个桶宽下的当前桶号与字段名
local function position(kind, state, width)
  state.now = floor(now / width)
  state.field = kind .. state.now
end

-- 一个键的状态：本批第一次用到时一次 HMGET 取回两种计数的桶宽、最旧桶号、总和与当前桶，之后只在内存里改
local states = {}
local function state(k, req_width)
  local s = states[k]
  if s then
    return s
  end
  local r, t = {}, { now = tok_now, field = tok_field }
  position('r', r, req_width)
  local v = redis.call('HMGET', KEYS[k], 'rw', 'ro', 'r', r.field, 'tw', 'to', 't', tok_field)
  r.w, r.o, r.total, r.cur = tonumber(v[1]), tonumber(v[2]), tonumber(v[3]) or 0, tonumber(v[4]) or 0
  t.w, t.o, t.total, t.cur = tonumber(v[5]), tonumber(v[6]), tonumber(v[7]) or 0, tonumber(v[8]) or 0
  s = { key = KEYS[k], r = r, t = t, deadline = 0 }
  states[k] = s
  return s
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
    state.wrote_o, state.wrote_w = false, false
  end
  -- 本批前面按另一个桶宽读的当前桶不是这个桶宽的：换到这个桶宽的当前桶并重读它
  if floor(now / width) ~= state.now then
    position(kind, state, width)
    state.cur = tonumber(redis.call('HGET', key, state.field)) or 0
  end
end

-- 把一种计数推进到当前桶：移出窗口的桶从总和中减去并删除，返回窗口内的总和
local function advance(key, kind, state)
  if not state.o then
    return 0
  end
  local oldest = state.now - buckets
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

-- 要等多久（毫秒）窗口里才腾得出 need：从最旧的桶起累计它们移出窗口后释放的量（只在拒绝时走到）；
-- 当前桶可能被本批前面的请求计过数，用内存里的值
local function wait_ms(key, kind, state, width, need, limit)
  if need > limit then
    return -1
  end
  local current = state.now
  local excess = state.total + need - limit
  for b = math.max(state.o or current, current - buckets), current do
    local held = state.cur
    if b ~= current then
      held = tonumber(redis.call('HGET', key, kind .. b)) or 0
    end
    excess = excess - held
    if excess <= 0 then
      return (b + buckets + 1) * width - now
    end
  end
  return (current + buckets + 1) * width - now
end

-- 检查一种计数能否再计入 need：不能时返回拒绝的判定
local function check(s, kind, state, width, need, limit, number)
  rewidth(s.key, kind, state, width)
  if advance(s.key, kind, state) + need > limit then
    local code = kind == 't' and 1 or 0
    return { 0, number, code, wait_ms(s.key, kind, state, width, need, limit) }
  end
end

-- 在内存里计入一种计数；打开了新桶时记下要设过期时间
local function add(s, state, amount, width)
  if state.cur == 0 then
    s.opened = true
  end
  state.total, state.cur = state.total + amount, state.cur + amount
  if not state.o then
    state.o, state.wrote_o = state.now, true
  end
  if not state.w then
    state.w, state.wrote_w = width, true
  end
  state.dirty = true
end

-- 第一遍：只检查，不计数；任何一层不通过就返回拒绝。o 是请求在 nums 里的开头，第 i 层在 o + 1 + 2i 处
local function inspect(o, cost)
  for i = 1, nums[o + 2] do
    local spec = specs[nums[o + 2 + PER_LAYER * i]]
    local s = state(nums[o + 1 + PER_LAYER * i], spec[2])
    if spec[1] > 0 then
      local refused = check(s, 'r', s.r, spec[2], 1, spec[1], i)
      if refused then
        return refused
      end
    end
    if spec[3] > 0 then
      local refused = check(s, 't', s.t, tok_width, cost, spec[3], i)
      if refused then
        return refused
      end
    end
  end
end

-- 第二遍：全部通过，逐层计数，记下每种计数最紧的一层（剩余额度更少，或相同时上限更小，再相同时保留靠前的层）
-- 与键的过期时间
local function commit(o, cost)
  local rl, rr, rn, rw = 0, -1, 0, 0
  local tl, tr, tn, tw = 0, -1, 0, 0
  for i = 1, nums[o + 2] do
    local spec = specs[nums[o + 2 + PER_LAYER * i]]
    local s = states[nums[o + 1 + PER_LAYER * i]]
    local limit, width = spec[1], spec[2]
    if limit > 0 then
      add(s, s.r, 1, width)
      local remaining = limit - s.r.total
      if rn == 0 or remaining < rr or (remaining == rr and limit < rl) then
        rl, rr, rn, rw = limit, remaining, i, (s.r.now + buckets + 1) * width - now
      end
      s.deadline = math.max(s.deadline, (s.r.now + buckets + 2) * width)
    end
    limit = spec[3]
    if limit > 0 then
      if cost > 0 then
        add(s, s.t, cost, tok_width)
      end
      local remaining = limit - s.t.total
      if tn == 0 or remaining < tr or (remaining == tr and limit < tl) then
        tl, tr, tn, tw = limit, remaining, i, (tok_now + buckets + 1) * tok_width - now
      end
      s.deadline = math.max(s.deadline, (tok_now + buckets + 2) * tok_width)
    end
  end
  return { 1, tok_now, rn, rr, rw, tn, tr, tw }
end

-- 探查的键在本批里只读一次；redis.call 对不存在的键返回 false，回复里是空值
local probed = {}
local function probe(k)
  if k == 0 then
    return false
  end
  if probed[k] == nil then
    probed[k] = redis.call('GET', KEYS[k])
  end
  return probed[k]
end

local replies = {}
for j = 1, count do
  local o = starts[j]
  local value = probe(nums[o + 1])
  local cost = nums[o]
  if value then
    cost = 0
  end
  replies[j] = { inspect(o, cost) or commit(o, cost), value }
end

-- 一种计数改过时追加到这个键的 HSET 参数里：总和、当前桶，以及第一次计数时的最旧桶号与桶宽
local function put(fields, kind, state)
  if not state.dirty then
    return
  end
  local n = #fields
  fields[n + 1], fields[n + 2] = kind, state.total
  fields[n + 3], fields[n + 4] = state.field, state.cur
  n = n + 4
  if state.wrote_o then
    fields[n + 1], fields[n + 2] = kind .. 'o', state.o
    n = n + 2
  end
  if state.wrote_w then
    fields[n + 1], fields[n + 2] = kind .. 'w', state.w
  end
end

-- 每个改过的键一次 HSET；打开了新桶时把过期时间设到两种计数的当前桶都移出窗口之后
for _, s in pairs(states) do
  local fields = {}
  put(fields, 'r', s.r)
  put(fields, 't', s.t)
  if #fields > 0 then
    redis.call('HSET', s.key, unpack(fields))
    if s.opened then
      redis.call('PEXPIREAT', s.key, s.deadline)
    end
  end
end
return replies
