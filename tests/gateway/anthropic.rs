//! Anthropic 上游的端到端测试：客户端说 OpenAI，网关翻译给说 Anthropic 线上格式的模拟器，再翻译回来。
//!
//! 模拟器 `claude` 报告的用量：输入 30（其中缓存 10）、输出 12（其中推理 5），分 4 块。

use serde_json::{json, Value};

use chatnexus::mock::{MockSettings, Recorded};

use crate::common::{
    authed, expect_error, expect_stream_cut, send_chat, sse_payloads, stream_content, CLIENT_KEY,
    ENV, UPSTREAM_KEY,
};
use crate::support::body::chat_body;
use crate::support::header;

/// 说 Anthropic 格式的模拟上游（同名模型指向它）。
const CLAUDE: &str = "claude";
/// 以 529 过载应答的模拟上游。
const CLAUDE_OVERLOADED: &str = "claude-529";
/// 流式发出两个内容事件后断开的模拟上游。
const CLAUDE_DROP: &str = "claude-drop";
/// 目标配置的上游模型名。
const UPSTREAM_MODEL: &str = "claude-sonnet-4-5";
/// 目标配置的输出上限。
const TARGET_MAX_TOKENS: u64 = 1024;
/// 模拟器调用工具之前说的话。
const TOOL_PREAMBLE: &str = "我来查一下。";
/// 模拟器生成的消息 id 前缀。
const MESSAGE_ID_PREFIX: &str = "msg_mock_";
/// 模拟器生成的工具调用 id 前缀。
const TOOL_ID_PREFIX: &str = "toolu_mock_";
/// 网关固定发送的 Anthropic API 版本。
const API_VERSION: &str = "2023-06-01";

/// 模拟器的回复文本。
fn 回复() -> String {
    MockSettings::default().reply
}

/// `claude` 模拟器的用量换算为 OpenAI 语义后的样子。
fn 期望用量() -> Value {
    json!({
        "prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
        "prompt_tokens_details": { "cached_tokens": 10 },
        "completion_tokens_details": { "reasoning_tokens": 5 },
    })
}

/// 用客户端密钥发送任意请求体。
async fn 发送(body: Value) -> reqwest::Response {
    let client = reqwest::Client::new();
    authed(&client, ENV.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("请求失败")
}

/// 一个带必填字符串参数的函数工具。
fn 工具(name: &str, param: &str) -> Value {
    json!({ "type": "function", "function": { "name": name, "description": "测试工具",
        "parameters": { "type": "object", "properties": { param: { "type": "string" } }, "required": [param] } } })
}

/// 带两个工具的请求（模拟器会并行调用两者）。
fn 工具请求(stream: bool) -> Value {
    json!({
        "model": CLAUDE, "stream": stream,
        "messages": [ { "role": "user", "content": "巴黎现在的天气和时间？" } ],
        "tools": [ 工具("get_weather", "city"), 工具("get_time", "timezone") ],
    })
}

/// 模拟器最近收到的、请求体含 `marker` 的请求（并发测试共用同一个模拟器）。
fn 上游收到(marker: &str) -> Recorded {
    ENV.mock(CLAUDE)
        .recent()
        .into_iter()
        .rev()
        .find(|r| String::from_utf8_lossy(&r.body).contains(marker))
        .expect("上游必须收到带标记的请求")
}

/// 流中的全部 JSON 块（不含 `[DONE]`）。
fn 块(payloads: &[String]) -> Vec<Value> {
    payloads
        .iter()
        .filter(|p| p.as_str() != "[DONE]")
        .map(|p| serde_json::from_str(p).expect("每个事件都必须是 JSON"))
        .collect()
}

/// 读完流，返回全部负载。
async fn 读流(resp: reqwest::Response) -> Vec<String> {
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    sse_payloads(&resp.text().await.expect("读取流失败"))
}

#[tokio::test]
async fn anthropic_非流式_翻译为_openai_响应() {
    let resp = send_chat(CLAUDE, false).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("application/json"));
    let body: Value = resp.json().await.expect("响应必须是 JSON");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], CLAUDE, "响应使用客户端请求的模型名");
    let id = body["id"].as_str().unwrap_or_default();
    assert!(
        id.starts_with(MESSAGE_ID_PREFIX),
        "id 沿用上游消息 id：{id}"
    );
    assert_eq!(body["choices"][0]["message"]["content"], 回复());
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"], 期望用量());
}

