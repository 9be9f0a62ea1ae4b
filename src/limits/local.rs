//! 本地阶段：每个网关实例自己的计数（`pingora_limits::Rate`，无锁的 count-min sketch，纳秒级、没有 I/O）。
//!
//! `Rate` 按固定窗口计数并保留上一个窗口；这里用 Cloudflare 的比例估计把它变成滑动窗口：
//! 估计值 = 上一窗口计数 ×（1 − 当前窗口已过的比例）+ 当前窗口计数。
//! 先计数再判断（超限就撤回），并发请求不会一起挤过上限；任何一层超限时撤回本请求在各层的计数，
//! 所以本地计数只包含本实例放行的请求——Redis 不可用时它正好接上，作为本实例的份额继续限流。

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use pingora_limits::rate::{Rate, RateComponents};

use super::layer::{Check, Kind};
use super::verdict::{Quota, Refusal};

/// count-min sketch 的哈希函数个数。
const HASHES: usize = 4;
/// 每层至多的计数种类数（请求数与 token）。
const KINDS_PER_LAYER: usize = 2;
/// 每个哈希函数的槽数：主体（密钥、IP）很多时槽少会因碰撞高估，提前拒绝。
const SLOTS: usize = 8192;

/// 本请求在一个本地计数上记下的量，用于撤回与结算。
pub struct LocalCharge {
    rate: Arc<Rate>,
    /// 计数的键：（种类、层、主体）预先哈希成的 64 位整数。
    key: u64,
    kind: Kind,
    amount: u64,
    /// 计数所在固定窗口的结束时刻（由 `Rate` 报告的窗口进度推算）。
    window_end: Instant,
}

impl fmt::Debug for LocalCharge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalCharge({:?}, {})", self.kind, self.amount)
    }
}

impl LocalCharge {
    /// 按实际用量调整记下的量：`delta` 为实际减预留（负数即退还）。
    ///
    /// 退还只在计数所在的窗口还是当前窗口时进行：窗口已轮换时旧计数只剩逐渐衰减的权重，
    /// 把负数记到新窗口会让它低估、多放请求。
    pub fn adjust(&self, delta: i64) {
        if delta > 0 {
            self.rate.observe(&self.key, clamp(delta.unsigned_abs()));
        } else if delta < 0 && self.in_current_window() {
            self.rate.observe(&self.key, -clamp(delta.unsigned_abs()));
        }
    }

    /// 撤回全部记下的量（本请求最终被拒绝）。
    fn revert(&self) {
        self.adjust(-i64::try_from(self.amount).unwrap_or(i64::MAX));
    }

    /// 是否是 token 计数（结算时只调整 token）。
    pub fn is_tokens(&self) -> bool {
        self.kind == Kind::Tokens
    }

    /// 计数所在的窗口是否仍是当前窗口。
    ///
    /// `Rate` 在窗口到期后的第一次访问时才轮换，所以到期之前一定还是同一个窗口；只比一次时钟，
    /// 不必再让 `Rate` 把两个窗口的 count-min sketch 各查一遍（剖析中限流开销的一半来自这类查询）。
    fn in_current_window(&self) -> bool {
        Instant::now() < self.window_end
    }
}

/// 当前固定窗口还剩多久。
fn left_of(c: &RateComponents) -> Duration {
    c.interval.mul_f64(1.0 - c.current_interval_fraction)
}

/// 计数值转换为 `isize`（溢出时取最大值）。
fn clamp(value: u64) -> isize {
    isize::try_from(value).unwrap_or(isize::MAX)
}

/// 本地阶段的判定。
#[derive(Debug)]
pub enum LocalVerdict {
    /// 全部通过：各层额度与本请求记下的量。
    Admitted {
        /// 各层各种计数的额度。
        quotas: Vec<Quota>,
        /// 本请求记下的量。
        charges: Vec<LocalCharge>,
    },
    /// 被拒绝（已撤回本请求在各层记下的量）。
    Refused(Refusal),
}

/// 本地阶段：按窗口长度各建一个 `Rate`，键里区分种类、层与主体。
///
/// 用途：`Limiter` 持有一个，跨配置热替换保留（窗口不变的计数接着用）。
///
/// ```
/// use chatnexus::limits::{Check, Layer, LocalStage, LocalVerdict}; // 本地阶段
/// let local = LocalStage::default(); // 空
/// let check = Check { layer: Layer::Global, subject: String::new(), requests: Some(1), window: std::time::Duration::from_secs(60), tokens: None, on_failure: Default::default() }; // 每分钟 1 次
/// assert!(matches!(local.admit(&[check.clone()], 0, 1), LocalVerdict::Admitted { .. })); // 第一次放行
/// assert!(matches!(local.admit(&[check], 0, 1), LocalVerdict::Refused(_))); // 第二次拒绝
/// ```
#[derive(Default)]
pub struct LocalStage {
    /// 各窗口长度的计数器：配置里的窗口长度只有几种，按顺序比较比哈希查表省（每个请求查五六次）。
    rates: RwLock<Vec<(Duration, Arc<Rate>)>>,
    /// 把（种类、层、主体）哈希成一个整数：每个计数只哈希一次主体字符串，
    /// 之后 count-min sketch 的多次哈希都只处理 8 个字节；随机种子让外部无法构造碰撞。
    hasher: RandomState,
}

