//! 价目表：按上游模型名给出每百万 token 的美元单价，算出每个请求的费用。

use std::collections::HashMap;

use serde::Deserialize;

use crate::streaming::Usage;

/// 单价的计量单位：每百万 token。
const TOKENS_PER_UNIT: f64 = 1_000_000.0;

/// 一个上游模型的单价（美元 / 百万 token）。
///
/// 用途：配置文件 `pricing` 列表的一项。
///
/// ```
/// let p: chatnexus::metrics::Price = serde_yaml::from_str("{ model: gpt-4o-mini, input: 0.15, output: 0.6 }").unwrap(); // 无缓存单价
/// assert_eq!(p.cached, None); // 缓存命中按输入单价计
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// 上游模型名（与 `models[].targets[].model` 相同）。
    pub model: String,
    /// 输入单价。
    pub input: f64,
    /// 输出单价（含推理 token）。
    pub output: f64,
    /// 缓存命中部分的输入单价；缺省按 `input` 计。
    #[serde(default)]
    pub cached: Option<f64>,
}

/// 全部单价，按上游模型名索引。
///
/// 用途：请求结束时由上游模型名与用量算出费用。
///
/// ```
/// use chatnexus::metrics::{Price, PriceTable}; // 价目表
/// use chatnexus::streaming::Usage; // 用量
/// let table = PriceTable::new(vec![Price { model: "m".into(), input: 1.0, output: 2.0, cached: Some(0.5) }]); // 一个模型
/// let usage = Usage { prompt: 1_000_000, completion: 1_000_000, cached: 0, reasoning: 0 }; // 各一百万
/// assert_eq!(table.cost("m", &usage), Some(3.0)); // 1 + 2 美元
/// ```
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
}

impl PriceTable {
    /// 由配置中的单价列表建立价目表（同名以后者为准，校验会拒绝重名）。
    pub fn new(prices: Vec<Price>) -> Self {
        PriceTable {
            prices: prices.into_iter().map(|p| (p.model.clone(), p)).collect(),
        }
    }

    /// 计算费用（美元）；该上游模型不在价目表中时为 `None`。
    ///
    /// 输入中命中缓存的部分按缓存单价计，其余按输入单价计；输出（含推理）按输出单价计。
    pub fn cost(&self, upstream_model: &str, usage: &Usage) -> Option<f64> {
        let price = self.prices.get(upstream_model)?;
        let cached = usage.cached.min(usage.prompt);
        let uncached = usage.prompt - cached;
        let cached_price = price.cached.unwrap_or(price.input);
        let total = uncached as f64 * price.input
            + cached as f64 * cached_price
            + usage.completion as f64 * price.output;
        Some(total / TOKENS_PER_UNIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 费用_缓存命中按缓存单价_其余按输入单价() {
        let table = PriceTable::new(vec![Price {
            model: "甲".into(),
            input: 3.0,
            output: 15.0,
            cached: Some(0.3),
        }]);
        let usage = Usage {
            prompt: 1000,
            completion: 200,
            cached: 400,
            reasoning: 50,
        };
        let cost = table.cost("甲", &usage).expect("有价目");
        let expected = (600.0 * 3.0 + 400.0 * 0.3 + 200.0 * 15.0) / 1e6;
        assert!(
            (cost - expected).abs() < 1e-12,
            "实际 {cost}，期望 {expected}"
        );
    }

    #[test]
    fn 费用_没有价目的模型返回空() {
        assert_eq!(PriceTable::default().cost("乙", &Usage::default()), None);
    }
}
