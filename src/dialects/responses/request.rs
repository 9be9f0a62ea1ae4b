//! Responses 请求 → 枢纽（Chat Completions）请求（参考文档 §R7 “Request → hub”）。
//!
//! 约定：
//! - `instructions` 成为开头的系统消息；字符串 `input` 成为一条用户消息。
//! - 连续的 `function_call` / `custom_tool_call` 与紧挨在前面的助手消息合并成一条带 `tool_calls` 的助手消息
//!   （分开时 Anthropic 会拒绝：工具调用之后必须紧跟工具结果）。
//! - 命名空间工具展平为 `命名空间__名字`，自由格式的 `custom` 工具包成只有一个字符串参数 `input` 的函数，
//!   对应关系记在 [`ToolMap`] 里，回复时还原。
//! - 上游不能执行的内置工具（`web_search` 等）丢弃并记录；强制使用它们时返回 400。推理条目（含
//!   `encrypted_content`）只对 OpenAI 有意义，翻译时丢弃。
//! - Codex 不发 `max_output_tokens`：翻译时按 [`DEFAULT_MAX_OUTPUT`] 请求（再按目标的 `max_output_tokens` 截），
//!   太小的缺省值会截断补丁，Codex 收到 `response.incomplete` 就停下。
//! - 需要服务端状态的字段（`previous_response_id`、`conversation`、`background`、`item_reference`）返回 400。

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::tools::{ToolKind, ToolMap, CUSTOM_INPUT_FIELD, NAMESPACE_SEPARATOR};
use crate::dialects::chat::ChatRequest;
use crate::dialects::Dropped;
use crate::error::{ApiError, ErrorCode};

/// 客户端没给 `max_output_tokens` 时翻译请求的输出上限。
pub const DEFAULT_MAX_OUTPUT: u64 = 32_000;
/// `parameters` 为空的函数工具使用的参数结构。
const EMPTY_OBJECT_SCHEMA: &str = r#"{"type":"object","properties":{}}"#;
/// 需要服务端状态、翻译时无法提供的顶层字段。
const STATEFUL_FIELDS: &[&str] = &[
    "previous_response_id",
    "conversation",
    "background",
    "prompt",
];
/// 翻译时处理过的顶层字段；其余字段丢弃并记录。
const HANDLED_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "text",
    "stream",
    "user",
    "safety_identifier",
    "store",
    "metadata",
    "include",
    "truncation",
];

/// 一次翻译的结果：枢纽请求、工具名对应表、丢弃的功能。
///
/// 用途：`exchange` 用枢纽请求与上游交换，渲染回复时用对应表还原工具。
#[derive(Debug)]
pub struct Translation {
    /// 枢纽请求。
    pub hub: ChatRequest,
    /// 工具名对应表。
    pub tools: Arc<ToolMap>,
    /// 丢弃的功能。
    pub dropped: Dropped,
}

/// 把 Responses 请求体翻译为枢纽请求。
///
/// 错误：需要服务端状态的字段、结构不对的条目、强制使用无法执行的工具、`truncation: auto` 时返回 400。
pub(super) fn to_hub(body: &Map<String, Value>) -> Result<Translation, ApiError> {
    reject_stateful(body)?;
    let mut dropped = Dropped::default();
    let mut hub = Map::new();
    hub.insert(
        "model".into(),
        body.get("model").cloned().unwrap_or_default(),
    );
    let mut extra_tools = Vec::new();
    let messages = messages_of(body, &mut extra_tools, &mut dropped)?;
    hub.insert("messages".into(), Value::Array(messages));
    let mut tools = ToolMap::default();
    let skipped = push_tools(
        body.get("tools"),
        &extra_tools,
        &mut hub,
        &mut tools,
        &mut dropped,
    );
    push_tool_choice(body.get("tool_choice"), &mut hub, &tools, &skipped)?;
    push_parameters(body, &mut hub, &mut dropped);
    dropped.note_unhandled(body, HANDLED_FIELDS);
    Ok(Translation {
        hub: ChatRequest::from_hub(hub)?,
        tools: Arc::new(tools),
        dropped,
    })
}

