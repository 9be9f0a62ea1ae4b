//! 错误翻译：Gemini 错误体（含 `details` 中的重试与配额信息）→ 上游错误信息。

use serde_json::Value;

use crate::providers::{truncate_chars, UpstreamErrorInfo, MAX_ERROR_TEXT_CHARS};

/// 密钥无效时 `ErrorInfo.reason` 的取值（HTTP 400，语义上是 401）。
const REASON_API_KEY_INVALID: &str = "API_KEY_INVALID";
/// 错误详情 `@type` 的结尾：重试等待时间。
const RETRY_INFO_TYPE: &str = "google.rpc.RetryInfo";
/// 错误详情 `@type` 的结尾：配额违规。
const QUOTA_FAILURE_TYPE: &str = "google.rpc.QuotaFailure";
/// 错误详情 `@type` 的结尾：错误原因。
const ERROR_INFO_TYPE: &str = "google.rpc.ErrorInfo";
/// 配额名归一化（小写、去掉分隔符）后含有它即为按天配额。
const PER_DAY_MARKER: &str = "perday";
/// 限流或配额耗尽时的 gRPC 状态。
const STATUS_EXHAUSTED: &str = "RESOURCE_EXHAUSTED";
/// 资源（通常是模型）不存在时的 gRPC 状态。
const STATUS_NOT_FOUND: &str = "NOT_FOUND";
/// HTTP 429（请求过多）。
const HTTP_TOO_MANY_REQUESTS: u16 = 429;
/// HTTP 404（资源不存在）。
const HTTP_NOT_FOUND: u16 = 404;
/// HTTP 401：密钥无效按它交给通用映射（随后报告为上游认证失败）。
const HTTP_UNAUTHORIZED: u16 = 401;

/// 解析 Gemini 错误体（也接受数组包裹的 `[{"error":…}]`）；不是 JSON 时把原文（截断后）当作消息。
pub(super) fn parse_gemini_error(status: u16, body: &[u8]) -> UpstreamErrorInfo {
    let parsed = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items.into_iter().next(),
        Ok(value) => Some(value),
        Err(_) => None,
    };
    match parsed {
        Some(value) if value["error"].is_object() => error_info(status, &value["error"]),
        _ => UpstreamErrorInfo {
            message: truncate_chars(&String::from_utf8_lossy(body), MAX_ERROR_TEXT_CHARS),
            ..UpstreamErrorInfo::default()
        },
    }
}

/// 按 `status` 与 `details` 细分错误：无效密钥 → 401，限流 → 带重试秒数，按天配额 → 额度耗尽，NOT_FOUND → 模型不存在。
pub(super) fn error_info(status: u16, error: &Value) -> UpstreamErrorInfo {
    let grpc = error["status"].as_str();
    let details = error["details"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut info = UpstreamErrorInfo {
        message: error["message"].as_str().unwrap_or_default().to_string(),
        kind: grpc.map(str::to_string),
        code: grpc.map(str::to_ascii_lowercase),
        ..UpstreamErrorInfo::default()
    };
    let key_invalid =
        details_of(details, ERROR_INFO_TYPE).any(|d| d["reason"] == REASON_API_KEY_INVALID);
    if key_invalid {
        info.status = Some(HTTP_UNAUTHORIZED);
        info.code = Some("invalid_api_key".into());
    } else if status == HTTP_TOO_MANY_REQUESTS || grpc == Some(STATUS_EXHAUSTED) {
        if per_day_quota(details) {
            info.code = Some("insufficient_quota".into());
        } else {
            info.code = Some("rate_limit_exceeded".into());
            info.retry_after = details_of(details, RETRY_INFO_TYPE)
                .find_map(|d| retry_delay_secs(d["retryDelay"].as_str()?));
        }
    } else if status == HTTP_NOT_FOUND || grpc == Some(STATUS_NOT_FOUND) {
        info.code = Some("model_not_found".into());
    }
    info
}

/// `details[]` 中 `@type` 以给定类型名结尾的条目。
fn details_of<'a>(details: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    details
        .iter()
        .filter(move |d| d["@type"].as_str().is_some_and(|t| t.ends_with(kind)))
}

/// 是否有按天计的配额违规（重试无意义，不建议等待时间）。
fn per_day_quota(details: &[Value]) -> bool {
    details_of(details, QUOTA_FAILURE_TYPE)
        .filter_map(|d| d["violations"].as_array())
        .flatten()
        .flat_map(|v| [v["quotaId"].as_str(), v["quotaMetric"].as_str()])
        .flatten()
        .any(|name| {
            let normalized: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            normalized.to_ascii_lowercase().contains(PER_DAY_MARKER)
        })
}

/// 解析 protobuf 时长（如 `38s`、`45.837906927s`），向上取整到秒；格式不对时为 `None`。
pub(super) fn retry_delay_secs(text: &str) -> Option<u64> {
    let number = text.trim().strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    let seconds: u64 = whole.parse().ok()?;
    let round_up = fraction.bytes().any(|b| b != b'0');
    seconds.checked_add(u64::from(round_up))
}
