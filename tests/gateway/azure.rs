//! Azure OpenAI 上游：部署寻址、过滤注释被去掉、工具调用与用量原样可用。

use serde_json::{json, Value};

use crate::common::{
    authed, expect_error, send_chat, sse_payloads, stream_content, CLIENT_KEY, ENV, UPSTREAM_KEY,
};
use crate::support::body::chat_body;

/// 模拟器的缺省回复。
const MOCK_REPLY: &str = "你好！我是 ChatNexus 内置的模拟上游，这条回复没有调用任何真实模型。";

fn 工具请求(stream: bool) -> Value {
    let mut body = chat_body("az", stream);
    let schema = json!({ "type": "object", "properties": { "城市": { "type": "string" } }, "required": ["城市"] });
    body["tools"] = json!([
        { "type": "function", "function": { "name": "查天气", "parameters": schema } },
        { "type": "function", "function": { "name": "查时间", "parameters": schema } },
    ]);
    body["stream_options"] = json!({ "include_usage": true });
    body
}

#[tokio::test]
async fn azure_非流式_去掉过滤注释且模型名为客户端可见名() {
    let resp = send_chat("az", false).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["choices"][0]["message"]["content"], MOCK_REPLY);
    assert_eq!(body["model"], "az");
    assert!(body.get("prompt_filter_results").is_none());
    assert!(body["choices"][0].get("content_filter_results").is_none());
    let recorded = ENV.mock("az").recent().pop().expect("上游必须收到请求");
    assert_eq!(
        recorded.path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(recorded.header("api-key"), Some(UPSTREAM_KEY));
    assert_eq!(
        recorded.header("authorization"),
        None,
        "Azure 用 api-key 头，不发 Authorization"
    );
    assert!(
        !recorded.headers.iter().any(|(_, v)| v.contains(CLIENT_KEY)),
        "客户端密钥不得转发给上游"
    );
}

#[tokio::test]
async fn azure_流式_丢弃首个空_choices_注释块() {
    let text = send_chat("az", true)
        .await
        .text()
        .await
        .expect("读取流失败");
    let payloads = sse_payloads(&text);
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream_content(&payloads), MOCK_REPLY);
    for p in payloads.iter().filter(|p| p.as_str() != "[DONE]") {
        let chunk: Value = serde_json::from_str(p).expect("每个事件都是 JSON");
        assert_eq!(
            chunk["object"], "chat.completion.chunk",
            "严格客户端不能看到 object 为空的注释块：{p}"
        );
        assert_eq!(chunk["model"], "az");
    }
}

#[tokio::test]
async fn azure_流式并行工具调用与用量块() {
    let client = reqwest::Client::new();
    let resp = authed(&client, ENV.url("/v1/chat/completions"))
        .json(&工具请求(true))
        .send()
        .await
        .expect("请求失败");
    let text = resp.text().await.expect("读取流失败");
    let chunks: Vec<Value> = sse_payloads(&text)
        .iter()
        .filter(|p| p.as_str() != "[DONE]")
        .filter_map(|p| serde_json::from_str(p).ok())
        .collect();
    let starts: Vec<(u64, String)> = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]
                .as_object()
                .cloned()
        })
        .filter(|call| call.contains_key("id"))
        .map(|call| {
            (
                call.get("index").and_then(Value::as_u64).unwrap_or(99),
                call.get("function")
                    .map(|f| f["name"].to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        starts,
        vec![(0, "\"查天气\"".to_string()), (1, "\"查时间\"".to_string())]
    );
    let usage: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"] == json!([]))
        .collect();
    assert_eq!(usage.len(), 1, "恰好一个用量块");
    assert_eq!(
        (
            usage[0]["usage"]["prompt_tokens"].as_u64(),
            usage[0]["usage"]["total_tokens"].as_u64()
        ),
        (Some(30), Some(42))
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn azure_限流_返回_429_并带_retry_after() {
    let resp = send_chat("az-429", false).await;
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let e = expect_error(resp, 429).await;
    assert_eq!(e["type"], "invalid_request_error");
}
