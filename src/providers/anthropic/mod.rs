//! Anthropic 上游：把 OpenAI 请求翻译为 Anthropic Messages 格式，把响应、流与错误翻译回 OpenAI。
//!
//! 参考文档 §5.1–§5.3、§5.7、§5.8 留给实现者选择的地方，本模块的约定是：
//! - 全部 system 与 developer 消息按出现顺序各成一个 `system` 文本块；对话中间的系统消息也被提到
//!   最前面，它在对话中的位置信息会丢失（Anthropic 没有对话中间的系统消息）。
//! - `temperature` 超过 1.0 时截断为 1.0（Anthropic 的上限），不按比例缩放；与 `top_p` 同时给出时
//!   丢弃 `top_p`（较新的 Claude 模型拒绝两者同时出现）。两者都记 DEBUG 日志。
//! - 以助手消息开头的对话原样转发；以助手消息结尾视为预填充，去掉其末尾空白。
//! - 用量采用 OpenAI 语义：`prompt_tokens` 含缓存读取与缓存写入，`cached_tokens` 为缓存读取。
//! - 完整响应没有文本时 `content` 为 null（与 OpenAI 一致）；响应与流的 `id` 都沿用 Anthropic 的消息 id。
//! - 流中的 `event: error` 与未收到 `message_stop` 就断开，都作为流中错误交给 exchange 写出，
//!   不伪造带 `finish_reason` 的块，也不发 `[DONE]`。
//!
//! 文件分工：`request` 翻译请求，`response` 翻译完整响应与用量，`stream` 翻译 SSE 流，`error` 翻译错误；
//! 测试放在同名的 `*_tests.rs` 中，共用的测试工具在 `test_support.rs`。

mod error;
mod native;
mod request;
mod response;
mod stream;

#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod test_support;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::Value;

use self::error::error_info;
use self::request::request_body;
use self::response::completion_of;
use self::stream::AnthropicStream;

pub(super) use self::native::AnthropicNative;
use super::{
    json_content_type, key_header, ProviderFilter, StreamTranslator, TranslateCtx, TranslatedReply,
    UpstreamErrorInfo, UpstreamRequest,
};
use crate::config::Target;
use crate::dialects::ChatRequest;
use crate::error::ApiError;

/// Messages 接口相对 `base_url` 路径的位置。
const MESSAGES_PATH: &str = "/v1/messages";
/// 携带上游密钥的请求头。
const API_KEY_HEADER: &str = "x-api-key";
/// API 版本请求头。
const VERSION_HEADER: &str = "anthropic-version";
/// 网关固定发送的 API 版本（所有请求必填）。
const API_VERSION: &str = "2023-06-01";
/// 日志与错误消息中的上游名称。
const PROVIDER_LABEL: &str = "anthropic";
/// 没有参数的工具调用的参数（保证拼接后的参数是合法 JSON）。
const EMPTY_ARGUMENTS: &str = "{}";

/// Anthropic 协议过滤器。
pub(super) struct AnthropicFilter;

impl ProviderFilter for AnthropicFilter {
    fn build_request(
        &self,
        req: &ChatRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        let body = request_body(req, target)?;
        let provider = &target.provider;
        let mut headers = vec![
            json_content_type(),
            (
                HeaderName::from_static(VERSION_HEADER),
                HeaderValue::from_static(API_VERSION),
            ),
        ];
        headers.extend(key_header(
            provider,
            HeaderName::from_static(API_KEY_HEADER),
            "",
        )?);
        Ok(UpstreamRequest {
            path: format!("{}{MESSAGES_PATH}", provider.base_url.path),
            headers,
            body: Bytes::from(Value::Object(body).to_string()),
        })
    }

    fn translate_response(
        &self,
        body: Bytes,
        ctx: &TranslateCtx,
    ) -> Result<TranslatedReply, ApiError> {
        completion_of(&body, ctx).map(TranslatedReply::from)
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo {
        error_info(status, body)
    }

    fn stream_translator(&self, ctx: TranslateCtx) -> Box<dyn StreamTranslator> {
        Box::new(AnthropicStream::new(ctx))
    }
}
