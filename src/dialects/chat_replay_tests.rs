//! 响应缓存格式函数的测试：流 → 完整回复 → 重放 → 再累加的往返，以及不完整流、重放块序列与结束原因表。

use serde_json::{json, Value};

use super::chat_replay::{completed_normally, replay_stream, CompletionBuilder};
use super::test_chunks::{块, 工具, 文本, 结束};
use super::ReplyBuilder;
use crate::streaming::{SseParser, DONE_SENTINEL};

/// 用量块的 data。
fn 用量块(usage: Value) -> String {
    json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "上游模型",
        "choices": [], "usage": usage })
    .to_string()
}

/// 测试用的用量对象。
fn 用量() -> Value {
    json!({ "prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
        "prompt_tokens_details": { "cached_tokens": 4 } })
}

/// 把一串 data 喂给累加器并取结果。
fn 累加(events: &[String]) -> Option<Value> {
    let mut builder = CompletionBuilder::default();
    for data in events {
        builder.push(data);
    }
    builder.finish()
}

/// 把 SSE 字节解析为 data 列表（含 `[DONE]`）。
fn 事件(out: &[u8]) -> Vec<String> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    parser.push(out, &mut events);
    parser.finish(&mut events);
    events
        .into_iter()
        .map(|e| {
            assert!(e.event.is_none(), "Chat 流的事件不应带 event: 行");
            e.data
        })
        .collect()
}

/// 把重放出的 SSE 字节解析回块 JSON（去掉最后的 `[DONE]`，并断言它存在）。
fn 重放块(out: &[u8]) -> Vec<Value> {
    let mut data = 事件(out);
    assert_eq!(
        data.pop().as_deref(),
        Some(DONE_SENTINEL),
        "重放流必须以 [DONE] 结束"
    );
    data.iter()
        .map(|d| serde_json::from_str(d).expect("每个块都是 JSON"))
        .collect()
}

/// 含推理、文本、两个参数被拆开的工具调用与用量的完整流。
fn 完整工具流() -> Vec<String> {
    vec![
        块(json!({ "role": "assistant", "content": "" }), None),
        块(json!({ "reasoning_content": "先想" }), None),
        块(json!({ "reasoning": "一想" }), None),
        文本("我来查"),
        文本("一下天气"),
        工具(0, Some("call_甲"), Some("查天气"), "{\"城市\":"),
        工具(1, Some("call_乙"), Some("查时间"), ""),
        工具(0, None, None, "\"巴黎\"}"),
        工具(1, None, None, "{\"时区\":\"欧洲/巴黎\"}"),
        结束("tool_calls"),
        用量块(用量()),
        DONE_SENTINEL.to_string(),
    ]
}

#[test]
fn 文本流_累加成完整回复() {
    let reply = 累加(&[
        块(json!({ "role": "assistant", "content": "" }), None),
        文本("你好，"),
        文本("世界"),
        结束("stop"),
        DONE_SENTINEL.to_string(),
    ])
    .expect("完整的流应得到完整回复");
    assert_eq!(
        reply,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "上游模型",
            "choices": [ { "index": 0,
                "message": { "role": "assistant", "content": "你好，世界" },
                "logprobs": null, "finish_reason": "stop" } ],
        })
    );
}

#[test]
fn 工具流_按序号合并片段_保留_id_与用量() {
    let reply = 累加(&完整工具流()).expect("完整的流应得到完整回复");
    let message = &reply["choices"][0]["message"];
    assert_eq!(message["content"], "我来查一下天气");
    assert_eq!(message["reasoning_content"], "先想一想");
    assert_eq!(
        message["tool_calls"],
        json!([
            { "id": "call_甲", "type": "function",
              "function": { "name": "查天气", "arguments": "{\"城市\":\"巴黎\"}" } },
            { "id": "call_乙", "type": "function",
              "function": { "name": "查时间", "arguments": "{\"时区\":\"欧洲/巴黎\"}" } },
        ])
    );
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(reply["usage"], 用量());
}

#[test]
fn 只有工具调用时_内容为_null() {
    let reply = 累加(&[
        工具(0, Some("call_1"), Some("查天气"), "{}"),
        结束("tool_calls"),
        DONE_SENTINEL.to_string(),
    ])
    .expect("完整的流应得到完整回复");
    assert_eq!(reply["choices"][0]["message"]["content"], Value::Null);
    assert!(reply.get("usage").is_none(), "流里没有用量时不应有 usage");
}

