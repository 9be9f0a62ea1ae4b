//! 按客户端密钥累计用量与费用到 Redis（为预算功能打基础）。
//!
//! 每个密钥每天一个哈希：`<前缀>usage:<密钥名>:<UTC 日期>`，字段 requests、input、output、cached、
//! reasoning（整数累加）与 cost_usd（浮点累加），保留 90 天。一个哈希的全部累加放在一个管道里，
//! 只有一次往返；单个键，Redis Cluster 下落在同一个槽。
//!
//! Redis 短暂不可用时用量不丢：写不进去的累加按（密钥, 日期）合并暂存在内存里（条目数有上限），
//! 下一次写入时连同暂存的一起补写，Redis 恢复后每天的累计就等于指标里的总数；告警按间隔限频。

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use log::warn;

use super::MAX_COUNT;
use super::METRICS;
use crate::logging::WarnGate;
use crate::redis_link::{RedisFailure, RedisLink};
use crate::streaming::Usage;

/// 用量哈希的保留时间（秒）：90 天。
const USAGE_TTL_SECS: i64 = 90 * 24 * 3600;
/// 键中日期的格式（UTC）。
const DAY_FORMAT: &str = "%Y-%m-%d";
/// Redis 错误指标中本操作的标签。
const OP_LABEL: &str = "usage";
/// 内存中暂存的（密钥, 日期）条目数上限：超出的新条目丢弃并告警，Redis 长时间不可用也不会耗尽内存。
const MAX_PENDING: usize = 10_000;

/// 一个（密钥, 日期）上还没写进 Redis 的累加量。
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    requests: u64,
    input: u64,
    output: u64,
    cached: u64,
    reasoning: u64,
    cost: f64,
}

impl Tally {
    /// 一个请求的累加量；上游报告的荒谬用量封顶到 [`MAX_COUNT`]，累加不会让 Redis 的整数溢出。
    fn of(usage: &Usage, cost: Option<f64>) -> Self {
        Tally {
            requests: 1,
            input: usage.prompt.min(MAX_COUNT),
            output: usage.completion.min(MAX_COUNT),
            cached: usage.cached.min(MAX_COUNT),
            reasoning: usage.reasoning.min(MAX_COUNT),
            cost: cost.unwrap_or(0.0),
        }
    }

    /// 并入另一份累加量。
    fn merge(&mut self, other: &Tally) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cached = self.cached.saturating_add(other.cached);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
        self.cost += other.cost;
    }
}

/// 用量累计器；没有配置 Redis 时什么也不做。
///
/// 用途：网关在每个请求结束（`logging` 钩子）时调用 [`UsageStore::add`]。
///
/// ```
/// let store = chatnexus::metrics::UsageStore::disabled(); // 没有 Redis
/// assert!(!store.is_enabled()); // 不累计
/// ```
pub struct UsageStore {
    link: Option<Arc<RedisLink>>,
    prefix: String,
    /// 哈希键 → 还没写进 Redis 的累加量。
    pending: Mutex<HashMap<String, Tally>>,
    warn: WarnGate,
}

impl UsageStore {
    /// 使用给定的 Redis 连接与键前缀。
    pub fn new(link: Arc<RedisLink>, prefix: &str) -> Self {
        UsageStore {
            link: Some(link),
            prefix: prefix.to_string(),
            pending: Mutex::default(),
            warn: WarnGate::default(),
        }
    }

    /// 不累计（没有配置 Redis）。
    pub fn disabled() -> Self {
        UsageStore {
            link: None,
            prefix: String::new(),
            pending: Mutex::default(),
            warn: WarnGate::default(),
        }
    }

    /// 是否会写入 Redis。
    pub fn is_enabled(&self) -> bool {
        self.link.is_some()
    }

    /// 记一个请求的用量与费用，并补写之前暂存的累加量。
    ///
    /// Redis 出错不影响请求（请求已经结束）：没写进去的累加量暂存在内存里，记指标，
    /// 告警最多每 `warn_interval` 一条。
    pub async fn add(
        &self,
        client: &str,
        usage: &Usage,
        cost: Option<f64>,
        warn_interval: Duration,
    ) {
        let Some(link) = &self.link else {
            return;
        };
        let day = Utc::now().format(DAY_FORMAT).to_string();
        let current = (
            usage_key(&self.prefix, client, &day),
            Tally::of(usage, cost),
        );
        // 常见情形没有暂存：直接写本请求的，不建表、不合并
        let mut batch = std::iter::once(current).chain(self.take_backlog());
        while let Some((key, tally)) = batch.next() {
            if let Err(e) = write(link, &key, &tally).await {
                // 一个写失败，其余的多半也会失败：不再逐个等超时，连同它一起放回暂存
                let dropped = self.restore(std::iter::once((key, tally)).chain(batch));
                self.report(&e, dropped, warn_interval);
                return;
            }
        }
    }

