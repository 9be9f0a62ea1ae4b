//! 限流与自适应并发的配置：`rate_limits` 段（全局、每个客户端密钥、每个客户端 IP、每个模型四层）、
//! 密钥与模型各自的覆盖（`auth.keys[].limits`、`models[].limits`）、上游的并发基准
//! （`providers[].concurrency`）与自适应调整的阈值（`adaptive_limits` 段）。

use std::time::Duration;

use serde::Deserialize;

use super::cidr::Cidr;
use super::{ConfigFile, ConfigIssue};
use crate::metrics::MAX_COUNT;
use crate::security::LimitOverride;

/// 请求数窗口的缺省长度：1 分钟。
const DEFAULT_WINDOW_MS: u64 = 60_000;
/// 请求没给 `max_tokens` 时为输出预留的缺省 token 数。
const DEFAULT_MAX_TOKENS: u64 = 1024;
/// Redis 不可用时告警的缺省最小间隔：10 秒。
const DEFAULT_WARN_INTERVAL_MS: u64 = 10_000;
/// Redis 失败后改用本地限流、再试 Redis 之前的缺省时长：1 秒。
const DEFAULT_REDIS_RETRY_MS: u64 = 1_000;
/// 鉴权失败限流的缺省次数：每个客户端 IP 每窗口 20 次。
const DEFAULT_AUTH_FAILURES: u64 = 20;
/// 鉴权失败限流的缺省窗口：1 分钟。
const DEFAULT_AUTH_FAILURE_WINDOW_MS: u64 = 60_000;
/// 自适应调整的缺省评估间隔：5 秒。
const DEFAULT_ADAPTIVE_INTERVAL_MS: u64 = 5_000;
/// 一次评估至少需要的样本数（样本太少时错误率没有意义）。
const DEFAULT_MIN_SAMPLES: u32 = 10;
/// 错误率高于它时上限减半。
const DEFAULT_ERROR_HALVE: f64 = 0.10;
/// 错误率高于它时上限乘 0.7。
const DEFAULT_ERROR_REDUCE: f64 = 0.05;
/// 错误率低于它（且延迟正常）时上限增长。
const DEFAULT_ERROR_GROW: f64 = 0.01;
/// 平均首字节延迟高于它（毫秒）时上限乘 0.6。
const DEFAULT_LATENCY_SEVERE_MS: u64 = 5_000;
/// 平均首字节延迟高于它（毫秒）时上限乘 0.8。
const DEFAULT_LATENCY_SLOW_MS: u64 = 2_000;

/// Redis 不可用时一个限流层的处理方式。
///
/// 用途：`open`（缺省）时改用本地限流继续服务；`closed` 时拒绝受该层约束的请求（503）。
///
/// ```
/// let m: chatnexus::config::FailureMode = serde_yaml::from_str("closed").unwrap(); // 故障时关闭
/// assert_eq!(m, chatnexus::config::FailureMode::Closed); // 解析为关闭
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// 故障时放行：只按本地限流决定。
    #[default]
    Open,
    /// 故障时关闭：拒绝请求。
    Closed,
}

/// 一个限流层的上限。
///
/// 用途：`rate_limits.global`、`per_key`、`per_ip`、`per_model` 各是一个；请求数按滑动窗口
/// `window_ms` 计，token 数按每分钟计，两者都可以不设。
///
/// ```
/// let l: chatnexus::config::LayerSettings = serde_yaml::from_str("{ requests: 600, tokens_per_minute: 100000 }").unwrap(); // 两种上限
/// assert_eq!((l.window().as_secs(), l.on_redis_failure), (60, chatnexus::config::FailureMode::Open)); // 缺省窗口 1 分钟、故障时放行
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSettings {
    /// 窗口内最多的请求数；不设则不限请求数。
    #[serde(default)]
    pub requests: Option<u64>,
    /// 请求数滑动窗口的长度（毫秒，至少 1000）。
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    /// 每分钟最多的 token 数（输入加输出，准入时按预估预留，结束时按实际用量结算）；不设则不限。
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Redis 不可用时的处理方式。
    #[serde(default)]
    pub on_redis_failure: FailureMode,
}

