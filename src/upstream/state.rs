//! 一个目标跨请求共享的运行时状态：延迟估计、在途请求数、熔断器、上游要求的等待、自适应并发上限，
//! 以及所属上游的主动探测结果。

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::adaptive::{Adaptive, Change};
use super::breaker::{Admission, Breaker, BreakerState};
use super::ewma::PeakEwma;
use crate::config::{AdaptiveSettings, BreakerSettings, Target};
use crate::metrics::{self, METRICS};

/// 上游要求的等待（`Retry-After`、`retryDelay`）最多采信这么久：更长的值截到它。
pub const MAX_UPSTREAM_WAIT: Duration = Duration::from_secs(3600);
/// 429 没有给出 `Retry-After` 时暂停使用该目标的时长。
pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(1);

/// 探测状态：尚未探测。
const PROBE_UNKNOWN: u8 = 0;
/// 探测状态：健康。
const PROBE_UP: u8 = 1;
/// 探测状态：不健康。
const PROBE_DOWN: u8 = 2;
/// 还没有记录首字节延迟的标记。
const NO_LATENCY: u64 = u64::MAX;
/// 百分比换算。
const PERCENT: f64 = 100.0;

/// 一个上游最近一次主动探测的结果。
///
/// 用途：探测服务写入，选择目标时读取；探测失败的上游的全部目标暂不参与选择。
///
/// ```
/// let p = chatnexus::upstream::ProbeState::default(); // 尚未探测
/// p.record(false, "连接被拒绝".into()); // 一次失败的探测
/// assert_eq!(p.status(), Some(false)); // 已知不健康
/// ```
#[derive(Debug, Default)]
pub struct ProbeState {
    status: AtomicU8,
    detail: Mutex<String>,
}

impl ProbeState {
    /// 记录一次探测结果及说明（状态码或错误）。
    pub fn record(&self, healthy: bool, detail: String) {
        let status = if healthy { PROBE_UP } else { PROBE_DOWN };
        self.status.store(status, Ordering::Relaxed);
        *self.detail.lock().unwrap_or_else(|p| p.into_inner()) = detail;
    }

    /// 最近一次探测是否健康；尚未探测时为 `None`。
    pub fn status(&self) -> Option<bool> {
        match self.status.load(Ordering::Relaxed) {
            PROBE_UNKNOWN => None,
            status => Some(status == PROBE_UP),
        }
    }

    /// 最近一次探测的说明。
    pub fn detail(&self) -> String {
        self.detail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// 一次尝试的结论，用于被动健康检测。
///
/// 用途：`exchange` 在每次尝试结束时交给 [`Lease::settle`]。
///
/// ```
/// use chatnexus::upstream::Verdict; // 尝试结论
/// let v = Verdict::Failed { retry_after: None }; // 上游故障
/// assert_ne!(v, Verdict::Healthy); // 与成功不同
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 上游正常应答（包括因客户端请求本身有误而返回的 4xx）。
    Healthy,
    /// 上游故障：连接、TLS、超时、5xx、无法解析的回复、流中断开；可带上游要求的等待时间。
    Failed {
        /// 上游 `Retry-After` 给出的等待时间。
        retry_after: Option<Duration>,
    },
    /// 被限流（429）：按 `Retry-After`（没有时按 [`DEFAULT_THROTTLE`]）暂停使用，不计入熔断。
    Throttled {
        /// 上游 `Retry-After` 给出的等待时间。
        retry_after: Option<Duration>,
    },
    /// 无法判断目标好坏（例如客户端中途断开）。
    Unknown,
}

/// 目标此刻的健康状况。
///
/// 用途：选择时过滤，`/health` 展示，全部不可用时写进 503 的说明。
///
/// ```
/// use chatnexus::upstream::Health; // 健康状况
/// assert!(Health::Healthy.is_usable() && !Health::Disabled.is_usable()); // 停用的不可用
/// assert_eq!(Health::Disabled.name(), "disabled"); // /health 中的名字
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// 正常。
    Healthy,
    /// 冷却结束，可以放行一个试探请求。
    HalfOpen,
    /// 试探请求进行中，暂不放行其他请求。
    Probing,
    /// 被熔断摘除，直到 `until`。
    Ejected {
        /// 冷却结束时间。
        until: Instant,
    },
    /// 上游要求等待（`Retry-After`），直到 `until`。
    RateLimited {
        /// 可以再用的时间。
        until: Instant,
    },
    /// 在途请求数已达自适应并发上限，有请求结束才能再用。
    Saturated {
        /// 当前上限。
        limit: u32,
    },
    /// 主动探测失败。
    ProbeFailed,
    /// 上游被停用（例如密钥环境变量未设置）。
    Disabled,
}

