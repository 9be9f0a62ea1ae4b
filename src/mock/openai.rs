//! 模拟器的 OpenAI 与 Azure OpenAI 线上格式：完整响应、SSE 分块（含工具调用）、用量块、错误信封。
//!
//! Azure 与 OpenAI 格式相同，另有：`api-version` 查询参数与 `api-key` 头必填、响应带内容过滤结果、
//! 流的第一个事件是 `choices` 为空的注释块。

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};

use super::io::{send_data, send_raw, start_stream, write_json, write_json_with};
use super::plan::{self, MockUsage, PlannedCall, Reply, ToolSpec, Turn};
use super::STREAM_ERROR_MESSAGE;
use super::{Fault, MockApp};
use crate::clock::unix_now;
use crate::streaming::DONE_SENTINEL;

/// 流中错误故障报告的状态码（server_error）。
const STREAM_ERROR_STATUS: u16 = 500;
/// 聊天补全接口路径的结尾（前缀可以是 `/v1`、Azure 的部署路径或任意 base 路径）。
pub(super) const CHAT_PATH: &str = "/chat/completions";
/// 模型列表接口路径的结尾。
pub(super) const MODELS_PATH: &str = "/models";
/// Azure 部署路径的前缀。
const AZURE_PREFIX: &str = "/openai/deployments/";
/// Azure 必填的查询参数。
const AZURE_API_VERSION: &str = "api-version=";
/// 模拟器的系统指纹。
const FINGERPRINT: &str = "fp_chatnexus_mock";

/// 一次补全的公共信息。
struct Completion {
    id: String,
    created: u64,
    model: String,
    usage: MockUsage,
    azure: bool,
}

/// 一个通过了共同检查的 OpenAI 或 Azure 请求（聊天与向量共用）。
pub(super) struct Opened {
    /// 请求体对象。
    pub(super) request: Map<String, Value>,
    /// 是否 Azure 的部署路径。
    pub(super) azure: bool,
    /// 回复里的 `model`。
    pub(super) model: String,
}

/// OpenAI 与 Azure 请求的共同开头：Azure 的查询参数与认证头，请求体须是 JSON 对象。
///
/// 返回：通过的请求；不通过时已写出错误，`Err` 里是连接是否仍可复用。
pub(super) async fn open(session: &mut ServerSession, body: &[u8]) -> Result<Opened, bool> {
    let uri = session.req_header().uri.clone();
    let azure = uri.path().starts_with(AZURE_PREFIX);
    if let Err((status, message)) = check_request(session, azure) {
        return Err(error(session, status, &message).await);
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return Err(error(session, 400, "模拟器收到的请求体不是 JSON 对象").await);
    };
    let model = response_model(uri.path(), &request, azure);
    Ok(Opened {
        request,
        azure,
        model,
    })
}

/// 配置了按状态码的故障时写出 OpenAI 格式的错误（带 `Retry-After`）；返回连接是否仍可复用，没有故障时为 `None`。
pub(super) async fn status_fault(app: &MockApp, session: &mut ServerSession) -> Option<bool> {
    let Some(Fault::Status(code)) = app.fault() else {
        return None;
    };
    let body = error_body(code, &format!("模拟的上游故障（{code}）"));
    Some(write_json_with(session, code, &body, app.retry_after(code).as_deref()).await)
}

/// 处理聊天补全（OpenAI 或 Azure）；返回连接是否仍可复用。
pub(super) async fn chat(app: &MockApp, session: &mut ServerSession, body: Bytes) -> bool {
    let Opened {
        request,
        azure,
        model,
    } = match open(session, &body).await {
        Ok(opened) => opened,
        Err(reusable) => return reusable,
    };
    if let Err(message) = validate_messages(&request) {
        return error(session, 400, &message).await;
    }
    if let Some(reusable) = status_fault(app, session).await {
        return reusable;
    }
    let turn = turn_of(&request, body.len());
    let c = Completion {
        id: plan::next_id("chatcmpl-mock-"),
        created: unix_now(),
        model,
        usage: plan::usage(&app.settings, &turn),
        azure,
    };
    let reply = plan::plan(&app.settings, &turn);
    if request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        let include_usage = request
            .get("stream_options")
            .map_or(&Value::Null, |o| &o["include_usage"])
            .as_bool()
            .unwrap_or(false);
        return stream(app, session, &c, &reply, include_usage).await;
    }
    write_json(session, 200, &full_response(&c, &reply)).await
}

