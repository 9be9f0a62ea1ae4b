//! 一个窗口长度的滑动窗口计数：两个 count-min sketch（`pingora_limits` 的 `Estimator`）轮流记当前与上一个固定窗口。
//!
//! 固定窗口按计数器建立的时刻对齐（第 `n` 个窗口是 `[n × 长度, (n + 1) × 长度)`），每个槽记着自己装的是第几个窗口；
//! 滑动窗口的估计用 Cloudflare 的比例法：上一窗口计数 ×（1 − 当前窗口已过的比例）+ 当前窗口计数。
//!
//! 为什么不用 `pingora_limits::rate::Rate`：它的每次查询与计数都各读一次时钟、各自判断要不要轮换，
//! 一次准入要把每个键的两个窗口都查一遍再计一次（十二次哈希）；这里调用方一次准入只读一次时钟传进来，
//! 计数时只查上一窗口、只加当前窗口（八次哈希），结算时也按传入的时刻判断窗口是否已经轮换。

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pingora_limits::estimator::Estimator;

/// count-min sketch 的哈希函数个数。
const HASHES: usize = 4;
/// 每个哈希函数的槽数：主体（密钥、IP）很多时槽少会因碰撞高估，提前拒绝。
const SLOTS: usize = 8192;
/// 固定窗口的槽数：当前与上一个。
const SLOT_COUNT: u64 = 2;
/// 还没装过任何窗口的槽的标记。
const EMPTY: u64 = 0;

/// 计数器里的一个时刻：自计数器建立起的毫秒数（调用方读一次时钟，换算后传给每次计数与查询）。
pub(super) type Millis = u64;

/// 一次计数或查询的读数。
#[derive(Debug, Clone, Copy)]
pub(super) struct Reading {
    /// 滑动窗口内的用量估计（计数时含本次）。
    pub used: u64,
    /// 当前固定窗口还剩多久。
    pub left: Duration,
    /// 当前固定窗口的序号（结算时据此判断窗口是否已经轮换）。
    pub window: u64,
}

/// 一个窗口长度的滑动窗口计数器。
///
/// 用途：本地限流阶段每种窗口长度建一个，所有主体共用（键是主体的哈希）。
pub(super) struct Windowed {
    slots: [Estimator; 2],
    /// 每个槽装的是第几个固定窗口再加一（0 表示还没装过任何窗口）。
    filled: [AtomicU64; 2],
    length_ms: u64,
    epoch: Instant,
}

impl Windowed {
    /// 建一个固定窗口长度为 `length` 的计数器（不足 1 毫秒按 1 毫秒）。
    pub(super) fn new(length: Duration) -> Self {
        Windowed {
            slots: [Estimator::new(HASHES, SLOTS), Estimator::new(HASHES, SLOTS)],
            filled: [AtomicU64::new(EMPTY), AtomicU64::new(EMPTY)],
            length_ms: u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(1),
            epoch: Instant::now(),
        }
    }

