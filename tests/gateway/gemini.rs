//! Gemini 上游：经网关访问说 Gemini 线上格式的模拟器，检查请求翻译、响应与流的翻译、错误映射。

use serde_json::{json, Value};

use chatnexus::mock::Recorded;

use crate::common::{
    authed, expect_error, expect_stream_cut, send_chat, sse_payloads, stream_content, CLIENT_KEY,
    ENV, UPSTREAM_KEY,
};
use crate::support::body::{chat_body, chat_body_saying};

/// 模拟器的缺省回复。
const MOCK_REPLY: &str = "你好！我是 ChatNexus 内置的模拟上游，这条回复没有调用任何真实模型。";
/// 配置了用量数字的 Gemini 模拟上游（同名模型）。
const GEM: &str = "gem";
/// 模拟器给第一个函数调用的思维签名。
const MOCK_SIGNATURE: &str = "c2lnLTA=";
/// 网关发给模拟器的流式路径（目标模型为 gemini-2.5-flash）。
const STREAM_PATH: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

/// 两个必填参数为“城市”的工具。
fn 工具定义() -> Value {
    let parameters = json!({ "type": "object", "properties": { "城市": { "type": "string" } }, "required": ["城市"] });
    json!([
        { "type": "function", "function": { "name": "查天气", "description": "查询天气", "parameters": parameters, "strict": true } },
        { "type": "function", "function": { "name": "查时间", "description": "查询当地时间", "parameters": parameters } },
    ])
}

/// 带唯一标记文本的请求体（用标记在模拟器的记录里找到这次请求）。
fn 带标记(marker: &str, stream: bool) -> Value {
    chat_body_saying(GEM, stream, marker)
}

async fn 发送(body: &Value) -> reqwest::Response {
    authed(&reqwest::Client::new(), ENV.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("请求失败")
}

/// 模拟器最近收到的、请求体含有标记的请求。
fn 上游收到的(marker: &str) -> Recorded {
    ENV.mock(GEM)
        .recent()
        .into_iter()
        .rev()
        .find(|r| String::from_utf8_lossy(&r.body).contains(marker))
        .expect("模拟器必须收到带标记的请求")
}

/// 流的全部 JSON 事件（不含 `[DONE]`）。
fn 事件(payloads: &[String]) -> Vec<Value> {
    payloads
        .iter()
        .filter(|p| p.as_str() != "[DONE]")
        .map(|p| serde_json::from_str(p).expect("每个事件都必须是 JSON"))
        .collect()
}

/// 流中所有非空的结束原因。
fn 结束原因(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            e["choices"][0]["finish_reason"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// 断言用量是测试环境为 `gem` 配置的数字。
fn 断言用量(usage: &Value) {
    assert_eq!(usage["prompt_tokens"], 30, "输入 token：{usage}");
    assert_eq!(
        usage["completion_tokens"], 12,
        "输出 token 应含思考：{usage}"
    );
    assert_eq!(usage["total_tokens"], 42, "总数应为两者之和：{usage}");
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 10);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 5);
}

#[tokio::test]
async fn 非流式_文本回复与用量换算() {
    let resp = send_chat(GEM, false).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("响应必须是 JSON");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], GEM, "模型名应为客户端请求的名字");
    assert!(body["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-")));
    assert_eq!(body["choices"][0]["message"]["content"], MOCK_REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    断言用量(&body["usage"]);
}

#[tokio::test]
async fn 流式_文本完整_只有一个结束块_以_done_结束() {
    let resp = send_chat(GEM, true).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("读取流失败");
    let payloads = sse_payloads(&text);
    assert_eq!(
        payloads.last().map(String::as_str),
        Some("[DONE]"),
        "流必须以 [DONE] 结束：{text}"
    );
    assert_eq!(stream_content(&payloads), MOCK_REPLY);
    let events = 事件(&payloads);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(结束原因(&events), vec!["stop"], "只能有一个结束块：{text}");
    assert!(
        events.iter().all(|e| e["id"] == events[0]["id"]),
        "全部块的 id 必须相同"
    );
    assert!(
        events.iter().all(|e| e.get("usage").is_none()),
        "未要求时不能有用量块"
    );
}

#[tokio::test]
async fn 流式_要求用量时恰好一个用量块在_done_之前() {
    let mut body = chat_body(GEM, true);
    body["stream_options"] = json!({ "include_usage": true });
    let text = 发送(&body).await.text().await.expect("读取流失败");
    let payloads = sse_payloads(&text);
    let events = 事件(&payloads);
    let usage_chunks: Vec<&Value> = events.iter().filter(|e| e.get("usage").is_some()).collect();
    assert_eq!(usage_chunks.len(), 1, "必须恰好一个用量块：{text}");
    let position = payloads.len() - 2;
    assert!(
        payloads[position].contains("\"usage\""),
        "用量块必须紧挨在 [DONE] 之前：{text}"
    );
    assert_eq!(usage_chunks[0]["choices"], json!([]));
    断言用量(&usage_chunks[0]["usage"]);
    assert_eq!(结束原因(&events), vec!["stop"]);
}

#[tokio::test]
async fn 流式_并行工具调用_索引为0和1_id各不相同() {
    let mut body = 带标记("流式并行工具调用", true);
    body["tools"] = 工具定义();
    let text = 发送(&body).await.text().await.expect("读取流失败");
    let events = 事件(&sse_payloads(&text));
    let calls: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    let indices: Vec<u64> = calls.iter().filter_map(|c| c["index"].as_u64()).collect();
    assert_eq!(indices, vec![0, 1], "两个调用的索引必须是 0 和 1：{text}");
    assert_ne!(calls[0]["id"], calls[1]["id"], "调用 id 必须各不相同");
    assert_eq!(calls[0]["function"]["name"], "查天气");
    assert_eq!(calls[1]["function"]["name"], "查时间");
    for call in &calls {
        let arguments = call["function"]["arguments"]
            .as_str()
            .expect("参数必须是字符串");
        let parsed: Value = serde_json::from_str(arguments).expect("参数必须是 JSON");
        assert_eq!(parsed, json!({ "城市": "巴黎" }));
    }
    assert_eq!(
        结束原因(&events),
        vec!["tool_calls"],
        "STOP 加函数调用应映射为 tool_calls"
    );
}

