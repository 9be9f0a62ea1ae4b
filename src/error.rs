//! 返回给客户端的错误：HTTP 状态码 + OpenAI 错误信封。
//!
//! 官方 OpenAI SDK 按状态码抛出对应的异常类型，所以每个错误都带准确的状态码，
//! 正文固定为 `{"error":{"message","type","param","code"}}`，消息使用中文。

use bytes::Bytes;
use serde_json::json;

/// 错误类型：请求本身有问题（4xx）。
pub const TYPE_INVALID_REQUEST: &str = "invalid_request_error";
/// 错误类型：网关或上游故障（5xx）。
pub const TYPE_SERVER: &str = "server_error";
/// 错误类型：密钥有效但无权执行该操作（403）。
pub const TYPE_PERMISSION: &str = "permission_error";

/// 返回给客户端的一个 API 错误。
///
/// 用途：请求处理中的任何失败都转换成它，再由 `proxy` 写成 HTTP 响应或流中的错误事件。
///
/// ```
/// let e = chatnexus::error::ApiError::model_not_found("不存在的模型"); // 未配置的模型
/// assert_eq!((e.status, e.code.as_deref()), (404, Some("model_not_found"))); // SDK 抛出 NotFoundError
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code:?}: {message}")]
pub struct ApiError {
    /// HTTP 状态码。
    pub status: u16,
    /// OpenAI 信封中的 `type`。
    pub kind: &'static str,
    /// OpenAI 信封中的 `code`。
    pub code: Option<String>,
    /// 出错的请求字段（如 `messages[0].role`）。
    pub param: Option<String>,
    /// 中文错误信息。
    pub message: String,
    /// 建议客户端等待的秒数，写入 `Retry-After` 头（限流、过载时）。
    pub retry_after: Option<u64>,
    /// 只写进网关日志的细节（上游地址、目标键、上游原文）：从不写给客户端。
    /// 装箱（只占一个指针）：错误在每个 `Result` 里按值传递，整个错误要保持在 128 字节以内。
    pub detail: Option<Box<String>>,
}

impl ApiError {
    /// 构造任意错误。
    ///
    /// 参数：状态码、`type`、`code`、中文消息；返回不带 `param` 的错误。
    pub fn new(status: u16, kind: &'static str, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            code: Some(code.to_string()),
            param: None,
            message: message.into(),
            retry_after: None,
            detail: None,
        }
    }

    /// 附上出错字段名，返回新的错误。
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 附上可能缺省的出错字段名，返回新的错误。
    pub fn with_param_opt(mut self, param: Option<String>) -> Self {
        self.param = param;
        self
    }

    /// 附上建议的重试等待秒数，返回新的错误。
    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }

    /// 附上只进日志的细节（内部地址、上游原文等），返回新的错误；客户端只看到 `message`。
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(Box::new(detail.into()));
        self
    }

    /// 400：请求体不合法（JSON 错误、字段缺失或类型不对）。
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, TYPE_INVALID_REQUEST, code, message)
    }

    /// 401：缺少或错误的客户端密钥。
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, TYPE_INVALID_REQUEST, "invalid_api_key", message)
    }

    /// 401：请求签名缺失、格式错误、过期或不匹配，或 nonce 已用过（重放）。
    pub fn signature(code: &str, message: impl Into<String>) -> Self {
        Self::new(401, TYPE_INVALID_REQUEST, code, message)
    }

    /// 403：该客户端密钥不允许使用这个模型。
    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            403,
            TYPE_PERMISSION,
            "model_not_allowed",
            format!("当前 API 密钥无权使用模型 `{model}`"),
        )
        .with_param("model")
    }

    /// 403：跨域预检的来源不在允许列表中。
    pub fn cors_forbidden(origin: &str) -> Self {
        Self::new(
            403,
            TYPE_PERMISSION,
            "cors_origin_not_allowed",
            format!("来源 `{origin}` 不在 security.cors.allowed_origins 中"),
        )
    }

    /// 503：防重放存储不可用，签名请求一律拒绝（故障时关闭而不是放行）。
    pub fn nonce_store_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, TYPE_SERVER, "nonce_store_unavailable", message).with_retry_after(Some(1))
    }

    /// 429：超过限流上限。
    ///
    /// 参数：`type`（OpenAI 用 `requests` 或 `tokens` 区分超的是哪种上限）、中文消息（点名是哪一层）、
    /// 建议等待的秒数（写入 `Retry-After`）。
    pub fn rate_limited(kind: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(429, kind, "rate_limit_exceeded", message).with_retry_after(Some(retry_after))
    }

    /// 503：限流存储（Redis）不可用，而该层配置为故障时关闭。
    pub fn limiter_unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(503, TYPE_SERVER, "rate_limiter_unavailable", message)
            .with_retry_after(Some(retry_after))
    }

    /// 404：请求的模型未配置。
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            404,
            TYPE_INVALID_REQUEST,
            "model_not_found",
            format!("模型 `{model}` 不存在或未在网关中配置"),
        )
        .with_param("model")
    }

    /// 404：未知的路径。
    pub fn unknown_route(method: &str, path: &str) -> Self {
        Self::new(
            404,
            TYPE_INVALID_REQUEST,
            "unknown_url",
            format!("未知的接口：{method} {path}"),
        )
    }

    /// 405：路径存在但方法不对。
    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> Self {
        Self::new(
            405,
            TYPE_INVALID_REQUEST,
            "method_not_allowed",
            format!("接口 {path} 不支持 {method} 方法，只支持 {allowed}"),
        )
    }

    /// 413：请求体超过 `server.max_body_bytes`。
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            TYPE_INVALID_REQUEST,
            "request_too_large",
            format!("请求体超过上限 {limit} 字节"),
        )
    }

    /// 502：上游不可达或回复无法理解。
    pub fn bad_gateway(code: &str, message: impl Into<String>) -> Self {
        Self::new(502, TYPE_SERVER, code, message)
    }

    /// 503：模型没有可用的上游目标。
    pub fn no_available_upstream(model: &str) -> Self {
        Self::new(
            503,
            TYPE_SERVER,
            "no_available_upstream",
            format!("模型 `{model}` 当前没有可用的上游"),
        )
    }

    /// 504：等待上游超时。
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(504, TYPE_SERVER, "upstream_timeout", message)
    }

    /// 500：网关内部错误（不应出现，出现即是缺陷）。
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, TYPE_SERVER, "internal_error", message)
    }

    /// 序列化为 OpenAI 错误信封 JSON 对象。
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// 序列化为 OpenAI 错误信封的字节，用作 HTTP 响应体。
    pub fn to_body(&self) -> Bytes {
        Bytes::from(self.to_json().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 错误信封_四个字段齐全() {
        let e = ApiError::bad_request("invalid_type", "字段类型错误").with_param("messages");
        let v: serde_json::Value = serde_json::from_slice(&e.to_body()).expect("错误体必须是 JSON");
        assert_eq!(v["error"]["message"], "字段类型错误");
        assert_eq!(v["error"]["type"], TYPE_INVALID_REQUEST);
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["code"], "invalid_type");
    }

    #[test]
    fn 错误信封_缺省参数为_null() {
        let v = ApiError::unauthorized("缺少密钥").to_json();
        assert!(v["error"]["param"].is_null(), "param 缺省时必须是 null");
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }
}
