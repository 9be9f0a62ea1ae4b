//! Messages 请求 → 枢纽（Chat Completions）请求（参考文档 §M5 “Request → hub”）。
//!
//! 约定：
//! - 顶层 `system`（字符串或文本块）合并为开头的一条系统消息；Claude Code 的计费归属块
//!   （以 `x-anthropic-billing-header:` 开头的第一块）去掉，它对别家上游只是噪声，还会让提示缓存失效。
//! - 用户回合里的 `tool_result` 块各成一条 `tool` 消息，排在该回合其余内容之前；同一个工具调用 id
//!   只保留第一个结果；结果里的图片放进紧随其后的用户消息。
//! - 助手回合的思考块丢弃（别家上游不认 Anthropic 的签名）；`tool_use` 变成 `tool_calls`。
//! - 别家上游不能执行的服务端工具（`web_search_*`、`bash_*` 等）丢弃并记录；强制使用它们时返回 400。
//! - 网关不认识或无法对应的字段（`thinking`、`context_management`、`top_k`……）丢弃并记录，从不因此返回 400。

use std::borrow::Cow;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::dialects::chat::ChatRequest;
use crate::dialects::Dropped;
use crate::error::{ApiError, ErrorCode};

/// Claude Code 计费归属块的开头。
const ATTRIBUTION_PREFIX: &str = "x-anthropic-billing-header:";
/// 没有 `input` 的工具调用的参数。
const EMPTY_INPUT: &str = "{}";
/// 多个文本块拼成一条消息时的分隔。
const BLOCK_SEPARATOR: &str = "\n\n";
/// 标记为出错的工具结果在文本前加的前缀（别家上游没有 `is_error` 字段）。
const TOOL_ERROR_PREFIX: &str = "[工具执行出错] ";
/// OpenAI 的 `stop` 最多接受的停止序列数。
const MAX_STOP_SEQUENCES: usize = 4;
/// `metadata.user_id` 哈希后保留的十六进制字符数（原值含账号与会话 id，不原样交给别家上游）。
const USER_HASH_HEX_CHARS: usize = 32;
/// 哈希后的 `user` 前缀。
const USER_PREFIX: &str = "anthropic-user-";
/// 翻译时处理过的顶层字段；其余字段丢弃并记录。
const HANDLED_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
    "metadata",
];

/// 把 Messages 请求体翻译为枢纽请求；返回枢纽请求与丢弃的功能。
///
/// 错误：消息或块的结构不对（缺少必需字段、角色未知）、强制使用无法执行的工具时返回 400。
pub(super) fn to_hub(body: &Map<String, Value>) -> Result<(ChatRequest, Dropped), ApiError> {
    let mut dropped = Dropped::default();
    let mut messages = Vec::new();
    push_system(body.get("system"), &mut messages);
    let list = body.get("messages").and_then(Value::as_array);
    for (i, message) in list.into_iter().flatten().enumerate() {
        push_message(i, message, &mut messages, &mut dropped)?;
    }
    let mut hub = Map::new();
    hub.insert(
        "model".into(),
        body.get("model").cloned().unwrap_or_default(),
    );
    hub.insert("messages".into(), Value::Array(messages));
    let skipped = push_tools(body, &mut hub, &mut dropped);
    push_tool_choice(body, &mut hub, &skipped)?;
    push_sampling(body, &mut hub, &mut dropped);
    dropped.note_unhandled(body, HANDLED_FIELDS);
    Ok((ChatRequest::from_hub(hub)?, dropped))
}

/// 顶层 `system` → 开头的一条系统消息（去掉 Claude Code 的计费归属块）。
fn push_system(system: Option<&Value>, messages: &mut Vec<Value>) {
    let text = match system {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => {
            let texts = blocks
                .iter()
                .enumerate()
                .filter_map(|(i, block)| block_text(block).map(|t| (i, t)))
                .filter(|(i, t)| !(*i == 0 && t.starts_with(ATTRIBUTION_PREFIX)))
                .map(|(_, t)| t);
            texts.collect::<Vec<_>>().join(BLOCK_SEPARATOR)
        }
        _ => String::new(),
    };
    if !text.is_empty() {
        messages.push(json!({ "role": "system", "content": text }));
    }
}

