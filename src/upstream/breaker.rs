//! 熔断器：根据真实流量的结果（被动健康检测）摘除和恢复一个目标。
//!
//! 状态机：闭合（正常放行）→ 连续失败或窗口内失败比例过高 → 断开（摘除一段冷却时间）→
//! 冷却结束后半开（只放行一个试探请求）→ 试探成功则闭合，失败则再次断开且冷却时间翻倍。

use std::time::{Duration, Instant};

use crate::config::BreakerSettings;

/// 冷却时间翻倍的最多次数（2^16 倍早已超过任何合理的上限，防止移位溢出）。
const MAX_DOUBLINGS: u32 = 16;

/// 熔断器的状态。
///
/// 用途：`/health` 据此显示目标是正常、被摘除还是在试探。
///
/// ```
/// use chatnexus::upstream::BreakerState; // 熔断器状态
/// assert_ne!(BreakerState::Closed, BreakerState::HalfOpen { trial_in_flight: false }); // 闭合与半开不同
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// 正常放行。
    Closed,
    /// 已摘除，直到 `until`。
    Open {
        /// 冷却结束的时间。
        until: Instant,
    },
    /// 冷却已结束，等待或正在进行一个试探请求。
    HalfOpen {
        /// 是否已有试探请求在进行。
        trial_in_flight: bool,
    },
}

/// 熔断器对一个新请求的态度。
///
/// 用途：选择目标时过滤掉不放行的目标。
///
/// ```
/// use chatnexus::upstream::Admission; // 放行结果
/// assert!(Admission::Trial.is_allowed() && !Admission::Rejected { until: None }.is_allowed()); // 试探也算放行
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// 正常放行。
    Allowed,
    /// 作为试探请求放行（只放一个）。
    Trial,
    /// 不放行；`until` 为冷却结束时间（试探进行中时没有）。
    Rejected {
        /// 冷却结束的时间。
        until: Option<Instant>,
    },
}

impl Admission {
    /// 是否放行（正常或试探）。
    pub fn is_allowed(self) -> bool {
        !matches!(self, Admission::Rejected { .. })
    }
}

/// 一个目标的熔断器。
///
/// 用途：`TargetState` 在锁内持有它；每次尝试结束时报告成功或失败。
///
/// ```
/// use std::time::Instant; // 时间
/// use chatnexus::upstream::{Breaker, BreakerState}; // 熔断器
/// let settings = chatnexus::config::BreakerSettings { consecutive_failures: 1, ..Default::default() }; // 一次失败就熔断
/// let now = Instant::now(); // 当前时间
/// let mut b = Breaker::new(now); // 闭合
/// b.on_failure(now, &settings); // 一次失败
/// assert!(matches!(b.state(), BreakerState::Open { .. })); // 已熔断
/// ```
#[derive(Debug, Clone)]
pub struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
    window_start: Instant,
    window_requests: u32,
    window_failures: u32,
    /// 连续熔断的次数，决定下一次冷却时间；试探成功后清零。
    ejections: u32,
}

impl Breaker {
    /// 创建一个闭合的熔断器。
    pub fn new(now: Instant) -> Self {
        Breaker {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            window_start: now,
            window_requests: 0,
            window_failures: 0,
            ejections: 0,
        }
    }

    /// 当前状态（冷却时间已过、还没有请求到来时仍为断开，`admission` 会把它当作可试探）。
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// 当前的连续失败次数。
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// 现在是否放行一个请求（不改变状态）。
    pub fn admission(&self, now: Instant) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open { until } if now < until => {
                Admission::Rejected { until: Some(until) }
            }
            BreakerState::Open { .. } => Admission::Trial,
            BreakerState::HalfOpen {
                trial_in_flight: true,
            } => Admission::Rejected { until: None },
            BreakerState::HalfOpen {
                trial_in_flight: false,
            } => Admission::Trial,
        }
    }

    /// 放行一个请求：试探时占用唯一的试探名额。
    ///
    /// 返回：`None` 表示不放行；`Some(true)` 表示这是试探请求。
    pub fn admit(&mut self, now: Instant) -> Option<bool> {
        match self.admission(now) {
            Admission::Allowed => Some(false),
            Admission::Trial => {
                self.state = BreakerState::HalfOpen {
                    trial_in_flight: true,
                };
                Some(true)
            }
            Admission::Rejected { .. } => None,
        }
    }

    /// 试探请求没有得出结论（例如客户端断开）：交还试探名额。
    pub fn abandon_trial(&mut self) {
        if self.state
            == (BreakerState::HalfOpen {
                trial_in_flight: true,
            })
        {
            self.state = BreakerState::HalfOpen {
                trial_in_flight: false,
            };
        }
    }

    /// 报告一次成功：半开时闭合并清零冷却倍数，闭合时清零连续失败。
    pub fn on_success(&mut self, now: Instant, settings: &BreakerSettings) {
        match self.state {
            BreakerState::HalfOpen { .. } => self.close(now),
            BreakerState::Closed => {
                self.roll_window(now, settings);
                self.consecutive_failures = 0;
                self.window_requests += 1;
            }
            BreakerState::Open { .. } => {}
        }
    }

    /// 报告一次失败：半开时再次断开（冷却翻倍）；闭合时达到阈值就断开。
    pub fn on_failure(&mut self, now: Instant, settings: &BreakerSettings) {
        match self.state {
            BreakerState::HalfOpen { .. } => self.open(now, settings),
            BreakerState::Closed => {
                self.roll_window(now, settings);
                self.consecutive_failures += 1;
                self.window_requests += 1;
                self.window_failures += 1;
                if self.should_open(settings) {
                    self.open(now, settings);
                }
            }
            BreakerState::Open { .. } => {}
        }
    }

    /// 连续失败达到阈值，或窗口内请求足够多且失败比例达到阈值。
    fn should_open(&self, settings: &BreakerSettings) -> bool {
        let ratio = f64::from(self.window_failures) / f64::from(self.window_requests.max(1));
        self.consecutive_failures >= settings.consecutive_failures
            || (self.window_requests >= settings.min_requests && ratio >= settings.failure_ratio)
    }

    /// 断开：冷却时间为基础冷却乘以 2 的（连续熔断次数 − 1）次方，不超过上限。
    fn open(&mut self, now: Instant, settings: &BreakerSettings) {
        let cooldown = cooldown_for(self.ejections, settings);
        self.ejections = self.ejections.saturating_add(1);
        self.state = BreakerState::Open {
            until: now + cooldown,
        };
        self.reset_counts(now);
    }

    fn close(&mut self, now: Instant) {
        self.state = BreakerState::Closed;
        self.ejections = 0;
        self.reset_counts(now);
    }

    fn roll_window(&mut self, now: Instant, settings: &BreakerSettings) {
        if now.saturating_duration_since(self.window_start) >= settings.window() {
            self.window_start = now;
            self.window_requests = 0;
            self.window_failures = 0;
        }
    }

    fn reset_counts(&mut self, now: Instant) {
        self.consecutive_failures = 0;
        self.window_start = now;
        self.window_requests = 0;
        self.window_failures = 0;
    }
}

