//! 完整回复的渲染：枢纽的 `chat.completion` → OpenAI Responses `response` 对象。
//!
//! 输出项顺序（参考文档 §R7“枢纽 → Responses”）：推理项（上游返回了推理时）、消息项（有文本或拒答时；
//! 文本为一个 `output_text` 部分，拒答为一个 `refusal` 部分）、每个工具调用一个 `function_call` 或
//! `custom_tool_call`（按工具对应表还原名字、命名空间与自由格式输入）。没有文本的纯工具回答不产生消息项。
//! 结局按结束原因：`length` 与 `content_filter` 为 `incomplete`（最后一个输出项的状态也是 `incomplete`，
//! 与流式渲染中结束时仍打开的输出项一致），其余为 `completed`。上游没报用量时用量各项为 0（仍是整数）。

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::names::{
    call_item, call_item_prefix, custom_input, function_arguments, message_item, output_text_part,
    reasoning_item, reasoning_of, refusal_part, response_skeleton, usage_json, CallIdentity,
    Ending, CALL_ID_PREFIX, MESSAGE_ID_PREFIX, REASONING_ID_PREFIX, STATUS_COMPLETED,
};
use super::tools::{ToolKind, ToolMap};
use crate::clock::unix_now;
use crate::dialects::hub_calls::arguments_text;
use crate::dialects::hub_stream::parse_completion;
use crate::error::ApiError;
use crate::streaming::{random_id, Usage};

/// 把枢纽的完整回复（`chat.completion` JSON 字节）渲染为 Responses `response` 对象的 JSON 字节。
///
/// 参数：`hub` 为枢纽回复的字节；`template` 为调用方填好请求回显的骨架（含客户端的 `model`，与流式渲染
/// 相同）；`tools` 为工具名对应表。
///
/// 返回：`response` 对象的 JSON 字节：新的 `resp_…` id，`created_at` 取枢纽的 `created`（没有时为现在），
/// 状态与 `incomplete_details` 按结束原因，`usage` 按 Responses 语义换算。
///
/// 错误：不是合法的 `chat.completion`（不是 JSON 或缺少 `choices[0].message`）→ 502
/// `invalid_upstream_response` 错误。
///
/// ```
/// use chatnexus::dialects::responses::{response::render_response, tools::ToolMap}; // 渲染函数与对应表
/// let hub = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"你好"},"finish_reason":"stop"}]}"#;
/// let mut template = serde_json::Map::new(); // 请求回显
/// template.insert("model".into(), "演示".into());
/// let rendered = render_response(hub.as_bytes(), &template, &ToolMap::default()).unwrap(); // 渲染结果
/// let body: serde_json::Value = serde_json::from_slice(&rendered).unwrap(); // 解析以便断言
/// assert_eq!(body["output"][0]["content"][0]["text"], "你好");
/// assert_eq!(body["status"], "completed"); // 枢纽的 stop 对应 completed
/// ```
pub fn render_response(
    hub: &[u8],
    template: &Map<String, Value>,
    tools: &ToolMap,
) -> Result<Bytes, ApiError> {
    let reply = parse_completion(hub)?;
    let choice = &reply["choices"][0];
    let message = &choice["message"];
    let ending = Ending::of(choice["finish_reason"].as_str());
    let mut output = output_items(message, tools);
    if let Some(last) = output.last_mut() {
        last["status"] = json!(ending.status());
    }
    let usage = Usage::from_openai(&reply["usage"]).unwrap_or_default();
    let created_at = reply["created"].as_u64().unwrap_or_else(unix_now);
    let mut body = response_skeleton(template, created_at);
    body.insert("status".into(), json!(ending.status()));
    body.insert("incomplete_details".into(), ending.details());
    body.insert("output".into(), Value::Array(output));
    body.insert("usage".into(), usage_json(&usage));
    Ok(Bytes::from(Value::Object(body).to_string()))
}

/// 按推理、消息、工具调用的顺序生成输出项（状态都是 `completed`）。
fn output_items(message: &Value, tools: &ToolMap) -> Vec<Value> {
    let mut items = Vec::new();
    if let Some(reasoning) = reasoning_of(message) {
        let id = random_id(REASONING_ID_PREFIX);
        items.push(reasoning_item(&id, STATUS_COMPLETED, Some(reasoning)));
    }
    let parts = content_parts(message);
    if !parts.is_empty() {
        let id = random_id(MESSAGE_ID_PREFIX);
        items.push(message_item(&id, STATUS_COMPLETED, parts));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let id = call["id"].as_str().filter(|id| !id.is_empty());
        items.push(call_output(id, &call["function"], tools));
    }
    // 旧版 function_call（没有 id）也渲染为工具调用
    if message["function_call"].is_object() {
        items.push(call_output(None, &message["function_call"], tools));
    }
    items
}

/// 消息项的内容部分：文本非空时一个 `output_text`，拒答非空时一个 `refusal`（都没有时为空）。
/// `content` 为字符串，或（个别兼容上游）文本片段数组时拼接各片段。
fn content_parts(message: &Value) -> Vec<Value> {
    let text: String = match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    };
    let mut parts = Vec::new();
    if !text.is_empty() {
        parts.push(output_text_part(&text));
    }
    if let Some(refusal) = message["refusal"].as_str().filter(|r| !r.is_empty()) {
        parts.push(refusal_part(refusal));
    }
    parts
}

/// 一个工具调用输出项：按对应表还原客户端的工具；上游没给 id 时合成 `call_…`。
/// 函数工具的空参数为 `{}`；自由格式工具把包装的 `{"input": …}` 拆包为原样输入。
fn call_output(call_id: Option<&str>, function: &Value, tools: &ToolMap) -> Value {
    let call_id = call_id.map_or_else(|| random_id(CALL_ID_PREFIX), str::to_owned);
    let tool = tools.resolve(function["name"].as_str().unwrap_or_default());
    let item_id = random_id(call_item_prefix(tool.kind));
    let arguments = arguments_text(&function["arguments"]);
    let payload = match tool.kind {
        ToolKind::Function => function_arguments(&arguments).to_owned(),
        ToolKind::Custom => custom_input(&arguments, &call_id),
    };
    let identity = CallIdentity {
        item_id: &item_id,
        call_id: &call_id,
        tool,
    };
    call_item(&identity, STATUS_COMPLETED, &payload)
}
