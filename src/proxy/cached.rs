//! 响应缓存在请求路径上的使用：准入之后查找，命中时按客户端要的形式（JSON 或 SSE）回放，
//! 未命中时交换后保存正常结束的完整回复。
//!
//! 三种方言与向量都缓存，各存各的（接口标签 `RequestCtx::endpoint` 在缓存键里）：条目是客户端方言的完整回复（`chat.completion`、
//! `message` 或 `response`），同一方言的流式与非流式请求共用一条。

use std::time::Duration;

use http::header::CACHE_CONTROL;
use pingora_proxy::Session;

use super::context::RequestCtx;
use crate::cache::{wait, Entry, Flight, FlightGuard, Lookup, ResponseCache};
use crate::clock::unix_now;
use crate::config::{CacheSettings, Config};
use crate::dialects::Inbound;
use crate::downstream::{self, GatewayHeaders};
use crate::error::ApiError;
use crate::exchange::{ExchangeReport, Failure};
use crate::limits::Limiter;
use crate::metrics::METRICS;
use crate::security::Client;

/// 请求头 `Cache-Control` 里“不查缓存、照常保存”的指令。
const NO_CACHE: &str = "no-cache";
/// 请求头 `Cache-Control` 里“既不查也不存”的指令。
const NO_STORE: &str = "no-store";
/// 缓存结果：命中。
pub(super) const HIT: &str = "hit";
/// 缓存结果：未命中。
const MISS: &str = "miss";
/// 缓存结果：绕过（不满足缓存条件、客户端要求不用，或缓存后端不可用）。
const BYPASS: &str = "bypass";
/// 成功的状态码。
const STATUS_OK: u16 = 200;
/// 相同的请求最多等领头的请求多久（之后各自去上游）。
const FLIGHT_WAIT: Duration = Duration::from_secs(30);
/// 命中缓存的请求在访问日志与指标里的“上游”。
const CACHE_PROVIDER: &str = "cache";

/// 本请求怎样用缓存。
pub(super) struct CachePlan {
    key: String,
    lookup: bool,
    store: bool,
    /// 相同请求里领头去上游时的守卫：计划释放（交换结束、保存之后）时唤醒等着的相同请求。
    flight: Option<FlightGuard>,
}

impl CachePlan {
    /// 交换后是否要保存回复（要保存时交换保留写给客户端的完整回复）。
    pub(super) fn stores(&self) -> bool {
        self.store
    }
}

/// 决定本请求怎样用缓存；没配缓存时为 `None`。不满足缓存条件或客户端要求 `no-store` 时记为绕过。
pub(super) fn plan(
    (session, ctx): (&mut Session, &mut RequestCtx),
    settings: Option<&CacheSettings>,
    (client, inbound): (Option<&Client>, &Inbound),
) -> Option<CachePlan> {
    let settings = settings?;
    let directives = cache_control(session);
    if directives.contains(NO_STORE)
        || !ResponseCache::eligible(
            settings,
            inbound.model(),
            (inbound.body(), inbound.deterministic()),
        )
    {
        mark(session, ctx, BYPASS, None);
        return None;
    }
    let owner = ctx.client.as_deref().unwrap_or_default();
    let team = client
        .and_then(|c| c.team.as_ref())
        .map(|(name, _)| name.as_str());
    let key = ResponseCache::key(
        settings,
        (owner, team),
        inbound.model(),
        ctx.endpoint,
        inbound.body(),
    );
    Some(CachePlan {
        key,
        lookup: !directives.contains(NO_CACHE),
        store: true,
        flight: None,
    })
}

