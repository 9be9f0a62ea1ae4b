//! 响应缓存在 Messages 与 Responses 方言上的端到端测试（透传与翻译两条路都测），以及取消、截断的流不进缓存。
//!
//! 每个用例先用一种形式（流式或非流式）让回复存进缓存，再用另一种形式命中，断言回放的内容、停止原因、
//! 用量与原回复相同，且上游只收到一次。

use serde_json::{json, Value};

use crate::common::{authed, read_sse_events, send_raw, sse_payloads, stream_content, ENV};
use crate::support::header;

/// 透传 Messages 的 Anthropic 上游（也是模型名）。
const CLAUDE: &str = "cache-claude";
/// 透传 Responses 的 OpenAI 上游（也是模型名）。
const OPENAI: &str = "cache-oa";
/// 经枢纽翻译的 OpenAI 兼容上游对应的模型。
const TRANSLATED: &str = "cache-fast";
/// `cache-fast` 的模拟上游。
const TRANSLATED_UPSTREAM: &str = "cache-up";
/// Messages 接口。
const MESSAGES: &str = "/v1/messages";
/// Responses 接口。
const RESPONSES: &str = "/v1/responses";
/// Chat Completions 接口。
const CHAT: &str = "/v1/chat/completions";

/// 发送请求，返回回复。
async fn 发送(path: &str, body: &Value) -> reqwest::Response {
    send_raw(
        authed(&reqwest::Client::new(), ENV.url(path)),
        body.to_string(),
    )
    .await
}

/// 确定性的 Messages 请求。
fn 消息请求(model: &str, marker: &str, stream: bool) -> Value {
    json!({ "model": model, "max_tokens": 256, "temperature": 0, "stream": stream,
        "messages": [ { "role": "user", "content": marker } ] })
}

/// 确定性的 Responses 请求。
fn 响应请求(model: &str, marker: &str, stream: bool) -> Value {
    json!({ "model": model, "temperature": 0, "stream": stream, "input": marker })
}

/// 上游收到含 `marker` 的请求的次数。
fn 上游次数(mock: &str, marker: &str) -> usize {
    ENV.mock(mock)
        .recent()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(marker))
        .count()
}