impl LayerSettings {
    /// 请求数窗口。
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// 套用覆盖：覆盖中给出的字段替换本层的对应字段。
    pub fn with(self, over: &LimitOverride) -> LayerSettings {
        LayerSettings {
            requests: over.requests.or(self.requests),
            window_ms: over.window_ms.unwrap_or(self.window_ms),
            tokens_per_minute: over.tokens_per_minute.or(self.tokens_per_minute),
            on_redis_failure: self.on_redis_failure,
        }
    }
}

impl Default for LayerSettings {
    fn default() -> Self {
        LayerSettings {
            requests: None,
            window_ms: DEFAULT_WINDOW_MS,
            tokens_per_minute: None,
            on_redis_failure: FailureMode::Open,
        }
    }
}

fn default_window_ms() -> u64 {
    DEFAULT_WINDOW_MS
}

/// `rate_limits.auth_failures`：鉴权失败的限流（按客户端 IP，进程内）。
///
/// 用途：在鉴权与读请求体之前查一次；同一 IP 在窗口内鉴权失败达到 `limit` 次后，它的请求直接 429
/// （带 `Retry-After`），不再读请求体、不再比对密钥。成功的鉴权不计数。
///
/// ```
/// let a = chatnexus::config::AuthFailureSettings::default(); // 缺省
/// assert_eq!((a.limit, a.window().as_secs()), (20, 60)); // 每分钟 20 次
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFailureSettings {
    /// 窗口内允许的鉴权失败次数；达到后该 IP 的请求一律 429。
    pub limit: u64,
    /// 滑动窗口的长度（毫秒）。
    pub window_ms: u64,
}

impl AuthFailureSettings {
    /// 窗口。
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }
}

impl Default for AuthFailureSettings {
    fn default() -> Self {
        AuthFailureSettings {
            limit: DEFAULT_AUTH_FAILURES,
            window_ms: DEFAULT_AUTH_FAILURE_WINDOW_MS,
        }
    }
}

/// `rate_limits` 段：多层限流。
///
/// 用途：每个聊天请求在鉴权、读体、校验之后、选上游之前经过本地阶段（进程内、纳秒级）与
/// 分布式阶段（Redis 中一个原子 Lua 脚本）；任何一层超限返回 429。见 docs/rate-limiting.md。
///
/// ```
/// let r: chatnexus::config::RateLimitSettings = serde_yaml::from_str("{ per_key: { requests: 60 }, instances: 3 }").unwrap(); // 每个密钥每分钟 60 次
/// assert!(r.global.is_none() && r.per_key.is_some()); // 只启用了密钥层
/// assert_eq!(r.default_max_tokens, 1024); // 缺省为输出预留 1024 个 token
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// 全局层：所有请求共享。
    pub global: Option<LayerSettings>,
    /// 每个客户端密钥一份（`auth.keys[].limits` 可覆盖）。
    pub per_key: Option<LayerSettings>,
    /// 每个客户端 IP 一份（IPv6 按 /64 网段）。
    pub per_ip: Option<LayerSettings>,
    /// 每个模型一份（`models[].limits` 可覆盖）。
    pub per_model: Option<LayerSettings>,
    /// 可信的反向代理（IP 或 CIDR）：只有直连对端在其中时才采信 `X-Forwarded-For`。
    pub trusted_proxies: Vec<Cidr>,
    /// 共享同一个 Redis 的网关实例数：没有 Redis 或 Redis 不可用时，每个实例按“上限 ÷ 实例数”在本地限流。
    pub instances: u32,
    /// 请求没给 `max_tokens`/`max_completion_tokens` 时为输出预留的 token 数。
    pub default_max_tokens: u64,
    /// Redis 不可用的告警最多每隔这么久一条（毫秒）。
    pub warn_interval_ms: u64,
    /// Redis 失败后，这么久（毫秒）之内直接用本地限流，之后放一个请求去试 Redis。
    pub redis_retry_ms: u64,
    /// 鉴权失败的限流（按客户端 IP，在鉴权与读请求体之前）。
    pub auth_failures: AuthFailureSettings,
}

impl RateLimitSettings {
    /// Redis 不可用告警的最小间隔。
    pub fn warn_interval(&self) -> Duration {
        Duration::from_millis(self.warn_interval_ms)
    }

    /// Redis 失败后改用本地限流的时长。
    pub fn redis_retry(&self) -> Duration {
        Duration::from_millis(self.redis_retry_ms)
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            global: None,
            per_key: None,
            per_ip: None,
            per_model: None,
            trusted_proxies: Vec::new(),
            instances: 1,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            warn_interval_ms: DEFAULT_WARN_INTERVAL_MS,
            redis_retry_ms: DEFAULT_REDIS_RETRY_MS,
            auth_failures: AuthFailureSettings::default(),
        }
    }
}

