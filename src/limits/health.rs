//! 限流用的 Redis 的健康状况：失败后一段时间内直接用本地限流（不让每个请求都等一次超时），
//! 之后只放一个请求去试；告警按间隔限频；恢复时记一条日志。

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::logging::WarnGate;
use crate::metrics::METRICS;
use crate::redis_link::RedisFailure;

/// “健康，不需要等待”的标记。
const HEALTHY: u64 = 0;

/// Redis 的健康状况（全部为原子量，无锁）。
pub struct RedisHealth {
    epoch: Instant,
    /// 在这个时刻（自 `epoch` 起的毫秒数）之前不试 Redis；0 表示健康。
    retry_at: AtomicU64,
    warn: WarnGate,
    degraded: AtomicBool,
}

impl Default for RedisHealth {
    fn default() -> Self {
        RedisHealth {
            epoch: Instant::now(),
            retry_at: AtomicU64::new(HEALTHY),
            warn: WarnGate::default(),
            degraded: AtomicBool::new(false),
        }
    }
}

impl RedisHealth {
    /// 现在要不要去问 Redis：健康时总是要；失败后等待期内不要；等待期满时只有抢到试探名额的请求去问，
    /// 并顺延下一次试探，其余请求继续用本地限流。
    pub fn should_try(&self, retry: Duration) -> bool {
        let at = self.retry_at.load(Ordering::Acquire);
        if at == HEALTHY {
            return true;
        }
        let now = self.now_ms();
        now >= at
            && self
                .retry_at
                .compare_exchange(at, now + millis(retry), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// 报告一次成功：回到健康；之前降级过就记一条恢复日志。
    pub fn succeeded(&self, addr: &str) {
        if self.retry_at.load(Ordering::Acquire) != HEALTHY {
            self.retry_at.store(HEALTHY, Ordering::Release);
        }
        if self.degraded.swap(false, Ordering::AcqRel) {
            info!("限流用的 Redis {addr} 已恢复，重新按全部实例共享的额度限流");
        }
    }

    /// 报告一次失败：计数，进入等待期，按间隔告警。
    ///
    /// 参数：失败、操作名（指标标签）、等待期、告警间隔、实例数（写进告警说明本地份额）。
    pub fn failed(
        &self,
        failure: &RedisFailure,
        op: &str,
        retry: Duration,
        interval: Duration,
        instances: u32,
    ) {
        METRICS.redis_errors.with_label_values(&[op]).inc();
        let now = self.now_ms();
        self.retry_at.store(now + millis(retry), Ordering::Release);
        self.degraded.store(true, Ordering::Release);
        if self.warn.due(interval) {
            warn!(
                "{failure}：限流改用本地阶段（每个实例按上限的 1/{instances}），{} 毫秒后再试；{} 毫秒内不再重复告警",
                millis(retry),
                millis(interval)
            );
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }
}

/// 时长的毫秒数（溢出时取最大值，至少 1，使“健康”标记 0 永远不会被当作时刻）。
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 失败后等待期内不试_期满只放一个试探_成功即恢复() {
        let health = RedisHealth::default();
        let retry = Duration::from_millis(30);
        let interval = Duration::from_secs(60);
        assert!(health.should_try(retry), "健康时总是去问 Redis");
        let failure = RedisFailure {
            addr: "127.0.0.1:1".into(),
            reason: "连接被拒绝".into(),
        };
        health.failed(&failure, "admit", retry, interval, 2);
        assert!(!health.should_try(retry), "等待期内直接用本地限流");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !health.should_try(retry) {
            assert!(Instant::now() < deadline, "等待期满后必须放一个试探请求");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!health.should_try(retry), "试探名额只有一个");
        health.succeeded("127.0.0.1:1");
        assert!(
            health.should_try(retry) && health.should_try(retry),
            "恢复后每个请求都去问 Redis"
        );
    }
}
