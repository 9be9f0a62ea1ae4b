//! Anthropic Messages 入口（`/v1/messages`、`/v1/messages/count_tokens`）的端到端测试：
//! 目标是 Anthropic 时原样透传，其余上游经枢纽格式翻译，错误都是 Anthropic 的形状。

use serde_json::{json, Value};

use crate::common::{
    read_sse_events, send_raw, sse_events, upstream_request, CLIENT_KEY, ENV, UPSTREAM_KEY,
};
use crate::support::header;

/// 透传到的模拟上游（说 Anthropic 格式，用量：输入 30、缓存读取 10、输出 12）。
const CLAUDE: &str = "claude";
/// 目标配置的上游模型名。
const UPSTREAM_MODEL: &str = "claude-sonnet-4-5";
/// 说 OpenAI 兼容格式的模拟上游（经枢纽翻译）。
const OPENAI_TARGET: &str = "fast";
/// Messages 接口。
const MESSAGES: &str = "/v1/messages";
/// count_tokens 接口。
const COUNT_TOKENS: &str = "/v1/messages/count_tokens";
/// Claude Code 发送的 beta 头。
const BETAS: &str =
    "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27";

/// 用 `x-api-key`（Claude Code 与 SDK 的方式）发送原始请求体。
async fn 发送(path: &str, body: String) -> reqwest::Response {
    let request = reqwest::Client::new()
        .post(ENV.url(path))
        .header("x-api-key", CLIENT_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", BETAS);
    send_raw(request, body).await
}

/// 最小的 Messages 请求体。
fn 请求(model: &str, stream: bool) -> Value {
    json!({ "model": model, "max_tokens": 256, "stream": stream,
        "messages": [ { "role": "user", "content": "用一句话介绍你自己" } ] })
}

#[tokio::test]
async fn 透传_上游收到的请求体只换了模型名_请求头原样转发() {
    let marker = "透传标记-甲";
    // 客户端的写法（空白、字段顺序、网关不认识的字段、缓存标记与思考设置）都必须原样到达上游
    let raw = format!(
        "{{ \"model\" : \"{CLAUDE}\",\n  \"max_tokens\": 32000,\n  \"system\": [{{\"type\":\"text\",\"text\":\"x-anthropic-billing-header: cc_version=1;\"}},{{\"type\":\"text\",\"text\":\"你是助手\",\"cache_control\":{{\"type\":\"ephemeral\"}}}}],\n  \"messages\": [{{\"role\":\"user\",\"content\":\"{marker}\"}}],\n  \"thinking\": {{\"type\":\"enabled\",\"budget_tokens\":31999,\"display\":\"omitted\"}},\n  \"context_management\": {{\"edits\":[{{\"type\":\"clear_thinking_20251015\",\"keep\":\"all\"}}]}},\n  \"temperature\": 1.0e0 }}"
    );
    let resp = 发送(MESSAGES, raw.clone()).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let got = upstream_request(CLAUDE, marker);
    let expected = raw.replacen(
        &format!("\"{CLAUDE}\""),
        &format!("\"{UPSTREAM_MODEL}\""),
        1,
    );
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        expected,
        "除模型名外一个字节都不能变"
    );
    assert_eq!(got.header("anthropic-beta"), Some(BETAS));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        got.header("x-api-key"),
        Some(UPSTREAM_KEY),
        "上游收到网关的密钥"
    );
    assert!(got.path.ends_with(MESSAGES), "{}", got.path);
}

#[tokio::test]
async fn 透传_非流式回复原样返回_用量不经翻译() {
    let resp = 发送(MESSAGES, 请求(CLAUDE, false).to_string()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["type"], "message");
    assert_eq!(body["model"], UPSTREAM_MODEL, "透传不改上游的回复");
    assert_eq!(body["usage"]["cache_read_input_tokens"], 10);
    assert_eq!(body["usage"]["output_tokens"], 12);
}

