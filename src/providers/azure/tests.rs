//! Azure 过滤器的测试：寻址与认证、过滤注释的去除、流的截断与错误映射。

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::{AzureFilter, API_KEY_HEADER, CONTENT_FILTER_RESULTS, PROMPT_FILTER_RESULTS};
use crate::config::{BaseUrl, Provider, ProviderKind, Target, Timeouts};
use crate::dialects::ChatRequest;
use crate::providers::{map_upstream_error, ProviderFilter, StreamStatus, TranslateCtx};
use crate::security::Secret;
use crate::streaming::SseEvent;

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
        responses: false,
    };
    Target {
        provider: Arc::new(provider),
        model: "gpt-4o".into(),
        model_header: None,
        max_tokens: None,
        max_output_tokens: None,
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