impl Health {
    /// 现在能否选它。
    pub fn is_usable(self) -> bool {
        matches!(self, Health::Healthy | Health::HalfOpen)
    }

    /// `/health` 中显示的状态名。
    pub fn name(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::HalfOpen | Health::Probing => "half_open",
            Health::Ejected { .. } => "ejected",
            Health::RateLimited { .. } => "rate_limited",
            Health::Saturated { .. } => "saturated",
            Health::ProbeFailed => "probe_failed",
            Health::Disabled => "disabled",
        }
    }

    /// 不可用状态的结束时间（只有熔断与限流有）。
    pub fn until(self) -> Option<Instant> {
        match self {
            Health::Ejected { until } | Health::RateLimited { until } => Some(until),
            _ => None,
        }
    }
}

/// 锁内的可变部分。
#[derive(Debug)]
struct Inner {
    latency: PeakEwma,
    breaker: Breaker,
    hold_until: Option<Instant>,
    adaptive: Option<Adaptive>,
}

impl Inner {
    /// 当前的并发上限：已有自适应状态用它，尚未建立时用配置的基准；上游没有配置 `concurrency` 时为 `None`。
    fn concurrency_limit(&self, target: &Target) -> Option<u32> {
        let settings = target.provider.concurrency?;
        Some(
            self.adaptive
                .as_ref()
                .map_or(settings.base, Adaptive::limit),
        )
    }

    /// 让自适应状态跟上当前配置（热重载可能加上、去掉或修改 `concurrency`）。
    fn sync_adaptive(&mut self, target: &Target, now: Instant) {
        let Some(settings) = target.provider.concurrency else {
            self.adaptive = None;
            return;
        };
        let reset = match &mut self.adaptive {
            Some(adaptive) => adaptive.sync(settings, now),
            None => {
                self.adaptive = Some(Adaptive::new(settings, now));
                true
            }
        };
        if reset {
            let gauge = METRICS.adaptive_limit.with_label_values(&[&*target.key]);
            gauge.set(i64::from(settings.base));
        }
    }
}

/// 一个目标的共享运行时状态。
///
/// 用途：`Balancer` 按目标键保存它（配置重载后沿用），所有请求共享；选择时读取代价与健康状况，
/// 尝试时由 [`Lease`] 计入在途数并报告结果。
///
/// ```
/// use std::sync::Arc; // 共享指针
/// use std::time::Instant; // 时间
/// let probe = Arc::new(chatnexus::upstream::ProbeState::default()); // 所属上游的探测结果
/// let state = chatnexus::upstream::TargetState::new(probe, Instant::now()); // 新目标
/// assert_eq!(state.inflight(), 0); // 还没有在途请求
/// ```
#[derive(Debug)]
pub struct TargetState {
    inner: Mutex<Inner>,
    inflight: AtomicU32,
    probe: Arc<ProbeState>,
}

impl TargetState {
    /// 创建状态；`probe` 是所属上游的探测结果（同一上游的目标共享）。
    pub fn new(probe: Arc<ProbeState>, now: Instant) -> Self {
        TargetState {
            inner: Mutex::new(Inner {
                latency: PeakEwma::new(now),
                breaker: Breaker::new(now),
                hold_until: None,
                adaptive: None,
            }),
            inflight: AtomicU32::new(0),
            probe,
        }
    }

    /// 当前在途请求数。
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// 当前的首字节延迟估计。
    pub fn latency(&self, now: Instant, decay: Duration) -> Duration {
        self.lock().latency.estimate(now, decay)
    }

    /// 当前的连续失败次数。
    pub fn consecutive_failures(&self) -> u32 {
        self.lock().breaker.consecutive_failures()
    }

    /// 目标此刻的健康状况。
    pub fn health(&self, target: &Target, now: Instant) -> Health {
        health_of(&self.lock(), target, &self.probe, self.inflight(), now)
    }

    /// 当前的自适应并发上限（上游没有配置 `concurrency` 时为 `None`）。
    pub fn concurrency_limit(&self, target: &Target) -> Option<u32> {
        self.lock().concurrency_limit(target)
    }

