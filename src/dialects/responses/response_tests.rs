//! 完整回复渲染的测试：响应对象的形状、输出项的顺序、工具调用的还原、结局、用量与错误，
//! 以及与流式渲染的输出项一致。

use std::sync::Arc;

use bytes::BytesMut;
use serde_json::{json, Map, Value};

use super::response::render_response;
use super::stream::ResponsesStream;
use super::tools::{ToolKind, ToolMap};
use crate::error::ErrorCode;
use crate::streaming::SseParser;

/// 测试用的客户端模型名。
const MODEL: &str = "gpt-演示";
/// 自由格式工具的一段补丁（含换行与中文）。
const PATCH: &str = "*** Begin Patch\n*** Add File: 说明.txt\n+你好，世界\n*** End Patch\n";

/// 调用方填好的请求回显。
fn 模板() -> Map<String, Value> {
    let echo = json!({ "model": MODEL, "instructions": null, "tools": [], "tool_choice": "auto",
        "parallel_tool_calls": true, "store": false, "metadata": { "会话": "甲" } });
    echo.as_object().expect("模板是对象").clone()
}

/// 工具对应表：自由格式的 `apply_patch` 与命名空间 `浏览器` 里的 `打开`。
fn 对应表() -> ToolMap {
    let mut map = ToolMap::default();
    map.insert("apply_patch", ToolKind::Custom, "apply_patch", None);
    map.insert("浏览器__打开", ToolKind::Function, "打开", Some("浏览器"));
    map
}

/// 构造一个枢纽完整回复。
fn 回复(message: Value, finish: Value, usage: Value) -> Vec<u8> {
    json!({ "id": "chatcmpl-9", "object": "chat.completion", "created": 1_754_925_861, "model": "上游模型",
        "choices": [ { "index": 0, "message": message, "logprobs": null, "finish_reason": finish } ],
        "usage": usage })
    .to_string()
    .into_bytes()
}

/// 渲染并解析为 JSON。
fn 渲染(hub: &[u8]) -> Value {
    let body = render_response(hub, &模板(), &对应表()).expect("合法的枢纽回复应能渲染");
    serde_json::from_slice(&body).expect("渲染结果是 JSON")
}

/// 一个工具调用。
fn 调用(id: &str, name: &str, arguments: &str) -> Value {
    json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } })
}

/// 只有工具调用的助手消息。
fn 工具消息(calls: Vec<Value>) -> Value {
    json!({ "role": "assistant", "content": null, "tool_calls": calls })
}

