//! Messages 缓存格式函数的测试：事件流 → 完整消息 → 重放 → 再累加的往返，不完整的流与停止原因表。

use serde_json::{json, Value};

use super::replay::{completed_normally, replay_stream, MessageBuilder};
use crate::dialects::ReplyBuilder;
use crate::streaming::{SseEvent, SseParser};

/// 含思考（带签名）、中文文本、输入被拆成三段的工具调用与缓存用量的完整事件流（data 列表）。
fn 完整事件流() -> Vec<Value> {
    vec![
        json!({"type": "message_start", "message": {"id": "msg_缓存", "type": "message", "role": "assistant",
            "model": "claude-演示", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 30, "cache_read_input_tokens": 8, "output_tokens": 1}}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "先查"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "天气"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "签名abc"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "我来"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "查一下。"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "查天气", "input": {}}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"城市\":"}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"北京\","}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"天数\":3}"}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"output_tokens": 42}}),
        json!({"type": "message_stop"}),
    ]
}

/// 把一串事件喂给累加器并取结果。
fn 累加(events: &[Value]) -> Option<Value> {
    let mut builder = MessageBuilder::default();
    for event in events {
        builder.push(&event.to_string());
    }
    builder.finish()
}

/// 把重放出的 SSE 字节解析为事件（事件名与 JSON）。
fn 解析(out: &[u8]) -> Vec<(String, Value)> {
    let mut parser = SseParser::default();
    let mut events: Vec<SseEvent> = Vec::new();
    parser.push(out, &mut events);
    parser.finish(&mut events);
    events
        .into_iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).expect("每个事件都是 JSON");
            (e.event.expect("Messages 事件都有 event: 行"), data)
        })
        .collect()
}

#[test]
fn 累加_思考签名文本与拆开的工具输入_得到完整消息() {
    let message = 累加(&完整事件流()).expect("流完整，应得到完整回复");
    assert_eq!(message["id"], "msg_缓存");
    assert_eq!(message["stop_reason"], "tool_use");
    let content = message["content"].as_array().expect("内容是数组");
    assert_eq!(content.len(), 3, "三个内容块：{content:?}");
    assert_eq!(content[0]["thinking"], "先查天气");
    assert_eq!(content[0]["signature"], "签名abc");
    assert_eq!(content[1]["text"], "我来查一下。");
    assert_eq!(content[2]["input"], json!({"城市": "北京", "天数": 3}));
    assert_eq!(message["usage"]["input_tokens"], 30, "流开头的输入用量保留");
    assert_eq!(message["usage"]["cache_read_input_tokens"], 8);
    assert_eq!(
        message["usage"]["output_tokens"], 42,
        "流尾的累计输出用量覆盖开头的"
    );
}

#[test]
fn 重放再累加_与原消息相同() {
    let original = 累加(&完整事件流()).expect("流完整");
    let replayed = replay_stream(&original);
    let events = 解析(&replayed);
    let again = 累加(&events.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>());
    assert_eq!(
        again.as_ref(),
        Some(&original),
        "往返后内容、停止原因与用量都不变"
    );
}

#[test]
fn 重放_事件顺序与官方流相同() {
    let original = 累加(&完整事件流()).expect("流完整");
    let names: Vec<String> = 解析(&replay_stream(&original))
        .into_iter()
        .map(|(name, data)| {
            assert_eq!(data["type"], name.as_str(), "event: 行与 type 字段一致");
            name
        })
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    let starts = names.iter().filter(|n| *n == "content_block_start").count();
    let stops = names.iter().filter(|n| *n == "content_block_stop").count();
    assert_eq!((starts, stops), (3, 3), "每个块一对 start/stop：{names:?}");
    let start = &解析(&replay_stream(&original))[0].1;
    assert_eq!(
        start["message"]["content"],
        json!([]),
        "message_start 的内容为空"
    );
    assert!(
        start["message"]["stop_reason"].is_null(),
        "message_start 里还没有停止原因"
    );
}

#[test]
fn 不完整的流_不交出回复() {
    let mut events = 完整事件流();
    events.pop();
    assert_eq!(累加(&events), None, "没有 message_stop 的流不能缓存");
    let mut failed = 完整事件流();
    failed.insert(
        5,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "过载"}}),
    );
    assert_eq!(累加(&failed), None, "中途出错的流不能缓存");
    let mut broken = 完整事件流();
    broken[13] = json!({"type": "content_block_delta", "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": "{\"城市"}});
    assert_eq!(累加(&broken), None, "工具输入不是合法 JSON 时不能缓存");
}

#[test]
fn 正常结束_只认四种停止原因() {
    for reason in ["end_turn", "max_tokens", "stop_sequence", "tool_use"] {
        assert!(
            completed_normally(&json!({ "stop_reason": reason })),
            "{reason}"
        );
    }
    for reason in [json!("refusal"), json!("pause_turn"), Value::Null] {
        assert!(
            !completed_normally(&json!({ "stop_reason": reason })),
            "{reason}"
        );
    }
}
