//! 模拟器的 Anthropic Messages 线上格式（参考文档 §2.4–§2.6）：完整消息、具名 SSE 事件流、错误体。
//!
//! 像真实 API 一样检查请求头与消息结构（必填的 max_tokens、交替的角色、非空文本块、
//! 紧跟在 tool_use 之后的 tool_result、采样参数冲突），让网关的翻译错误在测试里暴露出来。
//! 错误消息沿用真实 API 的英文原文，括号里附中文说明。

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};

use super::io::{send_named, send_raw, start_stream, write_json, write_json_with};
use super::plan::{self, MockUsage, PlannedCall, Reply, ToolSpec, Turn};
use super::STREAM_ERROR_MESSAGE;
use super::{Fault, MockApp};

/// Anthropic 的过载状态码（流中错误故障报告 `overloaded_error`）。
const OVERLOADED: u16 = 529;
/// Messages 接口路径的结尾。
pub(super) const MESSAGES_PATH: &str = "/v1/messages";
/// 携带密钥的请求头。
const API_KEY_HEADER: &str = "x-api-key";
/// API 版本请求头。
const VERSION_HEADER: &str = "anthropic-version";
/// 模拟器接受的 API 版本。
const API_VERSION: &str = "2023-06-01";
/// 调用工具之前先说的一句话：让工具的内容块序号（1、2）与 OpenAI 的工具序号（0、1）不同。
const TOOL_PREAMBLE: &str = "我来查一下。";
/// 允许的最大 temperature。
const MAX_TEMPERATURE: f64 = 1.0;
/// `message_start` 里的起始输出 token 数（真实 API 也报告一个很小的起始值）。
const START_OUTPUT_TOKENS: u64 = 1;
/// 工具参数被拆成的片段数（另有一个真实 API 常见的空片段在最前）。
const ARGUMENT_FRAGMENTS: usize = 2;
/// 消息 id 前缀。
const MESSAGE_ID_PREFIX: &str = "msg_mock_";
/// 工具调用 id 前缀。
const TOOL_ID_PREFIX: &str = "toolu_mock_";
/// 请求 id 前缀（错误体的 `request_id`）。
const REQUEST_ID_PREFIX: &str = "req_mock_";
/// 空文本块的错误（真实 API 原文）。
const EMPTY_TEXT_ERROR: &str =
    "messages: text content blocks must be non-empty（文本内容块不能为空）";

/// 一个待输出的内容块。
struct Block {
    /// 完整形状（非流式响应中的样子）。
    full: Value,
    /// 流式时依次发送的增量。
    deltas: Vec<Value>,
}

/// 一次回复。
struct Message {
    id: String,
    model: String,
    usage: MockUsage,
    stop_reason: &'static str,
    blocks: Vec<Block>,
}

/// 处理 `POST /v1/messages`；返回连接是否仍可复用。
pub(super) async fn messages(app: &MockApp, session: &mut ServerSession, body: Bytes) -> bool {
    if let Err((status, message)) = check_headers(session) {
        return error(session, status, &message).await;
    }
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(message) => return error(session, 400, &message).await,
    };
    if let Some(Fault::Status(code)) = app.fault() {
        let body = error_body(code, &format!("模拟的上游故障（{code}）"));
        return write_json_with(session, code, &body, app.retry_after(code).as_deref()).await;
    }
    let turn = turn_of(&request, body.len());
    let reply = plan::plan(&app.settings, &turn);
    let message = Message {
        id: plan::next_id(MESSAGE_ID_PREFIX),
        model: request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        usage: plan::usage(&app.settings, &turn),
        stop_reason: stop_reason(&reply),
        blocks: blocks_of(&reply),
    };
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream(app, session, &message).await;
    }
    write_json(session, 200, &full_message(&message)).await
}

