//! 峰值敏感的指数加权移动平均（peak-EWMA）：估计一个目标的首字节延迟。
//!
//! 与 Finagle、Linkerd 的做法相同：样本高于当前估计时立即取样本（对变慢反应快），低于时按距上次样本的
//! 时间做指数加权（对变快反应慢，不被一次偶然的快响应骗到）；读取时估计随闲置时间向 0 衰减，
//! 长期没被选中的目标因此会被重新试用，它恢复了就能被发现。

use std::time::{Duration, Instant};

/// 还没有任何样本时假定的首字节延迟。
///
/// 取一个不太悲观的值：新目标（或重载后新增的目标）很快会被试用并得到真实样本。
pub const INITIAL_LATENCY: Duration = Duration::from_millis(500);

/// 一个目标的延迟估计。
///
/// 用途：`TargetState` 在每次收到上游响应头时记录样本，选择目标时读取估计。
///
/// ```
/// use std::time::{Duration, Instant}; // 时间类型
/// use chatnexus::upstream::PeakEwma; // 延迟估计
/// let start = Instant::now(); // 起点
/// let decay = Duration::from_secs(10); // 衰减时间常数
/// let mut ewma = PeakEwma::new(start); // 初始估计 500 毫秒
/// ewma.observe(Duration::from_secs(2), start, decay); // 一个更慢的样本
/// assert_eq!(ewma.estimate(start, decay), Duration::from_secs(2)); // 峰值立即生效
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PeakEwma {
    /// 当前估计（纳秒）。
    cost_ns: f64,
    /// 上次样本的时间。
    stamp: Instant,
}

impl PeakEwma {
    /// 以 [`INITIAL_LATENCY`] 为初始估计创建。
    pub fn new(now: Instant) -> Self {
        PeakEwma {
            cost_ns: INITIAL_LATENCY.as_nanos() as f64,
            stamp: now,
        }
    }

    /// 记录一个样本。
    ///
    /// 参数：样本延迟、样本时间、衰减时间常数（必须大于 0，配置校验保证）。
    pub fn observe(&mut self, sample: Duration, now: Instant, decay: Duration) {
        let sample_ns = sample.as_nanos() as f64;
        if sample_ns > self.cost_ns {
            self.cost_ns = sample_ns;
        } else {
            let w = self.weight(now, decay);
            self.cost_ns = self.cost_ns * w + sample_ns * (1.0 - w);
        }
        self.stamp = self.stamp.max(now);
    }

    /// 当前估计：上次样本的估计按闲置时间向 0 衰减。
    pub fn estimate(&self, now: Instant, decay: Duration) -> Duration {
        Duration::from_nanos((self.cost_ns * self.weight(now, decay)) as u64)
    }

    /// 旧估计的权重 `exp(-闲置时间 / 时间常数)`。
    fn weight(&self, now: Instant, decay: Duration) -> f64 {
        let idle = now.saturating_duration_since(self.stamp).as_secs_f64();
        let tau = decay.as_secs_f64().max(f64::MIN_POSITIVE);
        (-idle / tau).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 测试用的衰减时间常数。
    const 时间常数: Duration = Duration::from_secs(10);

    fn 毫秒(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn 峰值_更慢的样本立即成为估计() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(t0);
        e.observe(毫秒(3000), t0, 时间常数);
        assert_eq!(e.estimate(t0, 时间常数), 毫秒(3000));
    }

    #[test]
    fn 平滑_更快的样本按时间加权_间隔越长越接近新样本() {
        let t0 = Instant::now();
        let mut 短间隔 = PeakEwma::new(t0);
        短间隔.observe(毫秒(1000), t0, 时间常数);
        let mut 长间隔 = 短间隔;
        短间隔.observe(毫秒(100), t0 + 毫秒(100), 时间常数);
        长间隔.observe(毫秒(100), t0 + 毫秒(20_000), 时间常数);
        let (a, b) = (
            短间隔.estimate(t0 + 毫秒(100), 时间常数),
            长间隔.estimate(t0 + 毫秒(20_000), 时间常数),
        );
        assert!(a > 毫秒(900), "0.1 秒后的快样本只能拉低一点点：{a:?}");
        assert!(b < 毫秒(300), "20 秒后的快样本几乎取代旧估计：{b:?}");
        assert!(b > 毫秒(100), "旧估计仍占一部分权重：{b:?}");
    }

    #[test]
    fn 衰减_闲置越久估计越小() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(t0);
        e.observe(毫秒(2000), t0, 时间常数);
        let 一个时间常数后 = e.estimate(t0 + 时间常数, 时间常数);
        let 期望 = 2000.0 * (-1.0f64).exp();
        assert!(
            (一个时间常数后.as_secs_f64() * 1000.0 - 期望).abs() < 1.0,
            "{一个时间常数后:?}"
        );
        assert!(e.estimate(t0 + 时间常数 * 10, 时间常数) < 毫秒(1));
    }

    #[test]
    fn 初始估计_没有样本时取缺省值() {
        let t0 = Instant::now();
        assert_eq!(PeakEwma::new(t0).estimate(t0, 时间常数), INITIAL_LATENCY);
    }
}