/// 非流式请求：断言缓存结果头，返回回复 JSON。
async fn 非流式(path: &str, body: &Value, expected: &str) -> Value {
    let resp = 发送(path, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-chatnexus-cache"), expected, "{body}");
    resp.json().await.expect("回复是 JSON")
}

/// 流式请求：断言缓存结果头，返回全部事件。
async fn 流式(path: &str, body: &Value, expected: &str) -> Vec<(String, Value)> {
    let resp = 发送(path, body).await;
    assert_eq!(header(&resp, "x-chatnexus-cache"), expected, "{body}");
    read_sse_events(resp).await
}

/// Messages 事件流拼出的（文本, 停止原因, 输出用量）。
fn 消息流摘要(events: &[(String, Value)]) -> (String, Value, Value) {
    let text = events
        .iter()
        .filter(|(_, e)| e["delta"]["type"] == "text_delta")
        .filter_map(|(_, e)| e["delta"]["text"].as_str())
        .collect();
    let delta = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .map(|(_, e)| e.clone())
        .expect("有 message_delta");
    assert_eq!(events.last().map(|(n, _)| n.as_str()), Some("message_stop"));
    (
        text,
        delta["delta"]["stop_reason"].clone(),
        delta["usage"]["output_tokens"].clone(),
    )
}

/// 完整 `message` 的（文本, 停止原因, 输出用量）。
fn 消息摘要(message: &Value) -> (String, Value, Value) {
    let text = message["content"]
        .as_array()
        .expect("content 是数组")
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect();
    (
        text,
        message["stop_reason"].clone(),
        message["usage"]["output_tokens"].clone(),
    )
}

/// Responses 事件流终止事件里的完整回复。
fn 终止回复(events: &[(String, Value)]) -> Value {
    let (name, data) = events.last().expect("至少有一个事件");
    assert_eq!(name, "response.completed", "{events:?}");
    data["response"].clone()
}

#[tokio::test]
async fn 缓存_messages_透传_非流式存下_流式命中回放同一条消息() {
    let marker = "缓存方言标记-透传消息";
    let message = 非流式(MESSAGES, &消息请求(CLAUDE, marker, false), "miss").await;
    let events = 流式(MESSAGES, &消息请求(CLAUDE, marker, true), "hit").await;
    assert_eq!(消息流摘要(&events), 消息摘要(&message), "回放与原回复相同");
    assert!(!消息摘要(&message).0.is_empty(), "原回复有文本");
    assert_eq!(events[0].1["message"]["id"], message["id"]);
    assert_eq!(上游次数(CLAUDE, marker), 1, "命中不到上游");
}

#[tokio::test]
async fn 缓存_messages_翻译_流式存下_非流式命中() {
    let marker = "缓存方言标记-翻译消息";
    let events = 流式(MESSAGES, &消息请求(TRANSLATED, marker, true), "miss").await;
    let message = 非流式(MESSAGES, &消息请求(TRANSLATED, marker, false), "hit").await;
    assert_eq!(
        消息摘要(&message),
        消息流摘要(&events),
        "命中的 JSON 与原来的流相同"
    );
    assert_eq!(message["type"], "message");
    assert_eq!(上游次数(TRANSLATED_UPSTREAM, marker), 1);
}

#[tokio::test]
async fn 缓存_responses_透传_流式存下_非流式命中与终止事件相同() {
    let marker = "缓存方言标记-透传响应";
    let events = 流式(RESPONSES, &响应请求(OPENAI, marker, true), "miss").await;
    let response = 非流式(RESPONSES, &响应请求(OPENAI, marker, false), "hit").await;
    assert_eq!(
        response,
        终止回复(&events),
        "命中的 JSON 就是原流的完整回复"
    );
    assert_eq!(上游次数(OPENAI, marker), 1);
}

#[tokio::test]
async fn 缓存_responses_翻译_非流式存下_流式命中() {
    let marker = "缓存方言标记-翻译响应";
    let response = 非流式(RESPONSES, &响应请求(TRANSLATED, marker, false), "miss").await;
    let events = 流式(RESPONSES, &响应请求(TRANSLATED, marker, true), "hit").await;
    assert_eq!(终止回复(&events), response, "回放的终止事件带着原回复");
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .filter_map(|(_, e)| e["delta"].as_str())
        .collect();
    assert_eq!(
        text,
        response["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
    );
    assert!(!text.is_empty(), "原回复有文本");
    assert_eq!(上游次数(TRANSLATED_UPSTREAM, marker), 1);
}

#[tokio::test]
async fn 缓存_方言各存各的_同样的内容换个方言不命中() {
    let marker = "缓存方言标记-各存各的";
    let chat = json!({ "model": TRANSLATED, "temperature": 0, "max_tokens": 256,
        "messages": [ { "role": "user", "content": marker } ] });
    非流式(CHAT, &chat, "miss").await;
    非流式(CHAT, &chat, "hit").await;
    非流式(MESSAGES, &消息请求(TRANSLATED, marker, false), "miss").await;
    assert_eq!(上游次数(TRANSLATED_UPSTREAM, marker), 2);
}

#[tokio::test]
async fn 缓存_客户端取消的流与上游断开的流_都不存() {
    let marker = "缓存方言标记-取消";
    let body = json!({ "model": "cache-drip", "temperature": 0, "stream": true,
        "messages": [ { "role": "user", "content": marker } ] });
    let mut resp = 发送(CHAT, &body).await;
    assert_eq!(header(&resp, "x-chatnexus-cache"), "miss");
    resp.chunk().await.expect("读到第一块").expect("流还没结束");
    drop(resp);
    // 上游还要约一秒才流完；等它结束，网关已发现客户端断开
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let again = 发送(CHAT, &body).await;
    assert_eq!(
        header(&again, "x-chatnexus-cache"),
        "miss",
        "取消的流不能进缓存"
    );
    let payloads = sse_payloads(&again.text().await.expect("读完"));
    assert!(!stream_content(&payloads).is_empty());
    let cut = json!({ "model": "cache-cut", "temperature": 0, "stream": true,
        "messages": [ { "role": "user", "content": "缓存方言标记-断开" } ] });
    for _ in 0..2 {
        let resp = 发送(CHAT, &cut).await;
        assert_eq!(
            header(&resp, "x-chatnexus-cache"),
            "miss",
            "断开的流不能进缓存"
        );
        resp.text().await.ok();
    }
}
