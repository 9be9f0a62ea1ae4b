//! 完整回复的渲染：枢纽的 `chat.completion` → Anthropic `message` 对象。
//!
//! 内容块顺序为思考（上游返回了推理时）、文本（为空时省略）、每个工具调用一个 `tool_use`。
//! 工具参数的约定（参考文档 PWF §6.16：给出确定的行为，绝不 500）：空参数渲染为 `{}`；参数不是合法
//! JSON、或解析出的不是对象（如 `[1]`）时同样渲染为 `{}` 并记警告日志——Anthropic 的 `input` 必须是
//! 对象，而整条回复报 502 会让已经生成的文本也丢失；工具拿到空参数会报缺参，模型可以据此重试。

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::names::{
    stop_reason, usage_json, BLOCK_TEXT, BLOCK_THINKING, BLOCK_TOOL_USE, MESSAGE_ID_PREFIX,
    MESSAGE_TYPE, ROLE_ASSISTANT, TOOL_ID_PREFIX,
};
use crate::dialects::hub_stream::parse_completion;
use crate::error::ApiError;
use crate::streaming::{random_id, Usage};

/// 把枢纽的完整回复（`chat.completion` JSON 字节）渲染为 Anthropic `message` 对象的 JSON 字节。
///
/// 参数：`hub` 为枢纽回复的字节；`model` 为客户端请求的模型名（写进 `model`，不用上游的名字）。
///
/// 返回：`message` 对象的 JSON 字节。`id` 沿用以 `msg_` 开头的枢纽 id，否则合成 `msg_…`；
/// 用量按 Anthropic 语义换算（`input_tokens` 不含缓存命中），上游没报用量时为 0。
///
/// 错误：不是合法的 `chat.completion`（不是 JSON 对象或缺少 `choices[0].message`）→ 502 错误，
/// 错误码为 `invalid_upstream_response`。
///
/// ```
/// use chatnexus::dialects::messages::response::render_message; // 渲染函数
/// let hub = r#"{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"你好"},"finish_reason":"stop"}]}"#;
/// let rendered = render_message(hub.as_bytes(), "演示").unwrap(); // 渲染结果
/// let body: serde_json::Value = serde_json::from_slice(&rendered).unwrap(); // 解析以便断言
/// assert_eq!(body["content"][0]["text"], "你好");
/// assert_eq!(body["stop_reason"], "end_turn"); // 枢纽的 stop 对应 end_turn
/// ```
pub fn render_message(hub: &[u8], model: &str) -> Result<Bytes, ApiError> {
    let reply = parse_completion(hub)?;
    let choice = &reply["choices"][0];
    let message = &choice["message"];
    let (content, saw_tools) = content_blocks(message);
    let usage = Usage::from_openai(&reply["usage"]).unwrap_or_default();
    let body = json!({
        "id": message_id(&reply["id"]),
        "type": MESSAGE_TYPE,
        "role": ROLE_ASSISTANT,
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str(), saw_tools),
        "stop_sequence": null,
        "usage": usage_json(&usage),
    });
    Ok(Bytes::from(body.to_string()))
}

/// 消息 id：枢纽 id 已是 `msg_…`（来自 Anthropic）时沿用，否则合成一个。
fn message_id(hub_id: &Value) -> String {
    match hub_id.as_str() {
        Some(id) if id.starts_with(MESSAGE_ID_PREFIX) => id.to_owned(),
        _ => random_id(MESSAGE_ID_PREFIX),
    }
}

/// 按思考、文本、工具调用的顺序生成内容块。
///
/// 返回：内容块数组，以及是否有工具调用（决定停止原因）。
fn content_blocks(message: &Value) -> (Vec<Value>, bool) {
    let mut blocks = Vec::new();
    let reasoning = ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|key| message[*key].as_str().filter(|text| !text.is_empty()));
    if let Some(thinking) = reasoning {
        blocks.push(json!({ "type": BLOCK_THINKING, "thinking": thinking, "signature": "" }));
    }
    let text = message_text(message);
    if !text.is_empty() {
        blocks.push(json!({ "type": BLOCK_TEXT, "text": text }));
    }
    let before = blocks.len();
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let id = call["id"].as_str().filter(|id| !id.is_empty());
        blocks.push(tool_use_block(id, &call["function"]));
    }
    // 旧版 function_call（没有 id）也渲染为工具调用
    if message["function_call"].is_object() {
        blocks.push(tool_use_block(None, &message["function_call"]));
    }
    let saw_tools = blocks.len() > before;
    (blocks, saw_tools)
}

/// 回复的文本：`content` 为字符串，或（个别兼容上游）文本片段数组时拼接各片段；没有文本而有
/// `refusal`（OpenAI 的结构化拒答）时用拒答文本。
fn message_text(message: &Value) -> String {
    let text = match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    };
    if text.is_empty() {
        return message["refusal"].as_str().unwrap_or_default().to_owned();
    }
    text
}

/// 一个 `tool_use` 块；上游没给 id 时合成 `toolu_…`。
fn tool_use_block(id: Option<&str>, function: &Value) -> Value {
    let id = id.map_or_else(|| random_id(TOOL_ID_PREFIX), str::to_owned);
    let name = function["name"].as_str().unwrap_or_default();
    let input = tool_input(&function["arguments"], &id);
    json!({ "type": BLOCK_TOOL_USE, "id": id, "name": name, "input": input })
}

/// 把工具参数解析为 `input` 对象：空参数为 `{}`；非法 JSON 或不是对象时也为 `{}` 并记警告（见模块说明）。
/// 规范中参数是 JSON 字符串，个别上游直接给对象时原样采用。
fn tool_input(arguments: &Value, id: &str) -> Value {
    let parsed = match arguments {
        Value::Object(_) => return arguments.clone(),
        Value::Null => return Value::Object(Map::new()),
        Value::String(text) if text.trim().is_empty() => return Value::Object(Map::new()),
        Value::String(text) => serde_json::from_str::<Value>(text).ok(),
        _ => None,
    };
    match parsed {
        Some(object @ Value::Object(_)) => object,
        _ => {
            log::warn!("上游工具调用 {id} 的参数不是 JSON 对象，已按空对象 {{}} 渲染");
            Value::Object(Map::new())
        }
    }
}