/// 检查 `x-api-key`（缺失为 401）与 `anthropic-version`（缺失或不对为 400）。
fn check_headers(session: &ServerSession) -> Result<(), (u16, String)> {
    let headers = &session.req_header().headers;
    if headers.get(API_KEY_HEADER).is_none_or(|v| v.is_empty()) {
        return Err((
            401,
            "x-api-key header is required（缺少 x-api-key 头）".to_string(),
        ));
    }
    match headers.get(VERSION_HEADER).map(|v| v.to_str()) {
        Some(Ok(API_VERSION)) => Ok(()),
        Some(_) => Err((
            400,
            format!("{VERSION_HEADER}: invalid version（模拟器只接受 {API_VERSION}）"),
        )),
        None => Err((
            400,
            format!("{VERSION_HEADER}: header is required（缺少 {VERSION_HEADER} 头）"),
        )),
    }
}

/// 解析并校验请求体；错误为真实 API 风格的消息。
fn parse_request(body: &[u8]) -> Result<Map<String, Value>, String> {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return Err(
            "invalid request: body must be a JSON object（请求体不是 JSON 对象）".to_string(),
        );
    };
    validate(&request)?;
    Ok(request)
}

/// 校验请求：max_tokens 必填、采样参数、system 与 messages 的结构。
fn validate(request: &Map<String, Value>) -> Result<(), String> {
    if !request.get("max_tokens").is_some_and(Value::is_u64) {
        return Err("max_tokens: Field required（max_tokens 必填）".to_string());
    }
    validate_sampling(request)?;
    if let Some(system) = request.get("system") {
        let blocks = normalized_blocks(system)
            .ok_or("system: Input should be a valid string or list（system 格式不对）")?;
        check_text_blocks(&blocks)?;
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("messages: at least one message is required（messages 不能为空）")?;
    validate_messages(messages)
}

/// temperature 不能超过 1，且不能与 top_p 同时给出（较新的 Claude 模型的规则）。
fn validate_sampling(request: &Map<String, Value>) -> Result<(), String> {
    let temperature = request.get("temperature").and_then(Value::as_f64);
    if temperature.is_some_and(|t| !(0.0..=MAX_TEMPERATURE).contains(&t)) {
        return Err(
            "temperature: Input should be less than or equal to 1（temperature 超出 0–1）"
                .to_string(),
        );
    }
    if temperature.is_some() && request.get("top_p").is_some() {
        return Err("`temperature` and `top_p` cannot both be specified for this model. Please use only one.（两者不能同时指定）".to_string());
    }
    Ok(())
}

/// 内容统一成块数组：字符串为一个文本块；既不是字符串也不是数组时为 `None`。
fn normalized_blocks(content: &Value) -> Option<Vec<Value>> {
    match content {
        Value::String(text) => Some(vec![json!({ "type": "text", "text": text })]),
        Value::Array(blocks) => Some(blocks.clone()),
        _ => None,
    }
}

/// 文本块的文本不能为空。
fn check_text_blocks(blocks: &[Value]) -> Result<(), String> {
    let empty = blocks
        .iter()
        .any(|b| b["type"] == "text" && b["text"].as_str().is_none_or(str::is_empty));
    if empty {
        return Err(EMPTY_TEXT_ERROR.to_string());
    }
    Ok(())
}

/// 逐条检查角色、内容与工具调用配对：含 tool_use 的助手消息之后，下一条必须是以对应
/// tool_result 块开头的用户消息；tool_result 必须对应上一条助手消息里的 tool_use。
fn validate_messages(messages: &[Value]) -> Result<(), String> {
    let mut pending: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'（角色只能是 user 或 assistant）"));
        }
        let blocks = normalized_blocks(&message["content"])
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                format!(
                    "messages.{i}: all messages must have non-empty content（消息内容不能为空）"
                )
            })?;
        check_text_blocks(&blocks)?;
        check_tool_results(role, &blocks, &pending, i)?;
        pending = match role {
            "assistant" => tool_use_ids(&blocks),
            _ => Vec::new(),
        };
    }
    match pending.is_empty() {
        true => Ok(()),
        false => Err(missing_results(&pending, messages.len())),
    }
}

/// 块中全部 tool_use 的 id。
fn tool_use_ids(blocks: &[Value]) -> Vec<String> {
    blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .filter_map(|b| b["id"].as_str().map(str::to_string))
        .collect()
}

