//! 返回给客户端的错误：HTTP 状态码 + OpenAI 错误信封。
//!
//! 官方 OpenAI SDK 按状态码抛出对应的异常类型，所以每个错误都带准确的状态码，
//! 正文固定为 `{"error":{"message","type","param","code"}}`，消息使用中文。
//! 底层原因（Pingora 错误、I/O 错误）保留在错误里只进日志，不进给客户端的信封。

mod code;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

pub use code::ErrorCode;

/// 错误类型：请求本身有问题（4xx）。
pub const TYPE_INVALID_REQUEST: &str = "invalid_request_error";
/// 错误类型：网关或上游故障（5xx）。
pub const TYPE_SERVER: &str = "server_error";
/// 错误类型：请求数超限（429，与 OpenAI 的按请求数限流一致）。
pub const TYPE_REQUESTS: &str = "requests";
/// 错误类型：token 数超限（429，与 OpenAI 的按 token 限流一致）。
pub const TYPE_TOKENS: &str = "tokens";
/// 错误类型：密钥有效但无权执行该操作（403）。
pub const TYPE_PERMISSION: &str = "permission_error";
/// 错误类型：美元预算不够（与 OpenAI 的额度不足一致）。
pub const TYPE_INSUFFICIENT_QUOTA: &str = "insufficient_quota";

/// 返回给客户端的一个 API 错误。
///
/// 用途：请求处理中的任何失败都转换成它，再由 `proxy` 写成 HTTP 响应或流中的错误事件。
///
/// ```
/// let e = chatnexus::error::ApiError::model_not_found("不存在的模型"); // 未配置的模型
/// assert_eq!((e.status, e.envelope_code()), (404, "model_not_found")); // SDK 抛出 NotFoundError
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {}: {message}", code.as_str())]
pub struct ApiError {
    /// HTTP 状态码。
    pub status: u16,
    /// OpenAI 信封中的 `type`。
    pub kind: &'static str,
    /// 网关的错误码（取值有限，也是指标与访问日志的 `error_code`）。
    pub code: ErrorCode,
    /// 上游自己的错误码：转告客户端时放进信封的 `code`（不进指标标签）。
    pub upstream_code: Option<Box<str>>,
    /// 出错的请求字段（如 `messages[0].role`）。
    pub param: Option<Box<str>>,
    /// 中文错误信息。
    pub message: String,
    /// 建议客户端等待的秒数，写入 `Retry-After` 头（限流、过载时）。
    pub retry_after: Option<u64>,
    /// 底层原因（只进日志）。
    pub cause: Option<Cause>,
    /// 透传时上游自己的错误回复：与上游协议相同的方言原样收到它（状态码与响应体）。
    pub relayed: Option<Box<Relayed>>,
}

/// 透传（客户端方言与上游协议相同）时上游自己的错误回复。
///
/// 用途：Claude Code 按 Anthropic 错误的原文决定压缩对话、去掉思考块后重试，改写过的错误会让它失去这些恢复手段，
/// 所以同方言的客户端收到上游原样的状态码与响应体；流中的错误事件已随原始字节转发时 `delivered` 为真。
///
/// ```
/// let r = chatnexus::error::Relayed { status: 529, body: "{}".into(), delivered: false }; // 上游的过载错误
/// assert_eq!(r.status, 529); // 原样的状态码
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// 上游的 HTTP 状态码。
    pub status: u16,
    /// 上游的响应体（流中错误时为空）。
    pub body: Bytes,
    /// 流中的错误事件已经随上游的原始字节写给了客户端，不必再写。
    pub delivered: bool,
}

/// 两个错误相同：给客户端的内容（状态码、信封、等待时间）都相同；底层原因只进日志，不参与比较。
impl PartialEq for ApiError {
    fn eq(&self, other: &Self) -> bool {
        (self.status, self.kind, self.code, &self.upstream_code)
            == (other.status, other.kind, other.code, &other.upstream_code)
            && (&self.param, &self.message, self.retry_after)
                == (&other.param, &other.message, other.retry_after)
    }
}

