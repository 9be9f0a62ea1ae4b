//! Responses 会话的保存：翻译到别家上游时，网关替上游保存每个回复的输入与输出条目，
//! 下一轮的 `previous_response_id` 据此展开成完整的对话；`GET /v1/responses/{id}` 读回保存的回复。
//!
//! 按客户端密钥隔离：键里带密钥名的摘要，一个密钥永远读不到另一个密钥保存的回复。
//! 存在配置的 Redis 里（多实例共享），每条带过期时间；没有配置 Redis 时不保存。

use std::sync::Arc;
use std::time::Duration;

use redis::Cmd;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};
use crate::redis_link::RedisLink;

/// Redis 键里在前缀之后的固定部分。
const KEY_SEGMENT: &str = "resp:";
/// 键里密钥名摘要保留的十六进制字符数（密钥名可能含任意字符，不直接进键）。
const OWNER_HEX_CHARS: usize = 16;
/// 回复 id 的最大长度（超过的 id 不可能是网关生成的）。
const MAX_ID_LEN: usize = 128;

/// 保存的一次回复：展开后的完整输入条目，与渲染给客户端的 `response` 对象（含输出条目）。
///
/// 用途：下一轮把 `input` 与 `response.output` 接在新输入之前；`GET /v1/responses/{id}` 返回 `response`。
///
/// ```
/// let s = chatnexus::response_store::StoredResponse { input: vec![], response: serde_json::json!({"id": "resp_1"}) }; // 保存的回复
/// assert_eq!(s.output().len(), 0); // 没有输出条目
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredResponse {
    /// 这一轮实际发给模型的输入条目（已展开此前的对话）。
    pub input: Vec<Value>,
    /// 渲染给客户端的 `response` 对象。
    pub response: Value,
}

impl StoredResponse {
    /// 回复的输出条目。
    pub fn output(&self) -> &[Value] {
        self.response["output"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// 会话存储（Redis）。
///
/// 用途：`proxy` 在交换之前按 `previous_response_id` 读出，交换成功之后写入。
///
/// ```
/// let store = chatnexus::response_store::ResponseStore::new(None, "chatnexus:"); // 没有 Redis
/// assert!(!store.enabled()); // 不保存
/// ```
pub struct ResponseStore {
    link: Option<Arc<RedisLink>>,
    prefix: String,
}

impl ResponseStore {
    /// 用共享的 Redis 连接与键前缀创建；`link` 为 `None` 时不保存。
    pub fn new(link: Option<Arc<RedisLink>>, prefix: &str) -> Self {
        ResponseStore {
            link,
            prefix: prefix.to_string(),
        }
    }

    /// 共享的 Redis 连接（响应缓存也用它）。
    pub fn link(&self) -> Option<Arc<RedisLink>> {
        self.link.clone()
    }

    /// 是否配置了存储。
    pub fn enabled(&self) -> bool {
        self.link.is_some()
    }

    /// 读出 `owner`（客户端密钥名）保存的回复 `id`；不存在、已过期或不属于这个密钥时为 `Ok(None)`，
    /// 内容损坏的条目也当作不存在。
    ///
    /// 错误：Redis 不可用时返回 503。
    pub async fn load(&self, owner: &str, id: &str) -> Result<Option<StoredResponse>, ApiError> {
        let Some(link) = &self.link else {
            return Ok(None);
        };
        if id.len() > MAX_ID_LEN {
            return Ok(None);
        }
        let mut cmd = Cmd::new();
        cmd.arg("GET").arg(self.key(owner, id));
        let raw: Option<Vec<u8>> = link.query(&cmd).await.map_err(unavailable)?;
        Ok(raw.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// 保存 `owner` 的回复 `id`，`ttl` 后过期。
    ///
    /// 错误：序列化失败返回 500，Redis 不可用返回 503（调用方只记日志：回复已经写给客户端了）。
    pub async fn save(
        &self,
        owner: &str,
        id: &str,
        stored: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), ApiError> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let value = serde_json::to_vec(stored)
            .map_err(|e| ApiError::internal(format!("序列化保存的回复失败：{e}")))?;
        let mut cmd = Cmd::new();
        cmd.arg("SET")
            .arg(self.key(owner, id))
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        link.query::<()>(&cmd).await.map_err(unavailable)
    }

    /// Redis 键：`前缀resp:<密钥名摘要>:<回复 id>`。
    fn key(&self, owner: &str, id: &str) -> String {
        let digest = hex::encode(Sha256::digest(owner.as_bytes()));
        let owner = &digest[..OWNER_HEX_CHARS];
        format!("{}{KEY_SEGMENT}{owner}:{id}", self.prefix)
    }
}

/// Redis 不可用：503（会话展开与读回都依赖它）。
fn unavailable(failure: crate::redis_link::RedisFailure) -> ApiError {
    ApiError::new(
        503,
        crate::error::TYPE_SERVER,
        ErrorCode::ResponseStoreUnavailable,
        "保存 Responses 会话的 Redis 暂时不可用，请稍后重试",
    )
    .with_cause(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 键_按密钥名摘要隔离() {
        let store = ResponseStore::new(None, "前缀:");
        let a = store.key("团队甲", "resp_1");
        let b = store.key("团队乙", "resp_1");
        assert_ne!(a, b, "不同密钥的同一个 id 是不同的键");
        assert!(a.starts_with("前缀:resp:") && a.ends_with(":resp_1"), "{a}");
        assert!(!a.contains("团队甲"), "密钥名不直接进键");
    }

    #[tokio::test]
    async fn 没有_redis_时不保存也读不到() {
        let store = ResponseStore::new(None, "p:");
        let stored = StoredResponse {
            input: vec![],
            response: serde_json::json!({}),
        };
        assert!(store
            .save("甲", "resp_1", &stored, Duration::from_secs(1))
            .await
            .is_ok());
        assert_eq!(store.load("甲", "resp_1").await, Ok(None));
    }
}
