//! OpenAI Responses 入口（`/v1/responses`）的端到端测试：目标是 OpenAI 时原样透传，其余上游经枢纽翻译，
//! 回复是 Responses 的 `response` 对象或事件流。

use serde_json::{json, Value};

use crate::common::{
    authed, read_sse_events, send_raw, sse_events, upstream_request, CLIENT_KEY, ENV, UPSTREAM_KEY,
};
use crate::support::header;

/// 说 OpenAI Responses 格式的模拟上游（透传）。
const PASSTHROUGH: &str = "oa-resp";
/// Responses 接口。
const RESPONSES: &str = "/v1/responses";

/// 用 Bearer 发送原始请求体。
async fn 发送(body: String) -> reqwest::Response {
    send_raw(authed(&reqwest::Client::new(), ENV.url(RESPONSES)), body).await
}

/// 最小的 Responses 请求体。
fn 请求(model: &str, stream: bool) -> Value {
    json!({ "model": model, "input": "用一句话介绍你自己", "stream": stream })
}

/// 发送流式请求并读出全部事件。
async fn 事件流(body: Value) -> Vec<(String, Value)> {
    read_sse_events(发送(body.to_string()).await).await
}

/// 一个带必填字符串参数的函数工具（Responses 的扁平形状）。
fn 工具(name: &str, param: &str) -> Value {
    json!({ "type": "function", "name": name, "description": "测试工具",
        "parameters": { "type": "object", "properties": { param: { "type": "string" } }, "required": [param] } })
}

/// 事件流的结构检查：序号从 0 严格递增、`event:` 行等于 `type`、第一个是 created、恰好一个终止事件且在最后。
fn 检查结构(events: &[(String, Value)]) -> &Value {
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "{events:?}");
        assert_eq!(
            data["sequence_number"], i,
            "序号必须从 0 连续递增：{events:?}"
        );
    }
    assert_eq!(events[0].0, "response.created");
    let terminals = [
        "response.completed",
        "response.incomplete",
        "response.failed",
    ];
    let count = events
        .iter()
        .filter(|(n, _)| terminals.contains(&n.as_str()))
        .count();
    assert_eq!(count, 1, "恰好一个终止事件：{events:?}");
    let (last, data) = events.last().expect("至少一个事件");
    assert!(terminals.contains(&last.as_str()), "{last}");
    &data["response"]
}

#[tokio::test]
async fn 透传_上游收到的请求体只换了模型名() {
    let marker = "透传标记-丁";
    let raw = format!(
        "{{ \"model\" :\"{PASSTHROUGH}\", \"input\": [ {{\"role\":\"user\",\"content\":\"{marker}\"}}, {{\"type\":\"reasoning\",\"summary\":[],\"encrypted_content\":\"gAAAA加密内容\"}} ],\n \"include\": [\"reasoning.encrypted_content\"], \"prompt_cache_key\": \"线程-1\", \"client_metadata\": {{\"x\": 1}}, \"store\": false }}"
    );
    let resp = 发送(raw.clone()).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let got = upstream_request(PASSTHROUGH, marker);
    let expected = raw.replacen(&format!("\"{PASSTHROUGH}\""), "\"oa-resp\"", 1);
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        expected,
        "模型名相同时一个字节都不能变"
    );
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert!(got.path.ends_with("/v1/responses"), "{}", got.path);
}

#[tokio::test]
async fn 透传_流式事件原样转发() {
    let events = 事件流(请求(PASSTHROUGH, true)).await;
    let response = 检查结构(&events);
    assert_eq!(response["status"], "completed");
    assert_eq!(
        response["usage"]["input_tokens_details"]["cached_tokens"],
        10
    );
}

#[tokio::test]
async fn 翻译_非流式回复是_response_对象() {
    for model in ["fast", "claude", "gem", "az"] {
        let resp = 发送(请求(model, false).to_string()).await;
        assert_eq!(resp.status(), 200, "{model}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(
            (body["object"].as_str(), body["status"].as_str()),
            (Some("response"), Some("completed")),
            "{model}"
        );
        assert_eq!(body["model"], model);
        assert!(
            body["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("resp_")),
            "{body}"
        );
        let message = body["output"]
            .as_array()
            .and_then(|o| o.iter().find(|i| i["type"] == "message"))
            .expect("消息条目");
        assert_eq!(
            message["content"][0]["text"],
            chatnexus::mock::MockSettings::default().reply,
            "{model}"
        );
        let usage = &body["usage"];
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(
                usage["input_tokens"].as_u64().unwrap_or(0)
                    + usage["output_tokens"].as_u64().unwrap_or(0)
            )
        );
    }
}

