//! Anthropic 上游：把 OpenAI 请求翻译为 Anthropic Messages 格式，把响应、流与错误翻译回 OpenAI。
//!
//! 参考文档 §5.1–§5.3、§5.7、§5.8 留给实现者选择的地方，本文件的约定是：
//! - 全部 system 与 developer 消息按出现顺序各成一个 `system` 文本块；对话中间的系统消息也被提到
//!   最前面，它在对话中的位置信息会丢失（Anthropic 没有对话中间的系统消息）。
//! - `temperature` 超过 1.0 时截断为 1.0（Anthropic 的上限），不按比例缩放；与 `top_p` 同时给出时
//!   丢弃 `top_p`（较新的 Claude 模型拒绝两者同时出现）。两者都记 DEBUG 日志。
//! - 以助手消息开头的对话原样转发；以助手消息结尾视为预填充，去掉其末尾空白。
//! - 用量采用 OpenAI 语义：`prompt_tokens` 含缓存读取与缓存写入，`cached_tokens` 为缓存读取。
//! - 完整响应没有文本时 `content` 为 null（与 OpenAI 一致）；响应与流的 `id` 都沿用 Anthropic 的消息 id。
//! - 流中的 `event: error` 与未收到 `message_stop` 就断开，都作为流中错误交给 exchange 写出，
//!   不伪造带 `finish_reason` 的块，也不发 `[DONE]`。

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use log::debug;
use serde_json::{json, Map, Value};

use super::convert::{self, Completion, ToolCall};
use super::{
    json_content_type, key_header, map_upstream_error, truncate_chars, ProviderFilter,
    StreamStatus, StreamTranslator, TranslateCtx, TranslatedReply, UpstreamErrorInfo,
    UpstreamRequest, MAX_ERROR_TEXT_CHARS,
};
use crate::config::Target;
use crate::dialects::ChatRequest;
use crate::error::{ApiError, ErrorCode};
use crate::streaming::{ChunkWriter, FinishReason, SseEvent, Usage};

/// Messages 接口相对 `base_url` 路径的位置。
const MESSAGES_PATH: &str = "/v1/messages";
/// 携带上游密钥的请求头。
const API_KEY_HEADER: &str = "x-api-key";
/// API 版本请求头。
const VERSION_HEADER: &str = "anthropic-version";
/// 网关固定发送的 API 版本（所有请求必填）。
const API_VERSION: &str = "2023-06-01";
/// 客户端与目标都没给输出上限时使用的值（与 LiteLLM 的缺省一致）；Anthropic 要求必填。
const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Anthropic 接受的最大 temperature（OpenAI 允许到 2）。
const MAX_TEMPERATURE: f64 = 1.0;
/// 日志与错误消息中的上游名称。
const PROVIDER_LABEL: &str = "anthropic";
/// 用户消息角色。
const ROLE_USER: &str = "user";
/// 助手消息角色。
const ROLE_ASSISTANT: &str = "assistant";
/// Anthropic 接受的图片 MIME 类型。
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];
/// PDF 文档的 MIME 类型（以 `document` 块发送）。
const PDF_MIME: &str = "application/pdf";
/// 可以作为图片 URL 来源的协议前缀。
const URL_SCHEMES: &[&str] = &["https://", "http://"];
/// Anthropic 没有对应参数、因而丢弃的 OpenAI 参数。
const UNSUPPORTED: &[&str] = &[
    "seed",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "response_format",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "service_tier",
    "store",
    "metadata",
    "web_search_options",
];
/// 没有参数的工具调用的参数（保证拼接后的参数是合法 JSON）。
const EMPTY_ARGUMENTS: &str = "{}";
/// 上游没给消息 id 时合成 id 的前缀。
const MESSAGE_ID_PREFIX: &str = "msg_";
/// Anthropic 的“过载”状态码（非标准，转给客户端时改为 503）。
const STATUS_OVERLOADED: u16 = 529;
/// 过载错误对客户端的状态码与错误码。
const OVERLOADED: (u16, &str) = (503, "overloaded");
/// 流中错误的类型未知时使用的状态码。
const STATUS_STREAM_ERROR: u16 = 502;

/// Anthropic 协议过滤器。
pub(super) struct AnthropicFilter;

impl ProviderFilter for AnthropicFilter {
    fn build_request(
        &self,
        req: &ChatRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        let body = request_body(req, target)?;
        let provider = &target.provider;
        let mut headers = vec![
            json_content_type(),
            (
                HeaderName::from_static(VERSION_HEADER),
                HeaderValue::from_static(API_VERSION),
            ),
        ];
        headers.extend(key_header(
            provider,
            HeaderName::from_static(API_KEY_HEADER),
            "",
        )?);
        Ok(UpstreamRequest {
            path: format!("{}{MESSAGES_PATH}", provider.base_url.path),
            headers,
            body: Bytes::from(Value::Object(body).to_string()),
        })
    }

    fn translate_response(
        &self,
        body: Bytes,
        ctx: &TranslateCtx,
    ) -> Result<TranslatedReply, ApiError> {
        completion_of(&body, ctx).map(TranslatedReply::from)
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo {
        error_info(status, body)
    }

    fn stream_translator(&self, ctx: TranslateCtx) -> Box<dyn StreamTranslator> {
        Box::new(AnthropicStream::new(ctx))
    }
}

// ───────────────────────────── 请求翻译 ─────────────────────────────

/// 把客户端请求翻译为 Anthropic 请求体。
///
/// 错误：`n > 1`、没有非系统消息、内容无法表达（音频、不支持的图片类型等）或工具参数非法时返回 400。
fn request_body(req: &ChatRequest, target: &Target) -> Result<Map<String, Value>, ApiError> {
    reject_multiple_choices(req)?;
    convert::log_dropped(req, UNSUPPORTED, PROVIDER_LABEL);
    let all = convert::messages(req);
    let messages = conversation(all)?;
    if messages.is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            "Anthropic 上游至少需要一条非系统消息（user、assistant 或 tool）",
        )
        .with_param("messages"));
    }
    let max_tokens = convert::max_tokens(req)
        .or(target.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut body = Map::new();
    body.insert("model".into(), json!(target.model));
    body.insert("max_tokens".into(), json!(max_tokens));
    let system = system_blocks(all);
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    insert_sampling(req, &mut body);
    insert_tools(req, &mut body)?;
    if let Some(user) = req.body.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    if req.body.contains_key("stream") {
        body.insert("stream".into(), json!(req.stream));
    }
    Ok(body)
}

/// Anthropic 一次只生成一个候选回复：`n > 1` 明确拒绝，而不是悄悄只返回一个。
fn reject_multiple_choices(req: &ChatRequest) -> Result<(), ApiError> {
    if req.body.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
        return Err(ApiError::bad_request(
            ErrorCode::UnsupportedParameter,
            "Anthropic 上游每次只能生成一个候选回复，不支持 n 大于 1",
        )
        .with_param("n"));
    }
    Ok(())
}

/// 是否是系统消息（system 或 developer）。
fn is_system(message: &Value) -> bool {
    matches!(message["role"].as_str(), Some("system" | "developer"))
}

/// 按顺序收集全部 system 与 developer 消息，每条一个文本块（数组内容取全部文本部分，跳过空文本）。
///
/// 对话中间的系统消息同样提到 `system`，它原来的位置会丢失，记一条 DEBUG 日志。
fn system_blocks(messages: &[Value]) -> Vec<Value> {
    let mut seen_conversation = false;
    let mut blocks = Vec::new();
    for message in messages {
        if !is_system(message) {
            seen_conversation = true;
            continue;
        }
        if seen_conversation {
            debug!("对话中间的系统消息已移到 Anthropic 的 system 字段，其原有位置丢失");
        }
        if let Some(text) = convert::text_of(&message["content"]).filter(|t| !t.trim().is_empty()) {
            blocks.push(json!({ "type": "text", "text": text }));
        }
    }
    blocks
}

/// 一条待发送的 Anthropic 消息。
struct Turn {
    /// `user` 或 `assistant`。
    role: &'static str,
    /// 内容块。
    blocks: Vec<Value>,
}

/// 把非系统消息翻译为 Anthropic 的 `messages`：tool 消息变为用户消息中的 `tool_result` 块，
/// 相邻同角色消息合并，以助手消息结尾时去掉预填充文本末尾的空白。
fn conversation(messages: &[Value]) -> Result<Vec<Value>, ApiError> {
    let mut turns: Vec<Turn> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        match message["role"].as_str() {
            Some("user") => append(&mut turns, ROLE_USER, user_blocks(&message["content"], i)?),
            Some("assistant") => append(&mut turns, ROLE_ASSISTANT, assistant_blocks(message, i)?),
            Some("tool") => append(&mut turns, ROLE_USER, vec![tool_result(message, i)?]),
            Some("function") => {
                return Err(ApiError::bad_request(
                    ErrorCode::UnsupportedValue,
                    "Anthropic 上游不支持已弃用的 function 角色消息，请改用 tool 消息",
                )
                .with_param(format!("messages[{i}].role")))
            }
            // system 与 developer 已由 system_blocks 收集。
            _ => {}
        }
    }
    trim_prefill(&mut turns);
    Ok(turns
        .into_iter()
        .map(|t| json!({ "role": t.role, "content": t.blocks }))
        .collect())
}

/// 是否是 `tool_result` 块。
fn is_tool_result(block: &Value) -> bool {
    block["type"] == "tool_result"
}