#[test]
fn 往返_重放后再累加等于原回复() {
    let original = 累加(&完整工具流()).expect("完整的流应得到完整回复");
    let replayed = replay_stream(&original, true);
    let again = 累加(&事件(&replayed)).expect("重放的流应能再累加成完整回复");
    assert_eq!(again, original, "往返后完整回复应不变");
}

#[test]
fn 往返_纯文本回复() {
    let original = 累加(&[文本("只有文本"), 结束("length"), DONE_SENTINEL.to_string()])
        .expect("完整的流应得到完整回复");
    let again = 累加(&事件(&replay_stream(&original, false))).expect("重放应能再累加");
    assert_eq!(again, original);
}

#[test]
fn 缺少_done_或结束原因_不算完整() {
    let 无_done = [文本("你好"), 结束("stop")];
    assert_eq!(累加(&无_done), None, "没有 [DONE] 不应缓存");
    let 无结束原因 = [文本("你好"), DONE_SENTINEL.to_string()];
    assert_eq!(累加(&无结束原因), None, "没有结束原因不应缓存");
}

#[test]
fn 错误块或非法_json_不算完整() {
    let 错误 = json!({ "error": { "message": "上游过载", "code": "overloaded" } }).to_string();
    let with_error = [文本("你好"), 错误, 结束("stop"), DONE_SENTINEL.to_string()];
    assert_eq!(累加(&with_error), None, "流中出现错误块不应缓存");
    let with_garbage = [
        文本("你好"),
        "{不是 JSON".to_string(),
        结束("stop"),
        DONE_SENTINEL.to_string(),
    ];
    assert_eq!(累加(&with_garbage), None, "流中出现非法 JSON 不应缓存");
}

#[test]
fn 重放_块序列与网关写出的形状一致() {
    let original = 累加(&完整工具流()).expect("完整的流应得到完整回复");
    let chunks = 重放块(&replay_stream(&original, true));
    let 候选 = |delta: Value, finish: Value| {
        json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "上游模型",
            "choices": [ { "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish } ] })
    };
    let expected = vec![
        候选(json!({ "role": "assistant", "content": "" }), Value::Null),
        候选(json!({ "reasoning_content": "先想一想" }), Value::Null),
        候选(json!({ "content": "我来查一下天气" }), Value::Null),
        候选(
            json!({ "tool_calls": [ { "index": 0, "id": "call_甲", "type": "function",
                "function": { "name": "查天气", "arguments": "{\"城市\":\"巴黎\"}" } } ] }),
            Value::Null,
        ),
        候选(
            json!({ "tool_calls": [ { "index": 1, "id": "call_乙", "type": "function",
                "function": { "name": "查时间", "arguments": "{\"时区\":\"欧洲/巴黎\"}" } } ] }),
            Value::Null,
        ),
        候选(json!({}), json!("tool_calls")),
        json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "上游模型",
            "choices": [], "usage": 用量() }),
    ];
    assert_eq!(chunks, expected);
}

#[test]
fn 重放_不要用量时没有用量块() {
    let original = 累加(&完整工具流()).expect("完整的流应得到完整回复");
    let chunks = 重放块(&replay_stream(&original, false));
    assert_eq!(chunks.len(), 6, "角色、推理、文本、两个工具、结束，共六块");
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "客户端没要求用量时不应有用量块"
    );
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn 重放_id_时间与模型取自完整回复() {
    let reply = json!({
        "id": "chatcmpl-缓存", "object": "chat.completion", "created": 1700000000, "model": "别名",
        "choices": [ { "index": 0, "message": { "role": "assistant", "content": "好" },
            "logprobs": null, "finish_reason": "stop" } ],
    });
    let chunks = 重放块(&replay_stream(&reply, true));
    assert_eq!(chunks.len(), 3, "完整回复没有用量时不写用量块");
    for chunk in &chunks {
        assert_eq!(chunk["id"], "chatcmpl-缓存");
        assert_eq!(chunk["created"], 1_700_000_000);
        assert_eq!(chunk["model"], "别名");
    }
}

#[test]
fn 正常结束原因表() {
    let reply = |reason: Value| json!({ "choices": [ { "finish_reason": reason } ] });
    for reason in [
        "stop",
        "length",
        "tool_calls",
        "function_call",
        "content_filter",
    ] {
        assert!(
            completed_normally(&reply(json!(reason))),
            "{reason} 应算正常结束"
        );
    }
    for reason in [json!("error"), json!(""), Value::Null, json!(1)] {
        assert!(
            !completed_normally(&reply(reason.clone())),
            "{reason} 不应算正常结束"
        );
    }
    assert!(!completed_normally(&json!({})), "没有候选不应算正常结束");
}
