//! 网关自己的错误码：OpenAI 错误信封里的 `code`，也是访问日志与 `llm_requests_total` 的
//! `error_code` 标签值（取值有限，运维可按失败种类计数）。

/// 由一张表同时生成错误码枚举、文本与全部取值，增加一个错误码只改一处。
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)*) => {
        /// 错误码。
        ///
        /// 用途：每个 [`ApiError`](super::ApiError) 带一个；信封与指标标签都取 [`ErrorCode::as_str`]。
        ///
        /// ```
        /// use chatnexus::error::ErrorCode; // 错误码
        /// assert_eq!(ErrorCode::ModelNotFound.as_str(), "model_not_found"); // 与 OpenAI 的同名错误码一致
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// 全部取值（测试与文档用）。
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// 按文本找错误码（转告上游的错误码时，网关认识的就用作指标标签）。
            pub fn parse(text: &str) -> Option<ErrorCode> {
                Self::ALL.iter().copied().find(|code| code.as_str() == text)
            }

            /// 错误码的文本（信封中的 `code`、指标标签值）。
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }
    };
}

error_codes! {
    /// 请求体不是合法的 JSON。
    InvalidJson => "invalid_json",
    /// 请求体不是 JSON 对象或结构不对。
    InvalidBody => "invalid_body",
    /// 字段类型不对。
    InvalidType => "invalid_type",
    /// 字段取值不合法。
    InvalidValue => "invalid_value",
    /// 请求体有重复的顶层键。
    DuplicateKey => "duplicate_key",
    /// 消息条数超过上限。
    TooManyMessages => "too_many_messages",
    /// 缺少必填字段。
    MissingRequiredParameter => "missing_required_parameter",
    /// 消息内容不合法。
    InvalidContent => "invalid_content",
    /// 向量请求的输入条数超过上限。
    TooManyInputs => "too_many_inputs",
    /// 向量请求的输入总大小超过上限。
    InputTooLarge => "input_too_large",
    /// 模型的种类与接口不符（聊天模型请求向量，或反过来）。
    WrongModelKind => "wrong_model_kind",
    /// 请求头不合法。
    InvalidHeader => "invalid_header",
    /// 图片地址不合法。
    InvalidImageUrl => "invalid_image_url",
    /// 音频输入不合法。
    InvalidInputAudio => "invalid_input_audio",
    /// 工具调用参数不是合法的 JSON。
    InvalidToolArguments => "invalid_tool_arguments",
    /// `tool_choice` 不合法。
    InvalidToolChoice => "invalid_tool_choice",
    /// 工具调用或定义缺少函数名。
    MissingToolName => "missing_tool_name",
    /// 工具结果引用了不存在的工具调用 id。
    UnknownToolCallId => "unknown_tool_call_id",
    /// 目标上游不支持这种内容。
    UnsupportedContent => "unsupported_content",
    /// 目标上游不支持这种内容部分。
    UnsupportedContentPart => "unsupported_content_part",
    /// 目标上游不支持这种图片格式。
    UnsupportedImageType => "unsupported_image_type",
    /// 目标上游不支持这种媒体类型。
    UnsupportedMediaType => "unsupported_media_type",
    /// 目标上游不支持这个参数。
    UnsupportedParameter => "unsupported_parameter",
    /// 保存 Responses 会话的 Redis 不可用。
    ResponseStoreUnavailable => "response_store_unavailable",
    /// `previous_response_id` 指向的回复不存在（没有保存，或不属于这个密钥）。
    PreviousResponseNotFound => "previous_response_not_found",
    /// 目标上游不支持这种 `response_format`。
    UnsupportedResponseFormat => "unsupported_response_format",
    /// 目标上游不支持这个消息角色。
    UnsupportedRole => "unsupported_role",
    /// 目标上游不支持这种工具类型。
    UnsupportedToolType => "unsupported_tool_type",
    /// 目标上游不支持这个取值。
    UnsupportedValue => "unsupported_value",
    /// 缺少或错误的客户端密钥。
    InvalidApiKey => "invalid_api_key",
    /// 缺少请求签名。
    SignatureRequired => "signature_required",
    /// 请求签名的时间戳超出允许的时间窗口。
    SignatureExpired => "signature_expired",
    /// 请求签名格式错误或不匹配。
    InvalidSignature => "invalid_signature",
    /// 重放请求：nonce 已用过。
    ReplayedRequest => "replayed_request",
    /// 密钥无权使用该模型。
    ModelNotAllowed => "model_not_allowed",
    /// 密钥的美元预算已用完。
    InsufficientQuota => "insufficient_quota",
    /// 带预算的密钥请求了没有价格的模型（无法预留费用）。
    ModelNotPriced => "model_not_priced",
    /// 记预算的 Redis 不可用（预算按故障时关闭处理）。
    BudgetStoreUnavailable => "budget_store_unavailable",
    /// 管理接口：没有这个虚拟密钥。
    KeyNotFound => "key_not_found",
    /// 管理接口：同名的密钥已存在（虚拟密钥或配置文件里的密钥）。
    KeyExists => "key_exists",
    /// 管理接口：没有这个团队。
    TeamNotFound => "team_not_found",
    /// 管理接口：同名的团队已存在。
    TeamExists => "team_exists",
    /// 管理接口：还有密钥属于这个团队，不能删除。
    TeamInUse => "team_in_use",
    /// 管理接口：保存虚拟密钥的 Redis 不可用。
    KeyStoreUnavailable => "key_store_unavailable",
    /// 跨域来源不在允许列表中。
    CorsOriginNotAllowed => "cors_origin_not_allowed",
    /// 模型未配置。
    ModelNotFound => "model_not_found",
    /// 未知的接口路径。
    UnknownUrl => "unknown_url",
    /// 接口不支持该方法。
    MethodNotAllowed => "method_not_allowed",
    /// 请求体超过上限。
    RequestTooLarge => "request_too_large",
    /// 超过限流上限。
    RateLimitExceeded => "rate_limit_exceeded",
    /// 限流存储不可用且该层故障时关闭。
    RateLimiterUnavailable => "rate_limiter_unavailable",
    /// 防重放存储不可用。
    NonceStoreUnavailable => "nonce_store_unavailable",
    /// 模型没有可用的上游目标。
    NoAvailableUpstream => "no_available_upstream",
    /// 上游不可达。
    UpstreamUnreachable => "upstream_unreachable",
    /// 向上游发送请求失败。
    UpstreamWriteFailed => "upstream_write_failed",
    /// 读取上游响应失败。
    UpstreamReadFailed => "upstream_read_failed",
    /// 等待上游超时。
    UpstreamTimeout => "upstream_timeout",
    /// 上游拒绝了网关自己的上游密钥。
    UpstreamAuthFailed => "upstream_auth_failed",
    /// 上游的回复无法理解。
    InvalidUpstreamResponse => "invalid_upstream_response",
    /// 上游响应超过上限。
    UpstreamResponseTooLarge => "upstream_response_too_large",
    /// 上游在流中报告了错误。
    UpstreamStreamError => "upstream_stream_error",
    /// 上游的流在结束标记前断开。
    UpstreamStreamTruncated => "upstream_stream_truncated",
    /// 上游的其他错误（信封里转告上游自己的错误码，标签统一用这个值）。
    UpstreamError => "upstream_error",
    /// 客户端在响应完成前断开（状态码记为 499）。
    ClientClosed => "client_closed",
    /// 网关内部错误（不应出现）。
    InternalError => "internal_error",
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn 错误码_文本互不相同且都是小写下划线() {
        let texts: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), ErrorCode::ALL.len(), "错误码文本不能重复");
        for text in texts {
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "错误码 {text} 只能含小写字母与下划线"
            );
        }
    }
}
