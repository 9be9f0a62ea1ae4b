//! OpenAI 与兼容服务的向量接口 `POST /v1/embeddings`：请求体只换 `model`；回复原样转发，
//! 只读出用量——客户端要 base64 而上游给了浮点数组时（一些兼容服务忽略 `encoding_format`）改写成 base64。

use bytes::Bytes;
use serde::Deserialize;

use super::{api_path, parse_openai_error, request_headers};
use crate::config::Target;
use crate::dialects::embeddings::{floats_to_base64, Encoding};
use crate::dialects::EmbeddingsRequest;
use crate::error::{ApiError, ErrorCode};
use crate::providers::{
    body_with_model, last_usage_value, EmbeddingsFilter, EmbeddingsReply, UpstreamErrorInfo,
    UpstreamRequest,
};
use crate::streaming::{estimate_tokens, Usage};

/// `/v1` 之下的向量接口路径。
pub(in crate::providers) const EMBEDDINGS_PATH: &str = "/embeddings";

/// OpenAI 与兼容服务的向量规则。
pub(in crate::providers) struct OpenAiEmbeddings;

impl EmbeddingsFilter for OpenAiEmbeddings {
    fn build_request(
        &self,
        req: &EmbeddingsRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        let provider = &target.provider;
        Ok(UpstreamRequest {
            path: api_path(&provider.base_url.path, EMBEDDINGS_PATH),
            headers: request_headers(provider)?,
            body: body_with_model(&req.raw, || req.body(), &req.model, &target.model)?,
        })
    }

    fn parse_error(&self, _status: u16, body: &[u8]) -> UpstreamErrorInfo {
        parse_openai_error(body)
    }

    fn render(&self, req: &EmbeddingsRequest, body: Bytes) -> Result<EmbeddingsReply, ApiError> {
        render_openai_list(req, body)
    }
}

/// OpenAI 形状的向量回复（OpenAI、Azure 与兼容服务共用）：用量从结尾的 `usage` 读出，上游没给时按输入估算；
/// 客户端要 base64 时把浮点数组改写成 base64，其余字节原样。
///
/// 错误：需要改写却不是合法 JSON 时返回 502。
pub(in crate::providers) fn render_openai_list(
    req: &EmbeddingsRequest,
    body: Bytes,
) -> Result<EmbeddingsReply, ApiError> {
    let reported = reported_usage(&body);
    let body = match req.encoding {
        Encoding::Float => body,
        Encoding::Base64 => floats_to_base64(&body)
            .map_err(|e| {
                ApiError::bad_gateway(
                    ErrorCode::InvalidUpstreamResponse,
                    format!("上游返回了无法解析的向量回复：{e}"),
                )
            })?
            .unwrap_or(body),
    };
    let usage = reported.unwrap_or(Usage {
        prompt: estimate_tokens(req.input_bytes),
        ..Usage::default()
    });
    Ok(EmbeddingsReply {
        body,
        usage,
        estimated: reported.is_none(),
    })
}

/// 向量回复的 `usage`（只有输入 token）。
#[derive(Deserialize)]
struct ListUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

/// 上游报告的用量：从后往前找到 `usage` 键，只定型解析它的值（向量本身不解析）；没有或为 0 时为 `None`。
fn reported_usage(body: &[u8]) -> Option<Usage> {
    let value = last_usage_value(body)?;
    let usage = ListUsage::deserialize(&mut serde_json::Deserializer::from_slice(value)).ok()?;
    (usage.prompt_tokens > 0).then(|| Usage {
        prompt: usage.prompt_tokens,
        ..Usage::default()
    })
}