#[tokio::test]
async fn anthropic_流式_文本完整_一个结束块_未要求时没有用量块() {
    let payloads = 读流(send_chat(CLAUDE, true).await).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream_content(&payloads), 回复());
    let chunks = 块(&payloads);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let id = &chunks[0]["id"];
    assert!(id
        .as_str()
        .is_some_and(|i| i.starts_with(MESSAGE_ID_PREFIX)));
    assert!(
        chunks
            .iter()
            .all(|c| &c["id"] == id && c["object"] == "chat.completion.chunk"),
        "所有块共享同一个 id"
    );
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, vec![&json!("stop")], "恰好一个结束块");
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "客户端没要求用量块"
    );
}

#[tokio::test]
async fn anthropic_流式_要求用量时恰好一个用量块且在_done_之前() {
    let mut body = chat_body(CLAUDE, true);
    body["stream_options"] = json!({ "include_usage": true });
    let payloads = 读流(发送(body).await).await;
    let usage_at: Vec<usize> = (0..payloads.len())
        .filter(|&i| payloads[i].contains("\"usage\""))
        .collect();
    assert_eq!(
        usage_at,
        vec![payloads.len() - 2],
        "恰好一个用量块，紧挨在 [DONE] 之前"
    );
    let usage_chunk: Value = serde_json::from_str(&payloads[payloads.len() - 2]).expect("JSON");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], 期望用量());
    let before: Value = serde_json::from_str(&payloads[payloads.len() - 3]).expect("JSON");
    assert_eq!(
        before["choices"][0]["finish_reason"], "stop",
        "用量块在结束块之后"
    );
}

#[tokio::test]
async fn anthropic_流式_两个并行工具调用_索引为0和1_参数拼成合法_json() {
    let chunks = 块(&读流(发送(工具请求(true)).await).await);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    let starts: Vec<&&Value> = calls.iter().filter(|c| c.get("id").is_some()).collect();
    assert_eq!(starts.len(), 2, "两个工具调用各有一个首个增量");
    for (index, (start, name)) in starts.iter().zip(["get_weather", "get_time"]).enumerate() {
        assert_eq!(start["index"], index, "工具序号从 0 开始，不是内容块序号");
        assert_eq!(start["function"]["name"], name);
        assert_eq!(start["function"]["arguments"], "", "首个增量的参数为空串");
        assert!(
            start["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(TOOL_ID_PREFIX)),
            "id 来自上游"
        );
        let arguments: String = calls
            .iter()
            .filter(|c| c["index"] == index)
            .filter_map(|c| c["function"]["arguments"].as_str())
            .collect();
        let parsed: Value = serde_json::from_str(&arguments).expect("拼接后的参数必须是合法 JSON");
        assert!(parsed.is_object(), "参数必须是 JSON 对象：{arguments}");
    }
    assert_ne!(starts[0]["id"], starts[1]["id"]);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, TOOL_PREAMBLE);
    let last = chunks.last().expect("至少一个块");
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn anthropic_非流式_工具调用的参数是_json_字符串() {
    let body: Value = 发送(工具请求(false)).await.json().await.expect("JSON");
    let message = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], TOOL_PREAMBLE);
    let calls = message["tool_calls"].as_array().expect("必须有工具调用");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments = calls[1]["function"]["arguments"]
        .as_str()
        .expect("参数必须是字符串");
    let parsed: Value = serde_json::from_str(arguments).expect("参数必须是合法 JSON");
    assert!(
        parsed["timezone"].is_string(),
        "按 Schema 生成了必填参数：{arguments}"
    );
    assert!(calls[0]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with(TOOL_ID_PREFIX)));
    assert_eq!(body["usage"], 期望用量());
}