/// 响应里的 `model`：Azure 报告部署背后的模型（这里用部署名代替），OpenAI 回显请求的模型。
fn response_model(path: &str, request: &Map<String, Value>, azure: bool) -> String {
    let model = match azure {
        true => path.trim_start_matches(AZURE_PREFIX).split('/').next(),
        false => request.get("model").and_then(Value::as_str),
    };
    model.unwrap_or("mock").to_string()
}

/// Azure 要求 `api-version` 查询参数与 `api-key` 头。
fn check_request(session: &ServerSession, azure: bool) -> Result<(), (u16, String)> {
    if !azure {
        return Ok(());
    }
    let header = session.req_header();
    if !header
        .uri
        .query()
        .is_some_and(|q| q.contains(AZURE_API_VERSION))
    {
        return Err((404, "Resource not found（缺少 api-version）".to_string()));
    }
    if header.headers.get("api-key").is_none() {
        return Err((
            401,
            "Access denied due to invalid subscription key（缺少 api-key 头）".to_string(),
        ));
    }
    Ok(())
}

/// 像真实 API 一样检查：tool 消息必须回应前面某个助手消息里的工具调用。
fn validate_messages(request: &Map<String, Value>) -> Result<(), String> {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages 必须是数组")?;
    let mut call_ids: Vec<&str> = Vec::new();
    for m in messages {
        if let Some(calls) = m["tool_calls"].as_array() {
            call_ids.extend(calls.iter().filter_map(|c| c["id"].as_str()));
        }
        if m["role"] == "tool"
            && !m["tool_call_id"]
                .as_str()
                .is_some_and(|id| call_ids.contains(&id))
        {
            return Err("messages with role 'tool' must be a response to a preceding message with 'tool_calls'".to_string());
        }
    }
    Ok(())
}

fn turn_of(request: &Map<String, Value>, body_len: usize) -> Turn {
    let tools = request
        .get("tools")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|t| {
                    Some(ToolSpec {
                        name: t["function"]["name"].as_str()?.to_string(),
                        schema: t["function"]["parameters"].clone(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let last_role = request
        .get("messages")
        .unwrap_or(&Value::Null)
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["role"].clone());
    Turn {
        tools,
        tools_allowed: request.get("tool_choice").is_none_or(|c| c != "none"),
        after_tool_result: last_role.is_some_and(|r| r == "tool"),
        body_len,
    }
}

/// 流式回复：（Azure 的注释块、）角色块、内容或工具调用块、结束块、可选用量块、`[DONE]`。
async fn stream(
    app: &MockApp,
    session: &mut ServerSession,
    c: &Completion,
    reply: &Reply,
    include_usage: bool,
) -> bool {
    if !start_stream(session).await {
        return false;
    }
    let mut ok = !c.azure || send_data(session, &azure_annotation()).await;
    ok = ok
        && send_data(
            session,
            &chunk(c, json!({"role": "assistant", "content": ""}), None),
        )
        .await;
    let deltas = reply_deltas(reply);
    for (i, delta) in deltas.iter().enumerate() {
        if !app.before_piece(i).await {
            if app.error_due(i) {
                send_data(
                    session,
                    &error_body(STREAM_ERROR_STATUS, STREAM_ERROR_MESSAGE),
                )
                .await;
            }
            return false;
        }
        if !send_data(session, &chunk(c, delta.clone(), None)).await {
            ok = false;
            break;
        }
    }
    ok = ok && send_data(session, &chunk(c, json!({}), Some(finish_reason(reply)))).await;
    if include_usage {
        ok = ok && send_data(session, &usage_chunk(c)).await;
    }
    ok = ok
        && send_raw(
            session,
            Bytes::from(format!("data: {DONE_SENTINEL}\n\n")),
            true,
        )
        .await;
    app.count_stream(ok);
    ok
}

/// 回复拆成的增量：文本块，或每个工具调用的首个增量加两段参数片段。
fn reply_deltas(reply: &Reply) -> Vec<Value> {
    match reply {
        Reply::Text(pieces) => pieces.iter().map(|p| json!({ "content": p })).collect(),
        Reply::Tools(calls) => calls
            .iter()
            .enumerate()
            .flat_map(|(i, call)| tool_deltas(i, call))
            .collect(),
    }
}

fn tool_deltas(index: usize, call: &PlannedCall) -> Vec<Value> {
    let arguments = Value::Object(call.arguments.clone()).to_string();
    let middle = arguments
        .char_indices()
        .nth(arguments.chars().count() / 2)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let (head, tail) = arguments.split_at(middle);
    let start = json!({ "index": index, "id": format!("call_mock_{index}"), "type": "function", "function": { "name": call.name, "arguments": "" } });
    [
        start,
        json!({ "index": index, "function": { "arguments": head } }),
        json!({ "index": index, "function": { "arguments": tail } }),
    ]
    .into_iter()
    .map(|call| json!({ "tool_calls": [call] }))
    .collect()
}

fn finish_reason(reply: &Reply) -> &'static str {
    match reply {
        Reply::Text(_) => "stop",
        Reply::Tools(_) => "tool_calls",
    }
}

/// `GET /v1/models`：列出一个模拟模型。
pub(super) async fn models(session: &mut ServerSession) -> bool {
    let body = json!({ "object": "list", "data": [ { "id": "mock", "object": "model", "created": 0, "owned_by": "chatnexus-mock" } ] });
    write_json(session, 200, &body).await
}

/// 以 OpenAI 错误信封应答；返回连接是否仍可复用。
pub(super) async fn error(session: &mut ServerSession, status: u16, message: &str) -> bool {
    write_json(session, status, &error_body(status, message)).await
}

/// OpenAI 错误信封。
fn error_body(status: u16, message: &str) -> Value {
    let kind = if status >= 500 {
        "server_error"
    } else {
        "invalid_request_error"
    };
    json!({ "error": { "message": message, "type": kind, "param": null, "code": "mock_error" } })
}

fn full_response(c: &Completion, reply: &Reply) -> Value {
    let mut message = json!({ "role": "assistant", "content": null, "refusal": null });
    match reply {
        Reply::Text(pieces) => message["content"] = json!(pieces.concat()),
        Reply::Tools(calls) => {
            message["tool_calls"] = calls
                .iter()
                .enumerate()
                .map(|(i, call)| json!({ "id": format!("call_mock_{i}"), "type": "function", "function": { "name": call.name, "arguments": Value::Object(call.arguments.clone()).to_string() } }))
                .collect();
        }
    }
    let mut choice = json!({ "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(reply) });
    let mut body = json!({
        "id": c.id, "object": "chat.completion", "created": c.created, "model": c.model,
        "system_fingerprint": FINGERPRINT, "usage": usage(c),
    });
    if c.azure {
        choice["content_filter_results"] = filter_results();
        body["prompt_filter_results"] =
            json!([ { "prompt_index": 0, "content_filter_results": filter_results() } ]);
    }
    body["choices"] = json!([choice]);
    body
}

fn chunk(c: &Completion, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": c.id, "object": "chat.completion.chunk", "created": c.created, "model": c.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [ { "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish } ],
    })
}

