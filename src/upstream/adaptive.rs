//! 每个目标的自适应并发上限：按最近的错误率（含上游自己的 429）与平均首字节延迟，
//! 以加性增、乘性减（AIMD）的方式在 `[floor, 2 × base]` 之间调整。
//!
//! 在途请求数达到上限的目标暂不参与选择，流量先转向模型的其他目标；全部目标都满了网关才拒绝。
//! 乘性减让过载的上游迅速得到喘息，加性增让恢复是渐进的，多个网关实例也不会同时把流量推回去。

use std::time::{Duration, Instant};

use crate::config::{AdaptiveSettings, ConcurrencySettings};

/// 错误率超过 `error_halve` 时的乘数。
const HALVE: f64 = 0.5;
/// 错误率超过 `error_reduce` 时的乘数。
const REDUCE: f64 = 0.7;
/// 平均延迟超过 `latency_severe_ms` 时的乘数。
const SEVERE_LATENCY: f64 = 0.6;
/// 平均延迟超过 `latency_slow_ms` 时的乘数。
const SLOW_LATENCY: f64 = 0.8;
/// 每次增长基准的这个比例（至少 1）。
const GROWTH_FRACTION: f64 = 0.1;
/// 不缩放的乘数。
const UNCHANGED: f64 = 1.0;

/// 一次评估的结论。
///
/// 用途：[`decide`] 的返回值；纯函数，便于单独测试各个阈值。
///
/// ```
/// use chatnexus::upstream::{decide, Step}; // 调整结论
/// let tuning = chatnexus::config::AdaptiveSettings::default(); // 缺省阈值
/// assert_eq!(decide(0.2, None, &tuning), Step::Scale(0.5)); // 错误率 20%：减半
/// assert_eq!(decide(0.0, Some(std::time::Duration::from_millis(100)), &tuning), Step::Grow); // 健康：增长
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// 乘以这个系数（小于 1）。
    Scale(f64),
    /// 增加基准的 1/10（至少 1）。
    Grow,
    /// 不变。
    Hold,
}

/// 按错误率与平均首字节延迟决定怎样调整：错误与延迟两条规则都要缩小时取更狠的那个；
/// 只有错误率低于 `error_grow` 且延迟不超过 `latency_slow_ms` 才增长。
pub fn decide(error_rate: f64, latency: Option<Duration>, tuning: &AdaptiveSettings) -> Step {
    let by_errors = ladder(
        error_rate,
        (tuning.error_halve, HALVE),
        (tuning.error_reduce, REDUCE),
    );
    let millis = latency.map_or(0, |l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX));
    let by_latency = ladder(
        millis,
        (tuning.latency_severe_ms, SEVERE_LATENCY),
        (tuning.latency_slow_ms, SLOW_LATENCY),
    );
    let factor = by_errors.min(by_latency);
    if factor < UNCHANGED {
        Step::Scale(factor)
    } else if error_rate < tuning.error_grow {
        Step::Grow
    } else {
        Step::Hold
    }
}

/// 两级阈值：超过高阈值取它的乘数，否则超过低阈值取低阈值的乘数，否则不变。
fn ladder<T: PartialOrd>(value: T, (high, severe): (T, f64), (low, mild): (T, f64)) -> f64 {
    if value > high {
        severe
    } else if value > low {
        mild
    } else {
        UNCHANGED
    }
}

/// 一个目标的自适应并发上限与当前评估窗口的样本。
///
/// 用途：`TargetState` 在锁内持有它（只在所属上游配置了 `concurrency` 时）。
///
/// ```
/// use std::time::Instant; // 时间
/// let settings = chatnexus::config::ConcurrencySettings { base: 10, floor: 2 }; // 基准 10
/// let a = chatnexus::upstream::Adaptive::new(settings, Instant::now()); // 从基准开始
/// assert_eq!(a.limit(), 10); // 当前上限
/// ```
#[derive(Debug, Clone)]
pub struct Adaptive {
    settings: ConcurrencySettings,
    limit: f64,
    window_start: Instant,
    samples: u32,
    errors: u32,
    latency_sum: Duration,
    latency_samples: u32,
}

/// 一次调整：调整前后的上限、窗口内的错误率与平均首字节延迟（写日志用）。
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// 调整前的上限。
    pub before: u32,
    /// 调整后的上限。
    pub after: u32,
    /// 窗口内的错误率。
    pub error_rate: f64,
    /// 窗口内的平均首字节延迟。
    pub latency: Option<Duration>,
}

impl Adaptive {
    /// 从基准开始。
    pub fn new(settings: ConcurrencySettings, now: Instant) -> Self {
        Adaptive {
            settings,
            limit: f64::from(settings.base),
            window_start: now,
            samples: 0,
            errors: 0,
            latency_sum: Duration::ZERO,
            latency_samples: 0,
        }
    }

    /// 当前上限（整数，已限制在 `[floor, 2 × base]` 内）。
    pub fn limit(&self) -> u32 {
        let ceiling = f64::from(self.settings.ceiling());
        self.limit
            .round()
            .clamp(f64::from(self.settings.floor), ceiling) as u32
    }

