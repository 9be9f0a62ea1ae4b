//! 流式渲染的测试：事件序列、块序号、并行工具调用、结束原因、用量与错误。
//!
//! 输出一律用 `SseParser` 解析后按 JSON 值断言；每个用例都经过 [`检查结构`] 的通用不变量检查。

use std::collections::HashMap;

use bytes::BytesMut;
use serde_json::{json, Value};

use super::stream::MessagesStream;
use crate::dialects::test_chunks::{块, 工具, 文本, 结束, 解析};
use crate::error::ErrorCode;

/// 测试用的客户端模型名。
const MODEL: &str = "claude-演示";
/// 测试用的输入估计。
const ESTIMATE: u64 = 42;

/// 用量块（`choices: []`）。
fn 用量(prompt: u64, completion: u64, cached: u64) -> String {
    json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
        "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": { "cached_tokens": cached } } })
    .to_string()
}

/// 依次喂入全部 data，断言都成功且只有最后一个（`[DONE]`）返回 true；返回解析后的事件。
fn 渲染(datas: &[String]) -> Vec<(String, Value)> {
    let mut stream = MessagesStream::new(MODEL.into(), ESTIMATE);
    let mut out = BytesMut::new();
    for (i, data) in datas.iter().enumerate() {
        let done = stream
            .on_hub_event(data, &mut out)
            .expect("合法的枢纽块不应报错");
        assert_eq!(
            done,
            i + 1 == datas.len(),
            "只有 [DONE] 之后才算结束（第 {i} 个）"
        );
    }
    let events = 解析(&out);
    检查结构(&events);
    events
}

/// 在 data 列表末尾加上 `[DONE]`。
fn 加结束标记(mut datas: Vec<String>) -> Vec<String> {
    datas.push("[DONE]".into());
    datas
}

/// 通用不变量：`message_start` 恰好一次且在最前、紧跟 ping；块序号从 0 起连续；增量只写给打开的块；
/// 同一时刻最多一个打开的块；最后是 `message_delta` 与 `message_stop`。
fn 检查结构(events: &[(String, Value)]) {
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..2],
        ["message_start", "ping"],
        "开头必须是 message_start 与 ping"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "message_start").count(),
        1,
        "message_start 只能一次"
    );
    assert_eq!(
        &names[names.len() - 2..],
        ["message_delta", "message_stop"],
        "结尾顺序不对"
    );
    let (mut next, mut open) = (0u64, None::<u64>);
    for (name, data) in events {
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(open, None, "上一个块还没关闭就开了新块");
                assert_eq!(data["index"], json!(next), "块序号必须连续");
                open = Some(next);
                next += 1;
            }
            "content_block_delta" => {
                assert_eq!(open, data["index"].as_u64(), "增量写给了未打开的块")
            }
            "content_block_stop" => {
                assert_eq!(open, data["index"].as_u64(), "关闭的不是打开的块");
                open = None;
            }
            "message_delta" => assert_eq!(open, None, "message_delta 之前必须关闭所有块"),
            _ => {}
        }
    }
}

/// 各块的最终内容：按块序号累积 `content_block_start` 与各种增量。
fn 拼块(events: &[(String, Value)]) -> Vec<Value> {
    let mut blocks: Vec<Value> = Vec::new();
    let mut json_parts: HashMap<usize, String> = HashMap::new();
    for (name, data) in events {
        let index = data["index"].as_u64().unwrap_or(0) as usize;
        match name.as_str() {
            "content_block_start" => blocks.push(data["content_block"].clone()),
            "content_block_delta" => {
                let delta = &data["delta"];
                match delta["type"].as_str().expect("增量必须有 type") {
                    "text_delta" => 追加(&mut blocks[index]["text"], &delta["text"]),
                    "thinking_delta" => 追加(&mut blocks[index]["thinking"], &delta["thinking"]),
                    "input_json_delta" => json_parts
                        .entry(index)
                        .or_default()
                        .push_str(delta["partial_json"].as_str().expect("片段是字符串")),
                    other => panic!("未知的增量类型 {other}"),
                }
            }
            _ => {}
        }
    }
    for (index, text) in json_parts {
        blocks[index]["input"] = serde_json::from_str(&text).expect("拼接后的参数是合法 JSON");
    }
    blocks
}

/// 把字符串增量追加到块的字段上。
fn 追加(field: &mut Value, piece: &Value) {
    let text = format!(
        "{}{}",
        field.as_str().unwrap_or_default(),
        piece.as_str().expect("增量文本")
    );
    *field = json!(text);
}

/// 最后的 `message_delta`。
fn 消息增量(events: &[(String, Value)]) -> &Value {
    &events[events.len() - 2].1
}