/// 第 `ejections + 1` 次连续熔断的冷却时间。
fn cooldown_for(ejections: u32, settings: &BreakerSettings) -> Duration {
    let factor = 1u32 << ejections.min(MAX_DOUBLINGS);
    settings
        .cooldown()
        .saturating_mul(factor)
        .min(settings.max_cooldown())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 设置() -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            window_ms: 10_000,
            min_requests: 10,
            cooldown_ms: 1_000,
            max_cooldown_ms: 3_000,
        }
    }

    fn 断开截止(b: &Breaker) -> Instant {
        match b.state() {
            BreakerState::Open { until } => until,
            other => panic!("应当处于断开状态，实际：{other:?}"),
        }
    }

    #[test]
    fn 连续失败达到阈值_断开_成功会清零计数() {
        let (t0, s) = (Instant::now(), 设置());
        let mut b = Breaker::new(t0);
        b.on_failure(t0, &s);
        b.on_failure(t0, &s);
        b.on_success(t0, &s);
        b.on_failure(t0, &s);
        b.on_failure(t0, &s);
        assert_eq!(b.state(), BreakerState::Closed, "中间的成功打断了连续失败");
        b.on_failure(t0, &s);
        assert_eq!(断开截止(&b), t0 + Duration::from_millis(1_000));
        assert_eq!(
            b.admission(t0),
            Admission::Rejected {
                until: Some(t0 + Duration::from_millis(1_000))
            }
        );
    }

    #[test]
    fn 窗口内失败比例过高_断开_请求太少时不按比例判断() {
        let (t0, s) = (Instant::now(), 设置());
        let mut b = Breaker::new(t0);
        for _ in 0..4 {
            b.on_success(t0, &s);
            b.on_failure(t0, &s);
        }
        assert_eq!(b.state(), BreakerState::Closed, "8 个请求不足 min_requests");
        b.on_success(t0, &s);
        b.on_failure(t0, &s);
        assert!(
            matches!(b.state(), BreakerState::Open { .. }),
            "10 个请求一半失败"
        );
    }

    #[test]
    fn 窗口过期后重新计数() {
        let (t0, s) = (Instant::now(), 设置());
        let mut b = Breaker::new(t0);
        for i in 0..9 {
            match i % 2 {
                0 => b.on_failure(t0, &s),
                _ => b.on_success(t0, &s),
            }
        }
        assert_eq!(b.state(), BreakerState::Closed, "9 个请求不足 min_requests");
        let later = t0 + Duration::from_millis(s.window_ms);
        b.on_failure(later, &s);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "新窗口只有 1 个请求，旧窗口的 5 次失败不再计入"
        );
    }

    #[test]
    fn 冷却结束_只放行一个试探_成功则闭合() {
        let (t0, s) = (Instant::now(), 设置());
        let mut b = Breaker::new(t0);
        (0..3).for_each(|_| b.on_failure(t0, &s));
        let after = 断开截止(&b);
        assert_eq!(b.admission(after), Admission::Trial);
        assert_eq!(b.admit(after), Some(true), "第一个请求成为试探");
        assert_eq!(b.admit(after), None, "试探进行中不再放行");
        b.on_success(after, &s);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(after), Some(false));
    }

    #[test]
    fn 试探失败_再次断开且冷却翻倍_不超过上限() {
        let (t0, s) = (Instant::now(), 设置());
        let mut b = Breaker::new(t0);
        (0..3).for_each(|_| b.on_failure(t0, &s));
        let mut now = 断开截止(&b);
        let mut cooldowns = Vec::new();
        for _ in 0..3 {
            assert_eq!(b.admit(now), Some(true));
            b.on_failure(now, &s);
            let until = 断开截止(&b);
            cooldowns.push(until - now);
            now = until;
        }
        let ms: Vec<u128> = cooldowns.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![2_000, 3_000, 3_000], "1 秒起步，翻倍，封顶 3 秒");
    }

    #[test]
    fn 试探没有结论_交还名额() {
        let (t0, s) = (Instant::now(), 设置());
        let mut b = Breaker::new(t0);
        (0..3).for_each(|_| b.on_failure(t0, &s));
        let after = 断开截止(&b);
        assert_eq!(b.admit(after), Some(true));
        b.abandon_trial();
        assert_eq!(b.admit(after), Some(true), "名额交还后下一个请求可以试探");
    }
}