/// 400：字段需要网关保存的会话状态（翻译到别家上游时没有）。
fn reject_stateful(body: &Map<String, Value>) -> Result<(), ApiError> {
    for field in STATEFUL_FIELDS {
        if body.get(*field).is_some_and(|v| !v.is_null()) {
            let code = if *field == "previous_response_id" {
                ErrorCode::PreviousResponseNotFound
            } else {
                ErrorCode::UnsupportedParameter
            };
            return Err(ApiError::bad_request(
                code,
                format!("目标上游不说 Responses 协议，网关也没有保存会话，无法使用 `{field}`；请在请求里带上完整的 input"),
            )
            .with_param(*field));
        }
    }
    if body.get("truncation").and_then(Value::as_str) == Some("auto") {
        return Err(ApiError::bad_request(
            ErrorCode::UnsupportedParameter,
            "翻译到别家上游时不支持 `truncation: auto`（网关不替上游截断对话）",
        )
        .with_param("truncation"));
    }
    Ok(())
}

/// `instructions` 与 `input` → 枢纽消息列表；`additional_tools` 条目里的工具收集到 `extra_tools`。
fn messages_of(
    body: &Map<String, Value>,
    extra_tools: &mut Vec<Value>,
    dropped: &mut Dropped,
) -> Result<Vec<Value>, ApiError> {
    let mut messages = Vec::new();
    if let Some(text) = body
        .get("instructions")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        messages.push(json!({ "role": "system", "content": text }));
    }
    match body.get("input") {
        Some(Value::String(text)) => messages.push(json!({ "role": "user", "content": text })),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                push_item(i, item, &mut messages, extra_tools, dropped)?;
            }
        }
        _ => {}
    }
    Ok(messages)
}

/// 一个输入条目 → 枢纽消息（工具调用并进前面的助手消息）。
fn push_item(
    i: usize,
    item: &Value,
    out: &mut Vec<Value>,
    extra_tools: &mut Vec<Value>,
    dropped: &mut Dropped,
) -> Result<(), ApiError> {
    let kind = item["type"].as_str().unwrap_or("message");
    match kind {
        "message" => push_message(i, item, out),
        "function_call" | "custom_tool_call" => push_call(i, item, kind, out),
        "function_call_output" | "custom_tool_call_output" => push_output(i, item, out),
        "additional_tools" => {
            extra_tools.extend(item["tools"].as_array().into_iter().flatten().cloned());
            Ok(())
        }
        "reasoning" => Ok(()),
        "item_reference" => Err(ApiError::bad_request(
            ErrorCode::UnsupportedParameter,
            "`item_reference` 引用的条目需要服务端保存，翻译到别家上游时无法使用；请直接带上条目内容",
        )
        .with_param(format!("input[{i}]"))),
        other => {
            dropped.note(format!("input.{other}"));
            Ok(())
        }
    }
}

/// 消息条目：角色原样（user、assistant、system、developer），内容部分逐个翻译。
fn push_message(i: usize, item: &Value, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let role = match item["role"].as_str() {
        Some(role @ ("user" | "assistant" | "system" | "developer")) => role,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidValue,
                format!("`input[{i}].role` 应为 user、assistant、system 或 developer"),
            )
            .with_param(format!("input[{i}].role")))
        }
    };
    let content = match &item["content"] {
        Value::String(text) => Value::String(text.clone()),
        Value::Array(parts) => content_parts(i, role, parts)?,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidType,
                format!("字段 `input[{i}].content` 的类型应为字符串或内容数组"),
            )
            .with_param(format!("input[{i}].content")))
        }
    };
    out.push(json!({ "role": role, "content": content }));
    Ok(())
}

