//! 按客户端密钥累计用量与费用到 Redis（为预算功能打基础）。
//!
//! 每个密钥每天一个哈希：`<前缀>usage:<密钥名>:<UTC 日期>`，字段 requests、input、output、cached、
//! reasoning（整数累加）与 cost_usd（浮点累加），同样的四项按模型另记一份（`m:<模型>:requests` ……），
//! 以及最后使用的时刻 `last_used`（Unix 秒），保留 90 天。一个哈希的全部累加放在一个管道里，
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
/// 按模型记的字段名的前缀（`m:<模型>:<字段>`）。
pub(super) const MODEL_FIELD_PREFIX: &str = "m:";
/// 按模型记的字段名里模型与字段之间的分隔符（字段名不含冒号，读时按最后一个冒号切分，模型名里有冒号也无妨）。
pub(super) const MODEL_FIELD_SEPARATOR: char = ':';
/// 请求数的字段。
pub(super) const REQUESTS_FIELD: &str = "requests";
/// 输入 token 的字段。
pub(super) const INPUT_FIELD: &str = "input";
/// 输出 token 的字段。
pub(super) const OUTPUT_FIELD: &str = "output";
/// 花费的字段。
pub(super) const COST_FIELD: &str = "cost_usd";
/// 最后使用时刻的字段。
pub(super) const LAST_USED_FIELD: &str = "last_used";
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
    /// 这些请求里最晚的一个结束的时刻（Unix 秒）。
    last_used: u64,
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
            last_used: crate::clock::unix_now(),
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
        self.last_used = self.last_used.max(other.last_used);
    }
}

/// 暂存与写入的单位：哈希键与模型名（同一密钥同一天不同模型的累加分开记，写入时各自加到总数与模型字段上）。
type TallyKey = (String, String);

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
    /// （哈希键, 模型）→ 还没写进 Redis 的累加量。
    pending: Mutex<HashMap<TallyKey, Tally>>,
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
        (client, model): (&str, &str),
        usage: &Usage,
        cost: Option<f64>,
        warn_interval: Duration,
    ) {
        let Some(link) = &self.link else {
            return;
        };
        let day = Utc::now().format(DAY_FORMAT).to_string();
        let current = (
            (usage_key(&self.prefix, client, &day), model.to_string()),
            Tally::of(usage, cost),
        );
        // 常见情形没有暂存：直接写本请求的，不建表、不合并；有暂存时先补写暂存的，
        // 本请求最后写，最后使用的时刻不会被更早的累加量改回去
        let mut batch = self
            .take_backlog()
            .into_iter()
            .chain(std::iter::once(current));
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
    fn take_backlog(&self) -> HashMap<TallyKey, Tally> {
        let mut pending = self.lock();
        if pending.is_empty() {
            return HashMap::new();
        }
        std::mem::take(&mut *pending)
    }

    /// 把没写进去的累加量放回暂存（与期间新到的合并）；返回因条目数达到上限而丢弃的请求数。
    fn restore(&self, unwritten: impl Iterator<Item = (TallyKey, Tally)>) -> u64 {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TallyKey, Tally>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 一个哈希的全部累加放在一个管道里（一次往返）：总数、该模型的四项与最后使用的时刻。
async fn write(link: &RedisLink, (key, model): &TallyKey, t: &Tally) -> Result<(), RedisFailure> {
    let mut pipe = redis::pipe();
    for (field, value) in [
        (REQUESTS_FIELD, t.requests),
        (INPUT_FIELD, t.input),
        (OUTPUT_FIELD, t.output),
        ("cached", t.cached),
        ("reasoning", t.reasoning),
    ] {
        pipe.hincr(key, field, value).ignore();
    }
    for (field, value) in [
        (REQUESTS_FIELD, t.requests),
        (INPUT_FIELD, t.input),
        (OUTPUT_FIELD, t.output),
    ] {
        pipe.hincr(key, model_field(model, field), value).ignore();
    }
    for field in [COST_FIELD.to_string(), model_field(model, COST_FIELD)] {
        pipe.cmd("HINCRBYFLOAT")
            .arg(key)
            .arg(field)
            .arg(t.cost)
            .ignore();
    }
    pipe.hset(key, LAST_USED_FIELD, t.last_used).ignore();
    pipe.expire(key, USAGE_TTL_SECS).ignore();
    let mut conn = link.connection().await?;
    link.within(pipe.query_async::<()>(&mut conn), "累计用量")
        .await
}

/// 按模型记的字段名：`m:<模型>:<字段>`。
fn model_field(model: &str, field: &str) -> String {
    format!("{MODEL_FIELD_PREFIX}{model}{MODEL_FIELD_SEPARATOR}{field}")
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
        let key = |name: &str| (name.to_string(), "模型".to_string());
        let later = Tally {
            last_used: one.last_used + 5,
            ..one
        };
        let twice = [(key("甲"), one), (key("甲"), later)];
        assert_eq!(store.restore(twice.into_iter()), 0);
        let batch = store.take_backlog();
        assert_eq!(batch[&key("甲")].requests, 2, "同一个键合并");
        assert_eq!(batch[&key("甲")].input, 60);
        assert_eq!(
            batch[&key("甲")].last_used,
            later.last_used,
            "最后使用取较晚的"
        );
        assert!(store.take_backlog().is_empty(), "取走之后暂存为空");
        assert_eq!(store.restore(batch.into_iter()), 0);
        let full = (1..MAX_PENDING).map(|i| (key(&format!("键{i}")), one));
        assert_eq!(store.restore(full), 0);
        let extra = [(key("甲"), one), (key("新键"), one)];
        assert_eq!(store.restore(extra.into_iter()), 1, "已满时新键被丢弃");
        assert_eq!(store.lock().len(), MAX_PENDING);
    }

    #[test]
    fn 按模型的字段_前缀模型与字段() {
        assert_eq!(model_field("演示", COST_FIELD), "m:演示:cost_usd");
    }

    #[test]
    fn 键_带前缀_密钥名与日期() {
        assert_eq!(
            usage_key("gw:", "团队甲", "2026-11-26"),
            "gw:usage:团队甲:2026-11-26"
        );
    }
}