/// 把一条消息的块追加到对话末尾；没有块的消息（如空内容）直接跳过。
///
/// 与上一条同角色时合并成一条消息，这样连续的 tool 消息与其后的用户消息落在同一条用户消息里。
/// 工具结果块插在已有工具结果之后、其他内容之前：Anthropic 要求工具调用之后的用户消息以全部
/// `tool_result` 块开头。
fn append(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    let Some(last) = turns.last_mut().filter(|t| t.role == role) else {
        turns.push(Turn { role, blocks });
        return;
    };
    for block in blocks {
        if is_tool_result(&block) {
            let at = last.blocks.iter().take_while(|b| is_tool_result(b)).count();
            last.blocks.insert(at, block);
        } else {
            last.blocks.push(block);
        }
    }
}

/// 以助手消息结尾时 Anthropic 会续写它（预填充），而末尾带空白的预填充会被拒绝，所以去掉末尾空白。
fn trim_prefill(turns: &mut [Turn]) {
    let Some(last) = turns.last_mut().filter(|t| t.role == ROLE_ASSISTANT) else {
        return;
    };
    if let Some(block) = last.blocks.last_mut().filter(|b| b["type"] == "text") {
        let trimmed = block["text"]
            .as_str()
            .unwrap_or_default()
            .trim_end()
            .to_string();
        block["text"] = json!(trimmed);
    }
}

/// 非空文本的文本块；空文本为 `None`（Anthropic 拒绝空文本块）。
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "type": "text", "text": text }))
}

/// 用户消息（或工具结果）内容的块：字符串为一个文本块，数组逐个翻译并跳过空文本。
fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::String(text) => Ok(text_block(text).into_iter().collect()),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, part)| {
                part_block(part, &format!("messages[{i}].content[{j}]")).transpose()
            })
            .collect(),
        _ => Ok(Vec::new()),
    }
}

/// 翻译一个内容部分；`param` 为它在请求中的位置。
///
/// 未知类型（包括混进 OpenAI 消息的 Anthropic 格式块 `tool_use`、`tool_result`）明确返回 400，
/// 不悄悄丢弃。
fn part_block(part: &Value, param: &str) -> Result<Option<Value>, ApiError> {
    match part["type"].as_str() {
        Some("text") => Ok(part["text"].as_str().and_then(text_block)),
        Some("image_url") => {
            image_block(&part["image_url"], &format!("{param}.image_url.url")).map(Some)
        }
        Some("file") => file_block(&part["file"], &format!("{param}.file.file_data")).map(Some),
        Some("input_audio") => Err(unsupported_content(param, "音频输入（input_audio）")),
        other => Err(unsupported_content(
            param,
            &format!("内容类型 `{}`", other.unwrap_or("（缺失）")),
        )),
    }
}

/// 内容无法翻译为 Anthropic 格式的 400 错误。
fn unsupported_content(param: &str, what: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::UnsupportedContent,
        format!("Anthropic 上游不支持 `{param}` 中的{what}"),
    )
    .with_param(param)
}

/// `image_url` 部分：base64 data URL → base64 来源，http(s) 地址 → url 来源（`detail` 无对应字段，丢弃）。
fn image_block(image_url: &Value, param: &str) -> Result<Value, ApiError> {
    let url = image_url["url"]
        .as_str()
        .or(image_url.as_str())
        .unwrap_or_default();
    if let Some((mime, data)) = convert::parse_data_url(url) {
        return base64_block(mime, data, param);
    }
    if URL_SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(ApiError::bad_request(
        ErrorCode::InvalidImageUrl,
        format!("`{param}` 必须是 http(s) 地址或 base64 编码的 data URL"),
    )
    .with_param(param))
}

/// base64 数据按 MIME 类型成为图片块或 PDF 文档块；其他类型返回 400。
fn base64_block(mime: &str, data: &str, param: &str) -> Result<Value, ApiError> {
    if IMAGE_TYPES.contains(&mime) {
        return Ok(
            json!({ "type": "image", "source": { "type": "base64", "media_type": mime, "data": data } }),
        );
    }
    if mime == PDF_MIME {
        return Ok(
            json!({ "type": "document", "source": { "type": "base64", "media_type": PDF_MIME, "data": data } }),
        );
    }
    Err(ApiError::bad_request(
        ErrorCode::UnsupportedMediaType,
        format!(
            "`{param}` 的类型 `{mime}` 不受 Anthropic 支持，图片只能是 {}，文档只能是 PDF",
            IMAGE_TYPES.join("、")
        ),
    )
    .with_param(param))
}

/// `file` 部分：只支持 PDF 的 base64 data URL（Anthropic 无法引用 OpenAI 的 `file_id`）。
fn file_block(file: &Value, param: &str) -> Result<Value, ApiError> {
    match file["file_data"].as_str().and_then(convert::parse_data_url) {
        Some((mime, data)) if mime == PDF_MIME => base64_block(mime, data, param),
        _ => Err(ApiError::bad_request(
            ErrorCode::UnsupportedContent,
            format!("`{param}` 只支持 PDF 的 base64 data URL（不支持 file_id 与其他文件类型）"),
        )
        .with_param(param)),
    }
}

/// tool 消息 → `tool_result` 块；内容为空时省略 `content`（空文本块会被拒绝）。
fn tool_result(message: &Value, i: usize) -> Result<Value, ApiError> {
    let id = required_str(
        &message["tool_call_id"],
        &format!("messages[{i}].tool_call_id"),
    )?;
    let mut block = json!({ "type": "tool_result", "tool_use_id": id });
    let content = &message["content"];
    let output = match content.as_str() {
        Some(text) => (!text.is_empty()).then(|| json!(text)),
        None => {
            let blocks = user_blocks(content, i)?;
            (!blocks.is_empty()).then_some(Value::Array(blocks))
        }
    };
    if let Some(output) = output {
        block["content"] = output;
    }
    Ok(block)
}

/// 助手消息 → 文本块（空、null 或纯空白时省略）加 `tool_use` 块。
///
/// 数组内容只允许文本（与拒绝）部分；其他部分明确拒绝，而不是悄悄丢弃。
fn assistant_blocks(message: &Value, i: usize) -> Result<Vec<Value>, ApiError> {
    let parts = message["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if let Some(j) = parts
        .iter()
        .position(|p| !matches!(p["type"].as_str(), Some("text" | "refusal")))
    {
        let param = format!("messages[{i}].content[{j}]");
        return Err(unsupported_content(&param, "助手消息里的非文本内容"));
    }
    let mut blocks: Vec<Value> = convert::text_of(&message["content"])
        .filter(|t| !t.trim().is_empty())
        .and_then(|t| text_block(&t))
        .into_iter()
        .collect();
    let calls = message["tool_calls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (j, call) in calls.iter().enumerate() {
        blocks.push(tool_use_block(
            call,
            &format!("messages[{i}].tool_calls[{j}]"),
        )?);
    }
    Ok(blocks)
}

/// 历史中的一个工具调用 → `tool_use` 块；参数解析失败时返回 400，`param` 指向该参数。
fn tool_use_block(call: &Value, param: &str) -> Result<Value, ApiError> {
    let id = required_str(&call["id"], &format!("{param}.id"))?;
    let function = &call["function"];
    let name = required_str(&function["name"], &format!("{param}.function.name"))?;
    let input = convert::tool_arguments(
        &function["arguments"],
        &format!("{param}.function.arguments"),
    )?;
    Ok(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
}

/// 取必填的非空字符串字段，缺失时返回指向它的 400。
fn required_str<'a>(value: &'a Value, param: &str) -> Result<&'a str, ApiError> {
    value.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::MissingRequiredParameter,
            format!("缺少必填字段 `{param}`"),
        )
        .with_param(param)
    })
}

/// 采样参数与停止序列。
///
/// temperature 超过 Anthropic 上限时截断为 1.0；temperature 与 top_p 同时给出时丢弃 top_p，
/// 因为较新的 Claude 模型拒绝两者同时出现。没有截断的数值原样转发。
fn insert_sampling(req: &ChatRequest, body: &mut Map<String, Value>) {
    let temperature = req.body.get("temperature").filter(|v| v.is_number());
    if let Some(value) = temperature {
        let clamped = value.as_f64().is_some_and(|t| t > MAX_TEMPERATURE);
        if clamped {
            debug!("temperature {value} 超过 Anthropic 的上限，已截断为 {MAX_TEMPERATURE}");
        }
        let value = if clamped {
            json!(MAX_TEMPERATURE)
        } else {
            value.clone()
        };
        body.insert("temperature".into(), value);
    }
    if let Some(top_p) = req.body.get("top_p").filter(|v| v.is_number()) {
        if temperature.is_some() {
            debug!("同时给出了 temperature 与 top_p，Anthropic 只接受其一，已丢弃 top_p");
        } else {
            body.insert("top_p".into(), top_p.clone());
        }
    }
    if let Some(stop) = convert::stop_sequences(req).filter(|s| !s.is_empty()) {
        body.insert("stop_sequences".into(), json!(stop));
    }
}

/// 工具定义与工具选择；没有工具时两者都不发送（Anthropic 的 tool_choice 离开 tools 没有意义）。
fn insert_tools(req: &ChatRequest, body: &mut Map<String, Value>) -> Result<(), ApiError> {
    let Some(list) = req
        .body
        .get("tools")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return Ok(());
    };
    let tools = list
        .iter()
        .enumerate()
        .map(|(k, tool)| tool_definition(tool, k))
        .collect::<Result<Vec<_>, _>>()?;
    body.insert("tools".into(), Value::Array(tools));
    if let Some(choice) = tool_choice(req)? {
        body.insert("tool_choice".into(), choice);
    }
    Ok(())
}

