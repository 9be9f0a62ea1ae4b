//! Gemini 上游（generativelanguage v1beta）：把 OpenAI 请求翻译为 Gemini 格式，
//! 把完整响应、SSE 流与错误翻译回 OpenAI。
//!
//! 要点：所有 system/developer 消息进入 `systemInstruction`；连续的 tool 消息合成一个 user 内容里的
//! 多个 `functionResponse`（数量必须与上一轮的 `functionCall` 相同）；同角色相邻内容合并；
//! Gemini 的 `functionCall` 没有 id，网关合成唯一的工具调用 id，并把思维签名嵌进 id，
//! 客户端回传历史时再还原到对应的 `functionCall` 部分旁边。
//!
//! 文件分工：`request` 翻译请求，`signature` 在工具调用 id 中保存思维签名，`response` 翻译完整响应，
//! `stream` 翻译 SSE 流，`error` 翻译错误；测试放在同名的 `*_tests.rs` 中，共用的测试工具在 `test_support.rs`。

mod count;
mod embeddings;
mod error;
mod request;
mod response;
mod signature;
mod stream;

#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod signature_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod test_support;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use self::error::parse_gemini_error;
use self::request::{request_body, request_path};
use self::response::{completion, parse_object};
use self::stream::GeminiStream;
use super::convert;
use super::{
    json_headers, ProviderFilter, StreamTranslator, TranslateCtx, TranslatedReply,
    UpstreamErrorInfo, UpstreamRequest,
};
use crate::config::{Provider, Target};
use crate::dialects::ChatRequest;
use crate::error::ApiError;

/// 认证头名称：密钥只放在头里，绝不放进查询串，以免落入各处的 URL 日志。
const API_KEY_HEADER: &str = "x-goog-api-key";
/// 日志中的上游协议名。
const PROVIDER_LABEL: &str = "gemini";
/// Gemini 没有对应项、直接丢弃（记 DEBUG 日志）的 OpenAI 参数。
const UNSUPPORTED_PARAMS: &[&str] = &[
    "user",
    "logit_bias",
    "metadata",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
];

/// Gemini 协议过滤器。
///
/// 用途：由 [`super::filter_for`] 为 `gemini` 类型的上游返回。
pub(super) struct GeminiFilter;

pub(super) use self::count::GeminiCount;
pub(super) use self::embeddings::GeminiEmbeddings;

/// 发往 Gemini 的请求头：JSON 内容类型与放在 `x-goog-api-key` 里的上游密钥。
///
/// 错误：密钥含非法字符时返回 500。
fn request_headers(provider: &Provider) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    json_headers(provider, HeaderName::from_static(API_KEY_HEADER), "")
}

impl ProviderFilter for GeminiFilter {
    fn build_request(
        &self,
        req: &ChatRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        convert::log_dropped(req, UNSUPPORTED_PARAMS, PROVIDER_LABEL);
        let body = request_body(req, target)?;
        let provider = &target.provider;
        Ok(UpstreamRequest {
            path: request_path(&provider.base_url.path, &target.model, req.stream),
            headers: request_headers(provider)?,
            body: Bytes::from(body.to_string()),
        })
    }

    fn translate_response(
        &self,
        body: Bytes,
        ctx: &TranslateCtx,
    ) -> Result<TranslatedReply, ApiError> {
        let response = parse_object(&body)?;
        Ok(completion(&response, ctx).into())
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo {
        parse_gemini_error(status, body)
    }

    fn stream_translator(&self, ctx: TranslateCtx) -> Box<dyn StreamTranslator> {
        Box::new(GeminiStream::new(ctx))
    }
}
