//! 向量接口 `POST /v1/embeddings`（OpenAI 的形状）：解析并校验请求体，以及按客户端要的编码写出向量列表。
//!
//! 请求里的 `input` 可以是一个字符串、字符串数组、token id 数组或 token id 数组的数组；条数与总大小
//! 有上限（`server.embeddings_max_inputs`、`server.embeddings_max_input_bytes`），超过时 400。
//! 校验不建 JSON 树、不复制输入（见 `shape`）：透传给 OpenAI 形状的上游时原始字节只换 `model`，
//! 完整的请求对象只在需要时（Gemini 翻译、缓存键）才解析。

mod reply;
mod shape;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::body::{check_types, missing_field, model_of, parse_object, Expect};
use crate::error::{ApiError, ErrorCode};
use crate::streaming::BYTES_PER_TOKEN;
use shape::{Shape, Wire};

pub use reply::{encode_base64, floats_to_base64, write_list, EmbeddingList};

/// 输入字段。
pub(super) const INPUT: &str = "input";
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
    /// 完整请求对象（第一次用到时才由原始请求体解析）。
    body: OnceLock<Map<String, Value>>,
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
        let wire: Wire = serde_json::from_slice(&raw).map_err(|e| malformed(&raw, &e))?;
        let small = wire.small_fields();
        let model = model_of(&small)?;
        check_types(&small, FIELD_TYPES)?;
        let shape = wire.input().ok_or_else(|| missing_field(INPUT))??;
        check_caps(&shape, caps)?;
        let encoding = encoding_of(&small)?;
        let dimensions = small.get(DIMENSIONS).and_then(Value::as_u64);
        Ok(EmbeddingsRequest {
            model,
            body: OnceLock::new(),
            raw,
            inputs: shape.count,
            token_ids: shape.token_ids,
            input_bytes: shape.bytes,
            encoding,
            dimensions,
        })
    }

    /// 完整的请求对象（第一次调用时由原始请求体解析；解析时已校验过是 JSON 对象）。
    pub fn body(&self) -> &Map<String, Value> {
        self.body
            .get_or_init(|| serde_json::from_slice(&self.raw).unwrap_or_default())
    }

    /// 文本输入（按顺序）；输入是 token id 时为 `None`。
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self.body().get(INPUT)? {
            Value::String(text) => Some(vec![text.as_str()]),
            Value::Array(items) => items.iter().map(Value::as_str).collect(),
            _ => None,
        }
    }
}

/// 请求体不能按向量请求读出时的 400：不是 JSON、不是对象或顶层键重复时给出与其他接口相同的错误，
/// 否则（如 `model` 写了两次）说明原因。
fn malformed(raw: &[u8], cause: &serde_json::Error) -> ApiError {
    match parse_object(raw) {
        Err(error) => error,
        Ok(_) => ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("请求体不是合法的向量请求：{cause}"),
        ),
    }
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
