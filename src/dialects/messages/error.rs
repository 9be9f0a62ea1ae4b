//! Anthropic 形状的错误（参考文档 §M6）：`{"type":"error","error":{"type","message"},"request_id"}`。
//!
//! 状态码决定 anthropic SDK 抛出的异常类型，所以按 Anthropic 的约定选状态码与 `error.type`：
//! 网关的 503（没有可用上游、上游过载）写成 529 `overloaded_error`，与 Claude 自己过载时一样。
//! 上游报告上下文超长时消息以 Anthropic 的原文前缀 `prompt is too long:` 开头：Claude Code 靠它自动压缩对话。

use bytes::{Bytes, BytesMut};
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
use crate::streaming::write_event;

/// Anthropic 的过载状态码。
const STATUS_OVERLOADED: u16 = 529;
/// 网关的“服务不可用”（没有可用上游、上游过载）。
const STATUS_UNAVAILABLE: u16 = 503;
/// 流中错误事件的事件名。
const ERROR_EVENT: &str = "error";
/// 上下文超长时 Claude Code 识别的原文前缀。
const PROMPT_TOO_LONG: &str = "prompt is too long:";
/// 上游表示上下文超长的错误码（OpenAI 与兼容服务）。
const CONTEXT_LENGTH_CODES: &[&str] = &["context_length_exceeded", "string_above_max_length"];
/// 上游消息里表示上下文超长的说法（Gemini 等没有专门错误码的上游）。
const CONTEXT_LENGTH_PHRASES: &[&str] = &[
    "maximum context length",
    "context length",
    "input token count",
    "too many tokens",
    "exceeds the maximum number of tokens",
];

/// 写给 Anthropic 方言客户端的一个错误响应。
///
/// 用途：`proxy` 按它写出状态码与响应体（有建议等待时间时另带 `retry-after`）。
///
/// ```
/// let e = chatnexus::error::ApiError::no_available_upstream("claude"); // 网关 503
/// let r = chatnexus::dialects::messages::error_body(&e, "req_1"); // 渲染为 Anthropic 形状
/// assert_eq!(r.status, 529); // anthropic SDK 抛出 OverloadedError
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// HTTP 状态码。
    pub status: u16,
    /// 响应体。
    pub body: Bytes,
}

/// 把错误渲染为 Anthropic 形状的错误响应。
///
/// 透传时上游原样的错误回复（[`ApiError::relayed`]）直接使用；否则按状态码选 `error.type`。
/// 参数：错误、请求 id（写进响应体的 `request_id`，SDK 把它作为异常的 `request_id`）。
pub fn error_body(error: &ApiError, request_id: &str) -> ErrorReply {
    if let Some(relayed) = &error.relayed {
        return ErrorReply {
            status: relayed.status,
            body: relayed.body.clone(),
        };
    }
    let status = match error.status {
        STATUS_UNAVAILABLE => STATUS_OVERLOADED,
        other => other,
    };
    let body = json!({
        "type": "error",
        "error": { "type": error_type(status), "message": message_of(error) },
        "request_id": request_id,
    });
    ErrorReply {
        status,
        body: Bytes::from(body.to_string()),
    }
}

/// 响应头已发出后的流中错误：`event: error` 事件（上游的错误事件已原样转发时什么也不写）。
pub fn stream_error_event(error: &ApiError, request_id: &str, out: &mut BytesMut) {
    if error.relayed.as_ref().is_some_and(|r| r.delivered) {
        return;
    }
    let body = error_body(error, request_id).body;
    write_event(out, ERROR_EVENT, &body);
}

/// 状态码 → Anthropic 的 `error.type`（anthropic SDK 按状态码选异常类，类型用于显示与细分）。
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        STATUS_OVERLOADED => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// 错误消息：上下文超长的错误以 `prompt is too long:` 开头，后面是中文说明。
fn message_of(error: &ApiError) -> String {
    if is_context_length(error) {
        return format!("{PROMPT_TOO_LONG} {}", error.message);
    }
    error.message.clone()
}