/// 文本块里的文本（不是文本块时为 `None`）。
fn block_text(block: &Value) -> Option<&str> {
    (block["type"] == "text").then(|| block["text"].as_str())?
}

/// 翻译一条消息（可能产生多条枢纽消息：工具结果各成一条）。
fn push_message(
    i: usize,
    message: &Value,
    out: &mut Vec<Value>,
    dropped: &mut Dropped,
) -> Result<(), ApiError> {
    let content = &message["content"];
    match message["role"].as_str() {
        Some("user") => push_user(i, content, out, dropped),
        Some("assistant") => push_assistant(i, content, out, dropped),
        Some("system") => {
            let text = joined_text(content);
            if !text.is_empty() {
                out.push(json!({ "role": "system", "content": text }));
            }
            Ok(())
        }
        _ => Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            format!("`messages[{i}].role` 应为 user、assistant 或 system"),
        )
        .with_param(format!("messages[{i}].role"))),
    }
}

/// 字符串内容或全部文本块拼成的文本。
fn joined_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(block_text)
            .collect::<Vec<_>>()
            .join(BLOCK_SEPARATOR),
        _ => String::new(),
    }
}

/// 内容的块列表：字符串视为一个文本块。
///
/// 错误：既不是字符串也不是数组时返回 400。
fn blocks_of(i: usize, content: &Value) -> Result<Cow<'_, [Value]>, ApiError> {
    match content {
        Value::String(text) => Ok(Cow::Owned(vec![json!({ "type": "text", "text": text })])),
        Value::Array(blocks) => Ok(Cow::Borrowed(blocks)),
        _ => Err(ApiError::bad_request(
            ErrorCode::InvalidType,
            format!("字段 `messages[{i}].content` 的类型应为字符串或内容块数组"),
        )
        .with_param(format!("messages[{i}].content"))),
    }
}

/// 用户回合：工具结果各成一条 `tool` 消息（同一 id 只取第一个），其余内容合成一条用户消息放在它们之后。
fn push_user(
    i: usize,
    content: &Value,
    out: &mut Vec<Value>,
    dropped: &mut Dropped,
) -> Result<(), ApiError> {
    let mut parts = Vec::new();
    let mut answered: Vec<String> = Vec::new();
    let blocks = blocks_of(i, content)?;
    for (j, block) in blocks.iter().enumerate() {
        if block["type"] != "tool_result" {
            push_part(block, &mut parts, dropped);
            continue;
        }
        let id = required_str(block, "tool_use_id", || {
            format!("messages[{i}].content[{j}].tool_use_id")
        })?;
        if answered.iter().any(|seen| seen == id) {
            dropped.note("duplicate_tool_result");
            continue;
        }
        answered.push(id.to_string());
        out.push(tool_message(id, block, &mut parts, dropped));
    }
    if !parts.is_empty() {
        out.push(json!({ "role": "user", "content": user_content(parts) }));
    }
    Ok(())
}

/// 只有一个文本部分时写成字符串（兼容只认字符串内容的 OpenAI 兼容服务），否则保留部分数组。
fn user_content(mut parts: Vec<Value>) -> Value {
    if parts.len() == 1 && parts[0]["type"] == "text" {
        return parts.remove(0)["text"].take();
    }
    Value::Array(parts)
}