/// 内容部分：文本类（`input_text`、`output_text`、`refusal`）成为文本，图片成为 `image_url`，文件成为 `file`。
/// 助手消息只保留文本（拼成字符串）。
///
/// 错误：只给 `file_id` 的图片或文件（需要 OpenAI 的文件存储）返回 400。
fn content_parts(i: usize, role: &str, parts: &[Value]) -> Result<Value, ApiError> {
    let mut out = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let text = part["text"].as_str().or_else(|| part["refusal"].as_str());
        let converted = match part["type"].as_str().unwrap_or_default() {
            "input_text" | "output_text" | "refusal" | "text" => {
                text.map(|t| json!({ "type": "text", "text": t }))
            }
            "input_image" => Some(image_part(i, j, part)?),
            "input_file" => Some(file_part(i, j, part)?),
            _ => None,
        };
        out.extend(converted);
    }
    if role == "assistant" || out.iter().all(|p| p["type"] == "text") {
        let texts: Vec<&str> = out.iter().filter_map(|p| p["text"].as_str()).collect();
        return Ok(Value::String(texts.join("")));
    }
    Ok(Value::Array(out))
}

/// `input_image` → `image_url`（`detail` 缺省 auto）。
fn image_part(i: usize, j: usize, part: &Value) -> Result<Value, ApiError> {
    let Some(url) = part["image_url"].as_str() else {
        return Err(needs_file_store(i, j));
    };
    let detail = part["detail"].as_str().unwrap_or("auto");
    Ok(json!({ "type": "image_url", "image_url": { "url": url, "detail": detail } }))
}

/// `input_file` → `file`（需要内联的 `file_data`）。
fn file_part(i: usize, j: usize, part: &Value) -> Result<Value, ApiError> {
    let Some(data) = part["file_data"].as_str() else {
        return Err(needs_file_store(i, j));
    };
    let filename = part["filename"].as_str().unwrap_or("file");
    Ok(json!({ "type": "file", "file": { "file_data": data, "filename": filename } }))
}

/// 400：只给了 `file_id`（或 URL 形式的文件），别家上游读不到 OpenAI 的文件存储。
fn needs_file_store(i: usize, j: usize) -> ApiError {
    ApiError::bad_request(
        ErrorCode::UnsupportedContentPart,
        format!("`input[{i}].content[{j}]` 引用了 OpenAI 文件存储里的文件，目标上游读不到；请内联为 data URL"),
    )
    .with_param(format!("input[{i}].content[{j}]"))
}

/// 工具调用条目 → 助手消息的 `tool_calls`：紧跟在助手消息（或另一个调用）之后时并进同一条消息。
fn push_call(i: usize, item: &Value, kind: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let call_id = required(i, item, "call_id")?;
    let name = required(i, item, "name")?;
    let hub_name = match item["namespace"].as_str() {
        Some(namespace) => format!("{namespace}{NAMESPACE_SEPARATOR}{name}"),
        None => name.to_string(),
    };
    let arguments = if kind == "custom_tool_call" {
        json!({ CUSTOM_INPUT_FIELD: item["input"].as_str().unwrap_or_default() }).to_string()
    } else {
        item["arguments"].as_str().unwrap_or("{}").to_string()
    };
    let call = json!({ "id": call_id, "type": "function", "function": { "name": hub_name, "arguments": arguments } });
    match out.last_mut().filter(|m| m["role"] == "assistant") {
        Some(message) => match message.get_mut("tool_calls").and_then(Value::as_array_mut) {
            Some(calls) => calls.push(call),
            None => message["tool_calls"] = json!([call]),
        },
        None => out.push(json!({ "role": "assistant", "content": null, "tool_calls": [call] })),
    }
    Ok(())
}

/// 工具结果条目 → `tool` 消息；结果里的图片放进紧随其后的用户消息（tool 消息只能是文本）。
fn push_output(i: usize, item: &Value, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let call_id = required(i, item, "call_id")?;
    let (text, images) = match &item["output"] {
        Value::String(text) => (text.clone(), Vec::new()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
            let images: Vec<Value> = parts
                .iter()
                .filter(|p| p["type"] == "input_image")
                .enumerate()
                .map(|(j, p)| image_part(i, j, p))
                .collect::<Result<_, _>>()?;
            (texts.join("\n"), images)
        }
        other => (other.to_string(), Vec::new()),
    };
    out.push(json!({ "role": "tool", "tool_call_id": call_id, "content": text }));
    if !images.is_empty() {
        out.push(json!({ "role": "user", "content": images }));
    }
    Ok(())
}