impl LocalStage {
    /// 检查并计入全部层；任何一层超限时撤回已记下的量并拒绝。
    ///
    /// 参数：检查、本请求预留的 token 数、份额（上限按 `上限 ÷ share` 向上取整；有 Redis 时为 1）。
    /// 单个请求的量本身就超过上限时在计数之前拒绝：超大的量（如 `max_tokens` 填 2⁶³−1）
    /// 永远不进计数器，计数器也就不会回绕成负数。
    pub fn admit(&self, checks: &[Check], tokens: u64, share: u32) -> LocalVerdict {
        // 每层至多两种计数（请求数与 token），一次分配到位
        let mut quotas = Vec::with_capacity(checks.len() * KINDS_PER_LAYER);
        let mut charges = Vec::with_capacity(checks.len() * KINDS_PER_LAYER);
        let now = Instant::now();
        for check in checks {
            for (kind, limit, window, amount) in check.limits(tokens) {
                let limit = limit.div_ceil(u64::from(share.max(1)));
                let refusal = |retry_after| Refusal {
                    layer: check.layer,
                    kind,
                    limit,
                    window,
                    requested: amount,
                    retry_after,
                };
                if amount > limit {
                    LocalStage::revert(&charges);
                    return LocalVerdict::Refused(refusal(None));
                }
                let (charge, used, left) = self.charge(check, kind, window, amount, now);
                charges.push(charge);
                if used > limit {
                    LocalStage::revert(&charges);
                    return LocalVerdict::Refused(refusal(Some(left)));
                }
                let (layer, remaining, reset) = (check.layer, limit - used, left + window);
                quotas.push(Quota {
                    layer,
                    kind,
                    limit,
                    remaining,
                    reset,
                });
            }
        }
        LocalVerdict::Admitted { quotas, charges }
    }

    /// 在一层一种计数上记下 `amount`。
    ///
    /// 返回：（记下的量、含本次的滑动窗口用量、当前固定窗口还剩多久）。
    fn charge(
        &self,
        check: &Check,
        kind: Kind,
        window: Duration,
        amount: u64,
        now: Instant,
    ) -> (LocalCharge, u64, Duration) {
        let key = self
            .hasher
            .hash_one((kind, check.layer, check.subject.as_str()));
        let rate = self.rate(window);
        let (used, left) = count(&rate, key, amount);
        let charge = LocalCharge {
            rate,
            key,
            kind,
            amount,
            window_end: now + left,
        };
        (charge, used, left)
    }

    /// 只读：一个主体在滑动窗口内的计数估计，以及当前固定窗口还剩多久（一次查询，不计入）。
    ///
    /// 用途：鉴权失败的限流（[`super::AuthGuard`]）在每个请求鉴权之前查一次，成功的请求只付出这一次查询。
    pub fn peek<K: Hash + ?Sized>(&self, window: Duration, subject: &K) -> (u64, Duration) {
        let key = self.hasher.hash_one(subject);
        let (estimate, left) = self.rate(window).rate_with(&key, |c| {
            (
                previous_share(&c) + c.curr_samples.max(0) as f64,
                left_of(&c),
            )
        });
        (estimate.ceil() as u64, left)
    }

    /// 给一个主体记一次（与 [`LocalStage::peek`] 配对使用）。
    pub fn bump<K: Hash + ?Sized>(&self, window: Duration, subject: &K) {
        let key = self.hasher.hash_one(subject);
        self.rate(window).observe(&key, 1);
    }

    /// 撤回一组记下的量（分布式阶段拒绝了，或要按另一份额重新判定）。
    pub fn revert(charges: &[LocalCharge]) {
        charges.iter().for_each(LocalCharge::revert);
    }

    /// 取得（没有时建立）某个窗口长度的计数器。
    fn rate(&self, window: Duration) -> Arc<Rate> {
        if let Some(rate) = find_rate(
            &self.rates.read().unwrap_or_else(|p| p.into_inner()),
            window,
        ) {
            return rate;
        }
        let mut rates = self.rates.write().unwrap_or_else(|p| p.into_inner());
        // 拿到写锁之前别的请求可能已经建好了
        if let Some(rate) = find_rate(&rates, window) {
            return rate;
        }
        let rate = Arc::new(Rate::new_with_estimator_config(window, HASHES, SLOTS));
        rates.push((window, Arc::clone(&rate)));
        rate
    }
}

/// 在计数器表里找某个窗口长度的计数器。
fn find_rate(rates: &[(Duration, Arc<Rate>)], window: Duration) -> Option<Arc<Rate>> {
    rates
        .iter()
        .find(|(w, _)| *w == window)
        .map(|(_, rate)| Arc::clone(rate))
}

