//! 各测试文件共用的测试工具：测试目标、请求构造、录制的流与驱动流式翻译器的函数。

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::request::request_body;
use super::AnthropicFilter;
use crate::config::{BaseUrl, Provider, ProviderKind, Target, Timeouts};
use crate::dialects::ChatRequest;
use crate::error::ApiError;
use crate::providers::{ProviderFilter, StreamStatus, TranslateCtx};
use crate::security::Secret;
use crate::streaming::SseParser;

/// 测试用的上游密钥。
pub(super) const KEY: &str = "sk-ant-test";
/// 测试流的创建时间。
pub(super) const CREATED: u64 = 1_700_000_000;
/// 客户端可见的模型名。
pub(super) const MODEL: &str = "claude";
/// 测试上游的基础地址（带路径前缀）。
pub(super) const BASE_URL: &str = "http://127.0.0.1:9/proxy";

/// 录制的 Anthropic 流：一个文本块后接两个 tool_use 块（内容块序号 1、2），带 ping 与提示缓存用量。
pub(super) const RECORDED_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":20,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"我来查一下。\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_A\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"巴\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"黎\\\"}\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_B\",\"name\":\"get_time\",\"input\":{}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"tz\\\":\\\"CET\\\"}\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":65}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

/// 与录制的流内容相同的非流式响应（用于比较两种模式的用量）。
pub(super) fn 完整响应() -> Value {
    json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [
            { "type": "text", "text": "我来查一下。" },
            { "type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": { "city": "巴黎" } },
            { "type": "tool_use", "id": "toolu_B", "name": "get_time", "input": { "tz": "CET" } },
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": { "input_tokens": 20, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 10, "output_tokens": 65 },
    })
}

/// 指向测试地址、带密钥的 Anthropic 目标；`max_tokens` 为目标配置的输出上限。
pub(super) fn 目标(max_tokens: Option<u64>) -> Target {
    let provider = Provider {
        name: "claude".into(),
        kind: ProviderKind::Anthropic,
        base_url: BaseUrl::try_from(BASE_URL.to_string()).expect("URL 合法"),
        api_key: Some(Secret::new(KEY.to_string())),
        timeouts: Timeouts::default(),
        enabled: true,
        api_version: None,
        health_check: None,
        concurrency: None,
        responses: false,
    };
    Target {
        provider: Arc::new(provider),
        model: "claude-sonnet-4-5".into(),
        model_header: None,
        max_tokens,
        max_output_tokens: None,
        deployment: String::new(),
        weight: 1,
        priority: 0,
        key: "claude/claude-sonnet-4-5".into(),
    }
}

/// 经过网关校验的客户端请求。
pub(super) fn 请求(body: Value) -> ChatRequest {
    ChatRequest::parse(Bytes::from(body.to_string())).expect("测试请求必须通过校验")
}

/// 以目标上限 1024 翻译请求体。
pub(super) fn 翻译(body: Value) -> Value {
    Value::Object(request_body(&请求(body), &目标(Some(1024))).expect("应当翻译成功"))
}

/// 翻译必须失败的请求，返回错误。
pub(super) fn 翻译失败(body: Value) -> ApiError {
    request_body(&请求(body), &目标(None)).expect_err("应当返回 400")
}

/// 只翻译消息列表，返回 Anthropic 的 `messages`。
pub(super) fn 对话(messages: Value) -> Value {
    翻译(json!({ "model": MODEL, "messages": messages }))["messages"].clone()
}

/// 固定模型名与创建时间的翻译上下文。
pub(super) fn 上下文(include_usage: bool) -> TranslateCtx {
    TranslateCtx {
        model: MODEL.into(),
        include_usage,
        created: CREATED,
    }
}

/// 像 exchange 一样驱动翻译器：依次喂入各段字节，返回客户端收到的文本与结局。
pub(super) fn 翻译流(chunks: &[&[u8]], include_usage: bool) -> (String, Result<(), ApiError>) {
    let mut parser = SseParser::default();
    let mut translator = AnthropicFilter.stream_translator(上下文(include_usage));
    let (mut events, mut out) = (Vec::new(), BytesMut::new());
    let text = |out: &BytesMut| String::from_utf8(out.to_vec()).expect("输出必须是 UTF-8");
    for chunk in chunks {
        parser.push(chunk, &mut events);
        for event in events.drain(..) {
            match translator.on_event(&event, &mut out) {
                Ok(StreamStatus::Continue | StreamStatus::Forward) => {}
                Ok(StreamStatus::Done) => return (text(&out), Ok(())),
                Err(e) => return (text(&out), Err(e)),
            }
        }
    }
    parser.finish(&mut events);
    for event in events.drain(..) {
        if let Err(e) = translator.on_event(&event, &mut out) {
            return (text(&out), Err(e));
        }
    }
    let end = translator.on_eof(&mut out);
    (text(&out), end)
}

/// 输出中的全部事件负载（`[DONE]` 原样保留为字符串）。
pub(super) fn 事件(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
        .collect()
}