/// 是否是上游报告的上下文超长（按上游错误码，或 400 消息里的说法）。
fn is_context_length(error: &ApiError) -> bool {
    if error
        .upstream_code
        .as_deref()
        .is_some_and(|code| CONTEXT_LENGTH_CODES.contains(&code))
    {
        return true;
    }
    let lower = error.message.to_lowercase();
    error.status == 400
        && error.code == ErrorCode::UpstreamError
        && CONTEXT_LENGTH_PHRASES.iter().any(|p| lower.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Relayed;

    fn 解析(reply: &ErrorReply) -> serde_json::Value {
        serde_json::from_slice(&reply.body).expect("错误体必须是 JSON")
    }

    #[test]
    fn 错误_状态码与类型符合_anthropic_sdk_的约定() {
        let cases = [
            (
                ApiError::bad_request(ErrorCode::InvalidJson, "坏"),
                400,
                "invalid_request_error",
            ),
            (
                ApiError::unauthorized("密钥无效"),
                401,
                "authentication_error",
            ),
            (ApiError::model_not_allowed("甲"), 403, "permission_error"),
            (ApiError::model_not_found("甲"), 404, "not_found_error"),
            (ApiError::payload_too_large(1), 413, "request_too_large"),
            (
                ApiError::upstream_throttled("甲", 3),
                429,
                "rate_limit_error",
            ),
            (ApiError::internal("缺陷"), 500, "api_error"),
            (
                ApiError::no_available_upstream("甲"),
                529,
                "overloaded_error",
            ),
            (ApiError::gateway_timeout("超时"), 504, "timeout_error"),
        ];
        for (error, status, kind) in cases {
            let reply = error_body(&error, "req_测试");
            let v = 解析(&reply);
            assert_eq!(reply.status, status, "{error}");
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind, "{error}");
            assert_eq!(v["error"]["message"], error.message.as_str());
            assert_eq!(v["request_id"], "req_测试");
        }
    }

    #[test]
    fn 错误_上下文超长_以_anthropic_原文前缀开头() {
        let mut e = ApiError::bad_request(
            ErrorCode::UpstreamError,
            "openai 类型的上游拒绝了请求：太长",
        );
        e.upstream_code = Some("context_length_exceeded".into());
        let v = 解析(&error_body(&e, "r"));
        let message = v["error"]["message"].as_str().expect("消息");
        assert!(message.starts_with("prompt is too long: "), "{message}");
        assert!(message.contains("太长"), "中文说明应保留：{message}");
        let gemini = ApiError::bad_request(
            ErrorCode::UpstreamError,
            "gemini 类型的上游拒绝了请求：The input token count (300000) exceeds the maximum number of tokens allowed (200000).",
        );
        let v = 解析(&error_body(&gemini, "r"));
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(PROMPT_TOO_LONG)));
    }

    #[test]
    fn 错误_透传的上游错误_原样返回() {
        let body = Bytes::from_static(br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215692 tokens > 200000 maximum"}}"#);
        let e = ApiError::bad_request(ErrorCode::UpstreamError, "转述").with_relayed(Relayed {
            status: 400,
            body: body.clone(),
            delivered: false,
        });
        assert_eq!(error_body(&e, "r"), ErrorReply { status: 400, body });
    }

    #[test]
    fn 流中错误_写成具名事件_已转发的不重复() {
        let mut out = BytesMut::new();
        stream_error_event(&ApiError::gateway_timeout("上游超时"), "r", &mut out);
        let text = std::str::from_utf8(&out).expect("UTF-8");
        assert!(text.starts_with("event: error\ndata: {"), "{text}");
        let delivered = ApiError::bad_gateway(ErrorCode::UpstreamStreamError, "流中错误")
            .with_relayed(Relayed {
                status: 200,
                body: Bytes::new(),
                delivered: true,
            });
        let mut out = BytesMut::new();
        stream_error_event(&delivered, "r", &mut out);
        assert!(out.is_empty(), "上游的错误事件已转发，不能再写一次");
    }
}
