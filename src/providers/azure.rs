//! Azure OpenAI 上游：按部署名寻址、`api-key` 认证，响应是 OpenAI 格式外加内容过滤注释。
//!
//! 为了让严格的 OpenAI 客户端不受影响，网关去掉 `prompt_filter_results` 与
//! `content_filter_results`，丢弃流开头 `choices` 为空的注释块，并把 `model` 改为客户端请求的模型名。

use bytes::{Bytes, BytesMut};
use http::HeaderName;
use serde_json::{Map, Value};

use super::openai::parse_openai_error;
use super::{
    json_content_type, key_header, stream_error, take_usage, upstream_body, ProviderFilter,
    StreamStatus, StreamTranslator, TranslateCtx, TranslatedReply, UpstreamErrorInfo,
    UpstreamRequest,
};
use crate::config::Target;
use crate::dialects::ChatRequest;
use crate::error::{ApiError, ErrorCode};
use crate::streaming::{write_data, write_done, SseEvent, Usage, DONE_SENTINEL};

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
        let provider = &target.provider;
        let version = provider.api_version.as_deref().unwrap_or_default();
        let mut headers = vec![json_content_type()];
        headers.extend(key_header(
            provider,
            HeaderName::from_static(API_KEY_HEADER),
            "",
        )?);
        Ok(UpstreamRequest {
            path: format!(
                "{}{DEPLOYMENTS_PATH}{}{CHAT_PATH}?api-version={version}",
                provider.base_url.path, target.deployment
            ),
            headers,
            body: upstream_body(req, &target.model, req.stream)?,
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

    fn stream_translator(&self, ctx: TranslateCtx) -> Box<dyn StreamTranslator> {
        Box::new(AzureStream {
            ctx,
            usage: None,
            done: false,
        })
    }
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

/// Azure 流：逐块规范化，丢弃只有注释、没有 choices 也没有用量的块。
struct AzureStream {
    ctx: TranslateCtx,
    /// 上游报告的用量。
    usage: Option<Usage>,
    done: bool,
}

impl StreamTranslator for AzureStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        if self.done {
            return Ok(StreamStatus::Done);
        }
        if event.data.trim() == DONE_SENTINEL {
            self.done = true;
            write_done(out);
            return Ok(StreamStatus::Done);
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(&event.data) else {
            return Err(ApiError::bad_gateway(
                ErrorCode::InvalidUpstreamResponse,
                "Azure 流中出现无法解析的事件",
            ));
        };
        if chunk.contains_key("error") {
            return Err(stream_error(parse_openai_error(event.data.as_bytes())));
        }
        let usage_only = take_usage(&chunk, &mut self.usage);
        let no_choices = chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if (no_choices && !usage_only) || (usage_only && !self.ctx.include_usage) {
            return Ok(StreamStatus::Continue);
        }
        normalize(&mut chunk, &self.ctx);
        write_data(out, Value::Object(chunk).to_string().as_bytes());
        Ok(StreamStatus::Continue)
    }

    fn on_eof(&mut self, _out: &mut BytesMut) -> Result<(), ApiError> {
        if self.done {
            Ok(())
        } else {
            Err(ApiError::bad_gateway(
                ErrorCode::UpstreamStreamTruncated,
                "Azure 在发送结束标记 [DONE] 之前断开了流",
            ))
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::config::{BaseUrl, Provider, ProviderKind, Timeouts};
    use crate::providers::map_upstream_error;
    use crate::security::Secret;

    fn 上下文() -> TranslateCtx {
        TranslateCtx {
            model: "gpt-4o-企业版".into(),
            include_usage: false,
            created: 1,
        }
    }

    fn 目标() -> Target {
        let provider = Provider {
            name: "az".into(),
            kind: ProviderKind::Azure,
            base_url: BaseUrl::try_from("https://contoso.openai.azure.com".to_string())
                .expect("URL 合法"),
            api_key: Some(Secret::new("azure-test-key".into())),
            timeouts: Timeouts::default(),
            enabled: true,
            api_version: Some("2024-10-21".into()),
            health_check: None,
            concurrency: None,
        };
        Target {
            provider: Arc::new(provider),
            model: "gpt-4o".into(),
            max_tokens: None,
            deployment: "gpt-4o-prod".into(),
            weight: 1,
            priority: 0,
            key: "az/gpt-4o-prod".into(),
        }
    }

    fn 事件(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }

    #[test]
    fn 请求_按部署名与_api_version_寻址并用_api_key_认证() {
        let raw = r#"{"model":"gpt-4o-企业版","messages":[{"role":"user","content":"你好"}]}"#;
        let req = ChatRequest::parse(Bytes::from(raw)).expect("合法请求");
        let up = AzureFilter.build_request(&req, &目标()).expect("可翻译");
        assert_eq!(
            up.path,
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        );
        let key = up
            .headers
            .iter()
            .find(|(k, _)| k == API_KEY_HEADER)
            .map(|(_, v)| v);
        assert_eq!(key.and_then(|v| v.to_str().ok()), Some("azure-test-key"));
        assert!(
            key.is_some_and(|v| v.is_sensitive()),
            "密钥头必须标记为敏感"
        );
        let body: Value = serde_json::from_slice(&up.body).expect("JSON");
        assert_eq!(body["model"], "gpt-4o");
    }

    #[test]
    fn 完整响应_去掉过滤注释并使用客户端模型名() {
        let upstream = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "gpt-4o-2024-11-20",
            "prompt_filter_results": [ { "prompt_index": 0, "content_filter_results": {} } ],
            "choices": [ { "index": 0, "finish_reason": "stop", "message": { "role": "assistant", "content": "你好" }, "content_filter_results": {} } ],
            "usage": { "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3 }
        });
        let out = AzureFilter
            .translate_response(Bytes::from(upstream.to_string()), &上下文())
            .expect("可翻译");
        let v: Value = serde_json::from_slice(&out.body).expect("JSON");
        assert!(v.get(PROMPT_FILTER_RESULTS).is_none());
        assert!(v["choices"][0].get(CONTENT_FILTER_RESULTS).is_none());
        assert_eq!(
            (
                v["model"].as_str(),
                v["choices"][0]["message"]["content"].as_str()
            ),
            (Some("gpt-4o-企业版"), Some("你好"))
        );
    }

    #[test]
    fn 流_丢弃空_choices_的注释块且不会越界() {
        let mut s = AzureFilter.stream_translator(上下文());
        let mut out = BytesMut::new();
        let annotation = r#"{"id":"","object":"","created":0,"model":"","choices":[],"prompt_filter_results":[{"prompt_index":0}]}"#;
        assert_eq!(
            s.on_event(&事件(annotation), &mut out),
            Ok(StreamStatus::Continue)
        );
        assert!(out.is_empty(), "注释块不应发给客户端");
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-11-20","choices":[{"index":0,"delta":{"content":"你"},"finish_reason":null,"content_filter_results":{}}]}"#;
        s.on_event(&事件(chunk), &mut out).expect("可翻译");
        assert_eq!(
            s.on_event(&事件("[DONE]"), &mut out),
            Ok(StreamStatus::Done)
        );
        let text = std::str::from_utf8(&out).expect("UTF-8");
        assert!(
            text.contains("\"model\":\"gpt-4o-企业版\"") && !text.contains(CONTENT_FILTER_RESULTS),
            "{text}"
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert!(s.on_eof(&mut out).is_ok());
    }

    #[test]
    fn 流_缺少结束标记_视为截断() {
        let mut s = AzureFilter.stream_translator(上下文());
        let e = s.on_eof(&mut BytesMut::new()).expect_err("截断必须报错");
        assert_eq!(Some(e.envelope_code()), Some("upstream_stream_truncated"));
    }

    #[test]
    fn 错误_部署不存在映射为_404_限流带_rate_limit_exceeded() {
        let missing = br#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#;
        let e = map_upstream_error(404, AzureFilter.parse_error(404, missing), "az");
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (404, Some("model_not_found"))
        );
        let limited = br#"{"error":{"code":"429","message":"Please retry after 7 seconds."}}"#;
        let e = map_upstream_error(429, AzureFilter.parse_error(429, limited), "az");
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (429, Some("rate_limit_exceeded"))
        );
    }

    #[test]
    fn 错误_提示词被内容过滤_保留_content_filter_与参数() {
        let body = br#"{"error":{"code":"content_filter","status":400,"param":"prompt","type":null,"message":"filtered","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#;
        let e = map_upstream_error(400, AzureFilter.parse_error(400, body), "az");
        assert_eq!(
            (e.status, Some(e.envelope_code()), e.param.as_deref()),
            (400, Some("content_filter"), Some("prompt"))
        );
    }
}
