//! 缓存条目：保存时刻、用量与序列化好的回复，以及它在 Redis 里的存储格式。
//!
//! 回复以 JSON 文本（[`Bytes`]）保存：非流式命中原样写出、进程内后端命中只增加引用计数。
//! Redis 里存一行文本头（格式标记、保存时刻、用量、回复的字节数）加回复原文：读出时只解析这一行，
//! 回复原样切出、不复制也不逐字节校验（原来整条存成 JSON，读出时要扫描整段回复，占命中开销的约 5%）。

use std::fmt;

use bytes::Bytes;
use serde_json::Value;

use crate::streaming::Usage;

/// 存储格式的标记（格式变了就换一个，旧条目读出时当作损坏：未命中并删除）。
const FORMAT_TAG: &str = "cnx1";
/// 文本头与回复原文之间的分隔。
const HEADER_END: u8 = b'\n';
/// 文本头里字段之间的分隔。
const FIELD_SEPARATOR: char = ' ';
/// 文本头的容量估计（字节）：八个字段都不长。
const HEADER_CAPACITY: usize = 64;

/// 读出的条目不是本格式（损坏、被截断或由旧版本写入）。
///
/// 用途：`ResponseCache` 把这样的条目当作未命中并删除。
///
/// ```
/// let e = chatnexus::cache::CorruptEntry("缺少文本头"); // 说明哪里不对
/// assert!(e.to_string().contains("缺少文本头"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptEntry(pub &'static str);

impl fmt::Display for CorruptEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "缓存条目不是 {FORMAT_TAG} 格式：{}", self.0)
    }
}

impl std::error::Error for CorruptEntry {}

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

    /// 存储格式：一行文本头 `cnx1 <保存时刻> <是否有用量> <输入> <输出> <缓存> <推理> <回复字节数>`，换行后是回复原文。
    pub(super) fn encode(&self) -> Vec<u8> {
        let usage = self.usage.unwrap_or_default();
        let header = format!(
            "{FORMAT_TAG} {} {} {} {} {} {} {}",
            self.created_unix,
            u8::from(self.usage.is_some()),
            usage.prompt,
            usage.completion,
            usage.cached,
            usage.reasoning,
            self.body.len()
        );
        let mut out = Vec::with_capacity(HEADER_CAPACITY + self.body.len());
        out.extend_from_slice(header.as_bytes());
        out.push(HEADER_END);
        out.extend_from_slice(&self.body);
        out
    }

    /// 从存储格式读回条目：只解析文本头，回复从原始字节里切出（不复制）。
    ///
    /// 错误：没有文本头、标记不对、字段不是数、回复的字节数对不上（被截断）。
    pub(super) fn decode(raw: Vec<u8>) -> Result<Entry, CorruptEntry> {
        let end = raw
            .iter()
            .position(|&b| b == HEADER_END)
            .ok_or(CorruptEntry("缺少文本头"))?;
        let header =
            std::str::from_utf8(&raw[..end]).map_err(|_| CorruptEntry("文本头不是 UTF-8"))?;
        let mut fields = header.split(FIELD_SEPARATOR);
        if fields.next() != Some(FORMAT_TAG) {
            return Err(CorruptEntry("格式标记不对"));
        }
        let numbers: Vec<u64> = fields.map(number).collect::<Result<_, _>>()?;
        let [created_unix, has_usage, prompt, completion, cached, reasoning, length] = numbers[..]
        else {
            return Err(CorruptEntry("文本头的字段数不对"));
        };
        let body = Bytes::from(raw).slice(end + 1..);
        if u64::try_from(body.len()).ok() != Some(length) {
            return Err(CorruptEntry("回复的字节数对不上（被截断）"));
        }
        let usage = Usage {
            prompt,
            completion,
            cached,
            reasoning,
        };
        Ok(Entry {
            created_unix,
            usage: (has_usage == 1).then_some(usage),
            body,
        })
    }
}

/// 文本头里的一个十进制数。
fn number(field: &str) -> Result<u64, CorruptEntry> {
    field
        .parse()
        .map_err(|_| CorruptEntry("文本头的字段不是非负整数"))
}