#[tokio::test]
async fn 翻译_流式事件顺序符合_sdk_的要求() {
    for model in ["fast", "claude", "gem"] {
        let events = 事件流(请求(model, true)).await;
        let response = 检查结构(&events);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            &names[..2],
            ["response.created", "response.in_progress"],
            "{model}"
        );
        let done: Vec<&Value> = events
            .iter()
            .filter(|(n, _)| n == "response.output_item.done")
            .map(|(_, v)| &v["item"])
            .collect();
        let output: Vec<&Value> = response["output"]
            .as_array()
            .expect("output")
            .iter()
            .collect();
        assert_eq!(
            done, output,
            "{model}：终止事件的 output 必须是全部完成的条目"
        );
        let added = names
            .iter()
            .position(|n| *n == "response.content_part.added");
        let first_delta = names
            .iter()
            .position(|n| *n == "response.output_text.delta");
        assert!(
            added < first_delta,
            "{model}：文本增量之前必须有 content_part.added"
        );
        assert!(
            response["usage"]["output_tokens"].as_u64().is_some(),
            "{model}"
        );
    }
}

#[tokio::test]
async fn 翻译_并行函数调用与自由格式工具() {
    let mut body = 请求("gem", true);
    body["tools"] = json!([
        工具("get_weather", "city"),
        { "type": "custom", "name": "apply_patch", "description": "打补丁", "format": { "type": "grammar", "syntax": "lark", "definition": "start: x" } },
        { "type": "web_search", "external_web_access": false }
    ]);
    let events = 事件流(body).await;
    let response = 检查结构(&events);
    let kinds: Vec<&str> = response["output"]
        .as_array()
        .expect("output")
        .iter()
        .map(|i| i["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["function_call", "custom_tool_call"], "{response}");
    let call = &response["output"][0];
    let arguments: Value =
        serde_json::from_str(call["arguments"].as_str().expect("参数字符串")).expect("合法 JSON");
    assert!(arguments["city"].is_string(), "{arguments}");
    assert!(
        response["output"][1]["input"].is_string(),
        "自由格式工具的输入是原样文本：{response}"
    );
}

#[tokio::test]
async fn 翻译_工具结果回合_连续调用并进一条助手消息() {
    let marker = "工具结果标记-戊";
    let body = json!({ "model": "fast", "input": [
        { "role": "user", "content": "巴黎天气与时间？" },
        { "type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": "{\"city\":\"巴黎\"}" },
        { "type": "function_call", "call_id": "call_b", "name": "get_time", "arguments": "{}" },
        { "type": "function_call_output", "call_id": "call_a", "output": "晴" },
        { "type": "function_call_output", "call_id": "call_b", "output": marker } ],
        "tools": [工具("get_weather", "city"), 工具("get_time", "timezone")] });
    let resp = 发送(body.to_string()).await;
    assert_eq!(resp.status(), 200);
    let sent: Value = serde_json::from_slice(&upstream_request("fast", marker).body).expect("JSON");
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool"], "{sent}");
    assert_eq!(
        sent["messages"][1]["tool_calls"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn 翻译_上游流中断开_恰好一个_response_failed() {
    let events = 事件流(请求("claude-drop", true)).await;
    let response = 检查结构(&events);
    assert_eq!(
        events.last().map(|(n, _)| n.as_str()),
        Some("response.failed")
    );
    assert_eq!(response["status"], "failed");
    assert!(response["error"]["code"].is_string(), "{response}");
}

#[tokio::test]
async fn 透传_上游流中断开_补一个错误事件() {
    let resp = 发送(请求("oa-resp-drop", true).to_string()).await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.expect("读取流"));
    assert_eq!(
        events.last().map(|(n, _)| n.as_str()),
        Some("error"),
        "{events:?}"
    );
    assert!(events.iter().all(|(n, _)| n != "response.completed"));
}

#[tokio::test]
async fn 错误_是_openai_信封_没有存储时上一轮回复_id_返回_400() {
    let missing = 发送(请求("不存在的模型", false).to_string()).await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "model_not_found");
    let bad = 发送(json!({ "model": "fast", "input": 5 }).to_string()).await;
    assert_eq!(bad.status(), 400);
    let mut previous = 请求("claude", false);
    previous["previous_response_id"] = json!("resp_不存在");
    let resp = 发送(previous.to_string()).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["error"]["param"].as_str()
        ),
        (
            Some("previous_response_not_found"),
            Some("previous_response_id")
        )
    );
    let lookup = reqwest::Client::new()
        .get(ENV.url("/v1/responses/resp_1"))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(lookup.status(), 404, "没有配置存储时读不到任何回复");
}

#[tokio::test]
async fn 计量_同一个上游交换_三种方言的用量与费用相同() {
    use crate::metrics::{sample, scrape, tokens, wait_for};
    let model = "claude-trio";
    let chat = json!({ "model": model, "messages": [{ "role": "user", "content": "同一个问题" }] });
    let messages = json!({ "model": model, "max_tokens": 64, "messages": [{ "role": "user", "content": "同一个问题" }] });
    let responses = json!({ "model": model, "input": "同一个问题" });
    let mut per_dialect = Vec::new();
    for (path, body, dialect) in [
        ("/v1/chat/completions", chat, "chat"),
        ("/v1/messages", messages, "messages"),
        (RESPONSES, responses, "responses"),
    ] {
        let count = |t: &str| {
            sample(
                t,
                "llm_requests_total",
                &[("model", model), ("dialect", dialect)],
            )
        };
        let before = scrape().await;
        let resp = reqwest::Client::new()
            .post(ENV.url(path))
            .bearer_auth(CLIENT_KEY)
            .json(&body)
            .send()
            .await
            .expect("请求失败");
        assert_eq!(resp.status(), 200, "{dialect}");
        resp.text().await.expect("读完回复");
        let after = wait_for(|t| count(t) >= count(&before) + 1.0).await;
        let delta: Vec<f64> = ["input", "output", "cached", "reasoning"]
            .iter()
            .map(|k| tokens(&after, model, k) - tokens(&before, model, k))
            .collect();
        let cost = |t: &str| sample(t, "llm_cost_usd_total", &[("model", model)]);
        per_dialect.push((dialect, delta, cost(&after) - cost(&before)));
    }
    assert_eq!(
        per_dialect[0].1,
        vec![30.0, 12.0, 10.0, 5.0],
        "{per_dialect:?}"
    );
    assert!(
        per_dialect
            .iter()
            .all(|(_, d, c)| *d == per_dialect[0].1 && (*c - per_dialect[0].2).abs() < 1e-12),
        "{per_dialect:?}"
    );
}

#[tokio::test]
async fn 保活_上游沉默时补_response_in_progress() {
    let events = 事件流(请求("sluggish", true)).await;
    let response = 检查结构(&events);
    assert_eq!(response["status"], "completed");
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let first_delta = names
        .iter()
        .position(|n| *n == "response.output_text.delta")
        .expect("有文本增量");
    let beats = names[first_delta..]
        .iter()
        .filter(|n| **n == "response.in_progress")
        .count();
    assert!(
        beats >= 1,
        "块之间上游沉默了很久，应补 response.in_progress：{names:?}"
    );
    let ids: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "response.in_progress")
        .map(|(_, v)| &v["response"]["id"])
        .collect();
    assert!(
        ids.iter().all(|id| *id == &response["id"]),
        "保活事件带同一个回复 id"
    );
}

#[tokio::test]
async fn 翻译_丢弃的内置工具_写进响应头_透传时没有() {
    let mut body = 请求("gem", false);
    body["tools"] = json!([工具("get_weather", "city"), { "type": "web_search", "external_web_access": false }]);
    body["prompt_cache_key"] = json!("线程-2");
    let resp = 发送(body.to_string()).await;
    assert_eq!(resp.status(), 200);
    let dropped = header(&resp, "x-chatnexus-dropped");
    assert!(
        dropped.contains("tools.web_search") && dropped.contains("prompt_cache_key"),
        "{dropped}"
    );
    body["model"] = json!(PASSTHROUGH);
    let resp = 发送(body.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-chatnexus-dropped"), "", "透传时什么都不丢");
}
