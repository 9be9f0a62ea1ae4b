//! 模拟器的 Anthropic Messages 线上格式（参考文档 §2.4–§2.6）：完整消息、具名 SSE 事件流、错误体。
//!
//! 像真实 API 一样检查请求头与消息结构（必填的 max_tokens、交替的角色、非空文本块、
//! 紧跟在 tool_use 之后的 tool_result、采样参数冲突），让网关的翻译错误在测试里暴露出来。
//! 错误消息沿用真实 API 的英文原文，括号里附中文说明。

mod reply;
mod request;

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use super::io::{write_json, write_json_with};
use super::plan;
use super::{Fault, MockApp};
use reply::{blocks_of, full_message, stop_reason, stream, Message};
use request::{check_headers, parse_count_request, parse_request, turn_of};

/// Anthropic 的过载状态码（流中错误故障报告 `overloaded_error`）。
const OVERLOADED: u16 = 529;
/// Messages 接口路径的结尾。
pub(super) const MESSAGES_PATH: &str = "/v1/messages";
/// count_tokens 接口路径的结尾。
pub(super) const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";
/// 消息 id 前缀。
const MESSAGE_ID_PREFIX: &str = "msg_mock_";
/// 请求 id 前缀（错误体的 `request_id`）。
const REQUEST_ID_PREFIX: &str = "req_mock_";

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

/// 处理 `POST /v1/messages/count_tokens`：按请求体字节数算出确定的 token 数（与 `plan::usage` 的输入一致），
/// 返回 `{"input_tokens": N}`；返回连接是否仍可复用。
pub(super) async fn count_tokens(app: &MockApp, session: &mut ServerSession, body: Bytes) -> bool {
    if let Err((status, message)) = check_headers(session) {
        return error(session, status, &message).await;
    }
    let request = match parse_count_request(&body) {
        Ok(request) => request,
        Err(message) => return error(session, 400, &message).await,
    };
    if let Some(Fault::Status(code)) = app.fault() {
        return error(session, code, &format!("模拟的上游故障（{code}）")).await;
    }
    let turn = turn_of(&request, body.len());
    let usage = plan::usage(&app.settings, &turn);
    write_json(session, 200, &json!({ "input_tokens": usage.prompt })).await
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
    use serde_json::Map;

    use super::*;

    /// 把测试用的 JSON 对象转成 Map。
    pub(super) fn 对象(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("测试数据必须是对象")
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
