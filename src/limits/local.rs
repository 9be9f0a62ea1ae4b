//! 本地阶段：每个网关实例自己的计数（[`Windowed`]：无锁的 count-min sketch 滑动窗口，纳秒级、没有 I/O）。
//!
//! 先计数再判断（超限就撤回），并发请求不会一起挤过上限；任何一层超限时撤回本请求在各层的计数，
//! 所以本地计数只包含本实例放行的请求——Redis 不可用时它正好接上，作为本实例的份额继续限流。
//! 一次准入只读一次时钟，同一窗口长度的计数器只查一次表，每层的主体只哈希一次（剖析中这些曾是限流开销的大头）。

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::layer::{Check, Kind};
use super::verdict::{Quota, Refusal};
use super::window::{Reading, Windowed};

/// 每层至多的计数种类数（请求数与 token）。
const KINDS_PER_LAYER: usize = 2;

/// 计数的键：（层、主体）预先哈希成的整数与计数种类（请求数与 token 在同一窗口长度的计数器里互不干扰）。
type Key = (u64, Kind);

/// 本请求在一个本地计数上记下的量，用于撤回与结算。
pub struct LocalCharge {
    counter: Arc<Windowed>,
    key: Key,
    amount: u64,
    /// 计数所在的固定窗口序号。
    window: u64,
}

impl fmt::Debug for LocalCharge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalCharge({:?}, {})", self.key.1, self.amount)
    }
}

impl LocalCharge {
    /// 按实际用量调整记下的量：`delta` 为实际减预留（负数即退还）；`now` 是调用方读的一次时钟。
    ///
    /// 退还只在计数所在的窗口还是当前窗口时进行（见 [`Windowed::adjust`]）。
    pub fn adjust(&self, delta: i64, now: Instant) {
        let now = self.counter.millis(now);
        self.counter.adjust(&self.key, delta, self.window, now);
    }

    /// 撤回全部记下的量（本请求最终被拒绝）。
    fn revert(&self, now: Instant) {
        self.adjust(-i64::try_from(self.amount).unwrap_or(i64::MAX), now);
    }

    /// 是否是 token 计数（结算时只调整 token）。
    pub fn is_tokens(&self) -> bool {
        self.key.1 == Kind::Tokens
    }
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

/// 本地阶段：按窗口长度各建一个滑动窗口计数器，键里区分种类、层与主体。
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
    /// 各窗口长度的计数器：配置里的窗口长度只有几种，按顺序比较比哈希查表省。
    counters: RwLock<Vec<(Duration, Arc<Windowed>)>>,
    /// 把（层、主体）哈希成一个整数：每层只哈希一次主体字符串，之后 count-min sketch 的多次哈希都只处理整数；
    /// 随机种子让外部无法构造碰撞。
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
        let (now, mut recent) = (Instant::now(), None);
        for check in checks {
            let subject = self.hasher.hash_one((check.layer, check.subject.as_str()));
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
                    LocalStage::revert_at(&charges, now);
                    return LocalVerdict::Refused(refusal(None));
                }
                let (charge, reading) = charge(
                    self.reuse(&mut recent, window),
                    (subject, kind),
                    amount,
                    now,
                );
                charges.push(charge);
                if reading.used > limit {
                    LocalStage::revert_at(&charges, now);
                    return LocalVerdict::Refused(refusal(Some(reading.left)));
                }
                let (layer, remaining) = (check.layer, limit - reading.used);
                let reset = reading.left + window;
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

    /// 只读：一个主体在滑动窗口内的计数估计，以及当前固定窗口还剩多久（一次查询，不计入）。
    ///
    /// 用途：鉴权失败的限流（[`super::AuthGuard`]）在每个请求鉴权之前查一次，成功的请求只付出这一次查询。
    pub fn peek<K: Hash + ?Sized>(&self, window: Duration, subject: &K) -> (u64, Duration) {
        let counter = self.counter(window);
        let key = (self.hasher.hash_one(subject), Kind::Requests);
        let reading = counter.peek(&key, counter.millis(Instant::now()));
        (reading.used, reading.left)
    }

    /// 给一个主体记一次（与 [`LocalStage::peek`] 配对使用）。
    pub fn bump<K: Hash + ?Sized>(&self, window: Duration, subject: &K) {
        let counter = self.counter(window);
        let key = (self.hasher.hash_one(subject), Kind::Requests);
        counter.add(&key, 1, counter.millis(Instant::now()));
    }

    /// 撤回一组记下的量（分布式阶段拒绝了，或要按另一份额重新判定）。
    pub fn revert(charges: &[LocalCharge]) {
        LocalStage::revert_at(charges, Instant::now());
    }

    /// 按同一个时钟读数撤回一组记下的量。
    fn revert_at(charges: &[LocalCharge], now: Instant) {
        charges.iter().for_each(|c| c.revert(now));
    }

    /// 取计数器：与上一次是同一窗口长度时直接复用（一个请求的各层多半共用一两种窗口长度），不再取读锁查表。
    fn reuse(
        &self,
        recent: &mut Option<(Duration, Arc<Windowed>)>,
        window: Duration,
    ) -> Arc<Windowed> {
        match recent {
            Some((known, counter)) if *known == window => Arc::clone(counter),
            _ => {
                let counter = self.counter(window);
                *recent = Some((window, Arc::clone(&counter)));
                counter
            }
        }
    }

    /// 取得（没有时建立）某个窗口长度的计数器。
    fn counter(&self, window: Duration) -> Arc<Windowed> {
        let known = self.counters.read().unwrap_or_else(|p| p.into_inner());
        if let Some(counter) = find_existing(&known, window) {
            return Arc::clone(counter);
        }
        drop(known);
        let mut counters = self.counters.write().unwrap_or_else(|p| p.into_inner());
        // 拿到写锁之前别的请求可能已经建好了
        if let Some(counter) = find_existing(&counters, window) {
            return Arc::clone(counter);
        }
        let counter = Arc::new(Windowed::new(window));
        counters.push((window, Arc::clone(&counter)));
        counter
    }
}

/// 在计数器表里找某个窗口长度的计数器。
fn find_existing(
    counters: &[(Duration, Arc<Windowed>)],
    window: Duration,
) -> Option<&Arc<Windowed>> {
    counters.iter().find(|(w, _)| *w == window).map(|(_, c)| c)
}

/// 在一个计数器上给（层与主体的哈希、种类）记下 `amount`。
///
/// 返回：记下的量与含本次的读数。
fn charge(counter: Arc<Windowed>, key: Key, amount: u64, now: Instant) -> (LocalCharge, Reading) {
    let reading = counter.add(&key, amount, counter.millis(now));
    let charge = LocalCharge {
        counter,
        key,
        amount,
        window: reading.window,
    };
    (charge, reading)
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
        charges[0].adjust(100 - 800, Instant::now());
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
