//! Prometheus 指标：请求、时延、首字时间、网关自身开销、token 用量与费用、进行中的请求与流、配置重载。
//!
//! 指标注册在 prometheus 的默认注册表里，由 `pingora-prometheus` 在 `server.metrics_listen` 上导出。
//! 标签只取自配置（模型名、上游名）或有限的枚举（状态码、token 类型），客户端输入不能撑大基数。

mod pricing;
mod usage_report;
mod usage_store;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use once_cell::sync::Lazy;
use pingora_prometheus::prometheus::{
    register_counter, register_counter_vec, register_gauge_vec, register_histogram_vec,
    register_int_counter, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
    Counter, CounterVec, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
};

use crate::error::ErrorCode;
use crate::streaming::Usage;

pub use pricing::{Price, PriceTable};
pub use usage_report::{read_usage, UsageCounts, UsageTotals};
pub use usage_store::{usage_key, UsageStore};

/// 限流计数中单个上限、单次预留与单次结算的最大值（一万亿）。
///
/// 为什么要有上限：本地计数器是 `isize`，`max_tokens` 可以填到 2⁶³−1，不封顶就会让计数回绕成负数、
/// 读作 0 而放过后续请求；Redis 的 Lua 脚本用双精度浮点数运算，超过 2⁵³ 会丢精度、写出科学计数法。
/// 一万亿远大于任何真实的请求量，又离这两个边界足够远。
pub const MAX_COUNT: u64 = 1_000_000_000_000;
/// 限流拒绝指标中“上游自适应并发已满”一层的标签值（限流器与上游选择共用）。
pub const UPSTREAM_LAYER_LABEL: &str = "upstream";
/// 未知模型（客户端请求了未配置的模型）时使用的标签值，防止客户端输入进入标签。
pub const UNKNOWN_LABEL: &str = "unknown";
/// 成功的请求在 `error_code` 标签上的值。
pub const NO_ERROR_LABEL: &str = "none";
/// 请求没有走到任何上游时的上游标签值。
pub const NO_PROVIDER_LABEL: &str = "none";
/// 请求总时延直方图的分桶（秒）。
const DURATION_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
/// 首字时间直方图的分桶（秒）。
const TTFT_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// 网关自身开销直方图的分桶（秒）：微秒到毫秒级。
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
];
/// 指标定义是编译期常量，注册只会因重名失败，那是程序缺陷。
const DEFINITION_BUG: &str = "指标定义是常量，注册失败说明指标重名";