/// 条目里必需的字符串字段。
///
/// 错误：缺少或不是字符串时返回 400。
fn required<'a>(i: usize, item: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    item[field].as_str().ok_or_else(|| {
        let param = format!("input[{i}].{field}");
        ApiError::bad_request(
            ErrorCode::MissingRequiredParameter,
            format!("缺少必填字段 `{param}`（字符串）"),
        )
        .with_param(param)
    })
}

/// 工具定义 → 函数工具（函数、自由格式、命名空间）；内置工具丢弃并记录。返回丢弃的工具类型。
fn push_tools(
    tools: Option<&Value>,
    extra: &[Value],
    hub: &mut Map<String, Value>,
    map: &mut ToolMap,
    dropped: &mut Dropped,
) -> Vec<String> {
    let listed = tools.and_then(Value::as_array).into_iter().flatten();
    let mut functions = Vec::new();
    let mut skipped = Vec::new();
    for tool in listed.chain(extra) {
        match tool["type"].as_str().unwrap_or("function") {
            "function" => functions.push(function_tool(tool, None, map)),
            "custom" => functions.push(custom_tool(tool, map)),
            "namespace" => {
                let namespace = tool["name"].as_str();
                for inner in tool["tools"].as_array().into_iter().flatten() {
                    functions.push(function_tool(inner, namespace, map));
                }
            }
            other => {
                dropped.note(format!("tools.{other}"));
                skipped.push(other.to_string());
            }
        }
    }
    if !functions.is_empty() {
        hub.insert("tools".into(), Value::Array(functions));
    }
    skipped
}

/// 函数工具（可能在命名空间里）→ 枢纽函数；`parameters` 为空时给一个空对象结构，`strict` 不转。
fn function_tool(tool: &Value, namespace: Option<&str>, map: &mut ToolMap) -> Value {
    let name = tool["name"].as_str().unwrap_or_default();
    let hub_name = match namespace {
        Some(ns) => {
            let flat = format!("{ns}{NAMESPACE_SEPARATOR}{name}");
            map.insert(&flat, ToolKind::Function, name, Some(ns));
            flat
        }
        None => name.to_string(),
    };
    let parameters = match &tool["parameters"] {
        Value::Null => serde_json::from_str(EMPTY_OBJECT_SCHEMA).unwrap_or_default(),
        schema => schema.clone(),
    };
    let mut function = json!({ "name": hub_name, "parameters": parameters });
    if let Some(description) = tool["description"].as_str() {
        function["description"] = json!(description);
    }
    json!({ "type": "function", "function": function })
}

/// 自由格式工具 → 只有一个字符串参数 `input` 的函数；语法定义附在说明后面，让模型照着写。
fn custom_tool(tool: &Value, map: &mut ToolMap) -> Value {
    let name = tool["name"].as_str().unwrap_or_default();
    map.insert(name, ToolKind::Custom, name, None);
    let mut description = tool["description"].as_str().unwrap_or_default().to_string();
    if let Some(grammar) = tool["format"]["definition"].as_str() {
        let syntax = tool["format"]["syntax"].as_str().unwrap_or("grammar");
        description.push_str(&format!(
            "\n\n参数 input 是原样文本（不要包成 JSON），须符合以下 {syntax} 语法：\n{grammar}"
        ));
    }
    json!({ "type": "function", "function": {
        "name": name, "description": description,
        "parameters": { "type": "object", "properties": { CUSTOM_INPUT_FIELD: { "type": "string" } }, "required": [CUSTOM_INPUT_FIELD] },
    } })
}