#[tokio::test]
async fn 透传_流式事件原样转发_以_message_stop_结束() {
    let resp = 发送(MESSAGES, 请求(CLAUDE, true).to_string()).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    let events = sse_events(&resp.text().await.expect("读取流"));
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(
        events
            .iter()
            .all(|(n, v)| !n.is_empty() && v["type"] == n.as_str()),
        "{names:?}"
    );
    let delta = events
        .iter()
        .find(|(n, _)| n == "message_delta")
        .expect("message_delta");
    assert_eq!(delta.1["usage"]["output_tokens"], 12);
}

#[tokio::test]
async fn 透传_上游的错误回复原样返回() {
    let resp = 发送(MESSAGES, 请求("claude-529", false).to_string()).await;
    assert_eq!(resp.status(), 529, "Anthropic 的过载状态码原样转告");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("模拟的上游故障")),
        "错误原文来自上游：{body}"
    );
}

#[tokio::test]
async fn 透传_上游流中断开_补一个具名的错误事件() {
    let resp = 发送(MESSAGES, 请求("claude-drop", true).to_string()).await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.expect("读取流"));
    let (name, last) = events.last().expect("至少一个事件");
    assert_eq!(name, "error", "{events:?}");
    assert_eq!(last["type"], "error");
    assert_eq!(last["error"]["type"], "api_error");
    assert!(
        events.iter().all(|(n, _)| n != "message_stop"),
        "截断的流不能以 message_stop 结束"
    );
}

#[tokio::test]
async fn 透传_上游流中报错_错误事件只出现一次() {
    let resp = 发送(MESSAGES, 请求("inband-claude", true).to_string()).await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.expect("读取流"));
    let errors = events.iter().filter(|(n, _)| n == "error").count();
    assert_eq!(
        errors, 1,
        "上游的错误事件已原样转发，网关不能再写一个：{events:?}"
    );
}