/// 全部指标。
///
/// 用途：`proxy` 的 `logging` 钩子在每个请求结束时调用 [`record_request`]；其他模块更新各自的量。
///
/// ```
/// chatnexus::metrics::METRICS.config_reloads.with_label_values(&["ok"]).inc(); // 一次成功的重载
/// ```
pub struct Metrics {
    /// 请求数：`llm_requests_total{provider,model,status,error_code,dialect,endpoint}`，成功的请求错误码为 `none`。
    pub requests: IntCounterVec,
    /// 请求总时长：`llm_request_duration_seconds{provider,model}`
    pub duration: HistogramVec,
    /// 首字时间：`llm_time_to_first_token_seconds{provider,model}`
    pub ttft: HistogramVec,
    /// 网关自身开销：`llm_gateway_overhead_seconds{provider,model}`，总时长减去等待上游与等待客户端的时间。
    pub overhead: HistogramVec,
    /// token 数：`llm_tokens_processed_total{provider,model,type}`，类型为 input/output/cached/reasoning。
    pub tokens: IntCounterVec,
    /// 费用：`llm_cost_usd_total{provider,model}`
    pub cost: CounterVec,
    /// 估算用量的请求数：`llm_usage_estimated_total{provider,model}`，用量为估算值（流被取消且上游没给出用量）的请求数。
    pub estimated: IntCounterVec,
    /// 进行中的请求：`llm_inflight_requests`
    pub inflight_requests: IntGauge,
    /// 进行中的流：`llm_inflight_streams`
    pub inflight_streams: IntGauge,
    /// 上游目标是否可用：`llm_upstream_healthy{provider,target}`（1 可用，0 熔断、暂停或探测失败）。
    pub upstream_healthy: IntGaugeVec,
    /// 上游目标的首字节延迟估计：`llm_upstream_latency_seconds{provider,target}`（peak-EWMA）。
    pub upstream_latency: GaugeVec,
    /// 故障转移的重试次数：`llm_retries_total{provider,model}`（按最终服务的上游计）。
    pub retries: IntCounterVec,
    /// 配置重载：`llm_config_reloads_total{result}`，结果为 ok 或 error。
    pub config_reloads: IntCounterVec,
    /// 限流拒绝：`llm_limiter_refusals_total{layer}`，层为 global/key/ip/model/upstream。
    pub limiter_refusals: IntCounterVec,
    /// Redis 不可用时由本地阶段判定的请求数：`llm_limiter_fallback_total`。
    pub limiter_fallback: IntCounter,
    /// Redis 操作失败：`llm_redis_errors_total{op}`，操作为 admit/settle/nonce。
    pub redis_errors: IntCounterVec,
    /// 目标当前的自适应并发上限：`llm_upstream_adaptive_limit{target}`，目标为配置中的 `提供方名/部署名`。
    pub adaptive_limit: IntGaugeVec,
    /// 写客户端超时而放弃的请求：`llm_client_write_timeouts_total`（客户端不读，或读得太慢超过总时长）。
    pub client_write_timeouts: IntCounter,
    /// 上游流超过上限而被截断：`llm_stream_oversize_total{what}`，`what` 为 event（单个事件）或 stream（整个流）。
    pub stream_oversize: IntCounterVec,
    /// 响应缓存的指标。
    pub cache: CacheMetrics,
}

/// 响应缓存的指标。
///
/// 用途：`cache` 模块记查找结果，请求路径在命中时记省下的 token 与费用。
///
/// ```
/// chatnexus::metrics::METRICS.cache.requests.with_label_values(&["hit"]).inc(); // 一次命中
/// ```
pub struct CacheMetrics {
    /// 缓存查找：`llm_cache_requests_total{result}`，结果为 hit/miss/bypass。
    pub requests: IntCounterVec,
    /// 命中省下的 token：`llm_cache_saved_tokens_total{type}`，类型为 input/output/cached/reasoning。
    pub saved_tokens: IntCounterVec,
    /// 命中省下的费用：`llm_cache_saved_usd_total`（按价目表计算的美元）。
    pub saved_usd: Counter,
}

/// 全局指标实例（注册在默认注册表）。
pub static METRICS: Lazy<Metrics> = Lazy::new(Metrics::register);

impl Metrics {
    fn register() -> Self {
        let (requests, tokens, estimated, config_reloads) = register_counters();
        let (duration, ttft, overhead) = register_histograms();
        let (upstream_healthy, upstream_latency, retries) = register_upstream();
        let limits = register_limits();
        Metrics {
            requests,
            duration,
            ttft,
            overhead,
            tokens,
            cost: register_counter_vec!(
                "llm_cost_usd_total",
                "按价目表计算的费用（美元）",
                &["provider", "model"]
            )
            .expect(DEFINITION_BUG),
            estimated,
            inflight_requests: register_int_gauge!("llm_inflight_requests", "进行中的请求数")
                .expect(DEFINITION_BUG),
            inflight_streams: register_int_gauge!("llm_inflight_streams", "进行中的流式响应数")
                .expect(DEFINITION_BUG),
            upstream_healthy,
            upstream_latency,
            retries,
            config_reloads,
            limiter_refusals: limits.refusals,
            limiter_fallback: limits.fallback,
            redis_errors: limits.redis_errors,
            adaptive_limit: limits.adaptive_limit,
            client_write_timeouts: register_int_counter!(
                "llm_client_write_timeouts_total",
                "写客户端超时而放弃的请求数"
            )
            .expect(DEFINITION_BUG),
            stream_oversize: register_int_counter_vec!(
                "llm_stream_oversize_total",
                "上游流超过上限而被截断的次数（单个事件或整个流）",
                &["what"]
            )
            .expect(DEFINITION_BUG),
            cache: register_cache(),
        }
    }
}