    /// 可用时返回选择代价（延迟估计 ×（在途数 + 1），单位秒），不可用时返回 `None`。
    pub fn cost(&self, target: &Target, now: Instant, decay: Duration) -> Option<f64> {
        let inner = self.lock();
        if !health_of(&inner, target, &self.probe, self.inflight(), now).is_usable() {
            return None;
        }
        let load = f64::from(self.inflight() + 1);
        Some(inner.latency.estimate(now, decay).as_secs_f64() * load)
    }

    /// 为一次尝试占用目标：再次检查可用性（可能已被并发请求改变，包括在途数已达并发上限），
    /// 半开时占用试探名额，在途数加一。检查与加一都在锁内，并发的占用不会一起越过上限。
    ///
    /// 返回：`None` 表示此刻不可用。
    pub(super) fn admit(&self, target: &Target, now: Instant) -> Option<bool> {
        let mut inner = self.lock();
        inner.sync_adaptive(target, now);
        if !health_of(&inner, target, &self.probe, self.inflight(), now).is_usable() {
            return None;
        }
        let trial = inner.breaker.admit(now)?;
        self.inflight.fetch_add(1, Ordering::Relaxed);
        Some(trial)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 依次检查：上游停用、主动探测失败、上游要求等待、熔断器，最后是自适应并发上限。
fn health_of(
    inner: &Inner,
    target: &Target,
    probe: &ProbeState,
    inflight: u32,
    now: Instant,
) -> Health {
    if !target.provider.enabled {
        return Health::Disabled;
    }
    if target.provider.health_check.is_some() && probe.status() == Some(false) {
        return Health::ProbeFailed;
    }
    if let Some(until) = inner.hold_until.filter(|until| *until > now) {
        return Health::RateLimited { until };
    }
    let health = match inner.breaker.admission(now) {
        Admission::Allowed => Health::Healthy,
        Admission::Trial => Health::HalfOpen,
        Admission::Rejected { until: Some(until) } => Health::Ejected { until },
        Admission::Rejected { until: None } => Health::Probing,
    };
    match inner.concurrency_limit(target) {
        Some(limit) if health.is_usable() && inflight >= limit => Health::Saturated { limit },
        _ => health,
    }
}

/// 一次尝试对目标的占用：在途数加一，结束（释放）时减一。
///
/// 用途：`Plan::next` 返回它，`exchange` 用它取得目标、记录首字节延迟并报告结论；
/// 没有报告结论就被释放（例如请求被取消）时，占用的试探名额会被交还。
pub struct Lease<'a> {
    target: &'a Target,
    state: Arc<TargetState>,
    started: Instant,
    trial: bool,
    settled: bool,
    settings: LeaseSettings,
    /// 首字节延迟（微秒），没有记录时为 [`NO_LATENCY`]；原子量让租约可以跨 `await` 共享引用。
    first_byte_micros: AtomicU64,
}

/// 租约报告结论时用到的配置：熔断参数、延迟估计的衰减、自适应并发的阈值。
///
/// 用途：`Plan` 从当前配置取出后交给每个租约。
///
/// ```
/// let s = chatnexus::upstream::LeaseSettings::default(); // 全部缺省
/// assert_eq!(s.breaker.consecutive_failures, 5); // 缺省连续 5 次失败熔断
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseSettings {
    /// 熔断参数。
    pub breaker: BreakerSettings,
    /// 延迟估计的衰减时间常数。
    pub decay: Duration,
    /// 自适应并发的阈值。
    pub adaptive: AdaptiveSettings,
}

impl<'a> Lease<'a> {
    /// 由 `Plan` 在成功占用目标后创建。
    pub(super) fn new(
        target: &'a Target,
        state: Arc<TargetState>,
        trial: bool,
        settings: LeaseSettings,
    ) -> Self {
        Lease {
            target,
            state,
            started: Instant::now(),
            trial,
            settled: false,
            settings,
            first_byte_micros: AtomicU64::new(NO_LATENCY),
        }
    }

    /// 本次尝试的目标。
    pub fn target(&self) -> &'a Target {
        self.target
    }

