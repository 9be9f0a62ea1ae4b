//! OpenAI Responses 方言（Codex CLI、`client.responses.create` 与 Agents SDK 使用）：`POST /v1/responses`。
//!
//! 目标说 Responses 协议（`openai` 上游）时原样透传（只换 `model`）；其余上游经枢纽格式翻译：
//! `request` 把请求翻译成 Chat Completions，`response` 与 `stream` 把枢纽回复渲染成 `response` 对象与事件流，
//! `tools` 记下客户端工具与枢纽函数名的对应。出错时（响应头之前）是与 Chat 相同的 OpenAI 错误信封。

mod error;
mod names;
/// 响应缓存用：从事件流取出完整回复、完整回复重放为事件流。
pub mod replay;
mod request;
/// 完整回复：枢纽的 `chat.completion` → Responses 的 `response` 对象。
pub mod response;
/// 流式回复：枢纽流式块 → Responses 事件的状态机。
pub mod stream;
/// 翻译时客户端工具与枢纽函数名的对应。
pub mod tools;

#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod stream_tests;

use bytes::Bytes;
use once_cell::sync::OnceCell;
use serde_json::{json, Map, Value};

use super::body::{check_types, model_of, parse_object, wrong_type, Expect};
use super::chat::ChatRequest;
use crate::error::ApiError;

pub use error::{error_reply, stream_error_event};
pub use request::{Translation, DEFAULT_MAX_OUTPUT};

/// 常见可选字段及其类型：出现且不为 null 时必须符合（未知字段原样保留）。
const FIELD_TYPES: &[(&str, Expect)] = &[
    ("stream", Expect::Bool),
    ("instructions", Expect::String),
    ("tools", Expect::Array),
    ("parallel_tool_calls", Expect::Bool),
    ("max_output_tokens", Expect::PositiveInt),
    ("temperature", Expect::Number),
    ("top_p", Expect::Number),
    ("store", Expect::Bool),
    ("metadata", Expect::Object),
    ("text", Expect::Object),
    ("reasoning", Expect::Object),
    ("include", Expect::Array),
];
/// 回显到 `response` 对象里的请求字段与它们缺省时的值（参考文档 §R7）。
const ECHO_FIELDS: &[(&str, &str)] = &[
    ("instructions", "null"),
    ("tools", "[]"),
    ("tool_choice", "\"auto\""),
    ("parallel_tool_calls", "true"),
    ("temperature", "1.0"),
    ("top_p", "1.0"),
    ("max_output_tokens", "null"),
    ("reasoning", r#"{"effort":null,"summary":null}"#),
    ("text", r#"{"format":{"type":"text"}}"#),
    ("store", "true"),
    ("metadata", "{}"),
    ("previous_response_id", "null"),
    ("user", "null"),
];

/// 一个已校验的 Responses 请求。
///
/// 用途：透传到 OpenAI 上游时只用 `raw`（原样转发，只换 `model`）；翻译到其他上游时用
/// [`ResponsesRequest::translation`]（第一次用到时才翻译，之后复用）。
///
/// ```
/// let raw = r#"{"model":"演示","input":"你好","stream":true}"#;
/// let req = chatnexus::dialects::ResponsesRequest::parse(raw.into()).unwrap(); // 校验通过
/// assert!(req.stream); // 流式
/// assert_eq!(req.translation().unwrap().hub.model, "演示"); // 枢纽请求沿用客户端的模型名
/// ```
#[derive(Debug)]
pub struct ResponsesRequest {
    /// 客户端请求的模型名。
    pub model: String,
    /// 是否流式。
    pub stream: bool,
    /// 完整请求对象。
    pub body: Map<String, Value>,
    /// 原始请求体（透传时原样转发）。
    pub raw: Bytes,
    /// 网关展开过的 `previous_response_id`（请求体里已去掉，回复里照样回显）。
    pub continued_from: Option<String>,
    /// 交换后要保存翻译的回复（配置了会话存储且客户端没有 `store: false`）。
    pub keep: bool,
    /// 翻译成枢纽格式的结果（第一次用到时才翻译）。
    translated: OnceCell<Result<Translation, ApiError>>,
}

impl ResponsesRequest {
    /// 解析并校验请求体：`model` 必填，`input` 是字符串或条目数组，常见字段类型正确；未知字段原样保留。
    ///
    /// 错误：非 JSON、不是对象、缺少 `model`/`input` 或字段类型不对时返回 400。
    pub fn parse(raw: Bytes) -> Result<Self, ApiError> {
        let body = parse_object(&raw)?;
        let model = model_of(&body)?;
        match body.get("input") {
            Some(Value::String(_) | Value::Array(_)) | None => {}
            Some(_) => return Err(wrong_type("input", "字符串或条目数组")),
        }
        check_types(&body, FIELD_TYPES)?;
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        Ok(ResponsesRequest {
            model,
            stream,
            body,
            raw,
            continued_from: None,
            keep: false,
            translated: OnceCell::new(),
        })
    }

    /// 翻译到枢纽格式的结果；第一次调用时翻译，之后复用。
    ///
    /// 错误：请求无法翻译（需要服务端状态、强制使用内置工具等）时返回 400。
    pub fn translation(&self) -> Result<&Translation, ApiError> {
        self.translated
            .get_or_init(|| request::to_hub(&self.body))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// 枢纽格式的请求。
    ///
    /// 错误：同 [`ResponsesRequest::translation`]。
    pub fn hub(&self) -> Result<&ChatRequest, ApiError> {
        self.translation().map(|t| &t.hub)
    }

    /// 翻译到枢纽格式时丢弃的功能（访问日志记录；还没翻译过或翻译失败时为 `None`）。
    pub fn dropped(&self) -> Option<&super::Dropped> {
        match self.translated.get() {
            Some(Ok(translation)) => Some(&translation.dropped),
            _ => None,
        }
    }

    /// 渲染回复用的 `response` 对象骨架：回显的请求字段（缺省值按 OpenAI）与客户端请求的模型名。
    pub fn template(&self) -> Map<String, Value> {
        let mut template = Map::new();
        template.insert("model".into(), json!(self.model));
        for (field, default) in ECHO_FIELDS {
            let value = match self.body.get(*field) {
                Some(value) if !value.is_null() => value.clone(),
                _ => serde_json::from_str(default).unwrap_or(Value::Null),
            };
            template.insert((*field).into(), value);
        }
        template.insert("truncation".into(), json!("disabled"));
        if let Some(previous) = &self.continued_from {
            template.insert("previous_response_id".into(), json!(previous));
        }
        template
    }
}
