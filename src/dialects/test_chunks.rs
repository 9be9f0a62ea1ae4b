//! 测试用：构造枢纽流式块（`chat.completion.chunk`）的 data、解析渲染出的方言事件，供各方言的流式渲染测试共用。

use serde_json::{json, Value};

use crate::streaming::SseParser;

/// 一个枢纽流式块的 data。
pub(crate) fn 块(delta: Value, finish: Option<&str>) -> String {
    json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "上游模型",
        "choices": [ { "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish } ] })
    .to_string()
}

/// 文本增量块。
pub(crate) fn 文本(text: &str) -> String {
    块(json!({ "content": text }), None)
}

/// 工具调用增量块：`id` 与 `name` 只在首个增量中给出。
pub(crate) fn 工具(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> String {
    let mut call = json!({ "index": index, "function": { "arguments": arguments } });
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = name {
        call["function"]["name"] = json!(name);
    }
    块(json!({ "tool_calls": [call] }), None)
}

/// 结束块。
pub(crate) fn 结束(reason: &str) -> String {
    块(json!({}), Some(reason))
}

/// 把渲染输出解析为 (事件名, JSON)；断言每个事件都有 `event:` 行且与 JSON 的 `type` 一致。
pub(crate) fn 解析(out: &[u8]) -> Vec<(String, Value)> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    parser.push(out, &mut events);
    parser.finish(&mut events);
    events
        .into_iter()
        .map(|e| {
            let name = e.event.expect("每个事件都必须有 event: 行");
            let data: Value = serde_json::from_str(&e.data).expect("每个事件的 data 都是 JSON");
            assert_eq!(data["type"], json!(name), "事件名与 type 不一致");
            (name, data)
        })
        .collect()
}