/// 注册响应缓存的指标：查找结果、省下的 token 与费用。
fn register_cache() -> CacheMetrics {
    CacheMetrics {
        requests: register_int_counter_vec!(
            "llm_cache_requests_total",
            "响应缓存查找次数（按结果：hit/miss/bypass）",
            &["result"]
        )
        .expect(DEFINITION_BUG),
        saved_tokens: register_int_counter_vec!(
            "llm_cache_saved_tokens_total",
            "缓存命中省下的 token 数（按类型）",
            &["type"]
        )
        .expect(DEFINITION_BUG),
        saved_usd: register_counter!(
            "llm_cache_saved_usd_total",
            "缓存命中省下的费用（美元，按价目表）"
        )
        .expect(DEFINITION_BUG),
    }
}

/// 注册直方图：请求总时长、首字时间、网关自身开销。
fn register_histograms() -> (HistogramVec, HistogramVec, HistogramVec) {
    let pm = &["provider", "model"];
    let histogram = |name: &str, help: &str, buckets: &[f64]| {
        register_histogram_vec!(name, help, pm, buckets.to_vec()).expect(DEFINITION_BUG)
    };
    (
        histogram(
            "llm_request_duration_seconds",
            "请求总时长（秒）",
            DURATION_BUCKETS,
        ),
        histogram(
            "llm_time_to_first_token_seconds",
            "首个内容块到达客户端的时间（秒）",
            TTFT_BUCKETS,
        ),
        histogram(
            "llm_gateway_overhead_seconds",
            "网关自身处理时间（秒，不含等待上游与客户端）",
            OVERHEAD_BUCKETS,
        ),
    )
}

/// 注册上游相关的量：目标是否可用、延迟估计、重试次数。
fn register_upstream() -> (IntGaugeVec, GaugeVec, IntCounterVec) {
    let pt = &["provider", "target"];
    (
        register_int_gauge_vec!(
            "llm_upstream_healthy",
            "上游目标是否可用（1 可用，0 不可用）",
            pt
        )
        .expect(DEFINITION_BUG),
        register_gauge_vec!(
            "llm_upstream_latency_seconds",
            "上游目标的首字节延迟估计（秒，peak-EWMA）",
            pt
        )
        .expect(DEFINITION_BUG),
        register_int_counter_vec!(
            "llm_retries_total",
            "故障转移的重试次数",
            &["provider", "model"]
        )
        .expect(DEFINITION_BUG),
    )
}

/// 记录一次尝试结束后目标的状态（标签是配置中的上游名与目标键，基数有限）。
pub fn record_target(provider: &str, target: &str, usable: bool, latency: Duration) {
    let m = &*METRICS;
    m.upstream_healthy
        .with_label_values(&[provider, target])
        .set(i64::from(usable));
    m.upstream_latency
        .with_label_values(&[provider, target])
        .set(latency.as_secs_f64());
}

/// 限流相关的指标。
struct LimitMetrics {
    refusals: IntCounterVec,
    fallback: IntCounter,
    redis_errors: IntCounterVec,
    adaptive_limit: IntGaugeVec,
}