/// `providers[].concurrency`：该上游每个目标（部署）允许同时在途的请求数的基准与下限。
///
/// 用途：自适应调整在 `[floor, 2 × base]` 之间按错误率与延迟增减；在途数达到当前上限的目标
/// 暂不参与选择，流量先转向模型的其他目标。
///
/// ```
/// let c: chatnexus::config::ConcurrencySettings = serde_yaml::from_str("{ base: 32 }").unwrap(); // 基准 32
/// assert_eq!((c.base, c.floor, c.ceiling()), (32, 1, 64)); // 下限缺省 1，上限为基准的两倍
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencySettings {
    /// 基准并发数（起始值）。
    pub base: u32,
    /// 下限（至少 1）。
    #[serde(default = "default_floor")]
    pub floor: u32,
}

impl ConcurrencySettings {
    /// 上限：基准的两倍。
    pub fn ceiling(&self) -> u32 {
        self.base.saturating_mul(2)
    }
}

fn default_floor() -> u32 {
    1
}

/// `adaptive_limits` 段：自适应并发调整的阈值（对所有配置了 `concurrency` 的上游生效）。
///
/// 用途：每个评估间隔内样本数足够时，按错误率（含上游的 429）与平均首字节延迟调整上限：
/// 错误率 > 10% 减半、> 5% 乘 0.7、< 1% 且延迟正常时增加基准的 1/10；平均延迟 > 5 秒乘 0.6、> 2 秒乘 0.8。
///
/// ```
/// let a = chatnexus::config::AdaptiveSettings::default(); // 缺省阈值
/// assert_eq!((a.error_halve, a.latency_severe_ms), (0.10, 5000)); // 与 docs/rate-limiting.md 一致
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveSettings {
    /// 评估间隔（毫秒）。
    pub interval_ms: u64,
    /// 一次评估至少需要的样本数。
    pub min_samples: u32,
    /// 错误率高于它时上限减半。
    pub error_halve: f64,
    /// 错误率高于它时上限乘 0.7。
    pub error_reduce: f64,
    /// 错误率低于它时上限增长。
    pub error_grow: f64,
    /// 平均首字节延迟高于它（毫秒）时上限乘 0.6。
    pub latency_severe_ms: u64,
    /// 平均首字节延迟高于它（毫秒）时上限乘 0.8。
    pub latency_slow_ms: u64,
}

impl AdaptiveSettings {
    /// 评估间隔。
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        AdaptiveSettings {
            interval_ms: DEFAULT_ADAPTIVE_INTERVAL_MS,
            min_samples: DEFAULT_MIN_SAMPLES,
            error_halve: DEFAULT_ERROR_HALVE,
            error_reduce: DEFAULT_ERROR_REDUCE,
            error_grow: DEFAULT_ERROR_GROW,
            latency_severe_ms: DEFAULT_LATENCY_SEVERE_MS,
            latency_slow_ms: DEFAULT_LATENCY_SLOW_MS,
        }
    }
}

/// 请求数窗口的下限（毫秒）：本地阶段按整毫秒计时，短于 1 秒的窗口里比例估计的误差太大。
const MIN_WINDOW_MS: u64 = 1_000;
/// 请求数窗口的上限（毫秒）：一天。
const MAX_WINDOW_MS: u64 = 86_400_000;
/// 实例数的上限。
const MAX_INSTANCES: u32 = 10_000;
/// 改用本地限流时长的上限（毫秒）：10 分钟。
const MAX_REDIS_RETRY_MS: u64 = 600_000;
/// 自适应评估间隔的下限（毫秒）。
const MIN_ADAPTIVE_INTERVAL_MS: u64 = 100;