    /// 把一个时钟读数换算成本计数器的时刻。
    pub(super) fn millis(&self, now: Instant) -> Millis {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// 给 `key` 记下 `amount`，返回含本次的滑动窗口用量估计。
    pub(super) fn add<K: Hash>(&self, key: &K, amount: u64, now: Millis) -> Reading {
        let window = now / self.length_ms;
        let current = self.current(window).incr(key, clamp(amount));
        self.reading(key, window, current, now)
    }

    /// 只读：`key` 的滑动窗口用量估计（不计入）。
    pub(super) fn peek<K: Hash>(&self, key: &K, now: Millis) -> Reading {
        let window = now / self.length_ms;
        let current = self.holding(window).map_or(0, |slot| slot.get(key));
        self.reading(key, window, current, now)
    }

    /// 调整第 `window` 个窗口里记下的量：增加的记进当前窗口；减少（退还、撤回）只在那个窗口仍是当前窗口时进行，
    /// 窗口已轮换时旧计数只剩逐渐衰减的权重，把负数记到新窗口会让它低估、多放请求。
    pub(super) fn adjust<K: Hash>(&self, key: &K, delta: i64, window: u64, now: Millis) {
        let current = now / self.length_ms;
        if delta > 0 {
            self.current(current).incr(key, clamp(delta.unsigned_abs()));
        } else if delta < 0 && current == window {
            if let Some(slot) = self.holding(window) {
                slot.incr(key, -clamp(delta.unsigned_abs()));
            }
        }
    }

    /// 由当前窗口的计数补上上一窗口的衰减份额，得到读数。
    fn reading<K: Hash>(&self, key: &K, window: u64, current: isize, now: Millis) -> Reading {
        let into = now % self.length_ms;
        let previous = window
            .checked_sub(1)
            .and_then(|w| self.holding(w))
            .map_or(0, |slot| slot.get(key));
        // 上一窗口的份额 = 计数 × 剩余比例，整数运算向上取整（估计偏高只会提前拒绝，不会多放）
        let remaining_ms = self.length_ms - into;
        let weighted = (non_negative(previous) * u128::from(remaining_ms))
            .div_ceil(u128::from(self.length_ms));
        let used = non_negative(current) + weighted;
        Reading {
            used: u64::try_from(used).unwrap_or(u64::MAX),
            left: Duration::from_millis(remaining_ms),
            window,
        }
    }

    /// 装着第 `window` 个窗口的槽（没有时为 `None`）。
    fn holding(&self, window: u64) -> Option<&Estimator> {
        let index = slot_index(window);
        (self.filled[index].load(Ordering::Acquire) == tag(window)).then(|| &self.slots[index])
    }

    /// 第 `window` 个窗口的槽：槽里还是更早的窗口时先清零再换上（只有一个调用方赢得轮换）。
    ///
    /// 与 `pingora_limits::rate::Rate` 一样不加锁：轮换的瞬间别的线程同时记下的少量计数可能被清掉，
    /// 每个窗口边界至多影响几个并发请求。
    fn current(&self, window: u64) -> &Estimator {
        let index = slot_index(window);
        let filled = self.filled[index].load(Ordering::Acquire);
        if filled < tag(window) {
            let won = self.filled[index]
                .compare_exchange(filled, tag(window), Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if won {
                self.slots[index].reset();
            }
        }
        &self.slots[index]
    }
}

/// 第 `window` 个窗口用哪个槽。
fn slot_index(window: u64) -> usize {
    usize::from(window % SLOT_COUNT == 1)
}

/// 槽里记的第 `window` 个窗口的标记（序号加一，0 留给空槽）。
fn tag(window: u64) -> u64 {
    window.saturating_add(1)
}

/// 计数器的读数（可能因并发的退还短暂为负）按 0 起算。
fn non_negative(count: isize) -> u128 {
    count.max(0).unsigned_abs() as u128
}

/// 计数值转换为 `isize`（溢出时取最大值）。
fn clamp(value: u64) -> isize {
    isize::try_from(value).unwrap_or(isize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const 一分钟: Duration = Duration::from_secs(60);

    #[test]
    fn 同一窗口内累加_只读不计入() {
        let w = Windowed::new(一分钟);
        assert_eq!(w.add(&7, 3, 0).used, 3);
        assert_eq!(w.add(&7, 2, 1_000).used, 5);
        assert_eq!(w.peek(&7, 2_000).used, 5, "只读不改变计数");
        assert_eq!(w.peek(&8, 2_000).used, 0, "不同的键互不影响");
        assert_eq!(w.peek(&7, 2_000).left, Duration::from_secs(58));
    }

    #[test]
    fn 进入下一窗口后_上一窗口按剩余比例衰减() {
        let w = Windowed::new(一分钟);
        w.add(&1, 100, 10_000);
        let r = w.peek(&1, 60_000 + 15_000);
        assert_eq!(r.used, 75, "过了四分之一，上一窗口还算四分之三");
        assert_eq!(r.window, 1);
        assert_eq!(
            w.add(&1, 10, 60_000 + 30_000).used,
            60,
            "当前 10 加上一窗口一半的 50"
        );
    }

    #[test]
    fn 隔了两个窗口以上_旧计数全部过期() {
        let w = Windowed::new(一分钟);
        w.add(&1, 100, 0);
        assert_eq!(w.peek(&1, 2 * 60_000 + 1).used, 0);
        assert_eq!(w.add(&1, 1, 2 * 60_000 + 1).used, 1, "槽被换成新窗口并清零");
        assert_eq!(
            w.peek(&1, 3 * 60_000).used,
            1,
            "新窗口成为上一窗口，刚开始时全额计入"
        );
    }

    #[test]
    fn 退还只在同一窗口内生效_增加总记到当前窗口() {
        let w = Windowed::new(一分钟);
        let r = w.add(&1, 800, 0);
        w.adjust(&1, -700, r.window, 1_000);
        assert_eq!(w.peek(&1, 1_000).used, 100, "同一窗口内退还");
        w.adjust(&1, -100, r.window, 60_000);
        assert_eq!(w.peek(&1, 60_000).used, 100, "窗口已轮换：不退还");
        w.adjust(&1, 50, r.window, 60_000);
        assert_eq!(w.peek(&1, 60_000).used, 150, "补记到当前窗口");
    }

    #[test]
    fn 上一窗口的份额向上取整_估计不会偏低() {
        let w = Windowed::new(Duration::from_secs(3));
        w.add(&1, 1, 0);
        assert_eq!(w.peek(&1, 3_000 + 2_999).used, 1, "只剩 1 毫秒也按 1 计");
    }

    #[test]
    fn 超大的量封顶_不回绕成负数() {
        let w = Windowed::new(一分钟);
        assert_eq!(
            w.add(&1, u64::MAX, 0).used,
            isize::MAX.unsigned_abs() as u64
        );
    }
}