#[tokio::test]
async fn 错误_是_anthropic_的形状() {
    let client = reqwest::Client::new();
    let resp = client
        .post(ENV.url(MESSAGES))
        .header("x-api-key", "sk-错误的密钥")
        .json(&请求(CLAUDE, false))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 401);
    let id = header(&resp, "request-id").to_string();
    assert!(
        id.starts_with("req_"),
        "anthropic SDK 从 request-id 头读请求 id：{id:?}"
    );
    assert_eq!(header(&resp, "x-request-id"), id);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("authentication_error"))
    );
    let missing = 发送(MESSAGES, 请求("不存在的模型", false).to_string()).await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("JSON");
    assert_eq!(body["error"]["type"], "not_found_error");
    let bad = 发送(MESSAGES, "{不是 JSON".to_string()).await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.expect("JSON");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn 计数_anthropic_目标转发给上游_其他目标本地估算并标明() {
    let body = json!({ "model": CLAUDE, "system": "你是助手",
        "messages": [ { "role": "user", "content": "计数标记" } ] });
    let resp = 发送(COUNT_TOKENS, body.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-chatnexus-token-count"),
        "",
        "上游计数不标估算"
    );
    let counted: Value = resp.json().await.expect("JSON");
    assert!(
        counted["input_tokens"].as_u64().is_some_and(|n| n > 0),
        "{counted}"
    );
    let got = upstream_request(CLAUDE, "计数标记");
    assert!(got.path.ends_with(COUNT_TOKENS), "{}", got.path);
    let mut other = body.clone();
    other["model"] = json!(OPENAI_TARGET);
    let resp = 发送(COUNT_TOKENS, other.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-chatnexus-token-count"), "estimated");
    let estimated: Value = resp.json().await.expect("JSON");
    assert!(
        estimated["input_tokens"].as_u64().is_some_and(|n| n >= 8),
        "{estimated}"
    );
}

/// 发送请求并读出全部 Anthropic 事件。
async fn 事件流(body: Value) -> Vec<(String, Value)> {
    read_sse_events(发送(MESSAGES, body.to_string()).await).await
}

/// 一个带必填字符串参数的 Anthropic 工具定义。
fn 工具(name: &str, param: &str) -> Value {
    json!({ "name": name, "description": "测试工具", "input_schema": {
        "type": "object", "properties": { param: { "type": "string" } }, "required": [param] } })
}

#[tokio::test]
async fn 翻译_非流式回复是_message_对象() {
    let resp = 发送(MESSAGES, 请求(OPENAI_TARGET, false).to_string()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        (body["type"].as_str(), body["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    assert_eq!(body["model"], OPENAI_TARGET, "回复用客户端请求的模型名");
    assert!(
        body["id"].as_str().is_some_and(|id| id.starts_with("msg_")),
        "{body}"
    );
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(
        body["content"][0]["text"],
        chatnexus::mock::MockSettings::default().reply
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(
        body["usage"]["output_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{body}"
    );
}

#[tokio::test]
async fn 翻译_流式事件顺序与_anthropic_一致() {
    let events = 事件流(请求(OPENAI_TARGET, true)).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..2], ["message_start", "ping"], "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "message_start").count(), 1);
    let tail = &names[names.len() - 3..];
    assert_eq!(
        tail,
        ["content_block_stop", "message_delta", "message_stop"],
        "{names:?}"
    );
    assert!(
        events.iter().all(|(n, v)| v["type"] == n.as_str()),
        "每个事件都带 event: 行"
    );
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, v)| {
            assert_eq!(v["index"], 0);
            v["delta"]["text"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(text, chatnexus::mock::MockSettings::default().reply);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(
        delta["usage"]["output_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{delta}"
    );
}

#[tokio::test]
async fn 翻译_并行工具调用_各成一个_tool_use_块() {
    for model in ["gem", "az", OPENAI_TARGET] {
        let mut body = 请求(model, true);
        body["tools"] = json!([工具("get_weather", "city"), 工具("get_time", "timezone")]);
        let events = 事件流(body).await;
        let starts: Vec<&Value> = events
            .iter()
            .filter(|(n, v)| n == "content_block_start" && v["content_block"]["type"] == "tool_use")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(starts.len(), 2, "{model}：{events:?}");
        for start in starts {
            let index = &start["index"];
            let arguments: String = events
                .iter()
                .filter(|(n, v)| n == "content_block_delta" && &v["index"] == index)
                .map(|(_, v)| {
                    v["delta"]["partial_json"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            let parsed: Value =
                serde_json::from_str(&arguments).expect("拼出的参数必须是合法 JSON");
            assert!(parsed.is_object(), "{model}：{arguments}");
        }
        let delta = events
            .iter()
            .find(|(n, _)| n == "message_delta")
            .expect("message_delta");
        assert_eq!(delta.1["delta"]["stop_reason"], "tool_use", "{model}");
    }
}

#[tokio::test]
async fn 翻译_两个工具结果_各成一条_tool_消息() {
    let marker = "工具结果标记-乙";
    let body = json!({ "model": OPENAI_TARGET, "max_tokens": 128, "messages": [
        { "role": "user", "content": "巴黎天气与时间？" },
        { "role": "assistant", "content": [
            { "type": "text", "text": "我来查。" },
            { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "巴黎" } },
            { "type": "tool_use", "id": "toolu_2", "name": "get_time", "input": { "timezone": "CET" } } ] },
        { "role": "user", "content": [
            { "type": "tool_result", "tool_use_id": "toolu_1", "content": "晴" },
            { "type": "tool_result", "tool_use_id": "toolu_2", "content": [ { "type": "text", "text": "15:00" } ], "is_error": false },
            { "type": "text", "text": marker } ] } ],
        "tools": [工具("get_weather", "city"), 工具("get_time", "timezone")] });
    let resp = 发送(MESSAGES, body.to_string()).await;
    assert_eq!(resp.status(), 200);
    let got = upstream_request(OPENAI_TARGET, marker);
    let sent: Value = serde_json::from_slice(&got.body).expect("上游请求是 JSON");
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "tool", "tool", "user"],
        "{sent}"
    );
    assert_eq!(
        sent["messages"][1]["tool_calls"][1]["function"]["arguments"],
        r#"{"timezone":"CET"}"#
    );
    assert_eq!(sent["messages"][3]["tool_call_id"], "toolu_2");
}

#[tokio::test]
async fn 故障转移_透传的目标过载时换到翻译的目标() {
    let resp = 发送(MESSAGES, 请求("pair-529", false).to_string()).await;
    assert_eq!(resp.status(), 200, "第一个目标 529，第二个目标应答");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        body["type"], "message",
        "换到 OpenAI 目标后仍是 Anthropic 的形状：{body}"
    );
    assert_eq!(body["model"], "pair-529");
}

#[tokio::test]
async fn 指标_透传的用量含缓存读取_精确计入() {
    use crate::metrics::{sample, scrape, tokens, wait_for};
    let model = "claude-metered";
    let requests = |t: &str| {
        sample(
            t,
            "llm_requests_total",
            &[("model", model), ("dialect", "messages")],
        )
    };
    let before = scrape().await;
    for stream in [false, true] {
        let resp = 发送(MESSAGES, 请求(model, stream).to_string()).await;
        assert_eq!(resp.status(), 200);
        resp.text().await.expect("读完回复");
    }
    let after = wait_for(|t| requests(t) >= requests(&before) + 2.0).await;
    assert_eq!(requests(&after) - requests(&before), 2.0);
    for (kind, per_request) in [
        ("input", 30.0),
        ("output", 12.0),
        ("cached", 10.0),
        ("reasoning", 5.0),
    ] {
        assert_eq!(
            tokens(&after, model, kind) - tokens(&before, model, kind),
            2.0 * per_request,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn 输出上限_claude_code_要的_32000_截到目标的上限() {
    let marker = "上限标记-丙";
    let mut body = 请求("有上限", false);
    body["max_tokens"] = json!(32000);
    body["messages"][0]["content"] = json!(marker);
    let resp = 发送(MESSAGES, body.to_string()).await;
    assert_eq!(resp.status(), 200);
    let got = upstream_request(OPENAI_TARGET, marker);
    let sent: Value = serde_json::from_slice(&got.body).expect("上游请求是 JSON");
    assert_eq!(sent["max_tokens"], crate::common::CAPPED_OUTPUT);
}

#[tokio::test]
async fn 保活_上游沉默时补_ping_事件() {
    let events =
        crate::common::read_sse_events(发送(MESSAGES, 请求("sluggish", true).to_string()).await)
            .await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let first_delta = names
        .iter()
        .position(|n| *n == "content_block_delta")
        .expect("有文本增量");
    let pings = names[first_delta..]
        .iter()
        .filter(|n| **n == "ping")
        .count();
    assert!(pings >= 1, "块之间上游沉默了很久，应补 ping：{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
}

#[tokio::test]
async fn 计数_gemini_目标问它的_count_tokens_系统提示与工具另行估算() {
    let marker = "计数标记-己";
    let body = json!({ "model": "gem", "system": "你是助手".repeat(50),
        "messages": [ { "role": "user", "content": marker } ] });
    let resp = 发送(COUNT_TOKENS, body.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-chatnexus-token-count"),
        "",
        "对话内容由上游计数"
    );
    let counted: Value = resp.json().await.expect("JSON");
    let got = upstream_request("gem", marker);
    assert!(got.path.ends_with(":countTokens"), "{}", got.path);
    let sent: Value = serde_json::from_slice(&got.body).expect("JSON");
    assert!(
        sent.get("systemInstruction").is_none(),
        "Developer API 的计数只接受 contents：{sent}"
    );
    assert!(
        counted["input_tokens"].as_u64().is_some_and(|n| n > 200),
        "系统提示的估算要加上：{counted}"
    );
}