/// 校验限流与自适应并发的配置，问题带 YAML 路径。
pub(super) fn validate(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let r = &file.rate_limits;
    let layers = [
        ("global", &r.global),
        ("per_key", &r.per_key),
        ("per_ip", &r.per_ip),
        ("per_model", &r.per_model),
    ];
    for (name, layer) in layers {
        if let Some(layer) = layer {
            validate_layer(layer, &format!("rate_limits.{name}"), issues);
        }
    }
    for (i, key) in file.auth.keys.iter().enumerate() {
        if let Some(over) = &key.limits {
            validate_override(over, &format!("auth.keys[{i}].limits"), issues);
        }
    }
    for (i, model) in file.models.iter().enumerate() {
        if let Some(over) = &model.limits {
            validate_override(over, &format!("models[{i}].limits"), issues);
        }
    }
    validate_general(r, issues);
    for (i, p) in file.providers.iter().enumerate() {
        if let Some(c) = &p.concurrency {
            if c.base == 0 || c.floor == 0 || c.floor > c.base {
                issues.push(ConfigIssue::new(
                    format!("providers[{i}].concurrency"),
                    "base 与 floor 都必须大于 0，且 floor 不能大于 base",
                ));
            }
        }
    }
    validate_adaptive(&file.adaptive_limits, issues);
}

/// 一层的上限：至少配一种，数值大于 0，窗口在范围内。
fn validate_layer(layer: &LayerSettings, path: &str, issues: &mut Vec<ConfigIssue>) {
    if layer.requests.is_none() && layer.tokens_per_minute.is_none() {
        issues.push(ConfigIssue::new(
            path,
            "至少配置 requests 或 tokens_per_minute 之一（不需要这一层时删除它）",
        ));
    }
    let over = LimitOverride {
        requests: layer.requests,
        window_ms: Some(layer.window_ms),
        tokens_per_minute: layer.tokens_per_minute,
    };
    validate_override(&over, path, issues);
}

/// 覆盖中出现的字段：数值大于 0，窗口在范围内。
fn validate_override(over: &LimitOverride, path: &str, issues: &mut Vec<ConfigIssue>) {
    for (field, value) in [
        ("requests", over.requests),
        ("tokens_per_minute", over.tokens_per_minute),
    ] {
        if value == Some(0) {
            issues.push(ConfigIssue::new(
                format!("{path}.{field}"),
                "必须大于 0（不限制请删除该字段）",
            ));
        }
        if value.is_some_and(|v| v > MAX_COUNT) {
            issues.push(ConfigIssue::new(
                format!("{path}.{field}"),
                format!("不能超过 {MAX_COUNT}"),
            ));
        }
    }
    if let Some(window) = over.window_ms {
        if !(MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&window) {
            issues.push(ConfigIssue::new(
                format!("{path}.window_ms"),
                format!("必须在 {MIN_WINDOW_MS} 到 {MAX_WINDOW_MS} 之间"),
            ));
        }
    }
}

/// 实例数、预留 token 数、告警间隔与改用本地限流的时长。
fn validate_general(r: &RateLimitSettings, issues: &mut Vec<ConfigIssue>) {
    if r.instances == 0 || r.instances > MAX_INSTANCES {
        issues.push(ConfigIssue::new(
            "rate_limits.instances",
            format!("必须在 1 到 {MAX_INSTANCES} 之间"),
        ));
    }
    let positive = [
        ("default_max_tokens", r.default_max_tokens),
        ("warn_interval_ms", r.warn_interval_ms),
    ];
    for (field, value) in positive {
        if value == 0 {
            issues.push(ConfigIssue::new(
                format!("rate_limits.{field}"),
                "必须大于 0",
            ));
        }
    }
    if r.redis_retry_ms == 0 || r.redis_retry_ms > MAX_REDIS_RETRY_MS {
        issues.push(ConfigIssue::new(
            "rate_limits.redis_retry_ms",
            format!("必须在 1 到 {MAX_REDIS_RETRY_MS} 之间"),
        ));
    }
    validate_auth_failures(&r.auth_failures, issues);
}

/// 鉴权失败的限流：次数在 1 到 [`MAX_COUNT`] 之间，窗口与请求数窗口的范围相同。
fn validate_auth_failures(a: &AuthFailureSettings, issues: &mut Vec<ConfigIssue>) {
    if a.limit == 0 || a.limit > MAX_COUNT {
        issues.push(ConfigIssue::new(
            "rate_limits.auth_failures.limit",
            format!("必须在 1 到 {MAX_COUNT} 之间"),
        ));
    }
    if !(MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&a.window_ms) {
        issues.push(ConfigIssue::new(
            "rate_limits.auth_failures.window_ms",
            format!("必须在 {MIN_WINDOW_MS} 到 {MAX_WINDOW_MS} 之间"),
        ));
    }
}