/// `tool_choice`：字符串原样；指定函数或自由格式工具 → 指定枢纽函数；`allowed_tools` → 按模式 auto / required。
///
/// 错误：强制使用被丢弃的内置工具时返回 400。
fn push_tool_choice(
    choice: Option<&Value>,
    hub: &mut Map<String, Value>,
    map: &ToolMap,
    skipped: &[String],
) -> Result<(), ApiError> {
    let mapped = match choice {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(mode)) => json!(mode),
        Some(choice) => match choice["type"].as_str().unwrap_or_default() {
            "function" | "custom" => {
                let name = choice["name"].as_str().unwrap_or_default();
                let hub_name = hub_name_of(map, name);
                json!({ "type": "function", "function": { "name": hub_name } })
            }
            "allowed_tools" => json!(choice["mode"].as_str().unwrap_or("auto")),
            "" => json!("auto"),
            other => {
                let reason = if skipped.iter().any(|s| s == other) {
                    "是 OpenAI 的内置工具"
                } else {
                    "不是函数或自由格式工具"
                };
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidToolChoice,
                    format!("`tool_choice` 强制使用的 `{other}` {reason}，目标上游无法执行"),
                )
                .with_param("tool_choice"));
            }
        },
    };
    hub.insert("tool_choice".into(), mapped);
    Ok(())
}

/// 客户端工具名在枢纽里的函数名（命名空间里的工具要加命名空间前缀；找不到时原样）。
fn hub_name_of(map: &ToolMap, name: &str) -> String {
    map.hub_name_for(name).unwrap_or(name).to_string()
}

/// 其余参数：`parallel_tool_calls`、`temperature`、`top_p` 原样；`max_output_tokens`（缺省 [`DEFAULT_MAX_OUTPUT`]）
/// → `max_tokens`；`text.format` → `response_format`；流式时要求用量块；`user` / `safety_identifier` → `user`。
fn push_parameters(body: &Map<String, Value>, hub: &mut Map<String, Value>, dropped: &mut Dropped) {
    for name in ["parallel_tool_calls", "temperature", "top_p"] {
        if let Some(value) = body.get(name).filter(|v| !v.is_null()) {
            hub.insert(name.into(), value.clone());
        }
    }
    let max = body
        .get("max_output_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_OUTPUT);
    hub.insert("max_tokens".into(), json!(max));
    if let Some(format) = body.get("text").and_then(|t| response_format(&t["format"])) {
        hub.insert("response_format".into(), format);
    }
    match body.get("reasoning").and_then(|r| r["effort"].as_str()) {
        Some(effort) => match hub_effort(effort) {
            Some(mapped) => {
                hub.insert("reasoning_effort".into(), json!(mapped));
            }
            None => dropped.note("reasoning.effort"),
        },
        None if body.get("reasoning").is_some_and(|r| !r.is_null()) => dropped.note("reasoning"),
        None => {}
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        hub.insert("stream".into(), Value::Bool(true));
        hub.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    let user = body.get("safety_identifier").or_else(|| body.get("user"));
    if let Some(user) = user.and_then(Value::as_str) {
        hub.insert("user".into(), json!(user));
    }
}

/// Responses 的推理力度 → 枢纽的 `reasoning_effort`（low、medium、high；更高的档位按 high）；
/// none 与 minimal 没有对应（交给上游的缺省值）。
fn hub_effort(effort: &str) -> Option<&'static str> {
    match effort {
        "low" => Some("low"),
        "medium" => Some("medium"),
        "high" | "xhigh" | "max" => Some("high"),
        _ => None,
    }
}

/// `text.format` → `response_format`：json_schema 的结构挪到 `json_schema` 下，json_object 原样，text 不需要。
fn response_format(format: &Value) -> Option<Value> {
    match format["type"].as_str()? {
        "json_object" => Some(json!({ "type": "json_object" })),
        "json_schema" => {
            let mut schema = json!({ "name": format["name"].as_str().unwrap_or("output"), "schema": format["schema"] });
            for key in ["strict", "description"] {
                if let Some(value) = format.get(key).filter(|v| !v.is_null()) {
                    schema[key] = value.clone();
                }
            }
            Some(json!({ "type": "json_schema", "json_schema": schema }))
        }
        _ => None,
    }
}
