//! Azure OpenAI 上游：按部署名寻址、`api-key` 认证，响应是 OpenAI 格式外加内容过滤注释。
//!
//! 为了让严格的 OpenAI 客户端不受影响，网关去掉 `prompt_filter_results` 与
//! `content_filter_results`，丢弃流开头 `choices` 为空的注释块，并把 `model` 改为客户端请求的模型名。
//!
//! 文件分工：本文件构造请求、翻译完整响应与错误，`stream` 逐块规范化 SSE 流；测试在 `tests.rs`。

mod stream;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use self::stream::AzureStream;
use super::openai::{parse_openai_error, render_openai_list, EMBEDDINGS_PATH};
use super::{
    body_with_model, json_headers, upstream_body, EmbeddingsFilter, EmbeddingsReply,
    ProviderFilter, StreamTranslator, TranslateCtx, TranslatedReply, UpstreamErrorInfo,
    UpstreamRequest,
};
use crate::config::Target;
use crate::dialects::{ChatRequest, EmbeddingsRequest};
use crate::error::{ApiError, ErrorCode};
use crate::streaming::Usage;

/// 部署路径的前缀。
const DEPLOYMENTS_PATH: &str = "/openai/deployments/";
/// 部署下的聊天补全路径。
const CHAT_PATH: &str = "/chat/completions";
/// Azure 的认证头。
const API_KEY_HEADER: &str = "api-key";
/// 响应级的提示词过滤结果字段。
const PROMPT_FILTER_RESULTS: &str = "prompt_filter_results";
/// 旧版 api-version 对提示词过滤结果的叫法。
const PROMPT_ANNOTATIONS: &str = "prompt_annotations";
/// 每个 choice 上的内容过滤结果字段。
const CONTENT_FILTER_RESULTS: &str = "content_filter_results";
/// Azure 表示部署不存在的错误码。
const DEPLOYMENT_NOT_FOUND: &str = "DeploymentNotFound";

/// Azure OpenAI 协议过滤器。
pub(super) struct AzureFilter;

impl ProviderFilter for AzureFilter {
    fn build_request(
        &self,
        req: &ChatRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        Ok(UpstreamRequest {
            path: deployment_path(target, CHAT_PATH),
            headers: request_headers(target)?,
            body: upstream_body(req, target, req.stream)?,
        })
    }

    fn translate_response(
        &self,
        body: Bytes,
        ctx: &TranslateCtx,
    ) -> Result<TranslatedReply, ApiError> {
        let Ok(Value::Object(mut response)) = serde_json::from_slice::<Value>(&body) else {
            return Err(ApiError::bad_gateway(
                ErrorCode::InvalidUpstreamResponse,
                "Azure 返回了无法解析的 JSON",
            ));
        };
        normalize(&mut response, ctx);
        let usage = response.get("usage").and_then(Usage::from_openai);
        Ok(TranslatedReply {
            body: Bytes::from(Value::Object(response).to_string()),
            usage,
        })
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo {
        parse_azure_error(status, body)
    }

    fn stream_translator(&self, ctx: TranslateCtx) -> Box<dyn StreamTranslator> {
        Box::new(AzureStream::new(ctx))
    }
}

/// Azure 向量规则：部署路径下的 `/embeddings`，请求体与回复与 OpenAI 相同。
pub(super) struct AzureEmbeddings;

impl EmbeddingsFilter for AzureEmbeddings {
    fn build_request(
        &self,
        req: &EmbeddingsRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        Ok(UpstreamRequest {
            path: deployment_path(target, EMBEDDINGS_PATH),
            headers: request_headers(target)?,
            body: body_with_model(&req.raw, || req.body(), &req.model, &target.model)?,
        })
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo {
        parse_azure_error(status, body)
    }

    fn render(&self, req: &EmbeddingsRequest, body: Bytes) -> Result<EmbeddingsReply, ApiError> {
        render_openai_list(req, body)
    }
}

/// 部署下某个接口的路径：`{base}/openai/deployments/{部署名}{接口}?api-version=…`。
fn deployment_path(target: &Target, endpoint: &str) -> String {
    let provider = &target.provider;
    let version = provider.api_version.as_deref().unwrap_or_default();
    format!(
        "{}{DEPLOYMENTS_PATH}{}{endpoint}?api-version={version}",
        provider.base_url.path, target.deployment
    )
}

/// 发往 Azure 的请求头：JSON 内容类型与放在 `api-key` 里的上游密钥。
///
/// 错误：密钥含非法字符时返回 500。
fn request_headers(target: &Target) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    json_headers(
        &target.provider,
        HeaderName::from_static(API_KEY_HEADER),
        "",
    )
}

/// Azure 的错误：OpenAI 信封，部署不存在改成 `model_not_found`，纯数字的错误码去掉，429 没有错误码时补上。
fn parse_azure_error(status: u16, body: &[u8]) -> UpstreamErrorInfo {
    let mut info = parse_openai_error(body);
    info.code = match info.code.as_deref() {
        Some(DEPLOYMENT_NOT_FOUND) => Some("model_not_found".to_string()),
        Some(code) if code.parse::<u16>().is_ok() => None,
        _ => info.code,
    };
    if status == 429 && info.code.is_none() {
        info.code = Some("rate_limit_exceeded".to_string());
    }
    info
}

/// 去掉 Azure 特有的过滤注释，并把 `model` 改为客户端请求的模型名。
fn normalize(object: &mut Map<String, Value>, ctx: &TranslateCtx) {
    object.remove(PROMPT_FILTER_RESULTS);
    object.remove(PROMPT_ANNOTATIONS);
    if let Some(Value::Array(choices)) = object.get_mut("choices") {
        for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
            choice.remove(CONTENT_FILTER_RESULTS);
        }
    }
    object.insert("model".to_string(), Value::String(ctx.model.clone()));
}
