//! OpenAI Responses 模拟器：非流式与流式文本、并行函数调用、工具结果之后的文本、流中错误、认证与校验错误。

use futures_util::StreamExt;
use once_cell::sync::Lazy;
use serde_json::{json, Value};

use chatnexus::mock::{Fault, MockSettings};

use crate::support::expect_error;
use crate::support::gateway::Emulators;

/// 正常应答的模拟上游。
const NORMAL: &str = "正常";
/// 发出一个增量后以 `response.failed` 结束流的模拟上游。
const FAILING: &str = "流中出错";
/// Responses 接口相对模拟器地址的路径（提供方 base_url 为 `…/v1`）。
const RESPONSES_PATH: &str = "/v1/responses";
/// 请求里的模型（回复应原样回显）。
const MODEL: &str = "gpt-5.3-codex";
/// 测试用的密钥。
const KEY: &str = "sk-mock-responses-test";
/// 模拟器的回复文本。
const REPLY: &str = "你好，世界！";
/// 正常模拟上游报告的输入、缓存、输出与推理 token 数。
const USAGE: (u64, u64, u64, u64) = (30, 10, 12, 5);

/// 整个测试进程共用的模拟上游（单独运行，不经网关）。
static MOCKS: Lazy<Emulators> = Lazy::new(|| {
    let (prompt, cached, completion, reasoning) = USAGE;
    let normal = MockSettings {
        chunks: 3,
        reply: REPLY.to_string(),
        prompt_tokens: Some(prompt),
        cached_tokens: cached,
        completion_tokens: Some(completion),
        reasoning_tokens: reasoning,
        ..MockSettings::default()
    };
    let failing = MockSettings {
        fault: Some(Fault::ErrorAfter(1)),
        ..normal.clone()
    };
    let mut mocks = Emulators::default();
    mocks.add(NORMAL, normal);
    mocks.add(FAILING, failing);
    mocks.run_alone();
    mocks
});

/// 向模拟上游 `name` 发送请求体；`key` 为 `None` 时不带 Authorization 头。
async fn 发送(name: &str, body: &Value, key: Option<&str>) -> reqwest::Response {
    let url = format!("{}{RESPONSES_PATH}", MOCKS.url(name));
    let mut request = reqwest::Client::new().post(url).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("请求模拟上游失败")
}

/// 读完流（对端断开时读到哪里算哪里），按空行切分事件，返回（`event:` 行的名称, data 的 JSON）。
async fn 事件(resp: reqwest::Response) -> Vec<(String, Value)> {
    assert_eq!(resp.status().as_u16(), 200, "流式请求应成功");
    let mut text = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(Ok(chunk)) = body.next().await {
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text)
        .expect("流必须是 UTF-8")
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "));
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            let data =
                serde_json::from_str(data.expect("每个事件都有 data 行")).expect("data 是 JSON");
            (name.expect("每个事件都有 event 行").to_string(), data)
        })
        .collect()
}

/// 事件的类型序列（同时断言 `event:` 行与 JSON 里的 `type` 一致、序号从 0 起逐个递增）。
fn 类型序列(events: &[(String, Value)]) -> Vec<String> {
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], json!(name), "event 行与 type 不一致：{data}");
        assert_eq!(data["sequence_number"], json!(i), "序号应逐个递增：{data}");
    }
    events.iter().map(|(name, _)| name.clone()).collect()
}

/// 带一条用户消息的请求体。
fn 请求(stream: bool) -> Value {
    json!({
        "model": MODEL, "instructions": "你是模拟测试的助手", "stream": stream, "store": false,
        "input": [ { "type": "message", "role": "user", "content": [ { "type": "input_text", "text": "你好" } ] } ],
        "client_metadata": { "未知字段": "应被接受" },
    })
}

/// 断言用量是正常模拟上游配置的数字。
fn 断言用量(usage: &Value) {
    let (prompt, cached, completion, reasoning) = USAGE;
    assert_eq!(usage["input_tokens"], prompt, "{usage}");
    assert_eq!(
        usage["input_tokens_details"]["cached_tokens"], cached,
        "{usage}"
    );
    assert_eq!(usage["output_tokens"], completion, "{usage}");
    assert_eq!(
        usage["output_tokens_details"]["reasoning_tokens"], reasoning,
        "{usage}"
    );
    assert_eq!(usage["total_tokens"], prompt + completion, "{usage}");
}

#[tokio::test]
async fn 非流式_文本回复_回显模型与指令_推理项在消息之前() {
    let resp = 发送(NORMAL, &请求(false), Some(KEY)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("响应是 JSON");
    assert_eq!(
        (body["object"].clone(), body["status"].clone()),
        (json!("response"), json!("completed"))
    );
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("resp_mock_")),
        "{body}"
    );
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["instructions"], "你是模拟测试的助手");
    assert_eq!(body["store"], false);
    assert_eq!(
        body["output"][0]["type"], "reasoning",
        "推理 token 大于零时先有推理项"
    );
    assert_eq!(body["output"][1]["type"], "message");
    assert_eq!(body["output"][1]["content"][0]["text"], REPLY);
    断言用量(&body["usage"]);
}