#[test]
fn 完整_纯文本_形状与字段齐全() {
    let usage = json!({ "prompt_tokens": 14, "completion_tokens": 50, "total_tokens": 64,
        "prompt_tokens_details": { "cached_tokens": 4 }, "completion_tokens_details": { "reasoning_tokens": 0 } });
    let body = 渲染(&回复(
        json!({ "role": "assistant", "content": "你好！" }),
        json!("stop"),
        usage,
    ));
    assert!(body["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("resp_")));
    assert_eq!(
        (&body["object"], &body["status"], &body["created_at"]),
        (
            &json!("response"),
            &json!("completed"),
            &json!(1_754_925_861)
        )
    );
    assert_eq!(
        (&body["model"], &body["metadata"]),
        (&json!(MODEL), &json!({ "会话": "甲" }))
    );
    assert_eq!(
        (&body["error"], &body["incomplete_details"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(body["text"]["format"], json!({ "type": "text" }));
    let item = &body["output"][0];
    assert!(item["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
    let expected = json!({ "id": item["id"], "type": "message", "status": "completed",
        "content": [ { "type": "output_text", "annotations": [], "logprobs": [], "text": "你好！" } ],
        "role": "assistant" });
    assert_eq!(item, &expected);
    let usage = json!({ "input_tokens": 14, "input_tokens_details": { "cached_tokens": 4, "cache_write_tokens": 0 },
        "output_tokens": 50, "output_tokens_details": { "reasoning_tokens": 0 }, "total_tokens": 64 });
    assert_eq!(body["usage"], usage);
}

#[test]
fn 完整_推理与文本_推理项在前() {
    let message =
        json!({ "role": "assistant", "content": "改好了", "reasoning_content": "比较两个文件" });
    let usage = json!({ "prompt_tokens": 10, "completion_tokens": 30,
        "completion_tokens_details": { "reasoning_tokens": 20 } });
    let body = 渲染(&回复(message, json!("stop"), usage));
    let reasoning = &body["output"][0];
    assert!(reasoning["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("rs_")));
    assert_eq!(
        reasoning,
        &json!({ "id": reasoning["id"], "type": "reasoning", "status": "completed",
            "summary": [ { "type": "summary_text", "text": "比较两个文件" } ] })
    );
    assert_eq!(body["output"][1]["content"][0]["text"], "改好了");
    assert_eq!(
        body["usage"]["output_tokens_details"]["reasoning_tokens"],
        20
    );
    assert_eq!(body["usage"]["total_tokens"], 40);
}

#[test]
fn 完整_文本与两个调用_按序号排列() {
    let mut message = 工具消息(vec![
        调用("call_a", "get_weather", "{\"city\":\"巴黎\"}"),
        调用("call_b", "get_weather", "{\"city\":\"罗马\"}"),
    ]);
    message["content"] = json!("我查一下。");
    let body = 渲染(&回复(message, json!("tool_calls"), Value::Null));
    let output = body["output"].as_array().expect("output 是数组");
    assert_eq!(output.len(), 3);
    assert_eq!(output[0]["type"], "message");
    for (item, (call_id, arguments)) in output[1..].iter().zip([
        ("call_a", "{\"city\":\"巴黎\"}"),
        ("call_b", "{\"city\":\"罗马\"}"),
    ]) {
        assert!(item["id"].as_str().is_some_and(|id| id.starts_with("fc_")));
        let expected = json!({ "id": item["id"], "type": "function_call", "status": "completed",
            "arguments": arguments, "call_id": call_id, "name": "get_weather" });
        assert_eq!(item, &expected);
    }
    assert_eq!(body["status"], "completed");
}

#[test]
fn 完整_纯工具回答_没有消息项_空参数为花括号() {
    let body = 渲染(&回复(
        工具消息(vec![调用("call_x", "列目录", "")]),
        json!("tool_calls"),
        Value::Null,
    ));
    let output = body["output"].as_array().expect("output 是数组");
    assert_eq!(output.len(), 1, "纯工具回答不应有消息项");
    assert_eq!(
        (&output[0]["type"], &output[0]["arguments"]),
        (&json!("function_call"), &json!("{}"))
    );
}

#[test]
fn 完整_自由格式工具_输入原样拆包() {
    let wrapped = json!({ "input": PATCH }).to_string();
    let body = 渲染(&回复(
        工具消息(vec![调用("call_p", "apply_patch", &wrapped)]),
        json!("tool_calls"),
        Value::Null,
    ));
    let item = &body["output"][0];
    assert!(item["id"].as_str().is_some_and(|id| id.starts_with("ctc_")));
    assert_eq!(
        item,
        &json!({ "id": item["id"], "type": "custom_tool_call", "status": "completed",
            "call_id": "call_p", "name": "apply_patch", "input": PATCH })
    );
    let raw = 渲染(&回复(
        工具消息(vec![调用("call_q", "apply_patch", "没有包装")]),
        json!("tool_calls"),
        Value::Null,
    ));
    assert_eq!(
        raw["output"][0]["input"], "没有包装",
        "没有包装时原样作为输入"
    );
}

#[test]
fn 完整_命名空间工具_还原名字与命名空间() {
    let body = 渲染(&回复(
        工具消息(vec![调用("call_n", "浏览器__打开", "{\"网址\":\"甲\"}")]),
        json!("tool_calls"),
        Value::Null,
    ));
    let item = &body["output"][0];
    assert_eq!(
        (&item["name"], &item["namespace"], &item["call_id"]),
        (&json!("打开"), &json!("浏览器"), &json!("call_n"))
    );
}

#[test]
fn 完整_长度上限与内容过滤_未完成() {
    for (finish, reason) in [
        ("length", "max_output_tokens"),
        ("content_filter", "content_filter"),
    ] {
        let body = 渲染(&回复(
            json!({ "role": "assistant", "content": "写到一半" }),
            json!(finish),
            Value::Null,
        ));
        assert_eq!(
            (&body["status"], &body["incomplete_details"]),
            (&json!("incomplete"), &json!({ "reason": reason }))
        );
        assert_eq!(body["output"][0]["status"], "incomplete");
    }
}

#[test]
fn 完整_没有用量_各项为整数零() {
    let body = 渲染(&回复(
        json!({ "role": "assistant", "content": "好" }),
        json!("stop"),
        Value::Null,
    ));
    let usage = json!({ "input_tokens": 0, "input_tokens_details": { "cached_tokens": 0, "cache_write_tokens": 0 },
        "output_tokens": 0, "output_tokens_details": { "reasoning_tokens": 0 }, "total_tokens": 0 });
    assert_eq!(body["usage"], usage);
}

#[test]
fn 完整_拒答_写成拒答部分() {
    let body = 渲染(&回复(
        json!({ "role": "assistant", "content": null, "refusal": "无法协助" }),
        json!("stop"),
        Value::Null,
    ));
    assert_eq!(
        body["output"][0]["content"],
        json!([{ "type": "refusal", "refusal": "无法协助" }])
    );
}

#[test]
fn 完整_不是合法回复_报_502() {
    for hub in [
        "不是 JSON",
        "[]",
        "{\"choices\":[]}",
        "{\"choices\":[{\"message\":\"文本\"}]}",
    ] {
        let error =
            render_response(hub.as_bytes(), &模板(), &对应表()).expect_err("不合法的回复应报错");
        assert_eq!(
            (error.status, error.code),
            (502, ErrorCode::InvalidUpstreamResponse),
            "{hub}"
        );
    }
}

/// 去掉输出项里随机生成的 `id`，以便比较两种渲染。
fn 去掉_id(items: &Value) -> Vec<Value> {
    let mut items = items.as_array().expect("output 是数组").clone();
    for item in &mut items {
        item.as_object_mut().expect("输出项是对象").remove("id");
    }
    items
}

#[test]
fn 完整与流式_同一回答的输出项相同() {
    let wrapped = json!({ "input": PATCH }).to_string();
    let calls = vec![
        调用("call_a", "浏览器__打开", "{\"网址\":\"甲\"}"),
        调用("call_p", "apply_patch", &wrapped),
    ];
    let mut message = 工具消息(calls.clone());
    message["content"] = json!("开始修改");
    message["reasoning_content"] = json!("先看看");
    let body = 渲染(&回复(message, json!("tool_calls"), Value::Null));
    let mut stream = ResponsesStream::new(模板(), Arc::new(对应表()), 0);
    let mut out = BytesMut::new();
    let mut deltas = vec![
        json!({ "reasoning_content": "先看看" }),
        json!({ "content": "开始修改" }),
    ];
    for (index, call) in calls.iter().enumerate() {
        let mut call = call.clone();
        call["index"] = json!(index);
        deltas.push(json!({ "tool_calls": [call] }));
    }
    for delta in deltas {
        let chunk = json!({ "choices": [ { "index": 0, "delta": delta, "finish_reason": null } ] });
        assert_eq!(stream.on_hub_event(&chunk.to_string(), &mut out), Ok(false));
    }
    let finish =
        json!({ "choices": [ { "index": 0, "delta": {}, "finish_reason": "tool_calls" } ] });
    assert_eq!(
        stream.on_hub_event(&finish.to_string(), &mut out),
        Ok(false)
    );
    assert_eq!(stream.on_hub_event("[DONE]", &mut out), Ok(true));
    let mut events = Vec::new();
    SseParser::default().push(&out, &mut events);
    let last: Value = serde_json::from_str(&events.last().expect("有终止事件").data).expect("JSON");
    assert_eq!(
        去掉_id(&last["response"]["output"]),
        去掉_id(&body["output"])
    );
}