/// 注册限流相关的指标：拒绝数、降级判定数、Redis 错误数、自适应并发上限。
fn register_limits() -> LimitMetrics {
    LimitMetrics {
        refusals: register_int_counter_vec!(
            "llm_limiter_refusals_total",
            "限流拒绝的请求数（按层）",
            &["layer"]
        )
        .expect(DEFINITION_BUG),
        fallback: register_int_counter!(
            "llm_limiter_fallback_total",
            "Redis 不可用时由本地阶段判定的请求数"
        )
        .expect(DEFINITION_BUG),
        redis_errors: register_int_counter_vec!(
            "llm_redis_errors_total",
            "Redis 操作失败次数（按操作）",
            &["op"]
        )
        .expect(DEFINITION_BUG),
        adaptive_limit: register_int_gauge_vec!(
            "llm_upstream_adaptive_limit",
            "目标当前的自适应并发上限",
            &["target"]
        )
        .expect(DEFINITION_BUG),
    }
}

/// 注册整数计数器：请求数、token 数、估算用量的请求数、配置重载次数。
fn register_counters() -> (IntCounterVec, IntCounterVec, IntCounterVec, IntCounterVec) {
    (
        register_int_counter_vec!(
            "llm_requests_total",
            "请求数（按上游、模型、状态码与错误码）",
            &[
                "provider",
                "model",
                "status",
                "error_code",
                "dialect",
                "endpoint"
            ]
        )
        .expect(DEFINITION_BUG),
        register_int_counter_vec!(
            "llm_tokens_processed_total",
            "token 数（按类型）",
            &["provider", "model", "type"]
        )
        .expect(DEFINITION_BUG),
        register_int_counter_vec!(
            "llm_usage_estimated_total",
            "用量为估算值的请求数",
            &["provider", "model"]
        )
        .expect(DEFINITION_BUG),
        register_int_counter_vec!(
            "llm_config_reloads_total",
            "配置热重载次数（按结果）",
            &["result"]
        )
        .expect(DEFINITION_BUG),
    )
}

/// 一个请求结束时要记录的全部信息。
///
/// 用途：`proxy::logging` 从请求上下文填好它，交给 [`record_request`]。
///
/// ```
/// use chatnexus::metrics::RequestRecord; // 请求记录
/// let r = RequestRecord { provider: "mock", model: "演示", status: 200, ..Default::default() }; // 最少的字段
/// chatnexus::metrics::record_request(&r); // 计数加一
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestRecord<'a> {
    /// 上游名（配置中的），没有时为 [`NO_PROVIDER_LABEL`]。
    pub provider: &'a str,
    /// 客户端可见的模型名（已配置的），否则为 [`UNKNOWN_LABEL`]。
    pub model: &'a str,
    /// 写给客户端的状态码。
    pub status: u16,
    /// 请求总时长。
    pub duration: Duration,
    /// 首个内容块到达客户端的时间。
    pub ttft: Option<Duration>,
    /// 网关自身的处理时间。
    pub overhead: Option<Duration>,
    /// token 用量。
    pub usage: Option<Usage>,
    /// 用量是否为估算值。
    pub estimated: bool,
    /// 费用（美元）。
    pub cost: Option<f64>,
    /// 尝试上游的次数（大于 1 说明发生了故障转移）。
    pub attempts: u32,
    /// 失败的错误码（成功时为 `None`）。
    pub error_code: Option<ErrorCode>,
    /// 客户端方言的标签（`chat`、`messages`）。
    pub dialect: &'a str,
    /// 接口的标签（`chat_completions`、`messages`、`responses`、`embeddings`……）。
    pub endpoint: &'a str,
}

/// token 用量的类型标签，顺序与 [`PairMetrics::tokens`] 一致。
const TOKEN_KINDS: [&str; 4] = ["input", "output", "cached", "reasoning"];

/// 一对（上游、模型）标签下的指标句柄：每个请求按这对标签查一次表，而不是每个指标各查一次
/// （prometheus 每次 `with_label_values` 都要哈希标签、加读锁、查表，一个请求原本要查八九次）。
struct PairMetrics {
    duration: Histogram,
    ttft: Histogram,
    overhead: Histogram,
    /// 按 [`TOKEN_KINDS`] 的顺序。
    tokens: [IntCounter; 4],
    cost: Counter,
    estimated: IntCounter,
    retries: IntCounter,
}