    /// 记录从开始尝试到收到上游响应头（或首字节超时）的延迟样本。
    pub fn record_first_byte(&self) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.started);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(NO_LATENCY - 1);
        self.first_byte_micros.store(micros, Ordering::Relaxed);
        self.state
            .lock()
            .latency
            .observe(elapsed, now, self.settings.decay);
    }

    /// 报告本次尝试的结论并释放占用。
    pub fn settle(mut self, verdict: Verdict) {
        self.settled = true;
        let now = Instant::now();
        let mut inner = self.state.lock();
        let before = inner.breaker.state();
        let breaker = &self.settings.breaker;
        match verdict {
            Verdict::Healthy => inner.breaker.on_success(now, breaker),
            Verdict::Failed { retry_after } => {
                inner.breaker.on_failure(now, breaker);
                hold(&mut inner, now, retry_after);
            }
            Verdict::Throttled { retry_after } => {
                hold(
                    &mut inner,
                    now,
                    Some(retry_after.unwrap_or(DEFAULT_THROTTLE)),
                );
                inner.breaker.abandon_trial();
            }
            Verdict::Unknown => inner.breaker.abandon_trial(),
        }
        log_transition(&self.target.key, before, inner.breaker.state(), now);
        let change = self.adapt(&mut inner, verdict, now);
        drop(inner);
        if let Some(change) = change {
            log_adaptation(&self.target.key, &change);
        }
        let usable = self.state.health(self.target, now).is_usable();
        let latency = self.state.latency(now, self.settings.decay);
        metrics::record_target(
            &self.target.provider.name,
            &self.target.key,
            usable,
            latency,
        );
    }

    /// 把本次尝试记入自适应并发：成功是好样本，故障与上游 429 是坏样本，无法判断的不计。
    fn adapt(&self, inner: &mut Inner, verdict: Verdict, now: Instant) -> Option<Change> {
        let error = match verdict {
            Verdict::Healthy => false,
            Verdict::Failed { .. } | Verdict::Throttled { .. } => true,
            Verdict::Unknown => return None,
        };
        let micros = self.first_byte_micros.load(Ordering::Relaxed);
        let latency = (micros != NO_LATENCY).then(|| Duration::from_micros(micros));
        let adaptive = inner.adaptive.as_mut()?;
        adaptive.record(error, latency, now, &self.settings.adaptive)
    }
}

/// 自适应上限变化时更新指标并记一条日志（说明依据）。
fn log_adaptation(key: &str, change: &Change) {
    METRICS
        .adaptive_limit
        .with_label_values(&[key])
        .set(i64::from(change.after));
    let latency = change
        .latency
        .map_or_else(|| "无".to_string(), |l| format!("{} 毫秒", l.as_millis()));
    info!(
        "目标 `{key}` 的自适应并发上限 {} → {}（最近错误率 {:.1}%，平均首字节延迟 {latency}）",
        change.before,
        change.after,
        change.error_rate * PERCENT
    );
}

/// 熔断与恢复是运维最关心的状态变化，各记一条日志。
fn log_transition(key: &str, before: BreakerState, after: BreakerState, now: Instant) {
    match (before, after) {
        (BreakerState::Open { .. }, BreakerState::Open { .. }) => {}
        (_, BreakerState::Open { until }) => {
            let cooldown = until.saturating_duration_since(now).as_millis();
            warn!("目标 `{key}` 失败过多被熔断，{cooldown} 毫秒后放行一个试探请求");
        }
        (BreakerState::HalfOpen { .. }, BreakerState::Closed) => {
            info!("目标 `{key}` 试探请求成功，恢复使用");
        }
        _ => {}
    }
}

/// 记下上游要求的等待：取已有等待与新等待中较晚的一个。
///
/// 等待时间来自上游（`Retry-After`、Gemini 的 `retryDelay`），不可信：先截到 [`MAX_UPSTREAM_WAIT`]，
/// 时刻相加也用不会溢出的算法（否则 `Retry-After: 18446744073709551615` 会让请求任务 panic）。
fn hold(inner: &mut Inner, now: Instant, wait: Option<Duration>) {
    if let Some(wait) = wait.filter(|w| !w.is_zero()) {
        let wait = wait.min(MAX_UPSTREAM_WAIT);
        let Some(until) = now.checked_add(wait) else {
            return;
        };
        inner.hold_until = Some(inner.hold_until.map_or(until, |old| old.max(until)));
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.state.inflight.fetch_sub(1, Ordering::Relaxed);
        if self.trial && !self.settled {
            self.state.lock().breaker.abandon_trial();
        }
    }
}
