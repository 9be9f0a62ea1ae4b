//! 上游选择与故障转移的配置：重试、熔断、延迟估计的衰减，以及每个上游的主动健康检查。

use std::time::Duration;

use serde::Deserialize;

/// 缺省每个请求最多尝试的目标数（含第一次）。
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// 缺省连续失败多少次就熔断。
const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// 缺省窗口内失败比例达到多少就熔断。
const DEFAULT_FAILURE_RATIO: f64 = 0.5;
/// 缺省失败比例的统计窗口：10 秒。
const DEFAULT_WINDOW_MS: u64 = 10_000;
/// 缺省窗口内至少多少个请求才按比例判断（请求太少时比例没有意义）。
const DEFAULT_MIN_REQUESTS: u32 = 10;
/// 缺省第一次熔断的冷却时间：10 秒。
const DEFAULT_COOLDOWN_MS: u64 = 10_000;
/// 缺省冷却时间的上限：5 分钟。
const DEFAULT_MAX_COOLDOWN_MS: u64 = 300_000;
/// 缺省延迟估计的衰减时间常数：10 秒（与 Finagle、Linkerd 的 peak-EWMA 相同）。
const DEFAULT_LATENCY_DECAY_MS: u64 = 10_000;
/// 缺省主动探测路径。
const DEFAULT_PROBE_PATH: &str = "/";
/// 缺省主动探测间隔：30 秒。
const DEFAULT_PROBE_INTERVAL_MS: u64 = 30_000;
/// 缺省主动探测超时：5 秒。
const DEFAULT_PROBE_TIMEOUT_MS: u64 = 5_000;

/// `retry` 段：一个请求最多在几个目标上尝试。
///
/// 用途：`exchange` 的故障转移循环以它为上限；只在还没有向客户端写出任何字节时重试。
///
/// ```
/// let r: chatnexus::config::RetrySettings = serde_yaml::from_str("{}").unwrap(); // 全用缺省值
/// assert_eq!(r.max_attempts, 3); // 缺省最多尝试 3 个目标
/// ```
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// 最多尝试的目标数（含第一次），每个目标在一个请求内至多尝试一次。
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// `circuit_breaker` 段：被动健康检测（熔断）的参数，对所有目标生效。
///
/// 用途：连续失败达到 `consecutive_failures`，或窗口内请求数不少于 `min_requests` 且失败比例
/// 达到 `failure_ratio` 时，目标被摘除 `cooldown_ms`；每次再熔断冷却时间翻倍，直到 `max_cooldown_ms`。
/// 冷却结束后放行一个试探请求，成功即恢复。
///
/// ```
/// let b: chatnexus::config::BreakerSettings = serde_yaml::from_str("{ cooldown_ms: 500 }").unwrap(); // 只改冷却时间
/// assert_eq!((b.consecutive_failures, b.cooldown().as_millis()), (5, 500)); // 其余取缺省值
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// 连续失败多少次就熔断。
    pub consecutive_failures: u32,
    /// 窗口内失败比例达到多少就熔断（0 到 1 之间）。
    pub failure_ratio: f64,
    /// 失败比例的统计窗口（毫秒）。
    pub window_ms: u64,
    /// 窗口内至少多少个请求才按比例判断。
    pub min_requests: u32,
    /// 第一次熔断的冷却时间（毫秒）。
    pub cooldown_ms: u64,
    /// 冷却时间的上限（毫秒）。
    pub max_cooldown_ms: u64,
}

impl BreakerSettings {
    /// 统计窗口。
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// 第一次熔断的冷却时间。
    pub fn cooldown(&self) -> Duration {
        Duration::from_millis(self.cooldown_ms)
    }

    /// 冷却时间的上限。
    pub fn max_cooldown(&self) -> Duration {
        Duration::from_millis(self.max_cooldown_ms)
    }
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            failure_ratio: DEFAULT_FAILURE_RATIO,
            window_ms: DEFAULT_WINDOW_MS,
            min_requests: DEFAULT_MIN_REQUESTS,
            cooldown_ms: DEFAULT_COOLDOWN_MS,
            max_cooldown_ms: DEFAULT_MAX_COOLDOWN_MS,
        }
    }
}

/// `load_balancing` 段：延迟估计（peak-EWMA）的参数。
///
/// 用途：时间常数越小，估计对延迟下降反应越快、也越容易被抖动带偏；闲置目标的估计按它衰减，
/// 因而会被重新试用。
///
/// ```
/// let l: chatnexus::config::BalancingSettings = serde_yaml::from_str("{}").unwrap(); // 全用缺省值
/// assert_eq!(l.latency_decay().as_secs(), 10); // 缺省 10 秒
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalancingSettings {
    /// 延迟估计的衰减时间常数（毫秒）。
    pub latency_decay_ms: u64,
}

impl BalancingSettings {
    /// 衰减时间常数。
    pub fn latency_decay(&self) -> Duration {
        Duration::from_millis(self.latency_decay_ms)
    }
}

impl Default for BalancingSettings {
    fn default() -> Self {
        BalancingSettings {
            latency_decay_ms: DEFAULT_LATENCY_DECAY_MS,
        }
    }
}

/// `providers[].health_check`：对一个上游的主动健康探测。
///
/// 用途：后台服务每隔 `interval_ms` 向 `path` 发一个不带密钥的 `GET`；在 `timeout_ms` 内收到
/// 状态码小于 500 的响应即为健康（LLM 接口不带密钥通常回 401/404，说明服务在线）。
/// 探测失败时该上游的全部目标不参与选择，直到下一次探测成功。
///
/// ```
/// let h: chatnexus::config::HealthCheck = serde_yaml::from_str("{ path: /v1/models }").unwrap(); // 只给路径
/// assert_eq!((h.interval().as_secs(), h.timeout().as_secs()), (30, 5)); // 缺省每 30 秒、超时 5 秒
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    /// 探测路径（以 `/` 开头，是主机下的绝对路径）。
    pub path: String,
    /// 探测间隔（毫秒）。
    pub interval_ms: u64,
    /// 单次探测的超时（毫秒），含连接。
    pub timeout_ms: u64,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: DEFAULT_PROBE_PATH.to_string(),
            interval_ms: DEFAULT_PROBE_INTERVAL_MS,
            timeout_ms: DEFAULT_PROBE_TIMEOUT_MS,
        }
    }
}

impl HealthCheck {
    /// 探测间隔。
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// 探测超时。
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}