    /// 配置热重载后设置变了：从新的基准重新开始。返回是否重置。
    pub fn sync(&mut self, settings: ConcurrencySettings, now: Instant) -> bool {
        if self.settings == settings {
            return false;
        }
        *self = Adaptive::new(settings, now);
        true
    }

    /// 记一个样本（一次有结论的尝试）；评估间隔已过且样本足够时调整上限并开始新窗口。
    ///
    /// 参数：是否出错（故障或上游 429）、首字节延迟（没收到响应头时为 `None`）、时刻、阈值。
    /// 返回：上限有变化时为这次调整。
    pub fn record(
        &mut self,
        error: bool,
        latency: Option<Duration>,
        now: Instant,
        tuning: &AdaptiveSettings,
    ) -> Option<Change> {
        self.samples += 1;
        self.errors += u32::from(error);
        if let Some(latency) = latency {
            self.latency_sum += latency;
            self.latency_samples += 1;
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < tuning.interval() || self.samples < tuning.min_samples {
            return None;
        }
        let error_rate = f64::from(self.errors) / f64::from(self.samples);
        let latency = (self.latency_samples > 0).then(|| self.latency_sum / self.latency_samples);
        let before = self.limit();
        self.apply(decide(error_rate, latency, tuning));
        *self = Adaptive {
            limit: self.limit,
            ..Adaptive::new(self.settings, now)
        };
        let after = self.limit();
        (after != before).then_some(Change {
            before,
            after,
            error_rate,
            latency,
        })
    }

    fn apply(&mut self, step: Step) {
        let floor = f64::from(self.settings.floor);
        let ceiling = f64::from(self.settings.ceiling());
        let next = match step {
            Step::Scale(factor) => self.limit * factor,
            Step::Grow => self.limit + (f64::from(self.settings.base) * GROWTH_FRACTION).max(1.0),
            Step::Hold => self.limit,
        };
        self.limit = next.clamp(floor, ceiling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 阈值() -> AdaptiveSettings {
        AdaptiveSettings {
            interval_ms: 1000,
            min_samples: 10,
            ..AdaptiveSettings::default()
        }
    }

    /// 在一个评估窗口内记 `n` 个样本，其中 `errors` 个出错，每个延迟 `latency`；返回窗口结束时的调整。
    fn 一轮(
        a: &mut Adaptive,
        t: &mut Instant,
        n: u32,
        errors: u32,
        latency: u64,
    ) -> Option<Change> {
        let mut change = None;
        for i in 0..n {
            *t += Duration::from_millis(1000 / u64::from(n));
            let latency = Some(Duration::from_millis(latency));
            change = a.record(i < errors, latency, *t, &阈值()).or(change);
        }
        change
    }

    #[test]
    fn 阈值_与文档一致() {
        let t = 阈值();
        let ms = |v| Some(Duration::from_millis(v));
        assert_eq!(decide(0.11, ms(10), &t), Step::Scale(HALVE));
        assert_eq!(decide(0.06, ms(10), &t), Step::Scale(REDUCE));
        assert_eq!(decide(0.03, ms(10), &t), Step::Hold, "1% 到 5% 之间保持");
        assert_eq!(decide(0.0, ms(5_001), &t), Step::Scale(SEVERE_LATENCY));
        assert_eq!(decide(0.0, ms(2_001), &t), Step::Scale(SLOW_LATENCY));
        assert_eq!(decide(0.2, ms(2_500), &t), Step::Scale(HALVE), "取更狠的");
        assert_eq!(decide(0.0, ms(1_000), &t), Step::Grow);
    }

    #[test]
    fn 自适应_出错减半_有下限_恢复时加性增长且不超过两倍基准() {
        let settings = ConcurrencySettings { base: 20, floor: 3 };
        let mut t = Instant::now();
        let mut a = Adaptive::new(settings, t);
        let change = 一轮(&mut a, &mut t, 20, 10, 100).expect("错误率 50% 必须调整");
        assert_eq!((change.before, change.after), (20, 10));
        for _ in 0..5 {
            一轮(&mut a, &mut t, 20, 10, 100);
        }
        assert_eq!(a.limit(), 3, "不低于下限");
        let change = 一轮(&mut a, &mut t, 20, 0, 100).expect("健康时增长");
        assert_eq!((change.before, change.after), (3, 5), "每次加基准的 1/10");
        for _ in 0..40 {
            一轮(&mut a, &mut t, 20, 0, 100);
        }
        assert_eq!(a.limit(), 40, "不超过两倍基准");
    }

    #[test]
    fn 自适应_样本不足不评估_设置变化时重置() {
        let settings = ConcurrencySettings { base: 8, floor: 1 };
        let mut t = Instant::now();
        let mut a = Adaptive::new(settings, t);
        assert_eq!(一轮(&mut a, &mut t, 5, 5, 100), None, "5 个样本不够");
        assert!(!a.sync(settings, t));
        assert!(a.sync(ConcurrencySettings { base: 4, floor: 1 }, t));
        assert_eq!(a.limit(), 4);
    }
}