/// 一个 OpenAI 函数工具 → `{name, description, input_schema}`（没有参数 Schema 时给空对象 Schema）。
fn tool_definition(tool: &Value, k: usize) -> Result<Value, ApiError> {
    let function = &tool["function"];
    let name = required_str(&function["name"], &format!("tools[{k}].function.name"))?;
    let mut definition = json!({ "name": name });
    if let Some(description) = function["description"].as_str() {
        definition["description"] = json!(description);
    }
    definition["input_schema"] = match &function["parameters"] {
        Value::Object(schema) => Value::Object(schema.clone()),
        _ => json!({ "type": "object", "properties": {} }),
    };
    Ok(definition)
}

/// `tool_choice` 与 `parallel_tool_calls` → Anthropic 的 `tool_choice`。
///
/// auto/none/required/指定函数分别对应 auto/none/any/tool；`parallel_tool_calls: false` 变为
/// `disable_parallel_tool_use: true`（客户端没给 tool_choice 时补一个 auto；none 不接受该字段）。
fn tool_choice(req: &ChatRequest) -> Result<Option<Value>, ApiError> {
    let mut choice = match req.body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => Some(match mode.as_str() {
            "auto" => json!({ "type": "auto" }),
            "none" => json!({ "type": "none" }),
            "required" => json!({ "type": "any" }),
            _ => return Err(bad_tool_choice()),
        }),
        Some(named) => match named["function"]["name"].as_str() {
            Some(name) => Some(json!({ "type": "tool", "name": name })),
            None => return Err(bad_tool_choice()),
        },
    };
    if req.body.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let choice = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    Ok(choice)
}

/// 无法翻译的 `tool_choice`。
fn bad_tool_choice() -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidValue,
        "`tool_choice` 应为 auto、none、required 或 {\"type\":\"function\",\"function\":{\"name\":…}}",
    )
    .with_param("tool_choice")
}

// ───────────────────────────── 响应翻译 ─────────────────────────────

/// 上游响应无法理解时的 502。
fn invalid_response(message: String) -> ApiError {
    ApiError::bad_gateway(ErrorCode::InvalidUpstreamResponse, message)
}

/// 上游的消息 id；缺失时合成一个。
fn message_id(message: &Value) -> String {
    message["id"]
        .as_str()
        .map_or_else(|| convert::random_id(MESSAGE_ID_PREFIX), str::to_string)
}

/// 把 Anthropic 完整响应翻译为补全：文本块拼接为 `content`，`tool_use` 块成为工具调用（id 原样保留）。
///
/// 错误：不是 JSON 或缺少 `content` 数组时返回 502。
fn completion_of(body: &[u8], ctx: &TranslateCtx) -> Result<Completion, ApiError> {
    let message: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("上游返回了无法解析的 JSON：{e}")))?;
    let blocks = message["content"]
        .as_array()
        .ok_or_else(|| invalid_response("上游响应缺少 content 数组".to_string()))?;
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let tool_calls = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(tool_call_of)
        .collect();
    let mut counts = TokenCounts::default();
    counts.update(&message["usage"]);
    Ok(Completion {
        id: message_id(&message),
        created: ctx.created,
        model: ctx.model.clone(),
        content: (!text.is_empty()).then_some(text),
        tool_calls,
        finish: finish_reason(message["stop_reason"].as_str()),
        usage: counts.usage(),
    })
}

/// `tool_use` 块 → 工具调用；`input` 对象序列化为 JSON 字符串（OpenAI 的参数永远是字符串）。
fn tool_call_of(block: &Value) -> ToolCall {
    let arguments = match &block["input"] {
        Value::Null => EMPTY_ARGUMENTS.to_string(),
        input => input.to_string(),
    };
    ToolCall {
        id: block["id"].as_str().unwrap_or_default().to_string(),
        name: block["name"].as_str().unwrap_or_default().to_string(),
        arguments,
    }
}

/// `stop_reason` → `finish_reason`（参考文档 §5.2）。
///
/// refusal 为内容过滤，上下文超限与 max_tokens 一样是长度；end_turn、stop_sequence、pause_turn、
/// null 与未知值都是 stop。
fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// Anthropic 语义的 token 计数（`input` 不含缓存）。
///
/// 流中 `message_delta` 的用量是累计值，出现的字段覆盖 `message_start` 中的旧值。
#[derive(Debug, Default, Clone, Copy)]
struct TokenCounts {
    input: u64,
    cache_read: u64,
    cache_creation: u64,
    output: u64,
    thinking: u64,
}

impl TokenCounts {
    /// 用一个 `usage` 对象中出现的字段覆盖当前值；缺失的字段保持不变。
    fn update(&mut self, usage: &Value) {
        let fields = [
            (&mut self.input, &usage["input_tokens"]),
            (&mut self.cache_read, &usage["cache_read_input_tokens"]),
            (
                &mut self.cache_creation,
                &usage["cache_creation_input_tokens"],
            ),
            (&mut self.output, &usage["output_tokens"]),
            (
                &mut self.thinking,
                &usage["output_tokens_details"]["thinking_tokens"],
            ),
        ];
        for (slot, value) in fields {
            if let Some(n) = value.as_u64() {
                *slot = n;
            }
        }
    }

    /// 换算为 OpenAI 语义：输入含缓存读取与缓存写入，缓存命中为缓存读取，推理为思考 token。
    ///
    /// 数值来自上游，用饱和加法，异常的巨大计数不会让网关溢出。
    fn usage(&self) -> Usage {
        Usage {
            prompt: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_creation),
            completion: self.output,
            cached: self.cache_read,
            reasoning: self.thinking,
        }
    }
}

// ───────────────────────────── 错误翻译 ─────────────────────────────

/// Anthropic 的 `error.type` → (给客户端的状态码, OpenAI 风格的错误码)（参考文档 §5.7）。
///
/// billing_error 按 OpenAI 自己的做法映射为 429 insufficient_quota；未知类型返回 `None`，按 HTTP 状态码处理。
fn error_mapping(kind: &str) -> Option<(u16, &'static str)> {
    match kind {
        "invalid_request_error" => Some((400, "invalid_request_error")),
        "authentication_error" => Some((401, "invalid_api_key")),
        "billing_error" => Some((429, "insufficient_quota")),
        "permission_error" => Some((403, "permission_error")),
        "not_found_error" => Some((404, "model_not_found")),
        "request_too_large" => Some((413, "request_too_large")),
        "rate_limit_error" => Some((429, "rate_limit_exceeded")),
        "api_error" => Some((500, "server_error")),
        "timeout_error" => Some((504, "upstream_timeout")),
        "overloaded_error" => Some(OVERLOADED),
        _ => None,
    }
}

/// 解析 Anthropic 错误响应体；不是 JSON 时把原文（截断后）当作消息。
fn error_info(status: u16, body: &[u8]) -> UpstreamErrorInfo {
    let parsed: Value = serde_json::from_slice(body).unwrap_or_default();
    let mut info = info_from_error(&parsed["error"], status);
    if info.message.is_empty() {
        info.message = truncate_chars(&String::from_utf8_lossy(body), MAX_ERROR_TEXT_CHARS);
    }
    info
}

/// 从 `error` 对象提取信息：错误类型决定状态码与错误码（类型比 HTTP 状态码更具体），
/// 类型未知时 529 仍视为过载。
fn info_from_error(error: &Value, status: u16) -> UpstreamErrorInfo {
    let kind = error["type"].as_str();
    let mapped = kind
        .and_then(error_mapping)
        .or_else(|| (status == STATUS_OVERLOADED).then_some(OVERLOADED));
    UpstreamErrorInfo {
        message: error["message"].as_str().unwrap_or_default().to_string(),
        kind: kind.map(str::to_string),
        code: mapped.map(|(_, code)| code.to_string()),
        status: mapped.map(|(mapped_status, _)| mapped_status),
        ..UpstreamErrorInfo::default()
    }
}

/// 流中 `event: error` → 客户端错误（如 overloaded_error → 503 server_error）；不伪造结束原因。
fn stream_error(error: &Value) -> ApiError {
    let info = info_from_error(error, STATUS_STREAM_ERROR);
    map_upstream_error(STATUS_STREAM_ERROR, info, PROVIDER_LABEL)
}

// ───────────────────────────── 流式翻译 ─────────────────────────────

/// 一个 `tool_use` 内容块的流式状态。
#[derive(Debug)]
struct ToolBlock {
    /// OpenAI 的工具调用序号（0、1、2……），不是 Anthropic 的内容块序号。
    index: usize,
    /// 是否已发出过非空的参数片段。
    has_arguments: bool,
}

/// Anthropic 流 → OpenAI 流式块的状态机（参考文档 §5.3）。
struct AnthropicStream {
    ctx: TranslateCtx,
    /// 收到 `message_start` 后创建（块的 id 来自它）。
    writer: Option<ChunkWriter>,
    /// 内容块序号 → 工具调用状态。
    tools: HashMap<u64, ToolBlock>,
    /// 下一个工具调用的序号。
    next_tool: usize,
    /// 最新的累计用量。
    counts: TokenCounts,
    /// 是否已写出结束块（每个流恰好一个）。
    finished: bool,
    /// 是否已收到 `message_stop`。
    done: bool,
}