/// 请求头 `Cache-Control` 的值（小写；没有时为空串）。
fn cache_control(session: &Session) -> String {
    session
        .req_header()
        .headers
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// 记下缓存结果：响应头 `x-chatnexus-cache`（命中时另带 `age`）与访问日志。
fn mark(session: &mut Session, ctx: &mut RequestCtx, result: &'static str, age: Option<u64>) {
    ctx.cache = Some(result);
    if let Some(headers) = GatewayHeaders::of(session) {
        headers.set_cache(result, age);
    }
}

/// 查缓存：命中时返回条目（由 [`serve_hit`] 回放）；未命中或绕过时记下结果并返回 `None`（照常交换）。
pub(super) async fn lookup(
    (cache, settings): (&ResponseCache, &CacheSettings),
    plan: &mut CachePlan,
    (session, ctx): (&mut Session, &mut RequestCtx),
) -> Option<Entry> {
    if !plan.lookup {
        mark(session, ctx, MISS, None);
        return None;
    }
    let first = cache.get(settings, &plan.key).await;
    conclude((cache, settings), plan, (session, ctx), first).await
}

/// 条目在 Redis 里的键，要由限流准入脚本顺带读时才有：本请求要查缓存、缓存在 Redis、限流能在准入时读
/// （同一个单机 Redis）。
pub(super) fn probe_key(
    cache: &ResponseCache,
    settings: &CacheSettings,
    plan: &CachePlan,
    limiter: &Limiter,
) -> Option<String> {
    if !plan.lookup || !limiter.probes() {
        return None;
    }
    cache.storage_key(settings, &plan.key)
}

/// 由第一次查找的结果得出命中的条目：未命中时与相同请求合并（见 [`merge`]）；未命中或绕过时记下结果。
pub(super) async fn conclude(
    (cache, settings): (&ResponseCache, &CacheSettings),
    plan: &mut CachePlan,
    (session, ctx): (&mut Session, &mut RequestCtx),
    first: Lookup,
) -> Option<Entry> {
    match merge(cache, settings, plan, first).await {
        Lookup::Hit(entry) => Some(entry),
        Lookup::Miss => {
            mark(session, ctx, MISS, None);
            None
        }
        Lookup::Bypass => {
            mark(session, ctx, BYPASS, None);
            None
        }
    }
}

/// 回放命中的条目，返回写给客户端的状态码；省下的 token 与费用计入指标。
///
/// 错误：回放时写客户端失败。
pub(super) async fn serve_hit(
    config: &Config,
    entry: Entry,
    (session, ctx): (&mut Session, &mut RequestCtx),
    inbound: &Inbound,
) -> Result<u16, Failure> {
    let age = unix_now().saturating_sub(entry.created_unix);
    mark(session, ctx, HIT, Some(age));
    ctx.report.provider = Some(CACHE_PROVIDER.to_string());
    replay(session, inbound, &entry).await?;
    ctx.report.mark_output();
    count_saved(&entry, config, inbound.model());
    Ok(STATUS_OK)
}

/// 第一次查找未命中时与同一进程里的相同请求合并：没有进行中的相同请求时领头（守卫记进计划），
/// 否则等领头的结束（最多 [`FLIGHT_WAIT`]）后再查一次。
async fn merge(
    cache: &ResponseCache,
    settings: &CacheSettings,
    plan: &mut CachePlan,
    first: Lookup,
) -> Lookup {
    if first != Lookup::Miss {
        return first;
    }
    match cache.join(&plan.key) {
        Flight::Leader(guard) => {
            plan.flight = Some(guard);
            Lookup::Miss
        }
        Flight::Follower(done) => {
            wait(done, FLIGHT_WAIT).await;
            cache.get(settings, &plan.key).await
        }
    }
}

/// 按客户端要的形式回放：非流式请求原样写出保存的 JSON，流式请求解析后重放成客户端方言的事件流。
///
/// 错误：写客户端失败；条目里的回复不是合法 JSON 时返回 500（条目由网关自己序列化，不应发生）。
async fn replay(session: &mut Session, inbound: &Inbound, entry: &Entry) -> Result<(), Failure> {
    if !inbound.stream() {
        return downstream::write_json(session, STATUS_OK, entry.body.clone())
            .await
            .map_err(Failure::gone);
    }
    let reply = entry
        .reply()
        .map_err(|e| ApiError::internal(format!("缓存条目里的回复无法解析：{e}")))?;
    downstream::start_event_stream(session)
        .await
        .map_err(Failure::gone)?;
    downstream::write_chunk(session, inbound.replay_stream(&reply))
        .await
        .map_err(Failure::gone)?;
    downstream::finish_body(session)
        .await
        .map_err(Failure::gone)
}

/// 命中省下的 token 与费用计入 `llm_cache_saved_tokens_total` 与 `llm_cache_saved_usd_total`；
/// 费用按模型首个目标的上游模型的价格估算（命中时不知道原来是哪个目标应答的）。
fn count_saved(entry: &Entry, config: &Config, model: &str) {
    let Some(usage) = entry.usage else {
        return;
    };
    let saved = [
        ("input", usage.prompt),
        ("output", usage.completion),
        ("cached", usage.cached),
        ("reasoning", usage.reasoning),
    ];
    for (kind, count) in saved {
        METRICS
            .cache
            .saved_tokens
            .with_label_values(&[kind])
            .inc_by(count);
    }
    let upstream = config
        .model(model)
        .and_then(|m| m.targets.first())
        .map(|t| t.model.as_str());
    if let Some(cost) = upstream.and_then(|name| config.pricing.cost(name, &usage)) {
        METRICS.cache.saved_usd.inc_by(cost);
    }
}

/// 交换成功后：正常结束（Chat 的 stop、length、工具调用……，Messages 与 Responses 的对应结局）的完整回复
/// 连同用量存进缓存；取消、截断、出错的不存。
pub(super) async fn remember(
    cache: &ResponseCache,
    settings: &CacheSettings,
    (plan, inbound): (&CachePlan, &Inbound),
    report: &ExchangeReport,
) {
    if !plan.store {
        return;
    }
    let Some(completion) = report
        .rendered
        .as_ref()
        .filter(|reply| inbound.completed_normally(reply))
    else {
        return;
    };
    let entry = Entry::new(unix_now(), report.usage, completion);
    cache.put(settings, &plan.key, &entry).await;
}