/// 检查第 `i` 条消息的 tool_result：必须回应 `pending`（上一条助手消息的 tool_use），且全部在开头。
fn check_tool_results(
    role: &str,
    blocks: &[Value],
    pending: &[String],
    i: usize,
) -> Result<(), String> {
    let leading: Vec<&str> = blocks
        .iter()
        .take_while(|b| b["type"] == "tool_result")
        .filter_map(|b| b["tool_use_id"].as_str())
        .collect();
    let answered = pending.is_empty()
        || (role == "user" && pending.iter().all(|id| leading.contains(&id.as_str())));
    if !answered {
        return Err(missing_results(pending, i));
    }
    for (j, block) in blocks
        .iter()
        .enumerate()
        .filter(|(_, b)| b["type"] == "tool_result")
    {
        let id = block["tool_use_id"].as_str().unwrap_or_default();
        if !pending.iter().any(|p| p == id) {
            return Err(format!("messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.（工具结果没有对应的工具调用）"));
        }
    }
    Ok(())
}

/// tool_use 之后缺少对应 tool_result 的错误（真实 API 原文）。
fn missing_results(pending: &[String], i: usize) -> String {
    format!("messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.（工具调用之后缺少工具结果）", pending.join(", "))
}

/// 从请求中抽取与格式无关的一轮信息：工具来自 `tools[].input_schema`，tool_choice 为 none 时不调用，
/// 最后一条用户消息含 tool_result 时回复文本。
fn turn_of(request: &Map<String, Value>, body_len: usize) -> Turn {
    let tools = request
        .get("tools")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|t| {
                    let name = t["name"].as_str()?.to_string();
                    Some(ToolSpec {
                        name,
                        schema: t["input_schema"].clone(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let last_user = messages.iter().rev().find(|m| m["role"] == "user");
    let after_tool_result = last_user
        .and_then(|m| m["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
    Turn {
        tools,
        tools_allowed: request
            .get("tool_choice")
            .is_none_or(|c| c["type"] != "none"),
        after_tool_result,
        body_len,
    }
}

/// 回复对应的 `stop_reason`。
fn stop_reason(reply: &Reply) -> &'static str {
    match reply {
        Reply::Text(_) => "end_turn",
        Reply::Tools(_) => "tool_use",
    }
}

/// 回复的内容块：文本回复一个文本块；工具回复先一句文本，再每个调用一个 tool_use 块。
fn blocks_of(reply: &Reply) -> Vec<Block> {
    match reply {
        Reply::Text(pieces) => vec![text_content(pieces)],
        Reply::Tools(calls) => std::iter::once(text_content(&[TOOL_PREAMBLE.to_string()]))
            .chain(calls.iter().map(tool_content))
            .collect(),
    }
}

/// 文本块：每个分块一个 text_delta。
fn text_content(pieces: &[String]) -> Block {
    Block {
        full: json!({ "type": "text", "text": pieces.concat() }),
        deltas: pieces
            .iter()
            .map(|p| json!({ "type": "text_delta", "text": p }))
            .collect(),
    }
}

/// tool_use 块：参数以一个空片段加两段 input_json_delta 发送（真实 API 常以空片段开头）。
fn tool_content(call: &PlannedCall) -> Block {
    let input = Value::Object(call.arguments.clone());
    let fragments = std::iter::once(String::new())
        .chain(plan::split_reply(&input.to_string(), ARGUMENT_FRAGMENTS));
    Block {
        full: json!({ "type": "tool_use", "id": plan::next_id(TOOL_ID_PREFIX), "name": call.name, "input": input }),
        deltas: fragments
            .map(|f| json!({ "type": "input_json_delta", "partial_json": f }))
            .collect(),
    }
}

/// 流中块开始时的形状：文本为空、工具参数为空对象（内容随后由增量给出）。
fn start_shape(full: &Value) -> Value {
    let mut start = full.clone();
    if start["type"] == "text" {
        start["text"] = json!("");
    } else {
        start["input"] = json!({});
    }
    start
}

/// 输入部分的用量（Anthropic 语义：input_tokens 不含缓存读取）。
fn input_usage(u: &MockUsage) -> Map<String, Value> {
    let mut usage = Map::new();
    usage.insert(
        "input_tokens".into(),
        json!(u.prompt.saturating_sub(u.cached)),
    );
    usage.insert("cache_creation_input_tokens".into(), json!(0));
    usage.insert("cache_read_input_tokens".into(), json!(u.cached));
    usage
}

/// 最终用量：输入部分加累计输出；有思考 token 时附上 `output_tokens_details`。
fn final_usage(u: &MockUsage) -> Value {
    let mut usage = input_usage(u);
    usage.insert("output_tokens".into(), json!(u.completion));
    if u.reasoning > 0 {
        usage.insert(
            "output_tokens_details".into(),
            json!({ "thinking_tokens": u.reasoning }),
        );
    }
    Value::Object(usage)
}

/// 非流式响应体。
fn full_message(m: &Message) -> Value {
    json!({
        "id": m.id, "type": "message", "role": "assistant", "model": m.model,
        "content": m.blocks.iter().map(|b| b.full.clone()).collect::<Vec<_>>(),
        "stop_reason": m.stop_reason, "stop_sequence": null, "usage": final_usage(&m.usage),
    })
}

/// `message_start` 事件：空内容、`stop_reason` 为 null、输出用量为起始值。
fn message_start(m: &Message) -> Value {
    let mut usage = input_usage(&m.usage);
    usage.insert("output_tokens".into(), json!(START_OUTPUT_TOKENS));
    json!({ "type": "message_start", "message": {
        "id": m.id, "type": "message", "role": "assistant", "model": m.model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": usage,
    } })
}

/// 全部内容事件：每块 start、增量、stop，第一个块开始后插一个 ping。
fn content_events(blocks: &[Block]) -> Vec<Value> {
    let mut events = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        events.push(json!({ "type": "content_block_start", "index": index, "content_block": start_shape(&block.full) }));
        if index == 0 {
            events.push(json!({ "type": "ping" }));
        }
        events.extend(
            block
                .deltas
                .iter()
                .map(|d| json!({ "type": "content_block_delta", "index": index, "delta": d })),
        );
        events.push(json!({ "type": "content_block_stop", "index": index }));
    }
    events
}

/// `message_delta` 事件：停止原因与累计用量。
fn message_delta(m: &Message) -> Value {
    json!({ "type": "message_delta", "delta": { "stop_reason": m.stop_reason, "stop_sequence": null }, "usage": final_usage(&m.usage) })
}

/// 写一个具名事件（事件名即 JSON 中的 `type`）。
async fn send_event(session: &mut ServerSession, event: &Value) -> bool {
    send_named(session, event["type"].as_str().unwrap_or_default(), event).await
}

/// 流式回复：message_start、各内容事件（每个事件之前按设置延迟或按故障断开）、message_delta、message_stop。
async fn stream(app: &MockApp, session: &mut ServerSession, m: &Message) -> bool {
    if !start_stream(session).await {
        return false;
    }
    let mut ok = send_event(session, &message_start(m)).await;
    for (i, event) in content_events(&m.blocks).iter().enumerate() {
        if !ok {
            break;
        }
        if !app.before_piece(i).await {
            if app.error_due(i) {
                send_event(session, &error_body(OVERLOADED, STREAM_ERROR_MESSAGE)).await;
            }
            return false;
        }
        ok = send_event(session, event).await;
    }
    ok = ok && send_event(session, &message_delta(m)).await;
    ok = ok && send_event(session, &json!({ "type": "message_stop" })).await;
    ok = ok && send_raw(session, Bytes::new(), true).await;
    app.count_stream(ok);
    ok
}

/// 状态码对应的 Anthropic 错误类型（529 为过载；未列出的 4xx、5xx 分别归为请求错误与服务错误）。
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// 以 Anthropic 错误体应答；返回连接是否仍可复用。
async fn error(session: &mut ServerSession, status: u16, message: &str) -> bool {
    write_json(session, status, &error_body(status, message)).await
}

/// Anthropic 错误体。
fn error_body(status: u16, message: &str) -> Value {
    json!({
        "type": "error",
        "error": { "type": error_type(status), "message": message },
        "request_id": plan::next_id(REQUEST_ID_PREFIX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 把测试用的 JSON 对象转成 Map。
    fn 对象(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("测试数据必须是对象")
    }

    /// 带必填字段的请求，消息由参数给出。
    fn 请求(messages: Value) -> Map<String, Value> {
        对象(json!({ "model": "claude-sonnet-4-5", "max_tokens": 64, "messages": messages }))
    }

    /// 输入 30（缓存 10）、输出 12 的用量，推理数由参数给出。
    fn 用量(reasoning: u64) -> MockUsage {
        MockUsage {
            prompt: 30,
            completion: 12,
            cached: 10,
            reasoning,
        }
    }

    /// 并行调用两个工具的回复。
    fn 工具回复() -> Message {
        let call = |name: &str| PlannedCall {
            name: name.into(),
            arguments: 对象(json!({ "城市": "巴黎" })),
        };
        let reply = Reply::Tools(vec![call("查天气"), call("查时间")]);
        Message {
            id: "msg_测试".into(),
            model: "claude-sonnet-4-5".into(),
            usage: 用量(0),
            stop_reason: stop_reason(&reply),
            blocks: blocks_of(&reply),
        }
    }

    #[test]
    fn 校验_缺少_max_tokens_空消息与错误角色被拒绝() {
        let mut no_limit = 请求(json!([ { "role": "user", "content": "你好" } ]));
        no_limit.remove("max_tokens");
        assert!(validate(&no_limit).is_err_and(|e| e.contains("max_tokens")));
        assert!(validate(&请求(json!([]))).is_err());
        let system = 请求(json!([ { "role": "system", "content": "规则" } ]));
        assert!(validate(&system).is_err_and(|e| e.contains("role")));
        assert!(validate(&请求(json!([ { "role": "user", "content": "你好" } ]))).is_ok());
    }

    #[test]
    fn 校验_空文本块被拒绝() {
        let empty =
            请求(json!([ { "role": "user", "content": [ { "type": "text", "text": "" } ] } ]));
        assert_eq!(validate(&empty), Err(EMPTY_TEXT_ERROR.to_string()));
        let mut system = 请求(json!([ { "role": "user", "content": "你好" } ]));
        system.insert("system".into(), json!([ { "type": "text", "text": "" } ]));
        assert_eq!(validate(&system), Err(EMPTY_TEXT_ERROR.to_string()));
        let no_content = 请求(json!([ { "role": "user", "content": [] } ]));
        assert!(validate(&no_content).is_err());
    }

    #[test]
    fn 校验_工具调用之后必须紧跟以对应工具结果开头的用户消息() {
        let call = json!({ "role": "assistant", "content": [ { "type": "tool_use", "id": "t1", "name": "查", "input": {} } ] });
        let result =
            |id: &str| json!({ "type": "tool_result", "tool_use_id": id, "content": "晴" });
        let question = json!({ "role": "user", "content": "查" });
        let ok = json!([ question, call, { "role": "user", "content": [ result("t1"), { "type": "text", "text": "继续" } ] } ]);
        assert_eq!(validate(&请求(ok)), Ok(()));
        let missing = json!([ question, call, { "role": "user", "content": "继续" } ]);
        assert!(validate(&请求(missing)).is_err_and(|e| e.contains("without `tool_result`")));
        let late = json!([ question, call, { "role": "user", "content": [ { "type": "text", "text": "先说" }, result("t1") ] } ]);
        assert!(validate(&请求(late)).is_err(), "工具结果必须在开头");
        let last = json!([question, call]);
        assert!(validate(&请求(last)).is_err(), "以工具调用结尾也缺少结果");
        let orphan = json!([ { "role": "user", "content": [ result("t9") ] } ]);
        assert!(validate(&请求(orphan)).is_err_and(|e| e.contains("unexpected `tool_use_id`")));
    }

    #[test]
    fn 校验_温度超过_1_或与_top_p_同时出现被拒绝() {
        let with = |extra: Value| {
            let mut request = 请求(json!([ { "role": "user", "content": "你好" } ]));
            request.extend(对象(extra));
            validate(&request)
        };
        assert!(with(json!({ "temperature": 1.5 })).is_err());
        assert!(
            with(json!({ "temperature": 0.5, "top_p": 0.9 })).is_err_and(|e| e.contains("top_p"))
        );
        assert_eq!(with(json!({ "temperature": 1.0 })), Ok(()));
        assert_eq!(with(json!({ "top_p": 0.9 })), Ok(()));
    }

    #[test]
    fn 轮次_工具来自_input_schema_选择_none_时不调用_工具结果之后回复文本() {
        let tools = json!([ { "name": "查天气", "input_schema": { "type": "object", "required": ["城市"] } } ]);
        let mut request = 请求(json!([ { "role": "user", "content": "查" } ]));
        request.insert("tools".into(), tools);
        let turn = turn_of(&request, 100);
        assert_eq!(
            (turn.tools.len(), turn.tools_allowed, turn.after_tool_result),
            (1, true, false)
        );
        assert_eq!(turn.tools[0].schema["required"], json!(["城市"]));
        request.insert("tool_choice".into(), json!({ "type": "none" }));
        assert!(!turn_of(&request, 100).tools_allowed);
        let answered = json!([ { "role": "user", "content": [ { "type": "tool_result", "tool_use_id": "t1" } ] } ]);
        request.insert("messages".into(), answered);
        assert!(turn_of(&request, 100).after_tool_result);
    }

    #[test]
    fn 流事件_顺序完整_含_ping_工具参数拆成空片段加两段() {
        let m = 工具回复();
        let events = content_events(&m.blocks);
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        let tool = [
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
        ];
        let mut expected = vec![
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_stop",
        ];
        expected.extend(tool);
        expected.extend(tool);
        assert_eq!(kinds, expected);
        assert_eq!(events[2]["delta"]["text"], TOOL_PREAMBLE);
        let starts: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "content_block_start")
            .collect();
        assert_eq!(starts[1]["index"], 1, "第一个工具的内容块序号是 1");
        assert_eq!(
            starts[1]["content_block"]["input"],
            json!({}),
            "块开始时参数为空对象"
        );
        assert_ne!(
            starts[1]["content_block"]["id"], starts[2]["content_block"]["id"],
            "工具调用 id 必须不同"
        );
        let fragments: Vec<&str> = events
            .iter()
            .filter(|e| e["index"] == 2 && e["delta"]["type"] == "input_json_delta")
            .filter_map(|e| e["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(fragments.len(), 1 + ARGUMENT_FRAGMENTS);
        assert_eq!(fragments[0], "", "第一个片段为空");
        assert_eq!(fragments.concat(), "{\"城市\":\"巴黎\"}");
        assert_eq!(message_delta(&m)["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn 用量_输入不含缓存_思考_token_仅在大于零时出现() {
        let m = 工具回复();
        let start = message_start(&m);
        assert_eq!(
            start["message"]["usage"],
            json!({ "input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": START_OUTPUT_TOKENS })
        );
        assert!(start["message"]["stop_reason"].is_null());
        assert_eq!(final_usage(&用量(0)).get("output_tokens_details"), None);
        assert_eq!(
            final_usage(&用量(5))["output_tokens_details"],
            json!({ "thinking_tokens": 5 })
        );
        assert_eq!(final_usage(&用量(5))["output_tokens"], 12);
    }

    #[test]
    fn 完整消息_文本块在工具块之前_工具参数为对象() {
        let body = full_message(&工具回复());
        assert_eq!(body["type"], "message");
        assert_eq!(body["stop_reason"], "tool_use");
        assert_eq!(
            body["content"][0],
            json!({ "type": "text", "text": TOOL_PREAMBLE })
        );
        assert_eq!(body["content"][1]["input"], json!({ "城市": "巴黎" }));
        assert!(body["content"][2]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with(TOOL_ID_PREFIX)));
        let text = blocks_of(&Reply::Text(vec!["你".into(), "好".into()]));
        assert_eq!(text[0].full, json!({ "type": "text", "text": "你好" }));
        assert_eq!(text[0].deltas.len(), 2, "每个分块一个增量");
    }

    #[test]
    fn 错误类型_按状态码选择() {
        let cases = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (404, "not_found_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (503, "api_error"),
            (529, "overloaded_error"),
        ];
        for (status, kind) in cases {
            assert_eq!(error_type(status), kind, "状态码 {status}");
        }
    }
}
