//! 错误翻译：Anthropic 错误响应与流中的 `event: error` → 客户端错误。

use serde_json::Value;

use super::PROVIDER_LABEL;
use crate::error::ApiError;
use crate::providers::{
    map_upstream_error, truncate_chars, UpstreamErrorInfo, MAX_ERROR_TEXT_CHARS,
};

/// Anthropic 的“过载”状态码（非标准，转给客户端时改为 503）。
const STATUS_OVERLOADED: u16 = 529;
/// 过载错误对客户端的状态码与错误码。
const OVERLOADED: (u16, &str) = (503, "overloaded");
/// 流中错误的类型未知时使用的状态码。
pub(super) const STATUS_STREAM_ERROR: u16 = 502;

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
pub(super) fn error_info(status: u16, body: &[u8]) -> UpstreamErrorInfo {
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
pub(super) fn stream_error(error: &Value) -> ApiError {
    let info = info_from_error(error, STATUS_STREAM_ERROR);
    map_upstream_error(STATUS_STREAM_ERROR, info, PROVIDER_LABEL)
}