#[tokio::test]
async fn 流式_文本_事件顺序与序号_completed_带完整输出与用量() {
    let events = 事件(发送(NORMAL, &请求(true), Some(KEY)).await).await;
    let kinds = 类型序列(&events);
    let expected_tail = [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ];
    assert_eq!(kinds[..2], ["response.created", "response.in_progress"]);
    assert_eq!(kinds[kinds.len() - expected_tail.len()..], expected_tail);
    let text: String = events
        .iter()
        .filter(|(k, _)| k == "response.output_text.delta")
        .filter_map(|(_, e)| e["delta"].as_str())
        .collect();
    assert_eq!(text, REPLY);
    let completed = &events.last().expect("有终止事件").1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["model"], MODEL);
    assert_eq!(
        completed["output"].as_array().map(Vec::len),
        Some(2),
        "推理项与消息项"
    );
    断言用量(&completed["usage"]);
}

#[tokio::test]
async fn 提供工具_回复两个并行函数调用_不调用内置与命名空间工具() {
    let parameters = json!({ "type": "object", "properties": { "城市": { "type": "string" } }, "required": ["城市"] });
    let mut body = 请求(false);
    body["tools"] = json!([
        { "type": "web_search", "external_web_access": false },
        { "type": "namespace", "name": "mcp", "tools": [ { "type": "function", "name": "内部" } ] },
        { "type": "function", "name": "查天气", "strict": false, "parameters": parameters },
        { "type": "function", "name": "查时间", "parameters": parameters },
        { "type": "function", "name": "第三个", "parameters": parameters },
    ]);
    let resp = 发送(NORMAL, &body, Some(KEY)).await;
    let body: Value = resp.json().await.expect("响应是 JSON");
    let calls: Vec<&Value> = body["output"]
        .as_array()
        .expect("output 是数组")
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    let names: Vec<&str> = calls.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["查天气", "查时间"], "{body}");
    for call in calls {
        assert_eq!(call["arguments"], "{\"城市\":\"巴黎\"}");
        assert!(
            call["call_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("call_mock_")),
            "{call}"
        );
        assert!(
            call["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("fc_mock_")),
            "{call}"
        );
    }
    assert!(
        !body["output"]
            .as_array()
            .expect("数组")
            .iter()
            .any(|i| i["type"] == "message"),
        "只调用工具时没有消息项"
    );
}

#[tokio::test]
async fn 工具结果之后_回复文本() {
    let mut body = 请求(false);
    body["tools"] =
        json!([ { "type": "function", "name": "查天气", "parameters": { "type": "object" } } ]);
    if let Some(input) = body["input"].as_array_mut() {
        input.push(json!({ "type": "function_call", "call_id": "call_甲", "name": "查天气", "arguments": "{}" }));
        input.push(
            json!({ "type": "function_call_output", "call_id": "call_甲", "output": "晴，18 度" }),
        );
    }
    let resp = 发送(NORMAL, &body, Some(KEY)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("响应是 JSON");
    let last = body["output"]
        .as_array()
        .and_then(|o| o.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["type"], "message", "{body}");
    assert_eq!(last["content"][0]["text"], REPLY);
}

#[tokio::test]
async fn 流中错误故障_以_response_failed_结束() {
    let events = 事件(发送(FAILING, &请求(true), Some(KEY)).await).await;
    let kinds = 类型序列(&events);
    assert_eq!(
        kinds.iter().filter(|k| k.ends_with(".delta")).count(),
        1,
        "故障前只发出一个增量：{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|k| k == "response.completed"),
        "不应有 completed：{kinds:?}"
    );
    let (last, data) = events.last().expect("至少有一个事件");
    assert_eq!(last, "response.failed");
    assert_eq!(data["response"]["status"], "failed");
    assert_eq!(data["response"]["error"]["code"], "server_error");
    assert!(data["response"]["error"]["message"].is_string());
}

#[tokio::test]
async fn 缺少密钥_401_openai_错误信封() {
    let error = expect_error(发送(NORMAL, &请求(false), None).await, 401).await;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authorization")),
        "{error}"
    );
}

#[tokio::test]
async fn 未配对的工具结果与未知输入项_400_错误信封() {
    let mut orphan = 请求(true);
    orphan["input"] =
        json!([ { "type": "function_call_output", "call_id": "call_无", "output": "晴" } ]);
    let error = expect_error(发送(NORMAL, &orphan, Some(KEY)).await, 400).await;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("No tool call found")),
        "{error}"
    );
    let mut unknown = 请求(false);
    unknown["input"] = json!([ { "type": "tool_result", "content": "晴" } ]);
    let error = expect_error(发送(NORMAL, &unknown, Some(KEY)).await, 400).await;
    assert_eq!(error["param"], "input[0].type");
}