/// 一个工具结果 → `tool` 消息；结果里的图片追加到 `parts`（放进随后的用户消息）。
fn tool_message(id: &str, block: &Value, parts: &mut Vec<Value>, dropped: &mut Dropped) -> Value {
    let mut texts = Vec::new();
    match &block["content"] {
        Value::String(text) => texts.push(text.clone()),
        Value::Array(items) => {
            for item in items {
                match block_text(item) {
                    Some(text) => texts.push(text.to_string()),
                    None => push_part(item, parts, dropped),
                }
            }
        }
        _ => {}
    }
    let mut text = texts.join(BLOCK_SEPARATOR);
    if block["is_error"] == true {
        text.insert_str(0, TOOL_ERROR_PREFIX);
    }
    json!({ "role": "tool", "tool_call_id": id, "content": text })
}

/// 用户内容块 → 枢纽的内容部分：文本（空文本跳过）、图片、PDF 文档；其余块丢弃并记录。
fn push_part(block: &Value, parts: &mut Vec<Value>, dropped: &mut Dropped) {
    let kind = block["type"].as_str().unwrap_or_default();
    let part = match kind {
        "text" => block_text(block)
            .filter(|t| !t.is_empty())
            .map(|t| json!({ "type": "text", "text": t })),
        "image" => source_url(&block["source"])
            .map(|url| json!({ "type": "image_url", "image_url": { "url": url } })),
        "document" => document_part(&block["source"]),
        _ => None,
    };
    match part {
        Some(part) => parts.push(part),
        None if kind == "text" => {}
        None => dropped.note(format!("content.{kind}")),
    }
}

/// 图片或文档的来源 → URL：base64 数据写成 data URL，`url` 来源原样使用。
fn source_url(source: &Value) -> Option<String> {
    match source["type"].as_str()? {
        "base64" => Some(format!(
            "data:{};base64,{}",
            source["media_type"].as_str()?,
            source["data"].as_str()?
        )),
        "url" => source["url"].as_str().map(str::to_string),
        _ => None,
    }
}

/// 文档块：纯文本来源变成文本部分，base64 的 PDF 变成文件部分。
fn document_part(source: &Value) -> Option<Value> {
    if source["type"] == "text" {
        let text = source["data"].as_str()?;
        return Some(json!({ "type": "text", "text": text }));
    }
    let url = source_url(source)?;
    Some(json!({ "type": "file", "file": { "file_data": url, "filename": "document.pdf" } }))
}

/// 块里必需的字符串字段。
///
/// 错误：缺少或不是字符串时返回 400，`param` 由 `param` 生成（只在出错时拼接）。
fn required_str<'a>(
    block: &'a Value,
    field: &str,
    param: impl FnOnce() -> String,
) -> Result<&'a str, ApiError> {
    block[field].as_str().ok_or_else(|| {
        let param = param();
        ApiError::bad_request(
            ErrorCode::MissingRequiredParameter,
            format!("缺少必填字段 `{param}`（字符串）"),
        )
        .with_param(param)
    })
}

/// 助手回合：文本块拼成 `content`，`tool_use` 变成 `tool_calls`，思考块丢弃。
fn push_assistant(
    i: usize,
    content: &Value,
    out: &mut Vec<Value>,
    dropped: &mut Dropped,
) -> Result<(), ApiError> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    let blocks = blocks_of(i, content)?;
    for (j, block) in blocks.iter().enumerate() {
        match block["type"].as_str().unwrap_or_default() {
            "text" => texts.extend(block_text(block).filter(|t| !t.is_empty())),
            "tool_use" => {
                let param = |f: &str| format!("messages[{i}].content[{j}].{f}");
                let id = required_str(block, "id", || param("id"))?;
                let name = required_str(block, "name", || param("name"))?;
                let arguments = block
                    .get("input")
                    .map_or_else(|| EMPTY_INPUT.to_string(), Value::to_string);
                calls.push(json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } }));
            }
            "thinking" | "redacted_thinking" => {}
            other => dropped.note(format!("content.{other}")),
        }
    }
    let text = (!texts.is_empty()).then(|| texts.join(BLOCK_SEPARATOR));
    let mut message = json!({ "role": "assistant", "content": text });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if text.is_some() || message.get("tool_calls").is_some() {
        out.push(message);
    }
    Ok(())
}

