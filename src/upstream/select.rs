//! 选择算法（纯函数）：最优优先级层内，按权重随机抽两个，取代价（延迟估计 ×（在途数 + 1））较低者。
//!
//! 为什么不是“总选最快的”：所有网关实例看到的延迟估计差不多，总选最快会让流量一窝蜂压到同一个目标，
//! 把它压慢后再一窝蜂换到下一个。二选一（power of two choices）只比较两个随机样本，
//! 既偏向又快又闲的目标，又给每个目标留下被选中的机会（它们的估计因此保持新鲜）。
//! 两次抽样是有放回的：只有两个目标时，较慢的一个仍能拿到约 (w/W)² 的流量，不会被饿死。

use rand::Rng;

/// 一个可用的候选目标。
///
/// 用途：`Plan` 为每个当前可用的目标生成一个，交给 [`choose`]。
///
/// ```
/// let c = chatnexus::upstream::Choice { index: 0, priority: 0, weight: 1, cost: 1.0 }; // 一个候选
/// assert_eq!(chatnexus::upstream::choose(&[c], &mut rand::thread_rng()), Some(0)); // 只有一个时选它
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// 调用方自己的编号，原样返回。
    pub index: usize,
    /// 优先级层，越小越优先。
    pub priority: u32,
    /// 层内相对权重（至少为 1）。
    pub weight: u32,
    /// 代价：延迟估计 ×（在途请求数 + 1），越小越好。
    pub cost: f64,
}

/// 在候选中选一个，返回它的 `index`；没有候选时返回 `None`。
///
/// 参数：候选（顺序无关）；随机数源（测试中用固定种子）。
pub fn choose<R: Rng + ?Sized>(choices: &[Choice], rng: &mut R) -> Option<usize> {
    let best = choices.iter().map(|c| c.priority).min()?;
    let tier = || choices.iter().filter(move |c| c.priority == best);
    let total: u64 = tier().map(|c| u64::from(c.weight.max(1))).sum();
    let first = weighted_pick(tier(), total, rng)?;
    let second = weighted_pick(tier(), total, rng)?;
    let winner = if second.cost < first.cost {
        second
    } else {
        first
    };
    Some(winner.index)
}

/// 按权重抽一个（有放回）。
fn weighted_pick<'a, R: Rng + ?Sized>(
    mut tier: impl Iterator<Item = &'a Choice>,
    total: u64,
    rng: &mut R,
) -> Option<&'a Choice> {
    let mut ticket = rng.gen_range(0..total.max(1));
    tier.find(|c| {
        let weight = u64::from(c.weight.max(1));
        if ticket < weight {
            return true;
        }
        ticket -= weight;
        false
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    /// 统计用的抽样次数。
    const 次数: usize = 10_000;

    fn 候选(index: usize, priority: u32, weight: u32, cost: f64) -> Choice {
        Choice {
            index,
            priority,
            weight,
            cost,
        }
    }

    fn 分布(choices: &[Choice]) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0; choices.len()];
        for _ in 0..次数 {
            let picked = choose(choices, &mut rng).expect("有候选");
            counts[picked] += 1;
        }
        counts
    }

    #[test]
    fn 没有候选_返回空() {
        assert_eq!(choose(&[], &mut StdRng::seed_from_u64(1)), None);
    }

    #[test]
    fn 分层_只在最优层内选择() {
        let choices = [候选(0, 1, 1, 1.0), 候选(1, 0, 1, 100.0), 候选(2, 2, 1, 0.1)];
        let counts = 分布(&choices);
        assert_eq!(counts, vec![0, 次数, 0], "较差层的目标即使更快也不被选中");
    }

    #[test]
    fn 二选一_偏向代价低的_但不是总选它() {
        let counts = 分布(&[候选(0, 0, 1, 1.0), 候选(1, 0, 1, 2.0)]);
        let fast_share = counts[0] as f64 / 次数 as f64;
        assert!(
            (0.7..0.8).contains(&fast_share),
            "两个等权目标，快的约占 3/4：{counts:?}"
        );
        assert!(counts[1] > 0, "慢的也要有流量，否则它的估计永远不会更新");
    }

    #[test]
    fn 代价_在途越多代价越高_流量转向空闲目标() {
        let busy = 1.0 * (9.0 + 1.0);
        let counts = 分布(&[候选(0, 0, 1, busy), 候选(1, 0, 1, 2.0)]);
        assert!(
            counts[1] > counts[0],
            "快但堵着 9 个请求的目标让位：{counts:?}"
        );
    }

    #[test]
    fn 权重_按权重抽样() {
        let counts = 分布(&[候选(0, 0, 3, 1.0), 候选(1, 0, 1, 1.0)]);
        let heavy_share = counts[0] as f64 / 次数 as f64;
        assert!(
            (0.70..0.80).contains(&heavy_share),
            "代价相同时按 3:1 抽样，先抽到者胜出：{counts:?}"
        );
    }

    #[test]
    fn 多个目标_最慢的只在两次都抽到它时才被选中() {
        let choices: Vec<Choice> = (0..4).map(|i| 候选(i, 0, 1, 1.0 + i as f64)).collect();
        let counts = 分布(&choices);
        let slowest = counts[3] as f64 / 次数 as f64;
        assert!((0.04..0.09).contains(&slowest), "约 1/16：{counts:?}");
        assert!(
            counts.windows(2).all(|w| w[0] > w[1]),
            "越快越多：{counts:?}"
        );
    }
}