impl Eq for ApiError {}

/// 只给运维看的说明（例如带目标名的上游状况），作为错误的原因进日志。
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Detail(String);

/// 错误的底层原因（Pingora 错误、I/O 错误），共享以便错误可以克隆。
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// 把错误连同它的整条原因链写成一行（`外层：内层：……`），供日志使用。
///
/// ```
/// let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "管道已断开"); // 底层错误
/// assert_eq!(chatnexus::error::chain(&io).to_string(), "管道已断开"); // 没有更深的原因
/// ```
pub fn chain<'a>(error: &'a (dyn std::error::Error + 'static)) -> impl fmt::Display + 'a {
    Chain(error)
}

/// [`chain`] 的显示包装。
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, "：{cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

impl ApiError {
    /// 构造任意错误。
    ///
    /// 参数：状态码、`type`、`code`、中文消息；返回不带 `param` 的错误。
    pub fn new(
        status: u16,
        kind: &'static str,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind,
            code,
            upstream_code: None,
            param: None,
            message: message.into(),
            retry_after: None,
            cause: None,
            relayed: None,
        }
    }

    /// 附上只给运维看的细节（内部地址、目标名、上游原文等）：作为原因进日志，不进给客户端的信封。
    pub fn with_detail(self, detail: impl Into<String>) -> Self {
        self.with_cause(Detail(detail.into()))
    }

    /// 附上底层原因（只进日志），返回新的错误。
    pub fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// 附上透传时上游原样的错误回复，返回新的错误。
    pub fn with_relayed(mut self, relayed: Relayed) -> Self {
        self.relayed = Some(Box::new(relayed));
        self
    }

    /// 信封中的 `code`：转告的上游错误码，否则网关自己的错误码。
    pub fn envelope_code(&self) -> &str {
        self.upstream_code.as_deref().unwrap_or(self.code.as_str())
    }

    /// 只进日志的细节：底层原因链（没有原因时为 `None`）。
    pub fn detail(&self) -> Option<String> {
        self.cause
            .as_ref()
            .map(|cause| chain(cause.as_ref()).to_string())
    }

    /// 日志用的完整说明：消息，再加上底层原因链（有的话）。
    pub fn describe(&self) -> String {
        match &self.cause {
            Some(cause) => format!("{}（原因：{}）", self.message, chain(cause.as_ref())),
            None => self.message.clone(),
        }
    }

    /// 附上出错字段名，返回新的错误。
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into().into_boxed_str());
        self
    }

    /// 附上可能缺省的出错字段名，返回新的错误。
    pub fn with_param_opt(mut self, param: Option<String>) -> Self {
        self.param = param.map(String::into_boxed_str);
        self
    }

    /// 附上建议的重试等待秒数，返回新的错误。
    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }

    /// 400：请求体不合法（JSON 错误、字段缺失或类型不对）。
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(400, TYPE_INVALID_REQUEST, code, message)
    }

    /// 401：缺少或错误的客户端密钥。
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, TYPE_INVALID_REQUEST, ErrorCode::InvalidApiKey, message)
    }

    /// 401：请求签名缺失、格式错误、过期或不匹配，或 nonce 已用过（重放）。
    pub fn signature(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(401, TYPE_INVALID_REQUEST, code, message)
    }

    /// 403：该客户端密钥不允许使用这个模型。
    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            403,
            TYPE_PERMISSION,
            ErrorCode::ModelNotAllowed,
            format!("当前 API 密钥无权使用模型 `{model}`"),
        )
        .with_param("model")
    }

    /// 403：跨域预检的来源不在允许列表中。
    pub fn cors_forbidden(origin: &str) -> Self {
        Self::new(
            403,
            TYPE_PERMISSION,
            ErrorCode::CorsOriginNotAllowed,
            format!("来源 `{origin}` 不在 security.cors.allowed_origins 中"),
        )
    }

    /// 503：防重放存储不可用，签名请求一律拒绝（故障时关闭而不是放行）。
    pub fn nonce_store_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, TYPE_SERVER, ErrorCode::NonceStoreUnavailable, message)
            .with_retry_after(Some(1))
    }

    /// 429：超过限流上限。
    ///
    /// 参数：`type`（OpenAI 用 `requests` 或 `tokens` 区分超的是哪种上限）、中文消息（点名是哪一层）、
    /// 建议等待的秒数（写入 `Retry-After`）。
    pub fn rate_limited(kind: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(429, kind, ErrorCode::RateLimitExceeded, message)
            .with_retry_after(Some(retry_after))
    }

    /// 429 `insufficient_quota`：进行中的流再输出就要越过美元预算（预算开了 `cut_streams`），流被切断。
    pub fn budget_cut() -> Self {
        Self::new(
            429,
            TYPE_INSUFFICIENT_QUOTA,
            ErrorCode::InsufficientQuota,
            "本请求的输出再继续就要越过美元预算，流已被切断（预算开启了 cut_streams）",
        )
    }

    /// 503：限流存储（Redis）不可用，而该层配置为故障时关闭。
    pub fn limiter_unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(503, TYPE_SERVER, ErrorCode::RateLimiterUnavailable, message)
            .with_retry_after(Some(retry_after))
    }

    /// 404：请求的模型未配置。
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            404,
            TYPE_INVALID_REQUEST,
            ErrorCode::ModelNotFound,
            format!("模型 `{model}` 不存在或未在网关中配置"),
        )
        .with_param("model")
    }

    /// 404：未知的路径。
    pub fn unknown_route(method: &str, path: &str) -> Self {
        Self::new(
            404,
            TYPE_INVALID_REQUEST,
            ErrorCode::UnknownUrl,
            format!("未知的接口：{method} {path}"),
        )
    }

    /// 405：路径存在但方法不对。
    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> Self {
        Self::new(
            405,
            TYPE_INVALID_REQUEST,
            ErrorCode::MethodNotAllowed,
            format!("接口 {path} 不支持 {method} 方法，只支持 {allowed}"),
        )
    }

    /// 413：请求体超过 `server.max_body_bytes`。
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            TYPE_INVALID_REQUEST,
            ErrorCode::RequestTooLarge,
            format!("请求体超过上限 {limit} 字节"),
        )
    }

    /// 502：上游不可达或回复无法理解。
    pub fn bad_gateway(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(502, TYPE_SERVER, code, message)
    }

    /// 429：模型的每个上游目标都要求等待（上游限流），SDK 据 `Retry-After` 退避。
    pub fn upstream_throttled(model: &str, retry_after: u64) -> Self {
        Self::new(
            429,
            TYPE_REQUESTS,
            ErrorCode::RateLimitExceeded,
            format!("模型 `{model}` 的上游正在限流，请在 {retry_after} 秒后重试"),
        )
        .with_retry_after(Some(retry_after))
    }

    /// 503：模型没有可用的上游目标。
    pub fn no_available_upstream(model: &str) -> Self {
        Self::new(
            503,
            TYPE_SERVER,
            ErrorCode::NoAvailableUpstream,
            format!("模型 `{model}` 当前没有可用的上游"),
        )
    }

    /// 504：等待上游超时。
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(504, TYPE_SERVER, ErrorCode::UpstreamTimeout, message)
    }

    /// 500：网关内部错误（不应出现，出现即是缺陷）。
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, TYPE_SERVER, ErrorCode::InternalError, message)
    }

    /// 序列化为 OpenAI 错误信封 JSON 对象。
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.envelope_code(),
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
        let e =
            ApiError::bad_request(ErrorCode::InvalidType, "字段类型错误").with_param("messages");
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