/// 先记下 `amount`，再按比例估计算出滑动窗口内的用量（含本次）。
///
/// 返回：（用量, 当前固定窗口还剩多久）。
fn count(rate: &Rate, key: u64, amount: u64) -> (u64, Duration) {
    let (previous, left) = rate.rate_with(&key, |c| (previous_share(&c), left_of(&c)));
    let current = rate.observe(&key, clamp(amount));
    ((previous + current.max(0) as f64).ceil() as u64, left)
}

/// 上一窗口的计数在滑动窗口中还占的份额：上一窗口计数 ×（1 − 当前窗口已过的比例）。
fn previous_share(c: &RateComponents) -> f64 {
    c.prev_samples.max(0) as f64 * (1.0 - c.current_interval_fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FailureMode;
    use crate::limits::layer::{Layer, TOKEN_WINDOW};

    fn 检查(layer: Layer, subject: &str, requests: Option<u64>, tokens: Option<u64>) -> Check {
        Check {
            layer,
            subject: subject.to_string(),
            requests,
            window: TOKEN_WINDOW,
            tokens,
            on_failure: FailureMode::Open,
        }
    }

    fn 放行(v: &LocalVerdict) -> bool {
        matches!(v, LocalVerdict::Admitted { .. })
    }

    #[test]
    fn 本地_一层拒绝时不消耗其他层() {
        let local = LocalStage::default();
        let global = 检查(Layer::Global, "", Some(10), None);
        let key = 检查(Layer::Key, "甲", Some(2), None);
        let both = [global.clone(), key];
        assert!(放行(&local.admit(&both, 0, 1)));
        assert!(放行(&local.admit(&both, 0, 1)));
        match local.admit(&both, 0, 1) {
            LocalVerdict::Refused(r) => assert_eq!((r.layer, r.limit), (Layer::Key, 2)),
            other => panic!("第三个请求应被密钥层拒绝：{other:?}"),
        }
        let alone = [global];
        for _ in 0..8 {
            assert!(
                放行(&local.admit(&alone, 0, 1)),
                "被拒绝的请求不能占用全局额度"
            );
        }
        assert!(!放行(&local.admit(&alone, 0, 1)), "全局第 11 个请求被拒绝");
    }

    #[test]
    fn 本地_份额按实例数分摊上限() {
        let local = LocalStage::default();
        let global = [检查(Layer::Global, "", Some(10), None)];
        let admitted = (0..10)
            .filter(|_| 放行(&local.admit(&global, 0, 3)))
            .count();
        assert_eq!(admitted, 4, "10 ÷ 3 向上取整为 4");
    }

    #[test]
    fn 本地_超大预留在计数之前被拒_计数器不回绕() {
        let local = LocalStage::default();
        let key = [检查(Layer::Key, "庚", None, Some(1000))];
        assert!(放行(&local.admit(&key, 920, 1)), "第一个 920 放行");
        match local.admit(&key, u64::MAX, 1) {
            LocalVerdict::Refused(r) => assert_eq!(
                (r.retry_after, r.requested),
                (None, u64::MAX),
                "单个请求就超过上限：永远不会被接受"
            ),
            other => panic!("超大预留必须被拒绝：{other:?}"),
        }
        for _ in 0..8 {
            assert!(
                !放行(&local.admit(&key, 920, 1)),
                "超大预留不能让计数回绕成负数而放过后续请求"
            );
        }
    }

    #[test]
    fn 本地_只读估计不计入_记一次后估计加一() {
        let local = LocalStage::default();
        let window = Duration::from_secs(60);
        assert_eq!(local.peek(window, "192.0.2.1").0, 0);
        local.bump(window, "192.0.2.1");
        local.bump(window, "192.0.2.1");
        assert_eq!(local.peek(window, "192.0.2.1").0, 2, "只读估计不改变计数");
        assert_eq!(local.peek(window, "192.0.2.2").0, 0, "不同主体互不影响");
    }

    #[test]
    fn 本地_token_预留超限被拒_结算退还后可再用() {
        let local = LocalStage::default();
        let key = [检查(Layer::Key, "乙", None, Some(1000))];
        let LocalVerdict::Admitted { charges, quotas } = local.admit(&key, 800, 1) else {
            panic!("第一次预留 800 应放行");
        };
        assert_eq!(quotas[0].remaining, 200);
        assert!(!放行(&local.admit(&key, 300, 1)), "只剩 200");
        charges[0].adjust(100 - 800);
        assert!(
            放行(&local.admit(&key, 300, 1)),
            "实际只用了 100，退还后够用"
        );
        match local.admit(&key, 5000, 1) {
            LocalVerdict::Refused(r) => {
                assert_eq!(r.retry_after, None, "超过上限本身的请求永远不会被接受")
            }
            other => panic!("应拒绝：{other:?}"),
        }
    }
}
