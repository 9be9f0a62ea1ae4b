//! 向量接口 `POST /v1/embeddings`（OpenAI 的形状）：解析并校验请求体，以及按客户端要的编码写出向量列表。
//!
//! 请求里的 `input` 可以是一个字符串、字符串数组、token id 数组或 token id 数组的数组；条数与总大小
//! 有上限（`server.embeddings_max_inputs`、`server.embeddings_max_input_bytes`），超过时 400。
//! 校验只遍历、不复制输入：透传给 OpenAI 形状的上游时原始字节只换 `model`。

mod reply;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::body::Expect;
use super::body::{check_types, empty_field, missing_field, model_of, parse_object, wrong_type};
use crate::error::{ApiError, ErrorCode};
use crate::streaming::BYTES_PER_TOKEN;

pub use reply::{encode_base64, floats_to_base64, write_list, EmbeddingList};

/// 输入字段。
const INPUT: &str = "input";
/// 编码字段。
const ENCODING_FORMAT: &str = "encoding_format";
/// 维度字段。
const DIMENSIONS: &str = "dimensions";
/// 浮点数组编码。
const FLOAT: &str = "float";
/// base64 编码。
const BASE64: &str = "base64";

/// 可选字段及其类型：出现且不为 null 时必须符合。
const FIELD_TYPES: &[(&str, Expect)] = &[
    (DIMENSIONS, Expect::PositiveInt),
    (ENCODING_FORMAT, Expect::String),
    ("user", Expect::String),
];

/// 客户端要的向量编码。
///
/// 用途：回复里每个向量写成浮点数组，或写成小端 f32 字节的 base64（OpenAI SDK 的缺省）。
///
/// ```
/// use chatnexus::dialects::embeddings::Encoding; // 向量编码
/// assert_eq!(Encoding::default(), Encoding::Float); // 没写 encoding_format 时是浮点数组
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// 浮点数组。
    #[default]
    Float,
    /// 小端 f32 字节的 base64。
    Base64,
}

/// 向量请求的上限：条数与总输入大小（字节；token id 每个按 [`BYTES_PER_TOKEN`] 字节计）。
///
/// 用途：`proxy` 按 `server` 段的配置给出，解析时超过就 400。
///
/// ```
/// let caps = chatnexus::dialects::embeddings::EmbeddingCaps { max_inputs: 2048, max_input_bytes: 1 << 20 }; // 上限
/// assert_eq!(caps.max_inputs, 2048); // 与 OpenAI 的批量上限相同
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingCaps {
    /// 一个请求最多的输入条数。
    pub max_inputs: usize,
    /// 全部输入加起来的最大字节数。
    pub max_input_bytes: usize,
}

/// 一个已校验的向量请求。
///
/// 用途：`proxy` 解析后交给 `exchange`；OpenAI 形状的上游拿到只换了 `model` 的原始字节，Gemini 由 `texts` 翻译。
///
/// ```
/// use chatnexus::dialects::embeddings::{EmbeddingCaps, EmbeddingsRequest}; // 向量请求
/// let caps = EmbeddingCaps { max_inputs: 8, max_input_bytes: 1024 }; // 上限
/// let raw = r#"{"model":"向量","input":["你好","世界"],"encoding_format":"base64"}"#;
/// let req = EmbeddingsRequest::parse(raw.into(), caps).unwrap(); // 校验通过
/// assert_eq!((req.inputs, req.texts().unwrap().len()), (2, 2)); // 两条文本
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddingsRequest {
    /// 客户端请求的模型名。
    pub model: String,
    /// 完整请求对象。
    pub body: Map<String, Value>,
    /// 原始请求体。
    pub raw: Bytes,
    /// 输入条数。
    pub inputs: usize,
    /// 输入是否为 token id（Gemini 不接受）。
    pub token_ids: bool,
    /// 全部输入的字节数（token id 每个按 [`BYTES_PER_TOKEN`] 计），估算输入 token 用。
    pub input_bytes: usize,
    /// 客户端要的编码。
    pub encoding: Encoding,
    /// 客户端要的维度。
    pub dimensions: Option<u64>,
}

impl EmbeddingsRequest {
    /// 解析并校验请求体。
    ///
    /// 错误：非 JSON、缺少 `model` 或 `input`、输入为空或类型不对、`encoding_format` 不是 `float`/`base64`、
    /// `dimensions` 不是正整数时返回 400（`param` 指向出错字段）；
    /// 条数或总大小超过上限时返回 400（错误码 `too_many_inputs` 或 `input_too_large`）。
    pub fn parse(raw: Bytes, caps: EmbeddingCaps) -> Result<Self, ApiError> {
        let body = parse_object(&raw)?;
        let model = model_of(&body)?;
        check_types(&body, FIELD_TYPES)?;
        let shape = measure(body.get(INPUT).ok_or_else(|| missing_field(INPUT))?)?;
        check_caps(&shape, caps)?;
        let encoding = encoding_of(&body)?;
        let dimensions = body.get(DIMENSIONS).and_then(Value::as_u64);
        Ok(EmbeddingsRequest {
            model,
            body,
            raw,
            inputs: shape.count,
            token_ids: shape.token_ids,
            input_bytes: shape.bytes,
            encoding,
            dimensions,
        })
    }

