//! 读回按密钥按天累计的用量（管理接口的 `GET /admin/usage`）：总数、按模型的分项与最后使用的时刻。

use std::collections::{BTreeMap, HashMap};

use super::usage_store::{
    usage_key, COST_FIELD, INPUT_FIELD, LAST_USED_FIELD, MODEL_FIELD_PREFIX, MODEL_FIELD_SEPARATOR,
    OUTPUT_FIELD, REQUESTS_FIELD,
};
use crate::redis_link::{RedisFailure, RedisLink};

/// 请求数、token 与花费。
///
/// ```
/// let c = chatnexus::metrics::UsageCounts::default(); // 没有用量
/// assert_eq!((c.requests, c.cost_usd), (0, 0.0)); // 全为零
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct UsageCounts {
    /// 请求数。
    pub requests: u64,
    /// 输入 token。
    pub input_tokens: u64,
    /// 输出 token。
    pub output_tokens: u64,
    /// 花费（美元）。
    pub cost_usd: f64,
}

impl UsageCounts {
    /// 并入另一份。
    pub fn add(&mut self, other: &UsageCounts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost_usd += other.cost_usd;
    }

    /// 按字段名记一个值（不认识的字段忽略，数字不合法时当作 0）。
    fn set(&mut self, field: &str, value: &str) {
        let number = || value.parse::<u64>().unwrap_or(0);
        match field {
            REQUESTS_FIELD => self.requests = self.requests.saturating_add(number()),
            INPUT_FIELD => self.input_tokens = self.input_tokens.saturating_add(number()),
            OUTPUT_FIELD => self.output_tokens = self.output_tokens.saturating_add(number()),
            COST_FIELD => self.cost_usd += value.parse::<f64>().unwrap_or(0.0),
            _ => {}
        }
    }
}

/// 一段时间里的用量与花费合计：总数、按模型的分项与最后使用的时刻。
///
/// 用途：管理接口按密钥读出，再按团队相加。
///
/// ```
/// let t = chatnexus::metrics::UsageTotals::default(); // 没有用量
/// assert!(t.models.is_empty() && t.last_used_unix.is_none()); // 没有分项，也没用过
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct UsageTotals {
    /// 总数。
    #[serde(flatten)]
    pub total: UsageCounts,
    /// 按模型（客户端可见的模型名）的分项。
    pub models: BTreeMap<String, UsageCounts>,
    /// 这段时间里最后一次使用的时刻（Unix 秒）；没用过时为 `None`。
    pub last_used_unix: Option<u64>,
}

impl UsageTotals {
    /// 并入另一份合计。
    pub fn add(&mut self, other: &UsageTotals) {
        self.total.add(&other.total);
        for (model, counts) in &other.models {
            self.models.entry(model.clone()).or_default().add(counts);
        }
        self.last_used_unix = self.last_used_unix.max(other.last_used_unix);
    }

    /// 并入一天的用量哈希。
    fn add_day(&mut self, hash: &HashMap<String, String>) {
        for (field, value) in hash {
            if field == LAST_USED_FIELD {
                self.last_used_unix = self.last_used_unix.max(value.parse().ok());
                continue;
            }
            let by_model = field
                .strip_prefix(MODEL_FIELD_PREFIX)
                .and_then(|rest| rest.rsplit_once(MODEL_FIELD_SEPARATOR));
            match by_model {
                Some((model, name)) => self
                    .models
                    .entry(model.to_string())
                    .or_default()
                    .set(name, value),
                None => self.total.set(field, value),
            }
        }
    }
}

/// 读出一个密钥若干天的用量合计（一次管道往返）。
///
/// 参数：Redis 连接、键前缀、密钥名、UTC 日期（`YYYY-MM-DD`）。
/// 错误：Redis 不可用或超时。
pub async fn read_usage(
    link: &RedisLink,
    prefix: &str,
    client: &str,
    days: &[String],
) -> Result<UsageTotals, RedisFailure> {
    let mut pipe = redis::pipe();
    for day in days {
        pipe.hgetall(usage_key(prefix, client, day));
    }
    let mut conn = link.connection().await?;
    let hashes: Vec<HashMap<String, String>> =
        link.within(pipe.query_async(&mut conn), "读用量").await?;
    let mut totals = UsageTotals::default();
    for hash in &hashes {
        totals.add_day(hash);
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 哈希(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn 一天的哈希_总数按模型分项与最后使用() {
        let mut totals = UsageTotals::default();
        totals.add_day(&哈希(&[
            ("requests", "3"),
            ("input", "30"),
            ("cost_usd", "0.5"),
            ("cached", "7"),
            ("m:演示:requests", "2"),
            ("m:a:b:requests", "1"),
            ("m:演示:cost_usd", "0.25"),
            ("last_used", "1700000000"),
        ]));
        totals.add_day(&哈希(&[("requests", "1"), ("last_used", "1600000000")]));
        assert_eq!(totals.total.requests, 4);
        assert_eq!(totals.total.input_tokens, 30);
        assert_eq!(totals.models["演示"].requests, 2);
        assert_eq!(totals.models["演示"].cost_usd, 0.25);
        assert_eq!(
            totals.models["a:b"].requests, 1,
            "模型名里的冒号按最后一个切分"
        );
        assert_eq!(totals.last_used_unix, Some(1_700_000_000), "取最晚的");
    }

    #[test]
    fn 合计相加_按模型合并() {
        let mut a = UsageTotals::default();
        a.add_day(&哈希(&[("m:甲:requests", "1"), ("requests", "1")]));
        let mut b = UsageTotals::default();
        b.add_day(&哈希(&[
            ("m:甲:requests", "2"),
            ("m:乙:requests", "1"),
            ("requests", "3"),
        ]));
        a.add(&b);
        assert_eq!(
            (
                a.total.requests,
                a.models["甲"].requests,
                a.models["乙"].requests
            ),
            (4, 3, 1)
        );
    }
}
