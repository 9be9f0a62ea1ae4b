//! 缓存条目：保存时刻、用量与序列化好的回复，以及它在 Redis 里的存储格式。
//!
//! 回复以 JSON 文本（[`Bytes`]）保存：非流式命中原样写出、进程内后端命中只增加引用计数，
//! Redis 读出时借用原始 JSON（`RawValue`）只校验不建树，都不必重建整棵 JSON 树。

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::streaming::Usage;

/// 缓存的一条回复：保存时刻（Unix 秒）、用量与序列化好的客户端方言的完整回复。
///
/// 用途：命中时把 `body` 原样写出（JSON）或解析后重放成方言的事件流，`age` 头为现在减去
/// `created_unix`，省下的 token 与费用按 `usage` 计。
///
/// ```
/// let reply = serde_json::json!({"object": "chat.completion"}); // 一条完整回复
/// let e = chatnexus::cache::Entry::new(1, None, &reply); // 序列化好保存
/// assert_eq!(e.reply().unwrap(), reply); // 读回的回复与原来相同
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// 保存时刻（Unix 秒）。
    pub created_unix: u64,
    /// 原回复的用量（OpenAI 语义；没有时为 `None`）。
    pub usage: Option<Usage>,
    /// 完整回复（`chat.completion`、`message` 或 `response` 对象）的 JSON 文本。
    pub body: Bytes,
}

/// Redis 里的存储格式（写出时借用回复的原始 JSON）。
#[derive(Serialize)]
struct StoredRef<'a> {
    created_unix: u64,
    usage: Option<Usage>,
    completion: &'a RawValue,
}

/// Redis 里的存储格式（读入时借用原始字节里的回复）。
#[derive(Deserialize)]
struct Stored<'a> {
    created_unix: u64,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow)]
    completion: &'a RawValue,
}

impl Entry {
    /// 由完整回复创建条目（序列化一次）。
    ///
    /// 参数：保存时刻、用量、完整回复对象。
    pub fn new(created_unix: u64, usage: Option<Usage>, reply: &Value) -> Entry {
        Entry {
            created_unix,
            usage,
            body: Bytes::from(reply.to_string()),
        }
    }

    /// 解析出完整回复对象（流式命中重放时用）。
    ///
    /// 错误：`body` 不是合法 JSON（只有手工构造的条目才会）。
    pub fn reply(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// 存储格式：`{"created_unix","usage","completion":<回复原文>}`。
    ///
    /// 错误：`body` 不是合法 JSON。
    pub(super) fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let completion: &RawValue = serde_json::from_slice(&self.body)?;
        serde_json::to_vec(&StoredRef {
            created_unix: self.created_unix,
            usage: self.usage,
            completion,
        })
    }

    /// 从存储格式读回条目。
    ///
    /// 错误：内容不是这个格式（损坏的条目）。
    pub(super) fn decode(raw: &[u8]) -> Result<Entry, serde_json::Error> {
        let stored: Stored = serde_json::from_slice(raw)?;
        Ok(Entry {
            created_unix: stored.created_unix,
            usage: stored.usage,
            body: Bytes::copy_from_slice(stored.completion.get().as_bytes()),
        })
    }
}