/// 工具定义 → 函数工具；没有 `input_schema` 的服务端工具丢弃并记录。返回丢弃的工具名。
fn push_tools(
    body: &Map<String, Value>,
    hub: &mut Map<String, Value>,
    dropped: &mut Dropped,
) -> Vec<String> {
    let Some(tools) = body.get("tools").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut functions = Vec::new();
    let mut skipped = Vec::new();
    for tool in tools {
        let name = tool["name"].as_str().unwrap_or_default();
        if tool.get("input_schema").is_none() {
            dropped.note(format!("tools.{name}"));
            skipped.push(name.to_string());
            continue;
        }
        let mut function = json!({ "name": name, "parameters": tool["input_schema"] });
        if let Some(description) = tool.get("description") {
            function["description"] = description.clone();
        }
        functions.push(json!({ "type": "function", "function": function }));
    }
    if !functions.is_empty() {
        hub.insert("tools".into(), Value::Array(functions));
    }
    skipped
}

/// `tool_choice`：auto → auto，any → required，tool → 指定函数，none → none；
/// 禁止并行（`disable_parallel_tool_use`）→ `parallel_tool_calls: false`。
///
/// 错误：强制使用被丢弃的服务端工具时返回 400（别家上游无法执行它）。
fn push_tool_choice(
    body: &Map<String, Value>,
    hub: &mut Map<String, Value>,
    skipped: &[String],
) -> Result<(), ApiError> {
    let Some(choice) = body.get("tool_choice").filter(|c| c.is_object()) else {
        return Ok(());
    };
    let mapped = match choice["type"].as_str().unwrap_or_default() {
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => {
            let name = choice["name"].as_str().unwrap_or_default();
            if skipped.iter().any(|s| s == name) {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidValue,
                    format!("`tool_choice` 强制使用的工具 `{name}` 只有 Anthropic 能执行，当前目标上游不支持"),
                )
                .with_param("tool_choice"));
            }
            json!({ "type": "function", "function": { "name": name } })
        }
        _ => json!("auto"),
    };
    hub.insert("tool_choice".into(), mapped);
    if choice["disable_parallel_tool_use"] == true {
        hub.insert("parallel_tool_calls".into(), Value::Bool(false));
    }
    Ok(())
}

/// 采样与其他参数：`max_tokens`、`temperature`、`top_p` 原样；`stop_sequences` → `stop`（总是数组，
/// 最多 4 个）；`stream` 时要求流末尾的用量块；`metadata.user_id` 哈希后作为 `user`。
fn push_sampling(body: &Map<String, Value>, hub: &mut Map<String, Value>, dropped: &mut Dropped) {
    for name in ["max_tokens", "temperature", "top_p"] {
        if let Some(value) = body.get(name).filter(|v| !v.is_null()) {
            hub.insert(name.into(), value.clone());
        }
    }
    if let Some(stops) = body.get("stop_sequences").and_then(Value::as_array) {
        if stops.len() > MAX_STOP_SEQUENCES {
            dropped.note("stop_sequences[4..]");
        }
        let kept: Vec<Value> = stops.iter().take(MAX_STOP_SEQUENCES).cloned().collect();
        if !kept.is_empty() {
            hub.insert("stop".into(), Value::Array(kept));
        }
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        hub.insert("stream".into(), Value::Bool(true));
        hub.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    if let Some(user) = body.get("metadata").and_then(|m| m["user_id"].as_str()) {
        let digest = hex::encode(Sha256::digest(user.as_bytes()));
        let short = &digest[..USER_HASH_HEX_CHARS];
        hub.insert(
            "user".into(),
            Value::String(format!("{USER_PREFIX}{short}")),
        );
    }
}
