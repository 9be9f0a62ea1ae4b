//! 按客户端密钥累计用量与费用到 Redis（为预算功能打基础）。
//!
//! 每个密钥每天一个哈希：`<前缀>usage:<密钥名>:<UTC 日期>`，字段 requests、input、output、cached、
//! reasoning（整数累加）与 cost_usd（浮点累加），保留 90 天。一个请求的全部累加放在一个管道里，
//! 只有一次往返；单个键，Redis Cluster 下落在同一个槽。

use std::sync::Arc;

use chrono::Utc;
use log::warn;

use super::METRICS;
use crate::redis_link::{RedisFailure, RedisLink};
use crate::streaming::Usage;

/// 用量哈希的保留时间（秒）：90 天。
const USAGE_TTL_SECS: i64 = 90 * 24 * 3600;
/// 键中日期的格式（UTC）。
const DAY_FORMAT: &str = "%Y-%m-%d";
/// Redis 错误指标中本操作的标签。
const OP_LABEL: &str = "usage";

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
}

impl UsageStore {
    /// 使用给定的 Redis 连接与键前缀。
    pub fn new(link: Arc<RedisLink>, prefix: &str) -> Self {
        UsageStore {
            link: Some(link),
            prefix: prefix.to_string(),
        }
    }

    /// 不累计（没有配置 Redis）。
    pub fn disabled() -> Self {
        UsageStore {
            link: None,
            prefix: String::new(),
        }
    }

    /// 是否会写入 Redis。
    pub fn is_enabled(&self) -> bool {
        self.link.is_some()
    }

    /// 记一个请求的用量与费用；Redis 出错只记指标与警告，不影响请求（请求已经结束）。
    pub async fn add(&self, client: &str, usage: &Usage, cost: Option<f64>) {
        let Some(link) = &self.link else {
            return;
        };
        if let Err(e) = self.write(link, client, usage, cost).await {
            METRICS.redis_errors.with_label_values(&[OP_LABEL]).inc();
            warn!("累计客户端 `{client}` 的用量失败：{e}");
        }
    }

    async fn write(
        &self,
        link: &RedisLink,
        client: &str,
        u: &Usage,
        cost: Option<f64>,
    ) -> Result<(), RedisFailure> {
        let key = usage_key(
            &self.prefix,
            client,
            &Utc::now().format(DAY_FORMAT).to_string(),
        );
        let mut pipe = redis::pipe();
        for (field, value) in [
            ("requests", 1),
            ("input", u.prompt),
            ("output", u.completion),
            ("cached", u.cached),
            ("reasoning", u.reasoning),
        ] {
            pipe.hincr(&key, field, value).ignore();
        }
        pipe.cmd("HINCRBYFLOAT")
            .arg(&key)
            .arg("cost_usd")
            .arg(cost.unwrap_or(0.0))
            .ignore();
        pipe.expire(&key, USAGE_TTL_SECS).ignore();
        let mut conn = link.connection().await?;
        link.within(pipe.query_async::<()>(&mut conn), "累计用量")
            .await
    }
}

/// 某个密钥某天的用量哈希键。
pub fn usage_key(prefix: &str, client: &str, day: &str) -> String {
    format!("{prefix}usage:{client}:{day}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 键_带前缀_密钥名与日期() {
        assert_eq!(
            usage_key("gw:", "团队甲", "2026-11-26"),
            "gw:usage:团队甲:2026-11-26"
        );
    }
}
