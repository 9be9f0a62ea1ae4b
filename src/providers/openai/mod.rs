//! OpenAI 与兼容 OpenAI 的上游（vLLM、Ollama、DeepSeek……）：协议相同，几乎原样转发。
//!
//! 文件分工：本文件构造请求并透传完整响应，`stream` 转发 SSE 流，`error` 解析 OpenAI 错误信封
//! （Azure 共用）；测试在 `tests.rs`。

mod embeddings;
mod error;
mod model;
mod responses;
mod stream;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};

use self::model::ModelName;
use self::stream::OpenAiStream;
use super::{
    json_headers, last_usage_value, upstream_body, ProviderFilter, StreamTranslator, TranslateCtx,
    TranslatedReply, UpstreamErrorInfo, UpstreamRequest,
};
use crate::config::{Provider, ProviderKind, Target};
use crate::dialects::ChatRequest;
use crate::error::{ApiError, ErrorCode};
use crate::streaming::Usage;

pub(super) use self::embeddings::{render_openai_list, OpenAiEmbeddings, EMBEDDINGS_PATH};
pub(super) use self::error::parse_openai_error;
pub(super) use self::responses::OpenAiResponses;

/// 聊天补全接口相对 `/v1` 的路径。
const CHAT_PATH: &str = "/chat/completions";
/// API 版本前缀：`base_url` 未以它结尾时自动补上。
const VERSION_PREFIX: &str = "/v1";
/// Bearer 认证头的前缀。
const BEARER_PREFIX: &str = "Bearer ";
/// 日志与错误消息中的上游名称。
const PROVIDER_LABEL: &str = "openai";

/// OpenAI 协议过滤器。
///
/// 用途：由 [`super::filter_for`] 为 `openai` 与 `openai_compatible` 两种上游返回。
pub(super) struct OpenAiFilter;

impl ProviderFilter for OpenAiFilter {
    fn build_request(
        &self,
        req: &ChatRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        let provider = &target.provider;
        Ok(UpstreamRequest {
            path: chat_path(&provider.base_url.path),
            headers: request_headers(provider)?,
            body: upstream_body(
                req,
                target,
                req.stream && provider.kind == ProviderKind::OpenAi,
            )?,
        })
    }

    fn translate_response(
        &self,
        body: Bytes,
        ctx: &TranslateCtx,
    ) -> Result<TranslatedReply, ApiError> {
        if !looks_like_object(&body) {
            return Err(ApiError::bad_gateway(
                ErrorCode::InvalidUpstreamResponse,
                "上游返回的不是 JSON 对象",
            ));
        }
        let usage = last_usage_value(&body).and_then(Usage::from_openai_value);
        Ok(TranslatedReply {
            body: ModelName::new(&ctx.model).rewrite(body),
            usage,
        })
    }

    fn parse_error(&self, _status: u16, body: &[u8]) -> UpstreamErrorInfo {
        parse_openai_error(body)
    }

    fn stream_translator(&self, ctx: TranslateCtx) -> Box<dyn StreamTranslator> {
        Box::new(OpenAiStream::new(ctx))
    }
}

/// 响应体去掉首尾空白后是否以 `{` 开头、以 `}` 结尾：挡住 HTML 错误页、纯文本与被截断的回复。
///
/// 回复原样转发给客户端（或由方言渲染时再完整解析），这里不逐字节校验整个 JSON：与透传的 Messages、
/// Responses 一样只读出用量，完整扫描几百字节的回复曾是非流式请求里最大的一项解析开销。
fn looks_like_object(body: &[u8]) -> bool {
    let body = body.trim_ascii();
    body.first() == Some(&b'{') && body.last() == Some(&b'}')
}

/// 发往 OpenAI 与兼容服务的请求头：JSON 内容类型与 `Authorization: Bearer` 里的上游密钥。
///
/// 错误：密钥含非法字符时返回 500。
pub(super) fn request_headers(
    provider: &Provider,
) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    json_headers(provider, AUTHORIZATION, BEARER_PREFIX)
}

/// 拼出聊天接口路径：`base_url` 可以带也可以不带 `/v1`（OpenAI SDK 的习惯是带）。
fn chat_path(base_path: &str) -> String {
    api_path(base_path, CHAT_PATH)
}

/// `base_url` 的路径加上 `/v1` 之下的接口路径（`base_url` 未以 `/v1` 结尾时自动补上）。
fn api_path(base_path: &str, endpoint: &str) -> String {
    if base_path.ends_with(VERSION_PREFIX) {
        format!("{base_path}{endpoint}")
    } else {
        format!("{base_path}{VERSION_PREFIX}{endpoint}")
    }
}