/// 取得已创建的块构造器；还没收到 `message_start` 说明上游流不合协议。
fn started(writer: &Option<ChunkWriter>) -> Result<&ChunkWriter, ApiError> {
    writer
        .as_ref()
        .ok_or_else(|| invalid_response("上游流在 message_start 之前发送了内容事件".to_string()))
}

/// 事件中的内容块序号。
fn block_index(data: &Value) -> Result<u64, ApiError> {
    data["index"]
        .as_u64()
        .ok_or_else(|| invalid_response("上游流的内容块事件缺少 index".to_string()))
}

impl AnthropicStream {
    /// 为一次流式响应创建状态机。
    fn new(ctx: TranslateCtx) -> Self {
        AnthropicStream {
            ctx,
            writer: None,
            tools: HashMap::new(),
            next_tool: 0,
            counts: TokenCounts::default(),
            finished: false,
            done: false,
        }
    }

    /// `message_start`：记下 id 与输入用量，写出角色块；重复的 `message_start` 忽略。
    fn message_start(&mut self, data: &Value, out: &mut BytesMut) {
        if self.writer.is_some() {
            return;
        }
        let message = &data["message"];
        let ctx = &self.ctx;
        let writer = ChunkWriter::new(
            message_id(message),
            ctx.created,
            ctx.model.clone(),
            ctx.include_usage,
        );
        self.counts.update(&message["usage"]);
        writer.role(out);
        self.writer = Some(writer);
    }

    /// `content_block_start`：文本块的初始文本（通常为空）照常输出；`tool_use` 块分配下一个工具序号，
    /// 写出带 id、名称与空参数的首个工具增量；思考等其他块不输出。
    fn block_start(&mut self, data: &Value, out: &mut BytesMut) -> Result<(), ApiError> {
        let writer = started(&self.writer)?;
        let block = &data["content_block"];
        match block["type"].as_str() {
            Some("text") => writer.content(out, block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let index = self.next_tool;
                let tool = ToolBlock {
                    index,
                    has_arguments: false,
                };
                self.tools.insert(block_index(data)?, tool);
                self.next_tool += 1;
                let id = block["id"].as_str().unwrap_or_default();
                let name = block["name"].as_str().unwrap_or_default();
                writer.tool_call_start(out, index, id, name, "");
            }
            _ => {}
        }
        Ok(())
    }

