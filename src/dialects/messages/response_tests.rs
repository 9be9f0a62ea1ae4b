//! 完整回复渲染的测试：文本、工具调用与参数、思考、停止原因、用量、id 与错误。

use serde_json::{json, Value};

use super::response::render_message;
use crate::error::ErrorCode;

/// 测试用的客户端模型名。
const MODEL: &str = "claude-演示";

/// 构造一个枢纽完整回复。
fn 回复(message: Value, finish: Value, usage: Value) -> Vec<u8> {
    json!({ "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "上游模型",
        "choices": [ { "index": 0, "message": message, "logprobs": null, "finish_reason": finish } ],
        "usage": usage })
    .to_string()
    .into_bytes()
}

/// 渲染并解析为 JSON。
fn 渲染(hub: &[u8]) -> Value {
    let body = render_message(hub, MODEL).expect("合法的枢纽回复应能渲染");
    serde_json::from_slice(&body).expect("渲染结果是 JSON")
}

/// 一个带工具调用的助手消息。
fn 工具消息(arguments: &str) -> Value {
    json!({ "role": "assistant", "content": null,
        "tool_calls": [ { "id": "call_9x2", "type": "function", "function": { "name": "Bash", "arguments": arguments } } ] })
}

#[test]
fn 完整_纯文本_形状与字段齐全() {
    let usage = json!({ "prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35 });
    let body = 渲染(&回复(
        json!({ "role": "assistant", "content": "你好！" }),
        json!("stop"),
        usage,
    ));
    let id = body["id"].as_str().expect("id 是字符串");
    assert!(
        id.starts_with("msg_") && id != "chatcmpl-9",
        "应合成 msg_ 开头的 id"
    );
    let expected = json!({ "id": id, "type": "message", "role": "assistant", "model": MODEL,
        "content": [ { "type": "text", "text": "你好！" } ], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": { "input_tokens": 30, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 5 } });
    assert_eq!(body, expected);
    let hub = json!({ "id": "msg_01上游", "choices": [ { "message": { "content": "你好！" }, "finish_reason": "stop" } ],
        "usage": { "prompt_tokens": 30, "completion_tokens": 5 } });
    assert_eq!(
        渲染(hub.to_string().as_bytes())["id"],
        "msg_01上游",
        "msg_ 开头的上游 id 沿用"
    );
}

#[test]
fn 完整_工具调用_参数解析为对象_停止原因为_tool_use() {
    let mut message = 工具消息("{\"command\":\"cargo test\"}");
    message["content"] = json!("我来跑测试。");
    let body = 渲染(&回复(message, json!("stop"), Value::Null));
    assert_eq!(
        body["content"],
        json!([ { "type": "text", "text": "我来跑测试。" },
            { "type": "tool_use", "id": "call_9x2", "name": "Bash", "input": { "command": "cargo test" } } ])
    );
    assert_eq!(
        body["stop_reason"], "tool_use",
        "有工具调用时即使 finish_reason 为 stop 也是 tool_use"
    );
}

#[test]
fn 完整_空参数_渲染为空对象() {
    for arguments in ["", "  "] {
        let body = 渲染(&回复(
            工具消息(arguments),
            json!("tool_calls"),
            Value::Null,
        ));
        assert_eq!(body["content"][0]["input"], json!({}), "参数 {arguments:?}");
        assert_eq!(
            body["content"].as_array().map(Vec::len),
            Some(1),
            "content 为 null 时不应有文本块"
        );
    }
}

#[test]
fn 完整_非法参数_渲染为空对象而不报错() {
    for arguments in ["{\"a\":", "[1]", "\"字符串\"", "不是 JSON"] {
        let body = 渲染(&回复(
            工具消息(arguments),
            json!("tool_calls"),
            Value::Null,
        ));
        assert_eq!(body["content"][0]["input"], json!({}), "参数 {arguments:?}");
        assert_eq!(body["stop_reason"], "tool_use");
    }
}

#[test]
fn 完整_思考块在最前且带空签名() {
    let message =
        json!({ "role": "assistant", "content": "答案是 4。", "reasoning_content": "2 加 2……" });
    let body = 渲染(&回复(message, json!("stop"), Value::Null));
    assert_eq!(
        body["content"],
        json!([ { "type": "thinking", "thinking": "2 加 2……", "signature": "" }, { "type": "text", "text": "答案是 4。" } ])
    );
    let message = json!({ "content": "", "reasoning": "只有推理" });
    let body = 渲染(&回复(message, json!("length"), Value::Null));
    assert_eq!(
        body["content"],
        json!([ { "type": "thinking", "thinking": "只有推理", "signature": "" } ]),
        "空文本省略"
    );
    assert_eq!(body["stop_reason"], "max_tokens");
}

#[test]
fn 完整_用量含缓存命中_按_anthropic_语义换算() {
    let usage = json!({ "prompt_tokens": 14630, "completion_tokens": 41, "total_tokens": 14671,
        "prompt_tokens_details": { "cached_tokens": 12800 } });
    let body = 渲染(&回复(json!({ "content": "好" }), json!("stop"), usage));
    assert_eq!(
        body["usage"],
        json!({ "input_tokens": 1830, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 12800, "output_tokens": 41 })
    );
    let body = 渲染(&回复(
        json!({ "content": "好" }),
        json!("stop"),
        Value::Null,
    ));
    assert_eq!(
        body["usage"]["output_tokens"], 0,
        "没有用量时各项为 0，但字段必须在"
    );
}

#[test]
fn 完整_结束原因映射() {
    let cases = [
        (json!("stop"), "end_turn"),
        (json!("length"), "max_tokens"),
        (json!("content_filter"), "refusal"),
        (json!("tool_calls"), "tool_use"),
        (Value::Null, "end_turn"),
    ];
    for (finish, expected) in cases {
        let body = 渲染(&回复(
            json!({ "content": "文本" }),
            finish.clone(),
            Value::Null,
        ));
        assert_eq!(body["stop_reason"], expected, "finish_reason {finish}");
    }
}

#[test]
fn 完整_并行工具调用与旧版函数调用都渲染为_tool_use() {
    let message = json!({ "content": null, "tool_calls": [
        { "id": "call_1", "type": "function", "function": { "name": "甲", "arguments": "{\"x\":1}" } },
        { "id": "call_2", "type": "function", "function": { "name": "乙", "arguments": "{\"y\":2}" } } ] });
    let body = 渲染(&回复(message, json!("tool_calls"), Value::Null));
    let names: Vec<&Value> = body["content"]
        .as_array()
        .expect("数组")
        .iter()
        .map(|b| &b["name"])
        .collect();
    assert_eq!(names, [&json!("甲"), &json!("乙")]);
    let legacy =
        json!({ "content": null, "function_call": { "name": "丙", "arguments": "{\"z\":3}" } });
    let body = 渲染(&回复(legacy, json!("function_call"), Value::Null));
    let block = &body["content"][0];
    assert_eq!(
        (&block["name"], &block["input"]),
        (&json!("丙"), &json!({ "z": 3 }))
    );
    assert!(block["id"]
        .as_str()
        .expect("合成的 id")
        .starts_with("toolu_"));
}

#[test]
fn 完整_不是合法回复_报_502() {
    for hub in [
        &b"{\"choices\":"[..],
        b"[1]",
        b"{\"choices\":[]}",
        b"{\"error\":{\"message\":\"x\"}}",
    ] {
        let error = render_message(hub, MODEL).expect_err("非法回复必须报错");
        assert_eq!(
            (error.status, error.code),
            (502, ErrorCode::InvalidUpstreamResponse)
        );
    }
}