impl PairMetrics {
    /// 取出一对标签下的全部句柄。
    fn resolve(m: &Metrics, provider: &str, model: &str) -> Self {
        let pm = [provider, model];
        PairMetrics {
            duration: m.duration.with_label_values(&pm),
            ttft: m.ttft.with_label_values(&pm),
            overhead: m.overhead.with_label_values(&pm),
            tokens: TOKEN_KINDS.map(|kind| m.tokens.with_label_values(&[provider, model, kind])),
            cost: m.cost.with_label_values(&pm),
            estimated: m.estimated.with_label_values(&pm),
            retries: m.retries.with_label_values(&pm),
        }
    }
}

/// 已取出的句柄：上游名 → 模型名 → 句柄（两层表，查找时不必为组合键分配）。标签只取自配置，表的大小有限。
type PairTable = HashMap<String, HashMap<String, Arc<PairMetrics>>>;

/// 全部（上游、模型）组合的句柄表。
static PAIRS: Lazy<RwLock<PairTable>> = Lazy::new(RwLock::default);

/// 一对标签下的句柄（第一次用到时取出并记下）。
fn pair_metrics(provider: &str, model: &str) -> Arc<PairMetrics> {
    let found = PAIRS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(provider)
        .and_then(|models| models.get(model))
        .cloned();
    if let Some(pair) = found {
        return pair;
    }
    let mut table = PAIRS.write().unwrap_or_else(|p| p.into_inner());
    let models = table.entry(provider.to_string()).or_default();
    let pair = models
        .entry(model.to_string())
        .or_insert_with(|| Arc::new(PairMetrics::resolve(&METRICS, provider, model)));
    Arc::clone(pair)
}

/// 把一个请求记入全部相关指标。
pub fn record_request(r: &RequestRecord<'_>) {
    let m = &*METRICS;
    let pair = pair_metrics(r.provider, r.model);
    pair.duration.observe(r.duration.as_secs_f64());
    if let Some(ttft) = r.ttft {
        pair.ttft.observe(ttft.as_secs_f64());
    }
    if let Some(overhead) = r.overhead {
        pair.overhead.observe(overhead.as_secs_f64());
    }
    if let Some(u) = r.usage {
        let counts = [u.prompt, u.completion, u.cached, u.reasoning];
        for (counter, count) in pair.tokens.iter().zip(counts) {
            counter.inc_by(count);
        }
    }
    if let Some(cost) = r.cost.filter(|c| *c > 0.0) {
        pair.cost.inc_by(cost);
    }
    if r.estimated {
        pair.estimated.inc();
    }
    if r.attempts > 1 {
        pair.retries.inc_by(u64::from(r.attempts - 1));
    }
    // 请求数最后计：抓到计数加一的人一定也看得到这个请求的用量与费用（对账与测试按请求数等待）
    let mut status = itoa::Buffer::new();
    m.requests
        .with_label_values(&[
            r.provider,
            r.model,
            status.format(r.status),
            r.error_code.map_or(NO_ERROR_LABEL, ErrorCode::as_str),
            r.dialect,
            r.endpoint,
        ])
        .inc();
}

/// 进行中计数的守卫：创建时加一，释放时减一（请求结束、流结束或被取消都会释放）。
///
/// 用途：请求上下文持有一个请求守卫，流式转发期间持有一个流守卫。
///
/// ```
/// let g = chatnexus::metrics::InflightGuard::new(&chatnexus::metrics::METRICS.inflight_streams); // 加一
/// drop(g); // 减一
/// ```
#[derive(Debug)]
pub struct InflightGuard(IntGauge);

impl InflightGuard {
    /// 对某个计量加一，返回守卫。
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        InflightGuard(gauge.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