#[test]
fn 流式_纯文本_事件序列与内容精确() {
    let events = 渲染(&加结束标记(vec![
        块(json!({ "role": "assistant", "content": "" }), None),
        文本("你好，"),
        文本("世界"),
        结束("stop"),
        用量(20, 3, 0),
    ]));
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[1].1, json!({ "type": "ping" }));
    assert_eq!(
        events[2].1,
        json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } })
    );
    assert_eq!(
        events[4].1,
        json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "世界" } })
    );
    assert_eq!(
        events[5].1,
        json!({ "type": "content_block_stop", "index": 0 })
    );
    assert_eq!(
        拼块(&events),
        vec![json!({ "type": "text", "text": "你好，世界" })]
    );
    assert_eq!(
        *消息增量(&events),
        json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn", "stop_sequence": null },
            "usage": { "input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 3 } })
    );
    assert_eq!(events[7].1, json!({ "type": "message_stop" }));
}

#[test]
fn 流式_message_start_形状与_anthropic_一致() {
    let events = 渲染(&加结束标记(vec![文本("嗨")]));
    let start = &events[0].1;
    let id = start["message"]["id"].as_str().expect("id 是字符串");
    assert!(id.starts_with("msg_"), "id 应以 msg_ 开头");
    let expected = json!({ "type": "message_start", "message": { "id": id, "type": "message", "role": "assistant",
        "model": MODEL, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": { "input_tokens": ESTIMATE, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1 } } });
    assert_eq!(*start, expected);
}

#[test]
fn 流式_推理后文本_思考块先关闭再开文本块() {
    let events = 渲染(&加结束标记(vec![
        块(json!({ "reasoning_content": "先想" }), None),
        块(json!({ "reasoning_content": "一想" }), None),
        块(
            json!({ "content": "答案是四", "reasoning_content": "" }),
            None,
        ),
        结束("stop"),
    ]));
    assert_eq!(
        events[2].1,
        json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "thinking", "thinking": "", "signature": "" } })
    );
    assert_eq!(
        events[3].1["delta"],
        json!({ "type": "thinking_delta", "thinking": "先想" })
    );
    let stop_thinking = events
        .iter()
        .position(|(n, d)| n == "content_block_stop" && d["index"] == 0);
    let start_text = events
        .iter()
        .position(|(n, d)| n == "content_block_start" && d["index"] == 1);
    assert!(stop_thinking.expect("思考块要关闭") < start_text.expect("文本块要开始"));
    assert_eq!(
        拼块(&events),
        vec![
            json!({ "type": "thinking", "thinking": "先想一想", "signature": "" }),
            json!({ "type": "text", "text": "答案是四" }),
        ]
    );
    let in_text_block = events
        .iter()
        .filter(|(_, d)| d["index"] == 1 && d["delta"]["type"] == "thinking_delta");
    assert_eq!(in_text_block.count(), 0, "文本块里不能出现 thinking_delta");
}

#[test]
fn 流式_reasoning_字段同样渲染为思考块() {
    let events = 渲染(&加结束标记(vec![
        块(json!({ "reasoning": "推理中" }), None),
        结束("stop"),
    ]));
    assert_eq!(
        拼块(&events),
        vec![json!({ "type": "thinking", "thinking": "推理中", "signature": "" })]
    );
}

#[test]
fn 流式_两个并行工具交错到达_参数各自完整() {
    let events = 渲染(&加结束标记(vec![
        文本("我同时查两处。"),
        工具(0, Some("call_甲"), Some("查天气"), ""),
        工具(1, Some("call_乙"), Some("查时间"), ""),
        工具(0, None, None, "{\"城市\":"),
        工具(1, None, None, "{\"时区\":"),
        工具(0, None, None, "\"巴黎\"}"),
        工具(1, None, None, "\"CET\"}"),
        结束("tool_calls"),
    ]));
    assert_eq!(
        拼块(&events),
        vec![
            json!({ "type": "text", "text": "我同时查两处。" }),
            json!({ "type": "tool_use", "id": "call_甲", "name": "查天气", "input": { "城市": "巴黎" } }),
            json!({ "type": "tool_use", "id": "call_乙", "name": "查时间", "input": { "时区": "CET" } }),
        ]
    );
    assert_eq!(消息增量(&events)["delta"]["stop_reason"], "tool_use");
}

#[test]
fn 流式_第一个工具参数完整后_第二个工具接着直播() {
    let events = 渲染(&加结束标记(vec![
        工具(0, Some("call_1"), Some("读文件"), "{\"路径\":\"a.rs\"}"),
        工具(1, Some("call_2"), Some("读文件"), "{\"路径\":"),
        工具(1, None, None, "\"b.rs\"}"),
        结束("tool_calls"),
    ]));
    let second: Vec<&Value> = events
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && d["index"] == 1)
        .map(|(_, d)| &d["delta"]["partial_json"])
        .collect();
    assert_eq!(
        second,
        [&json!("{\"路径\":"), &json!("\"b.rs\"}")],
        "第二个工具应逐个片段直播"
    );
    assert_eq!(拼块(&events)[1]["input"], json!({ "路径": "b.rs" }));
}

