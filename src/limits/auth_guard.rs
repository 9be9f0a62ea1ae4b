//! 鉴权失败的限流：在鉴权与读请求体之前，按客户端 IP 统计失败的鉴权次数（进程内的滑动窗口计数）。
//!
//! 为什么放在鉴权之前：多层限流在鉴权、读完请求体、验签与解析 JSON 之后才运行，401 洪水因此从不被限流，
//! 每个无效请求都让网关读入整个请求体。这里每个请求只做一次计数估计（纳秒级、没有 I/O）；
//! 同一 IP 在窗口内失败达到上限后，它的请求直接 429，不读请求体、不比对密钥。成功的鉴权不计数。

use std::net::{IpAddr, Ipv6Addr};

use super::local::LocalStage;
use super::verdict::seconds;
use crate::config::{canonical_ip, AuthFailureSettings};
use crate::error::ApiError;
use crate::metrics::METRICS;

/// 拒绝计数 `llm_limiter_refusals_total{layer}` 中本阶段的标签。
/// IPv6 客户端按 /64 网段计数：保留高 64 位。
const IPV6_NETWORK_MASK: u128 = !0 << 64;
const LABEL: &str = "auth_failures";
/// 429 信封中 `type` 的取值：按请求数限流。
const KIND: &str = "requests";

/// 按客户端 IP 统计鉴权失败的计数器。
///
/// 用途：[`super::Limiter`] 持有一个（跨配置热替换保留）；`proxy` 鉴权前调用 [`AuthGuard::check`]，
/// 鉴权失败后调用 [`AuthGuard::failed`]。
///
/// ```
/// use chatnexus::limits::AuthGuard; // 鉴权失败的限流
/// let guard = AuthGuard::default(); // 空
/// let settings = chatnexus::config::AuthFailureSettings { limit: 1, window_ms: 60_000 }; // 每分钟 1 次
/// let ip = Some("192.0.2.7".parse().unwrap()); // 客户端 IP
/// assert!(guard.check(&settings, ip).is_ok()); // 还没有失败
/// guard.failed(&settings, ip); // 失败一次
/// assert_eq!(guard.check(&settings, ip).unwrap_err().status, 429); // 之后的请求直接 429
/// ```
#[derive(Default)]
pub struct AuthGuard {
    counts: LocalStage,
}

impl AuthGuard {
    /// 鉴权之前：该 IP 在窗口内的失败次数已达上限时返回 429（带 `Retry-After`）。
    ///
    /// 不知道客户端 IP（如 Unix 套接字）时不限。
    pub fn check(
        &self,
        settings: &AuthFailureSettings,
        ip: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        let Some(ip) = ip else {
            return Ok(());
        };
        let (failures, left) = self.counts.peek(settings.window(), &subject(ip));
        if failures < settings.limit {
            return Ok(());
        }
        METRICS.limiter_refusals.with_label_values(&[LABEL]).inc();
        let wait = seconds(left);
        let message = format!(
            "来自该 IP 的鉴权失败次数过多：每 {} 秒最多 {} 次，请 {wait} 秒后重试",
            settings.window().as_secs(),
            settings.limit
        );
        Err(ApiError::rate_limited(KIND, message, wait))
    }

    /// 鉴权失败之后：给该 IP 记一次。
    pub fn failed(&self, settings: &AuthFailureSettings, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.counts.bump(settings.window(), &subject(ip));
        }
    }
}

/// 计数的主体：IPv4 为地址本身，IPv6 为所在 /64 网段（与每 IP 限流层一致）；直接哈希地址，不格式化成字符串。
fn subject(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & IPV6_NETWORK_MASK)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 鉴权失败_达到上限后该_ip_被拒_其他_ip_不受影响() {
        let guard = AuthGuard::default();
        let settings = AuthFailureSettings {
            limit: 3,
            window_ms: 60_000,
        };
        let (bad, good) = (
            Some("198.51.100.1".parse().expect("地址")),
            Some("198.51.100.2".parse().expect("地址")),
        );
        for _ in 0..3 {
            assert!(guard.check(&settings, bad).is_ok(), "未达上限时放行");
            guard.failed(&settings, bad);
        }
        let error = guard.check(&settings, bad).expect_err("第四次直接 429");
        assert_eq!(
            (error.status, Some(error.envelope_code())),
            (429, Some("rate_limit_exceeded"))
        );
        assert!(
            error.retry_after.is_some_and(|s| s >= 1),
            "必须带 Retry-After"
        );
        assert!(guard.check(&settings, good).is_ok(), "其他 IP 不受影响");
        assert!(guard.check(&settings, None).is_ok(), "没有 IP 时不限");
    }
}
