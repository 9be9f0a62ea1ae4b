//! 向量回复的 OpenAI 形状：`{"object":"list","data":[{"object":"embedding","index":i,"embedding":…}],"model":…,"usage":…}`，
//! 向量写成浮点数组或小端 f32 字节的 base64（与 OpenAI 的 `encoding_format: base64` 逐字节相同）。

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use memchr::memmem::Finder;
use once_cell::sync::Lazy;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Value;

use super::Encoding;

/// 每个 f32 的字节数。
const F32_BYTES: usize = 4;
/// 向量字段的键（带引号，用于不解析 JSON 的快速判断）。
const EMBEDDING_KEY: &[u8] = b"\"embedding\"";
/// 预先构造的向量键查找器。
static EMBEDDING_FINDER: Lazy<Finder<'static>> = Lazy::new(|| Finder::new(EMBEDDING_KEY));
/// JSON 键与值之间的分隔符。
const KEY_VALUE_SEPARATOR: u8 = b':';
/// JSON 数组的起始字节。
const ARRAY_OPEN: u8 = b'[';
/// 列表对象的类型。
const LIST_OBJECT: &str = "list";
/// 列表项的类型。
const EMBEDDING_OBJECT: &str = "embedding";

/// 把浮点向量编码成 OpenAI 的 base64：每个分量按 f32 小端 4 字节依次拼接，再做标准 base64（带填充）。
///
/// 参数：向量分量。返回：base64 文本。
pub fn encode_base64(values: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(values.len() * F32_BYTES);
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    STANDARD.encode(bytes)
}

/// 一个向量按客户端的编码写出：浮点数组或 base64 字符串。
struct Vector<'a> {
    values: &'a [f32],
    encoding: Encoding,
}

impl Serialize for Vector<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.encoding {
            Encoding::Base64 => serializer.serialize_str(&encode_base64(self.values)),
            Encoding::Float => {
                let mut seq = serializer.serialize_seq(Some(self.values.len()))?;
                for value in self.values {
                    seq.serialize_element(value)?;
                }
                seq.end()
            }
        }
    }
}

/// 列表里的一项。
#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

/// 列表的用量（向量只有输入 token）。
#[derive(Serialize)]
struct ListUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// 一个完整的向量回复（由翻译的上游如 Gemini 的结果写成 OpenAI 的形状）。
///
/// 用途：`providers` 把上游的向量按输入顺序放进 `vectors`，[`write_list`] 写出客户端要的编码。
///
/// ```
/// use chatnexus::dialects::embeddings::{write_list, EmbeddingList, Encoding}; // 列表
/// let list = EmbeddingList { model: "向量", vectors: vec![vec![1.0]], prompt_tokens: 2 }; // 一个向量
/// let body = write_list(&list, Encoding::Base64); // 写成 base64
/// assert!(String::from_utf8_lossy(&body).contains(r#""embedding":"AACAPw==""#)); // 1.0f32 的小端字节
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddingList<'a> {
    /// 回复里的模型名（客户端请求的名字）。
    pub model: &'a str,
    /// 按输入顺序的向量。
    pub vectors: Vec<Vec<f32>>,
    /// 输入 token 数。
    pub prompt_tokens: u64,
}

/// 写出 OpenAI 形状的向量列表。
///
/// 参数：列表与客户端要的编码。返回：JSON 字节。
pub fn write_list(list: &EmbeddingList<'_>, encoding: Encoding) -> Bytes {
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Item<'a>>,
        model: &'a str,
        usage: ListUsage,
    }
    let data = list
        .vectors
        .iter()
        .enumerate()
        .map(|(index, values)| Item {
            object: EMBEDDING_OBJECT,
            index,
            embedding: Vector { values, encoding },
        })
        .collect();
    let body = List {
        object: LIST_OBJECT,
        data,
        model: list.model,
        usage: ListUsage {
            prompt_tokens: list.prompt_tokens,
            total_tokens: list.prompt_tokens,
        },
    };
    // 只有字符串、整数与有限浮点数，序列化不会失败；真失败时返回空对象让调用方按上游回复无效处理
    serde_json::to_vec(&body).map_or_else(|_| Bytes::new(), Bytes::from)
}

/// 上游回复里的向量是浮点数组时（客户端要的是 base64、上游却忽略了 `encoding_format`，如一些兼容服务），
/// 把每个向量改写成 base64；已经是 base64 时返回 `None`（原样转发，零拷贝）。
///
/// 先做字节级判断：第一个 `"embedding"` 键后紧跟 `:` 与 `[` 才解析整个回复。
///
/// 错误：回复看起来带浮点数组却不是合法 JSON 时返回解析错误。
pub fn floats_to_base64(body: &[u8]) -> Result<Option<Bytes>, serde_json::Error> {
    if !has_float_vectors(body) {
        return Ok(None);
    }
    let mut reply: Value = serde_json::from_slice(body)?;
    let items = reply
        .get_mut("data")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten();
    for item in items {
        if let Some(Value::Array(numbers)) = item.get_mut(EMBEDDING_OBJECT) {
            // 分量按 f32 编码，与 OpenAI 的 base64 精度相同
            let values: Vec<f32> = numbers
                .iter()
                .map(|n| n.as_f64().unwrap_or_default() as f32)
                .collect();
            item[EMBEDDING_OBJECT] = Value::String(encode_base64(&values));
        }
    }
    serde_json::to_vec(&reply).map(|bytes| Some(Bytes::from(bytes)))
}

/// 回复里的向量是否写成了数组：找到第一个作键的 `"embedding"`（其后允许空白紧跟 `:`；`"object":"embedding"`
/// 里的是值，跳过），看它的值是否以 `[` 开头。一个回复里的向量编码相同，只看第一个；字符串里的引号总是转义的，不会误认。
fn has_float_vectors(body: &[u8]) -> bool {
    for at in EMBEDDING_FINDER.find_iter(body) {
        let mut rest = body[at + EMBEDDING_KEY.len()..].iter().copied();
        let mut next = || rest.find(|b| !b.is_ascii_whitespace());
        if next() == Some(KEY_VALUE_SEPARATOR) {
            return next() == Some(ARRAY_OPEN);
        }
    }
    false
}