/// 共用枢纽序号的两个调用（`call_A` 搜猫、`call_B` 搜狗）各自拼出的工具块。
fn 猫与狗两个调用() -> Vec<Value> {
    vec![
        json!({ "type": "tool_use", "id": "call_A", "name": "搜索", "input": { "词": "猫" } }),
        json!({ "type": "tool_use", "id": "call_B", "name": "搜索", "input": { "词": "狗" } }),
    ]
}

#[test]
fn 流式_两个调用共用一个枢纽序号_按_id_区分() {
    let events = 渲染(&加结束标记(vec![
        工具(0, Some("call_A"), Some("搜索"), "{\"词\":\"猫\"}"),
        工具(0, Some("call_B"), Some("搜索"), "{\"词\":"),
        工具(0, None, None, "\"狗\"}"),
        结束("tool_calls"),
    ]));
    assert_eq!(拼块(&events), 猫与狗两个调用());
}

#[test]
fn 流式_共用序号且前一个参数未完整_后一个整块写出() {
    let events = 渲染(&加结束标记(vec![
        工具(0, Some("call_A"), Some("搜索"), "{\"词\":"),
        工具(0, Some("call_B"), Some("搜索"), "{\"词\":\"狗\"}"),
        工具(0, Some("call_A"), None, "\"猫\"}"),
        结束("tool_calls"),
    ]));
    assert_eq!(拼块(&events), 猫与狗两个调用());
}

#[test]
fn 流式_工具参数为空_只有块开始与结束() {
    let events = 渲染(&加结束标记(vec![
        工具(0, Some("call_空"), Some("现在几点"), ""),
        结束("tool_calls"),
    ]));
    assert_eq!(
        events[2].1,
        json!({ "type": "content_block_start", "index": 0,
            "content_block": { "type": "tool_use", "id": "call_空", "name": "现在几点", "input": {} } })
    );
    assert_eq!(
        events[3].0, "content_block_stop",
        "空参数不应写出 input_json_delta"
    );
    assert_eq!(拼块(&events)[0]["input"], json!({}));
}

#[test]
fn 流式_没有用量块_message_delta_仍带输出用量() {
    let events = 渲染(&加结束标记(vec![文本("一"), 文本("二"), 结束("stop")]));
    assert_eq!(
        消息增量(&events)["usage"],
        json!({ "input_tokens": ESTIMATE, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 2 })
    );
    assert_eq!(events.last().expect("有事件").0, "message_stop");
}

#[test]
fn 流式_用量含缓存命中_按_anthropic_语义换算() {
    let events = 渲染(&加结束标记(vec![
        文本("好"),
        结束("stop"),
        用量(1000, 7, 800),
    ]));
    assert_eq!(
        消息增量(&events)["usage"],
        json!({ "input_tokens": 200, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 800, "output_tokens": 7 })
    );
}

#[test]
fn 流式_结束原因映射_每种取值() {
    let cases = [
        ("stop", false, "end_turn"),
        ("length", false, "max_tokens"),
        ("tool_calls", true, "tool_use"),
        ("function_call", false, "tool_use"),
        ("stop", true, "tool_use"),
        ("content_filter", false, "refusal"),
    ];
    for (finish, with_tool, expected) in cases {
        let mut datas = vec![文本("内容")];
        if with_tool {
            datas.push(工具(0, Some("call_1"), Some("工具"), "{}"));
        }
        datas.push(结束(finish));
        let events = 渲染(&加结束标记(datas));
        assert_eq!(
            消息增量(&events)["delta"]["stop_reason"],
            expected,
            "结束原因 {finish}（工具：{with_tool}）"
        );
        assert_eq!(消息增量(&events)["delta"]["stop_sequence"], Value::Null);
    }
}

#[test]
fn 流式_没有结束原因就收到_done_按_end_turn_或_tool_use() {
    let events = 渲染(&加结束标记(vec![文本("半句")]));
    assert_eq!(消息增量(&events)["delta"]["stop_reason"], "end_turn");
    let events = 渲染(&加结束标记(vec![工具(
        0,
        Some("call_1"),
        Some("工具"),
        "{\"a\":",
    )]));
    assert_eq!(消息增量(&events)["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        events
            .iter()
            .filter(|(n, _)| n == "content_block_stop")
            .count(),
        1,
        "打开的工具块要关闭"
    );
}

#[test]
fn 流式_message_start_只写一次_先_ping_也一样() {
    let mut stream = MessagesStream::new(MODEL.into(), ESTIMATE);
    let mut out = BytesMut::new();
    stream.ping(&mut out);
    stream.ping(&mut out);
    for data in [
        块(json!({ "role": "assistant", "content": "" }), None),
        文本("嗨"),
        结束("stop"),
    ] {
        assert_eq!(stream.on_hub_event(&data, &mut out), Ok(false));
    }
    assert_eq!(stream.on_hub_event("[DONE]", &mut out), Ok(true));
    let events = 解析(&out);
    检查结构(&events);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "ping", "ping"],
        "第一次 ping 带出 message_start，第二次只写 ping"
    );
}