fn usage_chunk(c: &Completion) -> Value {
    json!({
        "id": c.id, "object": "chat.completion.chunk", "created": c.created, "model": c.model,
        "system_fingerprint": FINGERPRINT, "choices": [], "usage": usage(c),
    })
}

fn usage(c: &Completion) -> Value {
    let u = c.usage;
    json!({
        "prompt_tokens": u.prompt, "completion_tokens": u.completion, "total_tokens": u.prompt + u.completion,
        "prompt_tokens_details": { "cached_tokens": u.cached },
        "completion_tokens_details": { "reasoning_tokens": u.reasoning },
    })
}

/// Azure 流的第一个事件：只有提示词过滤结果、`choices` 为空。
fn azure_annotation() -> Value {
    json!({
        "id": "", "object": "", "created": 0, "model": "", "choices": [],
        "prompt_filter_results": [ { "prompt_index": 0, "content_filter_results": filter_results() } ],
    })
}

fn filter_results() -> Value {
    let safe = json!({ "filtered": false, "severity": "safe" });
    json!({ "hate": safe, "self_harm": safe, "sexual": safe, "violence": safe })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 工具增量_首个带名称_参数片段拼接后完整() {
        let call = PlannedCall {
            name: "查天气".into(),
            arguments: json!({ "城市": "巴黎" })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let deltas = tool_deltas(1, &call);
        assert_eq!(deltas[0]["tool_calls"][0]["function"]["name"], "查天气");
        let joined: String = deltas
            .iter()
            .filter_map(|d| d["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(joined, "{\"城市\":\"巴黎\"}");
        assert!(deltas.iter().all(|d| d["tool_calls"][0]["index"] == 1));
    }

    #[test]
    fn 校验_工具结果必须对应前面的工具调用() {
        let ok = json!({ "messages": [ { "role": "assistant", "tool_calls": [ { "id": "call_1" } ] }, { "role": "tool", "tool_call_id": "call_1", "content": "晴" } ] });
        assert!(validate_messages(ok.as_object().expect("对象")).is_ok());
        let bad = json!({ "messages": [ { "role": "tool", "tool_call_id": "call_9", "content": "晴" } ] });
        assert!(validate_messages(bad.as_object().expect("对象")).is_err());
    }
}