    /// `content_block_delta`：文本增量照常输出；参数片段按内容块序号找到工具序号后输出；
    /// 思考、签名与引用增量丢弃。
    fn block_delta(&mut self, data: &Value, out: &mut BytesMut) -> Result<(), ApiError> {
        let writer = started(&self.writer)?;
        let delta = &data["delta"];
        match delta["type"].as_str() {
            Some("text_delta") => writer.content(out, delta["text"].as_str().unwrap_or_default()),
            Some("input_json_delta") => {
                let fragment = delta["partial_json"].as_str().unwrap_or_default();
                if let Some(tool) = self.tools.get_mut(&block_index(data)?) {
                    tool.has_arguments |= !fragment.is_empty();
                    writer.tool_arguments(out, tool.index, fragment);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `content_block_stop`：没有收到任何非空参数片段的工具（无参数工具只发 `""`）补一个 `{}`，
    /// 让客户端拼出的参数是合法 JSON。
    fn block_stop(&mut self, data: &Value, out: &mut BytesMut) -> Result<(), ApiError> {
        let writer = started(&self.writer)?;
        let index = block_index(data)?;
        if let Some(tool) = self.tools.get_mut(&index).filter(|t| !t.has_arguments) {
            writer.tool_arguments(out, tool.index, EMPTY_ARGUMENTS);
            tool.has_arguments = true;
        }
        Ok(())
    }

    /// `message_delta`：更新累计用量；第一个带 `stop_reason` 的写出唯一的结束块。
    fn message_delta(&mut self, data: &Value, out: &mut BytesMut) -> Result<(), ApiError> {
        let writer = started(&self.writer)?;
        self.counts.update(&data["usage"]);
        let reason = data["delta"]["stop_reason"].as_str();
        if let Some(reason) = reason.filter(|_| !self.finished) {
            writer.finish(out, finish_reason(Some(reason)));
            self.finished = true;
        }
        Ok(())
    }

    /// `message_stop`：补写缺少的结束块，按客户端要求写用量块，再写 `[DONE]`。
    fn message_stop(&mut self, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        let writer = started(&self.writer)?;
        if !self.finished {
            writer.finish(out, FinishReason::Stop);
            self.finished = true;
        }
        writer.usage(out, &self.counts.usage());
        writer.done(out);
        self.done = true;
        Ok(StreamStatus::Done)
    }
}

impl StreamTranslator for AnthropicStream {
    /// 按事件 JSON 中的 `type` 分派（不依赖 `event:` 行）；ping 与未知事件按 Anthropic 的版本策略忽略。
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        if self.done {
            return Ok(StreamStatus::Done);
        }
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|e| invalid_response(format!("上游流事件不是合法的 JSON：{e}")))?;
        match data["type"].as_str().unwrap_or_default() {
            "message_start" => self.message_start(&data, out),
            "content_block_start" => self.block_start(&data, out)?,
            "content_block_delta" => self.block_delta(&data, out)?,
            "content_block_stop" => self.block_stop(&data, out)?,
            "message_delta" => self.message_delta(&data, out)?,
            "message_stop" => return self.message_stop(out),
            "error" => return Err(stream_error(&data["error"])),
            _ => {}
        }
        Ok(StreamStatus::Continue)
    }

    /// 没收到 `message_stop` 就断开是截断：报错而不是伪装成正常结束。
    fn on_eof(&mut self, _out: &mut BytesMut) -> Result<(), ApiError> {
        if self.done {
            return Ok(());
        }
        Err(ApiError::bad_gateway(
            ErrorCode::UpstreamStreamTruncated,
            "上游 Anthropic 在发送 message_stop 之前断开了流",
        ))
    }

    /// `message_start` 之后才有用量（输入部分先到，输出随 `message_delta` 累计）。
    fn usage(&self) -> Option<Usage> {
        self.writer.as_ref().map(|_| self.counts.usage())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{BaseUrl, Provider, ProviderKind, Timeouts};
    use crate::security::Secret;
    use crate::streaming::SseParser;

    /// 测试用的上游密钥。
    const KEY: &str = "sk-ant-test";
    /// 测试流的创建时间。
    const CREATED: u64 = 1_700_000_000;
    /// 客户端可见的模型名。
    const MODEL: &str = "claude";
    /// 测试上游的基础地址（带路径前缀）。
    const BASE_URL: &str = "http://127.0.0.1:9/proxy";
    /// 以 URL 来源发送的图片地址。
    const IMAGE_URL: &str = "https://例子.cn/猫.png";
    /// 不支持的图片地址协议。
    const FTP_URL: &str = "ftp://x/a.png";

    /// 录制的 Anthropic 流：一个文本块后接两个 tool_use 块（内容块序号 1、2），带 ping 与提示缓存用量。
    const RECORDED_STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":20,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"我来查一下。\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_A\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"巴\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"黎\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_B\",\"name\":\"get_time\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"tz\\\":\\\"CET\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":65}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    /// 与录制的流内容相同的非流式响应（用于比较两种模式的用量）。
    fn 完整响应() -> Value {
        json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [
                { "type": "text", "text": "我来查一下。" },
                { "type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": { "city": "巴黎" } },
                { "type": "tool_use", "id": "toolu_B", "name": "get_time", "input": { "tz": "CET" } },
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": { "input_tokens": 20, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 10, "output_tokens": 65 },
        })
    }

    /// 指向测试地址、带密钥的 Anthropic 目标；`max_tokens` 为目标配置的输出上限。
    fn 目标(max_tokens: Option<u64>) -> Target {
        let provider = Provider {
            name: "claude".into(),
            kind: ProviderKind::Anthropic,
            base_url: BaseUrl::try_from(BASE_URL.to_string()).expect("URL 合法"),
            api_key: Some(Secret::new(KEY.to_string())),
            timeouts: Timeouts::default(),
            enabled: true,
            api_version: None,
            health_check: None,
            concurrency: None,
        };
        Target {
            provider: Arc::new(provider),
            model: "claude-sonnet-4-5".into(),
            max_tokens,
            deployment: String::new(),
            weight: 1,
            priority: 0,
            key: "claude/claude-sonnet-4-5".into(),
        }
    }

    /// 经过网关校验的客户端请求。
    fn 请求(body: Value) -> ChatRequest {
        ChatRequest::parse(Bytes::from(body.to_string())).expect("测试请求必须通过校验")
    }

    /// 以目标上限 1024 翻译请求体。
    fn 翻译(body: Value) -> Value {
        Value::Object(request_body(&请求(body), &目标(Some(1024))).expect("应当翻译成功"))
    }

    /// 翻译必须失败的请求，返回错误。
    fn 翻译失败(body: Value) -> ApiError {
        request_body(&请求(body), &目标(None)).expect_err("应当返回 400")
    }

    /// 只翻译消息列表，返回 Anthropic 的 `messages`。
    fn 对话(messages: Value) -> Value {
        翻译(json!({ "model": MODEL, "messages": messages }))["messages"].clone()
    }

    /// 固定模型名与创建时间的翻译上下文。
    fn 上下文(include_usage: bool) -> TranslateCtx {
        TranslateCtx {
            model: MODEL.into(),
            include_usage,
            created: CREATED,
        }
    }

    /// 像 exchange 一样驱动翻译器：依次喂入各段字节，返回客户端收到的文本与结局。
    fn 翻译流(chunks: &[&[u8]], include_usage: bool) -> (String, Result<(), ApiError>) {
        let mut parser = SseParser::default();
        let mut translator = AnthropicFilter.stream_translator(上下文(include_usage));
        let (mut events, mut out) = (Vec::new(), BytesMut::new());
        let text = |out: &BytesMut| String::from_utf8(out.to_vec()).expect("输出必须是 UTF-8");
        for chunk in chunks {
            parser.push(chunk, &mut events);
            for event in events.drain(..) {
                match translator.on_event(&event, &mut out) {
                    Ok(StreamStatus::Continue) => {}
                    Ok(StreamStatus::Done) => return (text(&out), Ok(())),
                    Err(e) => return (text(&out), Err(e)),
                }
            }
        }
        parser.finish(&mut events);
        for event in events.drain(..) {
            if let Err(e) = translator.on_event(&event, &mut out) {
                return (text(&out), Err(e));
            }
        }
        let end = translator.on_eof(&mut out);
        (text(&out), end)
    }

    /// 输出中的全部事件负载（`[DONE]` 原样保留为字符串）。
    fn 事件(text: &str) -> Vec<Value> {
        text.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
            .collect()
    }

    /// 期望的一个 OpenAI 流式块（id 来自录制的流）。
    fn 块(delta: Value, finish: Value) -> Value {
        json!({ "id": "msg_01", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
            "choices": [ { "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish } ] })
    }

    /// 期望的工具调用首个增量块。
    fn 工具开始(index: usize, id: &str, name: &str) -> Value {
        块(
            json!({ "tool_calls": [ { "index": index, "id": id, "type": "function", "function": { "name": name, "arguments": "" } } ] }),
            Value::Null,
        )
    }

    /// 期望的工具参数片段块。
    fn 工具参数(index: usize, fragment: &str) -> Value {
        块(
            json!({ "tool_calls": [ { "index": index, "function": { "arguments": fragment } } ] }),
            Value::Null,
        )
    }

    /// 按工具序号拼接全部参数片段。
    fn 拼接参数(events: &[Value], index: usize) -> String {
        events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0].as_object())
            .filter(|call| call.get("index") == Some(&json!(index)))
            .filter_map(|call| call.get("function").and_then(|f| f["arguments"].as_str()))
            .collect()
    }

    #[test]
    fn 请求_黄金用例_逐字节一致() {
        let body = json!({
            "model": MODEL, "stream": true, "temperature": 0.3, "stop": "完毕", "user": "用户-42", "seed": 7,
            "max_completion_tokens": 300, "tool_choice": "required", "parallel_tool_calls": false,
            "tools": [
                { "type": "function", "function": { "name": "get_weather", "description": "查询天气",
                    "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } },
                { "type": "function", "function": { "name": "now" } },
            ],
            "messages": [
                { "role": "system", "content": "你是助手。" },
                { "role": "user", "content": "巴黎天气如何？" },
                { "role": "assistant", "content": null, "tool_calls": [ { "id": "toolu_01", "type": "function",
                    "function": { "name": "get_weather", "arguments": "{\"city\":\"巴黎\"}" } } ] },
                { "role": "tool", "tool_call_id": "toolu_01", "content": "18°C" },
            ],
        });
        let expected = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 300,
            "system": [ { "type": "text", "text": "你是助手。" } ],
            "messages": [
                { "role": "user", "content": [ { "type": "text", "text": "巴黎天气如何？" } ] },
                { "role": "assistant", "content": [ { "type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": { "city": "巴黎" } } ] },
                { "role": "user", "content": [ { "type": "tool_result", "tool_use_id": "toolu_01", "content": "18°C" } ] },
            ],
            "temperature": 0.3, "stop_sequences": ["完毕"],
            "tools": [
                { "name": "get_weather", "description": "查询天气",
                  "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } },
                { "name": "now", "input_schema": { "type": "object", "properties": {} } },
            ],
            "tool_choice": { "type": "any", "disable_parallel_tool_use": true },
            "metadata": { "user_id": "用户-42" }, "stream": true,
        });
        let up = AnthropicFilter
            .build_request(&请求(body), &目标(Some(1024)))
            .expect("应当翻译成功");
        assert_eq!(
            std::str::from_utf8(&up.body).expect("UTF-8"),
            expected.to_string(),
            "字段、取值与顺序都必须一致；seed 必须被丢弃"
        );
    }

    #[test]
    fn 请求头_密钥版本与路径() {
        let req = 请求(
            json!({ "model": MODEL, "messages": [ { "role": "user", "content": "你好" } ] }),
        );
        let up = AnthropicFilter
            .build_request(&req, &目标(None))
            .expect("应当成功");
        assert_eq!(up.path, "/proxy/v1/messages", "路径前缀来自 base_url");
        let header = |name: &str| {
            up.headers
                .iter()
                .find(|(k, _)| k.as_str() == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("缺少请求头 {name}"))
        };
        assert_eq!(header("x-api-key").to_str().ok(), Some(KEY));
        assert!(header("x-api-key").is_sensitive(), "密钥头必须标记为敏感");
        assert_eq!(header("anthropic-version").to_str().ok(), Some(API_VERSION));
        assert_eq!(
            header("content-type").to_str().ok(),
            Some("application/json")
        );
        assert!(
            up.headers.iter().all(|(k, _)| k != "authorization"),
            "不得发送 Bearer 头"
        );
        let body: Value = serde_json::from_slice(&up.body).expect("JSON");
        assert_eq!(
            body["max_tokens"], DEFAULT_MAX_TOKENS,
            "客户端与目标都没给上限时用缺省值"
        );
        assert!(body.get("stream").is_none(), "客户端没给 stream 时不发送");
    }

    #[test]
    fn 助手消息内容为空串或空白时不发送空文本块() {
        for content in [
            json!(""),
            Value::Null,
            json!("  \n"),
            json!([ { "type": "text", "text": "" } ]),
        ] {
            let messages = 对话(json!([
                { "role": "user", "content": "查天气" },
                { "role": "assistant", "content": content, "tool_calls": [ { "id": "toolu_1", "type": "function", "function": { "name": "天气", "arguments": "{}" } } ] },
                { "role": "tool", "tool_call_id": "toolu_1", "content": "晴" },
            ]));
            assert_eq!(
                messages[1]["content"],
                json!([ { "type": "tool_use", "id": "toolu_1", "name": "天气", "input": {} } ]),
                "内容 {content} 不应产生文本块"
            );
        }
    }

    #[test]
    fn 三条工具消息后接用户消息_合并为一条用户消息且工具结果在前() {
        let call = |id: &str| json!({ "id": id, "type": "function", "function": { "name": "查", "arguments": "" } });
        let messages = 对话(json!([
            { "role": "user", "content": "查三个城市" },
            { "role": "assistant", "content": "好的", "tool_calls": [ call("t1"), call("t2"), call("t3") ] },
            { "role": "tool", "tool_call_id": "t1", "content": "晴" },
            { "role": "tool", "tool_call_id": "t2", "content": [ { "type": "text", "text": "雨" } ] },
            { "role": "tool", "tool_call_id": "t3", "content": "" },
            { "role": "user", "content": "总结一下" },
        ]));
        assert_eq!(
            messages.as_array().map(Vec::len),
            Some(3),
            "工具结果与用户消息必须合并：{messages}"
        );
        assert_eq!(
            messages[2],
            json!({ "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "t1", "content": "晴" },
                { "type": "tool_result", "tool_use_id": "t2", "content": [ { "type": "text", "text": "雨" } ] },
                { "type": "tool_result", "tool_use_id": "t3" },
                { "type": "text", "text": "总结一下" },
            ] })
        );
    }

    #[test]
    fn 工具结果插在已有用户内容之前() {
        let mut turns = vec![Turn {
            role: ROLE_USER,
            blocks: vec![json!({ "type": "text", "text": "先说的话" })],
        }];
        append(
            &mut turns,
            ROLE_USER,
            vec![json!({ "type": "tool_result", "tool_use_id": "t1" })],
        );
        assert_eq!(turns.len(), 1);
        assert_eq!(
            turns[0].blocks[0]["type"], "tool_result",
            "用户消息必须以工具结果开头"
        );
    }

    #[test]
    fn 两条系统消息与开发者消息及对话中间的系统消息_全部按顺序进入_system() {
        let body = 翻译(json!({ "model": MODEL, "messages": [
            { "role": "system", "content": "规则一" },
            { "role": "system", "content": [ { "type": "text", "text": "规则" }, { "type": "text", "text": "二" } ] },
            { "role": "developer", "content": "开发者指令" },
            { "role": "user", "content": "你好" },
            { "role": "system", "content": "中途追加" },
            { "role": "system", "content": "" },
            { "role": "assistant", "content": "你好！" },
        ] }));
        let texts: Vec<&str> = body["system"]
            .as_array()
            .expect("system 必须是块数组")
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect();
        assert_eq!(
            texts,
            vec!["规则一", "规则二", "开发者指令", "中途追加"],
            "空系统消息跳过，其余按顺序"
        );
        let roles: Vec<&str> = body["messages"]
            .as_array()
            .expect("数组")
            .iter()
            .filter_map(|m| m["role"].as_str())
            .collect();
        assert_eq!(roles, vec!["user", "assistant"], "系统消息不得留在对话中");
    }

    #[test]
    fn 历史中的工具参数_空串为空对象_非法时返回_400_并指明参数() {
        let history = |arguments: &str| {
            json!({ "model": MODEL, "messages": [
            { "role": "user", "content": "查" },
            { "role": "assistant", "tool_calls": [ { "id": "t1", "type": "function", "function": { "name": "查", "arguments": arguments } } ] },
            { "role": "tool", "tool_call_id": "t1", "content": "好" },
        ] })
        };
        assert_eq!(
            翻译(history(""))["messages"][1]["content"][0]["input"],
            json!({})
        );
        for bad in ["{\"a\":", "[1]", "\"文本\""] {
            let e = 翻译失败(history(bad));
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("messages[1].tool_calls[0].function.arguments")),
                "参数 {bad} 应返回 400"
            );
        }
    }

    #[test]
    fn 采样冲突_温度截断_同时给出时丢弃_top_p_缺省输出上限() {
        let base = |extra: Value| {
            let mut body =
                json!({ "model": MODEL, "messages": [ { "role": "user", "content": "你好" } ] });
            body.as_object_mut()
                .expect("对象")
                .extend(extra.as_object().cloned().unwrap_or_default());
            body
        };
        let hot = 翻译(base(json!({ "temperature": 1.5 })));
        assert_eq!(
            hot["temperature"],
            json!(MAX_TEMPERATURE),
            "超过 1 的温度截断为 1"
        );
        let both = 翻译(base(json!({ "temperature": 0.5, "top_p": 0.9 })));
        assert_eq!(
            (both["temperature"].clone(), both.get("top_p")),
            (json!(0.5), None)
        );
        assert_eq!(
            翻译(base(json!({ "top_p": 0.9 })))["top_p"],
            json!(0.9),
            "单独的 top_p 保留"
        );
        assert_eq!(
            翻译(base(json!({})))["max_tokens"],
            1024,
            "目标的 max_tokens 作为缺省"
        );
        assert_eq!(翻译(base(json!({ "max_tokens": 77 })))["max_tokens"], 77);
        let both_limits = json!({ "max_tokens": 77, "max_completion_tokens": 88 });
        assert_eq!(
            翻译(base(both_limits))["max_tokens"],
            88,
            "max_completion_tokens 优先"
        );
        let stops = 翻译(base(json!({ "stop": ["甲", "乙"] })));
        assert_eq!(stops["stop_sequences"], json!(["甲", "乙"]));
    }

    #[test]
    fn 图片输入_data_url_转_base64_https_转_url_不支持的类型返回_400() {
        let image = |url: &str| {
            json!([ { "type": "text", "text": "" }, { "type": "text", "text": "看图" },
            { "type": "image_url", "image_url": { "url": url, "detail": "high" } } ])
        };
        for mime in IMAGE_TYPES {
            let messages = 对话(
                json!([ { "role": "user", "content": image(&format!("data:{mime};base64,AAAA")) } ]),
            );
            assert_eq!(
                messages[0]["content"],
                json!([ { "type": "text", "text": "看图" }, { "type": "image", "source": { "type": "base64", "media_type": mime, "data": "AAAA" } } ]),
                "空文本部分必须跳过，{mime} 必须成为 base64 来源"
            );
        }
        let url = 对话(json!([ { "role": "user", "content": image(IMAGE_URL) } ]));
        assert_eq!(
            url[0]["content"][1]["source"],
            json!({ "type": "url", "url": IMAGE_URL })
        );
        for (url, param) in [
            (
                "data:image/bmp;base64,AAAA",
                "messages[0].content[2].image_url.url",
            ),
            (FTP_URL, "messages[0].content[2].image_url.url"),
        ] {
            let e = 翻译失败(
                json!({ "model": MODEL, "messages": [ { "role": "user", "content": image(url) } ] }),
            );
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(param)),
                "{url} 应被拒绝"
            );
        }
    }

    #[test]
    fn 文件与音频输入_pdf_转文档_其他文件与音频返回_400() {
        let file = |data: &str| json!({ "model": MODEL, "messages": [ { "role": "user", "content": [ { "type": "file", "file": { "file_data": data } } ] } ] });
        let pdf =
            翻译(file("data:application/pdf;base64,JVBE"))["messages"][0]["content"][0].clone();
        assert_eq!(
            pdf,
            json!({ "type": "document", "source": { "type": "base64", "media_type": PDF_MIME, "data": "JVBE" } })
        );
        let e = 翻译失败(file("data:text/csv;base64,YSxi"));
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("messages[0].content[0].file.file_data"))
        );
        let audio = json!([ { "type": "input_audio", "input_audio": { "data": "AAAA", "format": "wav" } } ]);
        let e = 翻译失败(
            json!({ "model": MODEL, "messages": [ { "role": "user", "content": audio } ] }),
        );
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("messages[0].content[0]"))
        );
    }

    #[test]
    fn 对话中的_anthropic_格式块_明确拒绝而不是丢弃() {
        let user = json!([ { "type": "tool_result", "tool_use_id": "t1", "content": "晴" } ]);
        let e = 翻译失败(
            json!({ "model": MODEL, "messages": [ { "role": "user", "content": user } ] }),
        );
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("messages[0].content[0]"))
        );
        let assistant = json!([ { "type": "text", "text": "好" }, { "type": "tool_use", "id": "t1", "name": "查", "input": {} } ]);
        let e = 翻译失败(
            json!({ "model": MODEL, "messages": [ { "role": "user", "content": "查" }, { "role": "assistant", "content": assistant } ] }),
        );
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("messages[1].content[1]"))
        );
    }

    #[test]
    fn 以助手开头原样转发_以助手结尾去掉末尾空白_没有非系统消息返回_400() {
        let messages = 对话(json!([
            { "role": "assistant", "content": "我是助手。" },
            { "role": "user", "content": "继续" },
            { "role": "assistant", "content": "好的，答案是 " },
        ]));
        assert_eq!(messages[0]["role"], "assistant", "开头的助手消息原样转发");
        assert_eq!(
            messages[2]["content"][0]["text"], "好的，答案是",
            "预填充去掉末尾空白"
        );
        let e = 翻译失败(
            json!({ "model": MODEL, "messages": [ { "role": "system", "content": "只有系统" } ] }),
        );
        assert_eq!((e.status, e.param.as_deref()), (400, Some("messages")));
    }

    #[test]
    fn 相邻同角色消息合并() {
        let messages = 对话(json!([
            { "role": "user", "content": "第一句" },
            { "role": "user", "content": [ { "type": "text", "text": "第二句" } ] },
            { "role": "assistant", "content": "回答" },
        ]));
        assert_eq!(messages[0]["content"].as_array().map(Vec::len), Some(2));
        assert_eq!(messages.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn 多个候选与函数角色与缺少工具调用_id_返回_400() {
        let user = json!([ { "role": "user", "content": "你好" } ]);
        let e = 翻译失败(json!({ "model": MODEL, "n": 2, "messages": user }));
        assert_eq!((e.status, e.param.as_deref()), (400, Some("n")));
        let function = json!([ { "role": "function", "name": "查", "content": "晴" } ]);
        let e = 翻译失败(json!({ "model": MODEL, "messages": function }));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let tool = json!([ { "role": "tool", "content": "晴" } ]);
        let e = 翻译失败(json!({ "model": MODEL, "messages": tool }));
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
    }

    #[test]
    fn 工具选择_四种写法与禁止并行() {
        let tools = json!([ { "type": "function", "function": { "name": "查天气", "parameters": { "type": "object" } } } ]);
        let choice = |tool_choice: Value, parallel: Value| {
            翻译(json!({ "model": MODEL, "messages": [ { "role": "user", "content": "查" } ], "tools": tools,
                "tool_choice": tool_choice, "parallel_tool_calls": parallel }))["tool_choice"].clone()
        };
        assert_eq!(
            choice(json!("auto"), Value::Null),
            json!({ "type": "auto" })
        );
        assert_eq!(
            choice(json!("none"), json!(false)),
            json!({ "type": "none" }),
            "none 不接受禁止并行"
        );
        assert_eq!(
            choice(json!("required"), json!(true)),
            json!({ "type": "any" })
        );
        let named = json!({ "type": "function", "function": { "name": "查天气" } });
        assert_eq!(
            choice(named, Value::Null),
            json!({ "type": "tool", "name": "查天气" })
        );
        assert_eq!(
            choice(Value::Null, json!(false)),
            json!({ "type": "auto", "disable_parallel_tool_use": true })
        );
        let e = 翻译失败(
            json!({ "model": MODEL, "messages": [ { "role": "user", "content": "查" } ], "tools": tools, "tool_choice": "总是" }),
        );
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        let no_tools = 翻译(
            json!({ "model": MODEL, "messages": [ { "role": "user", "content": "查" } ], "tool_choice": "auto" }),
        );
        assert!(
            no_tools.get("tool_choice").is_none(),
            "没有工具时不发送 tool_choice"
        );
    }

    #[test]
    fn 响应_黄金用例_文本与两个工具调用() {
        let body = Bytes::from(完整响应().to_string());
        let reply = AnthropicFilter
            .translate_response(body, &上下文(false))
            .expect("应当翻译成功");
        let expected = json!({
            "id": "msg_01", "object": "chat.completion", "created": CREATED, "model": MODEL,
            "choices": [ { "index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "我来查一下。", "refusal": null, "tool_calls": [
                    { "id": "toolu_A", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"巴黎\"}" } },
                    { "id": "toolu_B", "type": "function", "function": { "name": "get_time", "arguments": "{\"tz\":\"CET\"}" } },
                ] } } ],
            "usage": { "prompt_tokens": 33, "completion_tokens": 65, "total_tokens": 98,
                "prompt_tokens_details": { "cached_tokens": 10 }, "completion_tokens_details": { "reasoning_tokens": 0 } },
        });
        let actual: Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(actual, expected, "工具参数必须是 JSON 字符串，id 原样保留");
    }

    #[test]
    fn 响应_只有工具调用时内容为_null_思考块被丢弃_思考用量计入推理() {
        let body = json!({ "id": "msg_2", "content": [
                { "type": "thinking", "thinking": "想一想", "signature": "签名" },
                { "type": "tool_use", "id": "toolu_C", "name": "now", "input": {} } ],
            "stop_reason": "tool_use",
            "usage": { "input_tokens": 5, "output_tokens": 40, "output_tokens_details": { "thinking_tokens": 30 } } });
        let reply = AnthropicFilter
            .translate_response(Bytes::from(body.to_string()), &上下文(false))
            .expect("应当翻译成功");
        let v: Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert!(v["choices"][0]["message"]["content"].is_null());
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        assert_eq!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"],
            30
        );
        assert_eq!(v["usage"]["total_tokens"], 45);
    }

    #[test]
    fn 拒绝_暂停_上下文超限等停止原因的映射() {
        let cases = [
            (json!("end_turn"), "stop"),
            (json!("stop_sequence"), "stop"),
            (json!("max_tokens"), "length"),
            (json!("tool_use"), "tool_calls"),
            (json!("pause_turn"), "stop"),
            (json!("refusal"), "content_filter"),
            (json!("model_context_window_exceeded"), "length"),
            (Value::Null, "stop"),
            (json!("未来的原因"), "stop"),
        ];
        for (reason, expected) in cases {
            let body = json!({ "id": "msg_3", "content": [], "stop_reason": reason, "usage": {} });
            let reply = AnthropicFilter
                .translate_response(Bytes::from(body.to_string()), &上下文(false))
                .expect("应当翻译成功");
            let v: Value = serde_json::from_slice(&reply.body).expect("JSON");
            assert_eq!(
                v["choices"][0]["finish_reason"], expected,
                "stop_reason {reason}"
            );
        }
        let refusal = RECORDED_STREAM.replace(
            "\"stop_reason\":\"tool_use\"",
            "\"stop_reason\":\"refusal\"",
        );
        let (out, _) = 翻译流(&[refusal.as_bytes()], false);
        assert!(
            out.contains("\"finish_reason\":\"content_filter\""),
            "流式的 refusal 同样映射：{out}"
        );
    }

    #[test]
    fn 响应_无法解析时返回_502() {
        for body in ["不是 JSON", "{\"type\":\"message\"}", "[]"] {
            let e = AnthropicFilter
                .translate_response(Bytes::from(body), &上下文(false))
                .expect_err("应当失败");
            assert_eq!(
                (e.status, Some(e.envelope_code())),
                (502, Some("invalid_upstream_response"))
            );
        }
    }

    #[test]
    fn 错误_类型映射为状态码与错误码() {
        let cases = [
            (529, "overloaded_error", 503, "overloaded"),
            (429, "rate_limit_error", 429, "rate_limit_exceeded"),
            (404, "not_found_error", 404, "model_not_found"),
            (402, "billing_error", 429, "insufficient_quota"),
            (400, "invalid_request_error", 400, "invalid_request_error"),
            (500, "api_error", 500, "server_error"),
        ];
        for (status, kind, expected_status, code) in cases {
            let body = json!({ "type": "error", "error": { "type": kind, "message": "出错了" }, "request_id": "req_1" });
            let info = AnthropicFilter.parse_error(status, body.to_string().as_bytes());
            assert_eq!(info.status.unwrap_or(status), expected_status, "{kind}");
            assert_eq!(
                (info.code.as_deref(), info.kind.as_deref()),
                (Some(code), Some(kind))
            );
            assert_eq!(info.message, "出错了");
        }
        let unknown =
            json!({ "type": "error", "error": { "type": "未来的错误", "message": "？" } });
        let info = AnthropicFilter.parse_error(418, unknown.to_string().as_bytes());
        assert_eq!(
            (info.status, info.code),
            (None, None),
            "未知类型按 HTTP 状态码处理"
        );
    }

    #[test]
    fn 错误_非_json_响应体也能处理_529_映射为_503_server_error() {
        let info = AnthropicFilter.parse_error(529, b"<html>overloaded</html>");
        assert_eq!(info.message, "<html>overloaded</html>");
        let e = map_upstream_error(529, info, "claude");
        assert_eq!(
            (e.status, e.kind, Some(e.envelope_code())),
            (503, "server_error", Some("overloaded"))
        );
        let info = AnthropicFilter.parse_error(413, b"request too large");
        assert_eq!((info.status, info.code.as_deref()), (None, None));
        assert_eq!(map_upstream_error(413, info, "claude").status, 413);
    }

    #[test]
    fn 流式_黄金用例_逐块一致() {
        let (out, end) = 翻译流(&[RECORDED_STREAM.as_bytes()], true);
        assert_eq!(end, Ok(()));
        let usage = json!({ "prompt_tokens": 33, "completion_tokens": 65, "total_tokens": 98,
            "prompt_tokens_details": { "cached_tokens": 10 }, "completion_tokens_details": { "reasoning_tokens": 0 } });
        let expected = vec![
            块(json!({ "role": "assistant", "content": "" }), Value::Null),
            块(json!({ "content": "我来查一下。" }), Value::Null),
            工具开始(0, "toolu_A", "get_weather"),
            工具参数(0, "{\"city\": \"巴"),
            工具参数(0, "黎\"}"),
            工具开始(1, "toolu_B", "get_time"),
            工具参数(1, "{\"tz\":\"CET\"}"),
            块(json!({}), json!("tool_calls")),
            json!({ "id": "msg_01", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL, "choices": [], "usage": usage }),
            json!("[DONE]"),
        ];
        assert_eq!(事件(&out), expected);
    }

    #[test]
    fn 流式_文本后两个工具调用_索引为0和1() {
        let (out, _) = 翻译流(&[RECORDED_STREAM.as_bytes()], false);
        let events = 事件(&out);
        let starts: Vec<(Value, Value)> = events
            .iter()
            .map(|e| &e["choices"][0]["delta"]["tool_calls"][0])
            .filter(|call| call.get("id").is_some())
            .map(|call| (call["index"].clone(), call["id"].clone()))
            .collect();
        assert_eq!(
            starts,
            vec![(json!(0), json!("toolu_A")), (json!(1), json!("toolu_B"))],
            "工具序号不是内容块序号"
        );
        let first: Value =
            serde_json::from_str(&拼接参数(&events, 0)).expect("参数拼接后必须是合法 JSON");
        assert_eq!(first, json!({ "city": "巴黎" }));
        assert_eq!(拼接参数(&events, 1), "{\"tz\":\"CET\"}");
    }

    #[test]
    fn 流式_无参数工具_参数补为空对象且可回传() {
        let stream = concat!(
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_9\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_N\",\"name\":\"now\",\"input\":{}}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
            "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let (out, end) = 翻译流(&[stream.as_bytes()], false);
        assert_eq!(end, Ok(()));
        let arguments = 拼接参数(&事件(&out), 0);
        assert_eq!(
            arguments, "{}",
            "只收到空片段时必须补 {{}}，重复的 stop 不能再补"
        );
        let history = json!([ { "role": "user", "content": "几点了" },
            { "role": "assistant", "content": null, "tool_calls": [ { "id": "toolu_N", "type": "function", "function": { "name": "now", "arguments": arguments } } ] },
            { "role": "tool", "tool_call_id": "toolu_N", "content": "12:00" } ]);
        assert_eq!(对话(history)[1]["content"][0]["input"], json!({}));
    }

    #[test]
    fn 流式_用量块恰好一个且在_done_之前_未要求时没有() {
        let (out, _) = 翻译流(&[RECORDED_STREAM.as_bytes()], true);
        let events = 事件(&out);
        let usage_at: Vec<usize> = (0..events.len())
            .filter(|&i| events[i].get("usage").is_some())
            .collect();
        assert_eq!(
            usage_at,
            vec![events.len() - 2],
            "恰好一个用量块，紧挨在 [DONE] 之前"
        );
        assert_eq!(events[events.len() - 2]["choices"], json!([]));
        let finish_at = events
            .iter()
            .position(|e| e["choices"][0]["finish_reason"].is_string());
        assert_eq!(finish_at, Some(events.len() - 3), "用量块在结束块之后");
        let (plain, _) = 翻译流(&[RECORDED_STREAM.as_bytes()], false);
        assert!(!plain.contains("\"usage\""), "客户端没要求时不能有用量块");
    }

    #[test]
    fn 提示缓存_流式与非流式用量一致() {
        let (out, _) = 翻译流(&[RECORDED_STREAM.as_bytes()], true);
        let events = 事件(&out);
        let stream_usage = events[events.len() - 2]["usage"].clone();
        let reply = AnthropicFilter
            .translate_response(Bytes::from(完整响应().to_string()), &上下文(false))
            .expect("应当翻译成功");
        let full: Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(stream_usage, full["usage"]);
        assert_eq!(
            stream_usage["prompt_tokens"], 33,
            "输入含缓存读取与缓存写入"
        );
        assert_eq!(stream_usage["prompt_tokens_details"]["cached_tokens"], 10);
    }

    #[test]
    fn 流式_累计用量覆盖起始值_没有用量的_message_delta_也接受() {
        let stream = |delta_usage: &str| {
            format!(concat!(
            "data: {{\"type\":\"message_start\",\"message\":{{\"id\":\"m\",\"usage\":{{\"input_tokens\":7,\"cache_read_input_tokens\":2,\"output_tokens\":1}}}}}}\n\n",
            "data: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}}{}}}\n\n",
            "data: {{\"type\":\"message_stop\"}}\n\n"), delta_usage)
        };
        let usage_of = |text: &str| {
            let (out, _) = 翻译流(&[text.as_bytes()], true);
            let events = 事件(&out);
            events[events.len() - 2]["usage"].clone()
        };
        let later = usage_of(&stream(",\"usage\":{\"input_tokens\":9,\"output_tokens\":20,\"output_tokens_details\":{\"thinking_tokens\":4}}"));
        assert_eq!(
            (
                later["prompt_tokens"].clone(),
                later["completion_tokens"].clone()
            ),
            (json!(11), json!(20))
        );
        assert_eq!(later["completion_tokens_details"]["reasoning_tokens"], 4);
        let missing = usage_of(&stream(""));
        assert_eq!(
            (
                missing["prompt_tokens"].clone(),
                missing["completion_tokens"].clone()
            ),
            (json!(9), json!(1))
        );
    }

    #[test]
    fn 流式_思考块签名引用_ping_与未知事件被忽略_只有一个结束块() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_t\",\"usage\":{\"input_tokens\":3}}}\n\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"想\"}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"签\"}}\n\n",
            "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: 未来事件\ndata: {\"type\":\"未来事件\",\"内容\":1}\n\n",
            "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"答案\"}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"citations_delta\",\"citation\":{}}}\n\n",
            "data: {\"type\": \"ping\"}\n\n",
            "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":6}}\n\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let (out, end) = 翻译流(&[stream.as_bytes()], false);
        assert_eq!(end, Ok(()));
        let expected_deltas = vec![
            json!({ "role": "assistant", "content": "" }),
            json!({ "content": "答案" }),
            json!({}),
        ];
        let events = 事件(&out);
        let deltas: Vec<Value> = events
            .iter()
            .filter(|e| e.is_object())
            .map(|e| e["choices"][0]["delta"].clone())
            .collect();
        assert_eq!(deltas, expected_deltas, "思考、签名与引用不得输出");
        let finishes: Vec<&Value> = events
            .iter()
            .map(|e| &e["choices"][0]["finish_reason"])
            .filter(|f| f.is_string())
            .collect();
        assert_eq!(finishes, vec![&json!("stop")], "只能有一个结束块");
    }

    #[test]
    fn 流中过载错误_返回_503_server_error_不伪造结束原因() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_e\",\"usage\":{\"input_tokens\":3}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"一半\"}}\n\n",
            "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
        );
        let (out, end) = 翻译流(&[stream.as_bytes()], true);
        let e = end.expect_err("流中错误必须交给 exchange");
        assert_eq!(
            (e.status, e.kind, Some(e.envelope_code())),
            (503, "server_error", Some("overloaded"))
        );
        assert!(
            e.detail().is_some_and(|d| d.contains("Overloaded")),
            "上游原文应留在日志细节里：{:?}",
            e.detail()
        );
        assert!(
            !out.contains("finish_reason\":\""),
            "不得伪造结束原因：{out}"
        );
        assert!(!out.contains("[DONE]"));
        assert_eq!(
            stream_error(&json!({ "message": "？" })).status,
            STATUS_STREAM_ERROR,
            "未知类型为 502"
        );
    }

    #[test]
    fn 上游未发送_message_stop_就断开_返回截断错误() {
        let cut = RECORDED_STREAM
            .find("event: message_delta")
            .expect("录制的流含 message_delta");
        let (out, end) = 翻译流(&[&RECORDED_STREAM.as_bytes()[..cut]], true);
        let e = end.expect_err("截断必须报错");
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (502, Some("upstream_stream_truncated"))
        );
        assert!(
            !out.contains("finish_reason\":\"") && !out.contains("[DONE]"),
            "截断时不得输出结束块：{out}"
        );
        let (_, early) = 翻译流(
            &[b"data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"],
            false,
        );
        assert_eq!(
            early.map_err(|e| e.status),
            Err(502),
            "message_start 之前的内容事件不合协议"
        );
    }

    #[test]
    fn 流式_回车换行_注释与任意位置切分_输出逐字节相同() {
        let (expected, end) = 翻译流(&[RECORDED_STREAM.as_bytes()], true);
        assert_eq!(end, Ok(()));
        let crlf = format!(
            ": 保活注释\r\n\r\n{}",
            RECORDED_STREAM.replace('\n', "\r\n")
        );
        for text in [RECORDED_STREAM, crlf.as_str()] {
            for cut in 0..=text.len() {
                let (a, b) = text.as_bytes().split_at(cut);
                let (actual, end) = 翻译流(&[a, b], true);
                assert_eq!(end, Ok(()), "在第 {cut} 字节处切分后流未正常结束");
                assert_eq!(actual, expected, "在第 {cut} 字节处切分后输出不同");
            }
        }
        let bytes: Vec<&[u8]> = RECORDED_STREAM.as_bytes().chunks(1).collect();
        assert_eq!(翻译流(&bytes, true).0, expected, "逐字节喂入后输出不同");
    }

    /// 随机测试的轮数。
    const FUZZ_ROUNDS: u64 = 3000;
    /// 随机测试的固定种子（失败可复现）。
    const FUZZ_SEED: u64 = 0x5eed_c1a0_de00_0001;
    /// 每轮随机事件数。
    const FUZZ_EVENTS: usize = 24;
    /// 每轮随机字节的最大长度。
    const FUZZ_MAX_BYTES: u64 = 256;

    /// 确定性伪随机数（xorshift64）。
    struct XorShift(u64);

    impl XorShift {
        /// 下一个伪随机数。
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// 随机取一个元素。
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            let at = self.next() % items.len() as u64;
            &items[usize::try_from(at).unwrap_or_default()]
        }
    }

    /// 随机取一个各种类型（含边界值）的 JSON 值。
    fn 随机值(rng: &mut XorShift) -> Value {
        let values = [
            Value::Null,
            json!(0),
            json!(1),
            json!(2),
            json!(-1),
            json!(1.5),
            json!(u64::MAX),
            json!("文本"),
            json!(""),
            json!("{\"a\":"),
            json!({}),
            json!([]),
            json!(true),
            json!("overloaded_error"),
        ];
        rng.pick(&values).clone()
    }

    /// 随机组合的 Anthropic 事件：类型、序号与各字段都可能不合法。
    fn 随机事件(rng: &mut XorShift) -> Value {
        let types = [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "error",
            "ping",
            "未知",
        ];
        let blocks = [
            "text",
            "tool_use",
            "thinking",
            "redacted_thinking",
            "server_tool_use",
        ];
        let deltas = [
            "text_delta",
            "input_json_delta",
            "thinking_delta",
            "signature_delta",
            "citations_delta",
        ];
        let index = match rng.next() % 4 {
            0 => 随机值(rng),
            n => json!(n - 1),
        };
        json!({
            "type": rng.pick(&types), "index": index,
            "message": { "id": 随机值(rng), "usage": { "input_tokens": 随机值(rng), "output_tokens": 随机值(rng) } },
            "content_block": { "type": rng.pick(&blocks), "id": 随机值(rng), "name": 随机值(rng), "text": 随机值(rng) },
            "delta": { "type": rng.pick(&deltas), "text": 随机值(rng), "partial_json": 随机值(rng), "stop_reason": 随机值(rng) },
            "usage": { "output_tokens": 随机值(rng) },
            "error": { "type": 随机值(rng), "message": 随机值(rng) },
        })
    }

    /// 无论输入如何，输出都必须是合法的 OpenAI 事件：JSON 块或最后的 `[DONE]`，且最多一个结束块。
    fn 检查输出(out: &str) {
        let payloads: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
        let mut finishes = 0;
        for (i, payload) in payloads.iter().enumerate() {
            let data = payload
                .strip_prefix("data: ")
                .expect("每个输出事件都以 data: 开头");
            if data == "[DONE]" {
                assert_eq!(i, payloads.len() - 1, "[DONE] 必须是最后一个事件：{out}");
                continue;
            }
            let chunk: Value = serde_json::from_str(data).expect("每个输出事件都是 JSON");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            finishes += usize::from(chunk["choices"][0]["finish_reason"].is_string());
        }
        assert!(finishes <= 1, "最多一个结束块：{out}");
    }

    #[test]
    fn 流式_垃圾字节与随机事件不会崩溃且输出始终合法() {
        let mut rng = XorShift(FUZZ_SEED);
        let start = "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_f\"}}\n\n";
        for round in 0..FUZZ_ROUNDS {
            let mut text = String::from(if round % 2 == 0 { start } else { "" });
            for _ in 0..FUZZ_EVENTS {
                text.push_str(&format!("event: 随机\ndata: {}\n\n", 随机事件(&mut rng)));
            }
            let (out, _) = 翻译流(&[text.as_bytes()], round % 3 == 0);
            检查输出(&out);
            let garbage: Vec<u8> = (0..rng.next() % FUZZ_MAX_BYTES)
                .map(|_| *rng.pick(b"data: {}\n\r\"type:message_stop\xff\xfe"))
                .collect();
            let (out, _) = 翻译流(&[start.as_bytes(), &garbage], true);
            检查输出(&out);
        }
    }
}