#[test]
fn 流式_结束之后的事件被忽略() {
    let mut stream = MessagesStream::new(MODEL.into(), ESTIMATE);
    let mut out = BytesMut::new();
    assert_eq!(stream.on_hub_event(&文本("完"), &mut out), Ok(false));
    assert_eq!(stream.on_hub_event("[DONE]", &mut out), Ok(true));
    let len = out.len();
    assert_eq!(stream.on_hub_event(&文本("多余"), &mut out), Ok(true));
    assert_eq!(stream.on_hub_event("[DONE]", &mut out), Ok(true));
    stream.ping(&mut out);
    assert_eq!(out.len(), len, "message_stop 之后不应再写任何事件");
}

#[test]
fn 流式_非法块_报_502_且不写_message_stop() {
    let cases = [
        ("{\"choices\":[", ErrorCode::InvalidUpstreamResponse),
        ("[1,2]", ErrorCode::InvalidUpstreamResponse),
        (
            "{\"error\":{\"message\":\"上游过载\"}}",
            ErrorCode::UpstreamStreamError,
        ),
    ];
    for (data, code) in cases {
        let mut stream = MessagesStream::new(MODEL.into(), ESTIMATE);
        let mut out = BytesMut::new();
        assert_eq!(stream.on_hub_event(&文本("前文"), &mut out), Ok(false));
        let error = stream
            .on_hub_event(data, &mut out)
            .expect_err("非法块必须报错");
        assert_eq!((error.status, error.code), (502, code), "输入 {data}");
        let names: Vec<String> = 解析(&out).into_iter().map(|(n, _)| n).collect();
        assert!(
            !names.iter().any(|n| n == "message_stop"),
            "出错时不能写 message_stop"
        );
    }
}

#[test]
fn 流式_空文本增量不产生空块() {
    let events = 渲染(&加结束标记(vec![
        块(json!({ "role": "assistant", "content": "" }), None),
        块(json!({ "content": null }), None),
        结束("stop"),
    ]));
    assert!(
        !events.iter().any(|(n, _)| n.starts_with("content_block")),
        "不应有任何内容块"
    );
    assert_eq!(消息增量(&events)["usage"]["output_tokens"], 0);
}

#[test]
fn 流式_文本与工具交替_序号连续且各块完整() {
    let events = 渲染(&加结束标记(vec![
        文本("先读"),
        工具(0, Some("call_1"), Some("读"), "{\"f\":1}"),
        文本("再写"),
        工具(1, Some("call_2"), Some("写"), "{\"f\":2}"),
        结束("tool_calls"),
    ]));
    let blocks = 拼块(&events);
    let kinds: Vec<&str> = blocks
        .iter()
        .map(|b| b["type"].as_str().expect("类型"))
        .collect();
    assert_eq!(kinds, ["text", "tool_use", "text", "tool_use"]);
    assert_eq!(
        (&blocks[1]["input"], &blocks[3]["input"]),
        (&json!({ "f": 1 }), &json!({ "f": 2 }))
    );
}

#[test]
fn 流式_上游没给工具_id_时合成_toolu_id_且参数不丢() {
    let events = 渲染(&加结束标记(vec![
        工具(0, None, Some("列目录"), "{\"路径\""),
        工具(0, None, None, ":\"/\"}"),
        结束("tool_calls"),
    ]));
    let block = &拼块(&events)[0];
    assert!(
        block["id"].as_str().expect("id").starts_with("toolu_"),
        "应合成 toolu_ id"
    );
    assert_eq!(
        (&block["name"], &block["input"]),
        (&json!("列目录"), &json!({ "路径": "/" }))
    );
}

#[test]
fn 流式_用量在结束块上_同样采用() {
    let mut finish: Value = serde_json::from_str(&结束("stop")).expect("结束块是 JSON");
    finish["usage"] = json!({ "prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": { "cached_tokens": 2 } });
    let events = 渲染(&加结束标记(vec![文本("好"), finish.to_string()]));
    assert_eq!(
        消息增量(&events)["usage"],
        json!({ "input_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2, "output_tokens": 4 })
    );
}