    /// 文本输入（按顺序）；输入是 token id 时为 `None`。
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self.body.get(INPUT)? {
            Value::String(text) => Some(vec![text.as_str()]),
            Value::Array(items) => items.iter().map(Value::as_str).collect(),
            _ => None,
        }
    }
}

/// 输入的形状：条数、是否 token id、总字节数。
struct Shape {
    count: usize,
    token_ids: bool,
    bytes: usize,
}

/// 校验 `input` 并量出它的形状：非空字符串、非空字符串数组、非空 token id 数组，或非空 token id 数组的数组。
///
/// 错误：为空或类型不对时返回 400，`param` 指向出错的元素。
fn measure(input: &Value) -> Result<Shape, ApiError> {
    let items = match input {
        Value::String(text) => {
            return non_empty_text(text, INPUT).map(|bytes| Shape {
                count: 1,
                token_ids: false,
                bytes,
            })
        }
        Value::Array(items) if !items.is_empty() => items,
        Value::Array(_) => return Err(empty_field(INPUT)),
        _ => return Err(wrong_type(INPUT, "字符串或数组")),
    };
    if items[0].is_number() {
        let bytes = token_bytes(items, INPUT)?;
        return Ok(Shape {
            count: 1,
            token_ids: true,
            bytes,
        });
    }
    let token_ids = items[0].is_array();
    let mut bytes = 0usize;
    for (i, item) in items.iter().enumerate() {
        let param = || format!("{INPUT}[{i}]");
        bytes = bytes.saturating_add(match (item, token_ids) {
            (Value::String(text), false) => non_empty_text(text, &param())?,
            (Value::Array(ids), true) if !ids.is_empty() => token_bytes(ids, &param())?,
            (Value::Array(_), true) => return Err(empty_field(&param())),
            (_, false) => return Err(wrong_type(&param(), "字符串（与第一条输入相同的类型）")),
            (_, true) => {
                return Err(wrong_type(
                    &param(),
                    "token id 数组（与第一条输入相同的类型）",
                ))
            }
        });
    }
    Ok(Shape {
        count: items.len(),
        token_ids,
        bytes,
    })
}

/// 非空文本的字节数。
///
/// 错误：空串时返回 400。
fn non_empty_text(text: &str, param: &str) -> Result<usize, ApiError> {
    if text.is_empty() {
        return Err(empty_field(param));
    }
    Ok(text.len())
}

/// token id 数组折算的字节数（每个 id 按 [`BYTES_PER_TOKEN`] 字节）。
///
/// 错误：有不是非负整数（u32 以内）的元素时返回 400。
fn token_bytes(ids: &[Value], param: &str) -> Result<usize, ApiError> {
    let valid = |id: &Value| id.as_u64().is_some_and(|n| u32::try_from(n).is_ok());
    if let Some(at) = ids.iter().position(|id| !valid(id)) {
        return Err(wrong_type(&format!("{param}[{at}]"), "非负整数 token id"));
    }
    Ok(ids.len().saturating_mul(BYTES_PER_TOKEN))
}

/// 条数与总大小不超过上限。
///
/// 错误：超过时返回 400，消息写明上限。
fn check_caps(shape: &Shape, caps: EmbeddingCaps) -> Result<(), ApiError> {
    if shape.count > caps.max_inputs {
        let message = format!(
            "`input` 有 {} 条，超过了每个请求 {} 条的上限，请分批请求",
            shape.count, caps.max_inputs
        );
        return Err(ApiError::bad_request(ErrorCode::TooManyInputs, message).with_param(INPUT));
    }
    if shape.bytes > caps.max_input_bytes {
        let message = format!(
            "`input` 共 {} 字节（token id 每个按 {BYTES_PER_TOKEN} 字节计），超过了每个请求 {} 字节的上限，请分批请求",
            shape.bytes, caps.max_input_bytes
        );
        return Err(ApiError::bad_request(ErrorCode::InputTooLarge, message).with_param(INPUT));
    }
    Ok(())
}

/// 客户端要的编码：没写或 null 时为浮点数组。
///
/// 错误：不是 `float` 或 `base64` 时返回 400。
fn encoding_of(body: &Map<String, Value>) -> Result<Encoding, ApiError> {
    match body.get(ENCODING_FORMAT).and_then(Value::as_str) {
        None | Some(FLOAT) => Ok(Encoding::Float),
        Some(BASE64) => Ok(Encoding::Base64),
        Some(other) => Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            format!("`{ENCODING_FORMAT}` 的值 `{other}` 无效，应为 {FLOAT} 或 {BASE64}"),
        )
        .with_param(ENCODING_FORMAT)),
    }
}