/// 自适应阈值：间隔与样本数有下限，错误率阈值递增且在 (0, 1] 内，延迟阈值递增。
fn validate_adaptive(a: &AdaptiveSettings, issues: &mut Vec<ConfigIssue>) {
    if a.interval_ms < MIN_ADAPTIVE_INTERVAL_MS {
        issues.push(ConfigIssue::new(
            "adaptive_limits.interval_ms",
            format!("不能小于 {MIN_ADAPTIVE_INTERVAL_MS}"),
        ));
    }
    if a.min_samples == 0 {
        issues.push(ConfigIssue::new(
            "adaptive_limits.min_samples",
            "必须大于 0",
        ));
    }
    let ordered = 0.0 < a.error_grow
        && a.error_grow <= a.error_reduce
        && a.error_reduce <= a.error_halve
        && a.error_halve <= 1.0;
    if !ordered {
        issues.push(ConfigIssue::new(
            "adaptive_limits",
            "错误率阈值必须满足 0 < error_grow ≤ error_reduce ≤ error_halve ≤ 1",
        ));
    }
    if a.latency_slow_ms == 0 || a.latency_slow_ms > a.latency_severe_ms {
        issues.push(ConfigIssue::new(
            "adaptive_limits.latency_slow_ms",
            "必须大于 0 且不大于 latency_severe_ms",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{build, parse, ConfigError};

    /// 限流与自适应参数全部越界的配置。
    const 越界配置: &str = "server: { listen: '127.0.0.1:8080' }\nauth:\n  keys: [ { name: 甲, sha256: 2e4c961d46e66a959b65e87302316f4e2f2ccf5c85d03c71d23011a5206b18d9, limits: { requests: 0 } } ]\nrate_limits:\n  instances: 0\n  redis_retry_ms: 0\n  auth_failures: { limit: 0, window_ms: 10 }\n  global: { window_ms: 10 }\n  per_key: { tokens_per_minute: 9223372036854775807 }\n  per_ip: { requests: 5, window_ms: 999 }\nadaptive_limits: { interval_ms: 10, error_grow: 0.5 }\nproviders: [ { name: p, kind: openai_compatible, base_url: 'http://127.0.0.1:1', concurrency: { base: 2, floor: 3 } } ]\nmodels: [ { name: m, targets: [ { provider: p } ], limits: { tokens_per_minute: 0 } } ]\n";

    #[test]
    fn 校验_限流参数越界_逐项指出路径() {
        let issues = match build(parse(越界配置).expect("可解析"), |_| None) {
            Err(ConfigError::Invalid(issues)) => issues,
            other => panic!("应当校验失败：{other:?}"),
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "rate_limits.global",
                "rate_limits.global.window_ms",
                "rate_limits.per_key.tokens_per_minute",
                "rate_limits.per_ip.window_ms",
                "auth.keys[0].limits.requests",
                "models[0].limits.tokens_per_minute",
                "rate_limits.instances",
                "rate_limits.redis_retry_ms",
                "rate_limits.auth_failures.limit",
                "rate_limits.auth_failures.window_ms",
                "providers[0].concurrency",
                "adaptive_limits.interval_ms",
                "adaptive_limits",
            ]
        );
    }

    #[test]
    fn 构建_限流段与覆盖进入运行时配置() {
        let yaml = "server: { listen: '127.0.0.1:8080' }\nauth:\n  keys: [ { name: 甲, sha256: 2e4c961d46e66a959b65e87302316f4e2f2ccf5c85d03c71d23011a5206b18d9, limits: { requests: 9 } } ]\nrate_limits: { trusted_proxies: [10.0.0.0/8, '::1'], per_key: { requests: 60, on_redis_failure: closed } }\nredis: { url: 'redis://127.0.0.1:7001,redis://127.0.0.1:7002', cluster: true }\n";
        let cfg = build(parse(yaml).expect("可解析"), |_| None).expect("可构建");
        assert_eq!(cfg.rate_limits.trusted_proxies.len(), 2);
        assert_eq!(
            cfg.clients
                .authenticate("sk-chatnexus-demo")
                .and_then(|c| c.limits)
                .and_then(|l| l.requests),
            Some(9)
        );
        assert!(cfg.redis.expect("有 redis 段").cluster);
        let err =
            parse("rate_limits: { trusted_proxies: [10.0.0.1/8] }").expect_err("主机位不为零");
        assert!(
            err.to_string().contains("rate_limits.trusted_proxies"),
            "{err}"
        );
    }
}
