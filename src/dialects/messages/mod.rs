//! Anthropic Messages 方言（Claude Code 与 anthropic SDK 使用）：消息接口 `POST /v1/messages`
//! 与计数接口 `POST /v1/messages/count_tokens`。
//!
//! 目标是 `anthropic` 上游时原样透传（只换 `model`）；其余上游经枢纽格式翻译：
//! `request` 把请求翻译成 Chat Completions，`response` 与 `stream` 把枢纽回复渲染回 Anthropic 的形状，
//! `error` 写出 Anthropic 形状的错误，`tokens` 在上游没有计数接口时估算输入 token。

mod error;
mod names;
/// 响应缓存用：Messages 事件流累加成完整回复、完整回复重放为事件流。
pub mod replay;
mod request;
/// 完整回复：枢纽的 `chat.completion` → Anthropic `message` 对象。
pub mod response;
/// 流式回复：枢纽流式块 → Anthropic 具名事件的状态机。
pub mod stream;
mod tokens;

#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod stream_tests;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use once_cell::sync::OnceCell;
use serde_json::{Map, Value};

use super::body::{check_types, messages_of, model_of, parse_object, Expect};
use super::chat::ChatRequest;
use super::Dropped;
use crate::error::ApiError;

pub use error::{error_body, stream_error_event, ErrorReply};
pub use tokens::estimate_input_tokens;

/// Anthropic API 版本请求头。
pub const VERSION_HEADER: &str = "anthropic-version";
/// 客户端没给版本时透传使用的版本。
pub const DEFAULT_VERSION: &str = "2023-06-01";
/// 透传时原样转发的请求头前缀（`anthropic-version`、`anthropic-beta`、`anthropic-workspace-id` 等）。
const FORWARDED_PREFIX: &str = "anthropic-";
/// 浏览器直连标记头：它属于客户端与 Anthropic 之间，网关不转发。
const BROWSER_ACCESS_HEADER: &str = "anthropic-dangerous-direct-browser-access";

/// 常见可选字段及其类型：出现且不为 null 时必须符合（未知字段原样保留）。
const FIELD_TYPES: &[(&str, Expect)] = &[
    ("stream", Expect::Bool),
    ("max_tokens", Expect::PositiveInt),
    ("temperature", Expect::Number),
    ("top_p", Expect::Number),
    ("top_k", Expect::PositiveInt),
    ("tools", Expect::Array),
    ("stop_sequences", Expect::Array),
    ("metadata", Expect::Object),
];

/// 一个已校验的 Anthropic Messages 请求（或 count_tokens 请求）。
///
/// 用途：透传到 Anthropic 上游时只用 `raw` 与 `headers`（原样转发，只换 `model`）；
/// 翻译到其他上游时用 [`MessagesRequest::hub`] 取得枢纽格式的请求（第一次用到时才翻译，之后复用）。
///
/// ```
/// let raw = r#"{"model":"claude","max_tokens":64,"messages":[{"role":"user","content":"你好"}]}"#;
/// let req = chatnexus::dialects::MessagesRequest::parse(raw.into(), Vec::new()).unwrap(); // 校验通过
/// assert_eq!(req.hub().unwrap().model, "claude"); // 枢纽请求沿用客户端的模型名
/// ```
#[derive(Debug)]
pub struct MessagesRequest {
    /// 客户端请求的模型名。
    pub model: String,
    /// 是否流式。
    pub stream: bool,
    /// 完整请求对象。
    pub body: Map<String, Value>,
    /// 原始请求体（透传时原样转发）。
    pub raw: Bytes,
    /// 透传时转发给 Anthropic 的客户端请求头（`anthropic-*`）。
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// 翻译成枢纽格式的结果（第一次用到时才翻译）。
    hub: OnceCell<Result<(ChatRequest, Dropped), ApiError>>,
}

impl MessagesRequest {
    /// 解析并校验请求体；`headers` 是客户端请求头中要透传的部分（见 [`forwarded_headers`]）。
    ///
    /// 只校验网关依赖的字段（`model`、`messages` 与常见字段的类型），未知字段原样保留：
    /// Claude Code 的新字段（`context_management`、`output_config` 等）透传给 Anthropic，翻译时丢弃。
    ///
    /// 错误：非 JSON、不是对象、缺少 `model`/`messages` 或字段类型不对时返回 400。
    pub fn parse(raw: Bytes, headers: Vec<(HeaderName, HeaderValue)>) -> Result<Self, ApiError> {
        let body = parse_object(&raw)?;
        let model = model_of(&body)?;
        messages_of(&body)?;
        check_types(&body, FIELD_TYPES)?;
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        Ok(MessagesRequest {
            model,
            stream,
            body,
            raw,
            headers,
            hub: OnceCell::new(),
        })
    }

    /// 枢纽格式（Chat Completions）的请求；第一次调用时翻译，之后复用。
    ///
    /// 错误：请求无法翻译（例如强制使用只有 Anthropic 能执行的服务端工具）时返回 400。
    pub fn hub(&self) -> Result<&ChatRequest, ApiError> {
        self.translated().map(|(hub, _)| hub)
    }

    /// 翻译到枢纽格式时丢弃的功能（访问日志记录；还没翻译过时为空）。
    pub fn dropped(&self) -> Option<&Dropped> {
        match self.hub.get() {
            Some(Ok((_, dropped))) => Some(dropped),
            _ => None,
        }
    }

    fn translated(&self) -> Result<&(ChatRequest, Dropped), ApiError> {
        self.hub
            .get_or_init(|| request::to_hub(&self.body))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// 取出透传给 Anthropic 的客户端请求头：全部 `anthropic-*`（浏览器直连标记除外），值原样保留。
///
/// 参数：客户端的请求头表。返回：头名与头值（顺序与客户端一致）。
pub fn forwarded_headers(headers: &http::HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name.starts_with(FORWARDED_PREFIX) && name != BROWSER_ACCESS_HEADER
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}
