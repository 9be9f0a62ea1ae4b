//! Responses 缓存格式函数的测试：渲染出的事件流 → 取出完整回复 → 重放 → 再取出的往返，
//! 重放流的结构不变量与“正常结束”的判定。

use serde_json::{json, Value};

use super::replay::{completed_normally, replay_stream, ResponseCapture};
use super::stream_tests::{推理, 检查结构, 渲染};
use crate::dialects::test_chunks::{self, 工具, 文本, 结束};
use crate::dialects::ReplyBuilder;

/// 把事件喂给捕获器并取出完整回复。
fn 捕获(events: &[Value]) -> Option<Value> {
    let mut capture = ResponseCapture::default();
    for event in events {
        capture.push(&event.to_string());
    }
    capture.finish()
}

/// 含推理、中文文本与一个参数被拆开的函数调用的事件流。
fn 原始事件() -> Vec<Value> {
    渲染(&[
        推理("先想一想"),
        文本("北京"),
        文本("晴。"),
        工具(0, Some("call_1"), Some("查天气"), "{\"城市\":"),
        工具(0, None, None, "\"北京\"}"),
        结束("tool_calls"),
    ])
}

/// 把重放出的字节解析为事件 JSON。
fn 重放事件(response: &Value) -> Vec<Value> {
    test_chunks::解析(&replay_stream(response))
        .into_iter()
        .map(|(_, data)| data)
        .collect()
}

#[test]
fn 重放再捕获_与原回复相同且结构合乎规范() {
    let original = 捕获(&原始事件()).expect("流完整，应取出完整回复");
    let replayed = 重放事件(&original);
    检查结构(&replayed);
    assert_eq!(捕获(&replayed).as_ref(), Some(&original), "往返后回复不变");
}

#[test]
fn 重放_增量拼起来等于原文_参数完整() {
    let original = 捕获(&原始事件()).expect("流完整");
    let replayed = 重放事件(&original);
    let text: String = replayed
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(text, "北京晴。");
    let arguments = replayed
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .expect("有参数完成事件");
    assert_eq!(arguments["arguments"], "{\"城市\":\"北京\"}");
    let added = replayed
        .iter()
        .find(|e| e["type"] == "response.output_item.added")
        .expect("有输出项开始事件");
    assert_eq!(
        added["item"]["status"], "in_progress",
        "开始时的项还在进行中"
    );
    assert_eq!(
        replayed[0]["response"]["output"],
        json!([]),
        "created 里还没有输出项"
    );
}

#[test]
fn 没有终止事件的流_取不出回复() {
    let mut events = 原始事件();
    events.pop();
    assert_eq!(捕获(&events), None, "截断的流不能缓存");
}

#[test]
fn 正常结束_完成或因输出上限未完成() {
    assert!(completed_normally(&json!({ "status": "completed" })));
    let capped =
        json!({ "status": "incomplete", "incomplete_details": { "reason": "max_output_tokens" } });
    assert!(
        completed_normally(&capped),
        "输出上限截断与 Chat 的 length 一样可缓存"
    );
    let filtered =
        json!({ "status": "incomplete", "incomplete_details": { "reason": "content_filter" } });
    assert!(!completed_normally(&filtered), "内容过滤不缓存");
    assert!(!completed_normally(&json!({ "status": "failed" })));
}