    /// 取走全部暂存（由本次调用负责补写）；没有暂存时不分配。
    fn take_backlog(&self) -> HashMap<String, Tally> {
        let mut pending = self.lock();
        if pending.is_empty() {
            return HashMap::new();
        }
        std::mem::take(&mut *pending)
    }

    /// 把没写进去的累加量放回暂存（与期间新到的合并）；返回因条目数达到上限而丢弃的请求数。
    fn restore(&self, unwritten: impl Iterator<Item = (String, Tally)>) -> u64 {
        let mut pending = self.lock();
        let mut dropped = 0;
        for (key, tally) in unwritten {
            let room = pending.len() < MAX_PENDING;
            match pending.get_mut(&key) {
                Some(existing) => existing.merge(&tally),
                None if room => {
                    pending.insert(key, tally);
                }
                None => dropped += tally.requests,
            }
        }
        dropped
    }

    /// 记指标，并按间隔告警。
    fn report(&self, failure: &RedisFailure, dropped: u64, interval: Duration) {
        METRICS.redis_errors.with_label_values(&[OP_LABEL]).inc();
        if !self.warn.due(interval) {
            return;
        }
        let held = self.lock().len();
        warn!(
            "累计客户端用量失败（{failure}）：{held} 个（密钥, 日期）的用量暂存在内存中，Redis 恢复后补写；\
             本次因暂存已满（上限 {MAX_PENDING}）丢弃 {dropped} 个请求的用量；{} 毫秒内不再重复告警",
            interval.as_millis()
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tally>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 一个哈希的全部累加放在一个管道里（一次往返）。
async fn write(link: &RedisLink, key: &str, t: &Tally) -> Result<(), RedisFailure> {
    let mut pipe = redis::pipe();
    for (field, value) in [
        ("requests", t.requests),
        ("input", t.input),
        ("output", t.output),
        ("cached", t.cached),
        ("reasoning", t.reasoning),
    ] {
        pipe.hincr(key, field, value).ignore();
    }
    pipe.cmd("HINCRBYFLOAT")
        .arg(key)
        .arg("cost_usd")
        .arg(t.cost)
        .ignore();
    pipe.expire(key, USAGE_TTL_SECS).ignore();
    let mut conn = link.connection().await?;
    link.within(pipe.query_async::<()>(&mut conn), "累计用量")
        .await
}

/// 一段时间里的用量与花费合计（管理接口的 `GET /admin/usage` 用）。
///
/// ```
/// let t = chatnexus::metrics::UsageTotals::default(); // 没有用量
/// assert_eq!((t.requests, t.cost_usd), (0, 0.0)); // 全为零
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct UsageTotals {
    /// 请求数。
    pub requests: u64,
    /// 输入 token。
    pub input_tokens: u64,
    /// 输出 token。
    pub output_tokens: u64,
    /// 花费（美元）。
    pub cost_usd: f64,
}

impl UsageTotals {
    /// 并入另一份合计。
    pub fn add(&mut self, other: &UsageTotals) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost_usd += other.cost_usd;
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
        let number = |field: &str| {
            hash.get(field)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        totals.add(&UsageTotals {
            requests: number("requests"),
            input_tokens: number("input"),
            output_tokens: number("output"),
            cost_usd: hash
                .get("cost_usd")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
        });
    }
    Ok(totals)
}

/// 某个密钥某天的用量哈希键。
pub fn usage_key(prefix: &str, client: &str, day: &str) -> String {
    format!("{prefix}usage:{client}:{day}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 暂存_按键合并_超出上限的新键被丢弃() {
        let store = UsageStore::disabled();
        let usage = Usage {
            prompt: 30,
            completion: u64::MAX,
            cached: 0,
            reasoning: 0,
        };
        let one = Tally::of(&usage, Some(0.5));
        assert_eq!(one.output, MAX_COUNT, "荒谬的用量被封顶");
        let twice = [("甲".to_string(), one), ("甲".to_string(), one)];
        assert_eq!(store.restore(twice.into_iter()), 0);
        let batch = store.take_backlog();
        assert_eq!(batch["甲"].requests, 2, "同一个键合并");
        assert_eq!(batch["甲"].input, 60);
        assert!(store.take_backlog().is_empty(), "取走之后暂存为空");
        assert_eq!(store.restore(batch.into_iter()), 0);
        let full = (1..MAX_PENDING).map(|i| (format!("键{i}"), one));
        assert_eq!(store.restore(full), 0);
        let extra = [("甲".to_string(), one), ("新键".to_string(), one)];
        assert_eq!(store.restore(extra.into_iter()), 1, "已满时新键被丢弃");
        assert_eq!(store.lock().len(), MAX_PENDING);
    }

    #[test]
    fn 键_带前缀_密钥名与日期() {
        assert_eq!(
            usage_key("gw:", "团队甲", "2026-11-26"),
            "gw:usage:团队甲:2026-11-26"
        );
    }
}