#[tokio::test]
async fn 非流式_并行工具调用_内容为_null_结束原因为_tool_calls() {
    let mut body = 带标记("非流式并行工具调用", false);
    body["tools"] = 工具定义();
    let reply: Value = 发送(&body).await.json().await.expect("响应必须是 JSON");
    let message = &reply["choices"][0]["message"];
    assert!(
        message["content"].is_null(),
        "只有工具调用时内容为 null：{reply}"
    );
    let calls = message["tool_calls"].as_array().expect("必须有工具调用");
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    assert!(calls.iter().all(|c| c["function"]["arguments"].is_string()));
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn 工具结果往返_函数名找回_思维签名原样回传() {
    let marker = "往返测试：巴黎天气如何";
    let mut body = 带标记(marker, false);
    body["tools"] = 工具定义();
    let first: Value = 发送(&body).await.json().await.expect("响应必须是 JSON");
    let assistant = first["choices"][0]["message"].clone();
    let calls = assistant["tool_calls"]
        .as_array()
        .cloned()
        .expect("第一轮必须调用工具");
    let messages = body["messages"].as_array_mut().expect("消息数组");
    messages.push(assistant);
    for (call, output) in calls.iter().zip(["晴，18 度", "下午三点"]) {
        messages.push(json!({ "role": "tool", "tool_call_id": call["id"], "content": output }));
    }
    let second = 发送(&body).await;
    assert_eq!(second.status(), 200, "模拟器必须接受函数响应的数量");
    let reply: Value = second.json().await.expect("响应必须是 JSON");
    assert_eq!(reply["choices"][0]["message"]["content"], MOCK_REPLY);
    let sent: Value = serde_json::from_slice(&上游收到的("下午三点").body).expect("JSON");
    let model_parts = &sent["contents"][1]["parts"];
    assert_eq!(
        model_parts[0]["thoughtSignature"], MOCK_SIGNATURE,
        "签名必须回到第一个调用旁边"
    );
    assert!(
        model_parts[1].get("thoughtSignature").is_none(),
        "第二个调用没有签名"
    );
    let responses = &sent["contents"][2];
    assert_eq!(responses["role"], "user");
    assert_eq!(responses["parts"][0]["functionResponse"]["name"], "查天气");
    assert_eq!(responses["parts"][1]["functionResponse"]["name"], "查时间");
    assert_eq!(
        responses["parts"][0]["functionResponse"]["response"]["output"],
        "晴，18 度"
    );
}

#[tokio::test]
async fn 上游收到的请求_密钥只在请求头里_路径为流式方法() {
    let marker = "检查上游收到的请求";
    let mut body = 带标记(marker, true);
    body["messages"] = json!([ { "role": "system", "content": "你是简洁的助手" }, { "role": "user", "content": marker } ]);
    let text = 发送(&body).await.text().await.expect("读取流失败");
    assert!(text.ends_with("data: [DONE]\n\n"), "流必须正常结束：{text}");
    let recorded = 上游收到的(marker);
    assert_eq!(recorded.path, STREAM_PATH);
    assert!(!recorded.path.contains("key="), "密钥不得出现在查询串中");
    assert_eq!(recorded.header("x-goog-api-key"), Some(UPSTREAM_KEY));
    assert!(
        recorded.header("authorization").is_none(),
        "不得发送 Authorization 头"
    );
    assert!(
        !recorded.headers.iter().any(|(_, v)| v.contains(CLIENT_KEY)),
        "客户端密钥不得转发给上游"
    );
    let sent: Value = serde_json::from_slice(&recorded.body).expect("上游收到的必须是 JSON");
    assert_eq!(
        sent["systemInstruction"]["parts"][0]["text"],
        "你是简洁的助手"
    );
    assert_eq!(
        sent["contents"],
        json!([ { "role": "user", "parts": [ { "text": marker } ] } ])
    );
}

#[tokio::test]
async fn 限流_429_按_retry_info_返回_retry_after_3() {
    let resp = send_chat("gem-429", false).await;
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(retry_after.as_deref(), Some("3"), "2.5 秒应向上取整为 3 秒");
    let error = expect_error(resp, 429).await;
    assert_eq!(error["code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn 无效上游密钥_返回_502_upstream_auth_failed() {
    let error = expect_error(send_chat("gem-badkey", false).await, 502).await;
    assert_eq!(error["code"], "upstream_auth_failed");
}

#[tokio::test]
async fn 流中途断开_客户端收到一个错误事件且没有_done() {
    let error = expect_stream_cut("gem-drop").await;
    assert_eq!(error["code"], "upstream_read_failed");
}

#[tokio::test]
async fn 图片_data_url_转为_inline_data() {
    let marker = "这张图片里有什么";
    let mut body = 带标记(marker, false);
    body["messages"][0]["content"] = json!([
        { "type": "text", "text": marker },
        { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
    ]);
    let resp = 发送(&body).await;
    assert_eq!(resp.status(), 200);
    let sent: Value = serde_json::from_slice(&上游收到的(marker).body).expect("JSON");
    assert_eq!(
        sent["contents"][0]["parts"][1],
        json!({ "inlineData": { "mimeType": "image/png", "data": "iVBORw0KGgo=" } })
    );
}