#[tokio::test]
async fn anthropic_工具结果往返_历史被上游接受并回复文本() {
    let marker = "往返测试标记";
    let call = |id: &str, name: &str| json!({ "id": id, "type": "function", "function": { "name": name, "arguments": "{\"city\":\"巴黎\"}" } });
    let body = json!({
        "model": CLAUDE, "tools": [ 工具("get_weather", "city"), 工具("get_time", "timezone") ],
        "messages": [
            { "role": "system", "content": marker },
            { "role": "user", "content": "巴黎现在的天气和时间？" },
            { "role": "assistant", "content": "", "tool_calls": [ call("toolu_往返_1", "get_weather"), call("toolu_往返_2", "get_time") ] },
            { "role": "tool", "tool_call_id": "toolu_往返_1", "content": "晴，18°C" },
            { "role": "tool", "tool_call_id": "toolu_往返_2", "content": "下午三点" },
            { "role": "user", "content": "谢谢，总结一下" },
        ],
    });
    let resp = 发送(body).await;
    assert_eq!(
        resp.status(),
        200,
        "模拟器像真实 API 一样校验历史，翻译错误会被拒绝"
    );
    let reply: Value = resp.json().await.expect("JSON");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        回复(),
        "工具结果之后回复文本"
    );
    let sent: Value = serde_json::from_slice(&上游收到(marker).body).expect("JSON");
    let last = &sent["messages"][2];
    assert_eq!(sent["messages"].as_array().map(Vec::len), Some(3));
    assert_eq!(last["content"][0]["tool_use_id"], "toolu_往返_1");
    assert_eq!(last["content"][1]["tool_use_id"], "toolu_往返_2");
    assert_eq!(
        last["content"][2],
        json!({ "type": "text", "text": "谢谢，总结一下" })
    );
    assert_eq!(
        sent["messages"][1]["content"].as_array().map(Vec::len),
        Some(2),
        "空的助手文本不能发送"
    );
}

#[tokio::test]
async fn anthropic_上游收到的请求头与请求体() {
    let marker = "请求头测试标记";
    let body = json!({ "model": CLAUDE, "messages": [
        { "role": "system", "content": format!("{marker}：规则一") },
        { "role": "developer", "content": "规则二" },
        { "role": "user", "content": "你好" },
        { "role": "system", "content": "规则三" },
    ] });
    assert_eq!(发送(body).await.status(), 200);
    let recorded = 上游收到(marker);
    assert_eq!(
        (recorded.method.as_str(), recorded.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(recorded.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(recorded.header("anthropic-version"), Some(API_VERSION));
    assert_eq!(
        recorded.header("authorization"),
        None,
        "Anthropic 用 x-api-key，不发 Bearer"
    );
    assert!(
        !recorded.headers.iter().any(|(_, v)| v.contains(CLIENT_KEY)),
        "客户端密钥不得转发"
    );
    let sent: Value = serde_json::from_slice(&recorded.body).expect("上游收到的必须是 JSON");
    assert_eq!(sent["model"], UPSTREAM_MODEL);
    assert_eq!(
        sent["max_tokens"], TARGET_MAX_TOKENS,
        "客户端没给上限时用目标的 max_tokens"
    );
    let system: Vec<&str> = sent["system"]
        .as_array()
        .expect("system 必须是块数组")
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect();
    assert_eq!(
        system,
        vec![format!("{marker}：规则一").as_str(), "规则二", "规则三"]
    );
    assert_eq!(
        sent["messages"],
        json!([ { "role": "user", "content": [ { "type": "text", "text": "你好" } ] } ])
    );
}

#[tokio::test]
async fn anthropic_上游_529_过载_返回_503_server_error() {
    for stream in [false, true] {
        let e = expect_error(send_chat(CLAUDE_OVERLOADED, stream).await, 503).await;
        assert_eq!(e["type"], "server_error");
        assert_eq!(e["code"], "overloaded");
    }
}

#[tokio::test]
async fn anthropic_流中途断开_一个错误事件且没有_done() {
    let error = expect_stream_cut(CLAUDE_DROP).await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("server_error"), Some("upstream_read_failed"))
    );
}

#[tokio::test]
async fn anthropic_图片_data_url_输入翻译为_base64_来源() {
    let marker = "图片测试标记";
    let content = json!([
        { "type": "text", "text": marker },
        { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
    ]);
    let resp =
        发送(json!({ "model": CLAUDE, "messages": [ { "role": "user", "content": content } ] }))
            .await;
    assert_eq!(resp.status(), 200);
    let sent: Value = serde_json::from_slice(&上游收到(marker).body).expect("JSON");
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({ "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } })
    );
    let bmp =
        json!([ { "type": "image_url", "image_url": { "url": "data:image/bmp;base64,Qk0=" } } ]);
    let e = expect_error(
        发送(json!({ "model": CLAUDE, "messages": [ { "role": "user", "content": bmp } ] })).await,
        400,
    )
    .await;
    assert_eq!(e["param"], "messages[0].content[0].image_url.url");
}
