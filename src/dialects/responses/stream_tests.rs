//! 流式渲染的测试：事件序列与序号、输出项的开合、推理、并行与交错的工具调用、自由格式与命名空间工具、
//! 结局与用量、200 之后的失败。
//!
//! 输出一律用 `SseParser` 解析后按 JSON 值断言；每个用例都经过 [`检查结构`] 的通用不变量检查。

use std::sync::Arc;

use bytes::BytesMut;
use serde_json::{json, Map, Value};

use super::stream::ResponsesStream;
use super::tools::{ToolKind, ToolMap};
use crate::dialects::test_chunks::{self, 块, 工具, 文本, 结束};
use crate::error::{ApiError, ErrorCode};

/// 测试用的客户端模型名。
const MODEL: &str = "gpt-演示";
/// 测试用的输入估计。
const ESTIMATE: u64 = 42;
/// 三种终止事件。
const TERMINALS: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];
/// 自由格式工具的一段补丁（含换行与中文）。
const PATCH: &str = "*** Begin Patch\n*** Add File: 说明.txt\n+你好，世界\n*** End Patch\n";

/// 推理增量块。
pub(super) fn 推理(text: &str) -> String {
    块(json!({ "reasoning_content": text }), None)
}

/// 用量块（`choices: []`）。
fn 用量(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> String {
    json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
        "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": { "cached_tokens": cached },
            "completion_tokens_details": { "reasoning_tokens": reasoning } } })
    .to_string()
}

/// 调用方填好的请求回显（Codex 的 `text` 只有 `verbosity`）。
fn 模板() -> Map<String, Value> {
    let echo = json!({ "model": MODEL, "instructions": "你是助手", "tools": [], "tool_choice": "auto",
        "parallel_tool_calls": true, "store": false, "text": { "verbosity": "low" } });
    echo.as_object().expect("模板是对象").clone()
}

/// 工具对应表：自由格式的 `apply_patch` 与命名空间 `浏览器` 里的 `打开`。
fn 对应表() -> Arc<ToolMap> {
    let mut map = ToolMap::default();
    map.insert("apply_patch", ToolKind::Custom, "apply_patch", None);
    map.insert("浏览器__打开", ToolKind::Function, "打开", Some("浏览器"));
    Arc::new(map)
}

/// 新的状态机。
fn 状态机() -> ResponsesStream {
    ResponsesStream::new(模板(), 对应表(), ESTIMATE)
}

/// 把输出解析为事件 JSON（见 [`test_chunks::解析`]）。
fn 解析(out: &[u8]) -> Vec<Value> {
    test_chunks::解析(out)
        .into_iter()
        .map(|(_, data)| data)
        .collect()
}

/// 依次喂入全部 data（末尾自动加 `[DONE]`），断言都成功且只有 `[DONE]` 返回 true；返回检查过结构的事件。
pub(super) fn 渲染(datas: &[String]) -> Vec<Value> {
    let mut stream = 状态机();
    let mut out = BytesMut::new();
    for (i, data) in datas.iter().enumerate() {
        let done = stream
            .on_hub_event(data, &mut out)
            .expect("合法的枢纽块不应报错");
        assert!(!done, "[DONE] 之前不应结束（第 {i} 个）");
    }
    let done = stream
        .on_hub_event("[DONE]", &mut out)
        .expect("[DONE] 不应报错");
    assert!(done, "[DONE] 之后应写出终止事件");
    let events = 解析(&out);
    检查结构(&events);
    events
}

/// 事件类型序列。
fn 类型(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().expect("type 是字符串"))
        .collect()
}

/// 终止事件里的 `response`。
fn 终止(events: &[Value]) -> &Value {
    &events.last().expect("至少有一个事件")["response"]
}

/// 通用不变量：序号从 0 逐一递增；created、in_progress 在最前；恰好一个终止事件且在最后；生命周期事件的
/// 响应 id 相同；输出项的开合合乎定律；终止事件的 `output` 等于各 `output_item.done` 的项；用量是整数。
pub(super) fn 检查结构(events: &[Value]) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event["sequence_number"],
            json!(i),
            "sequence_number 必须从 0 起逐一递增"
        );
    }
    let types = 类型(events);
    assert_eq!(
        &types[..2],
        ["response.created", "response.in_progress"],
        "开头顺序不对"
    );
    let terminals = types.iter().filter(|t| TERMINALS.contains(t)).count();
    assert_eq!(terminals, 1, "必须恰好一个终止事件");
    assert!(
        TERMINALS.contains(&types[types.len() - 1]),
        "终止事件必须在最后"
    );
    let id = &events[0]["response"]["id"];
    assert!(
        id.as_str().is_some_and(|id| id.starts_with("resp_")),
        "响应 id 应以 resp_ 开头"
    );
    for event in events.iter().filter(|e| e.get("response").is_some()) {
        assert_eq!(&event["response"]["id"], id, "生命周期事件的响应 id 变了");
    }
    let items = 检查输出项(events);
    assert_eq!(
        终止(events)["output"],
        json!(items),
        "终止事件的 output 必须是全部输出项"
    );
    if !终止(events)["usage"].is_null() {
        检查用量(&终止(events)["usage"]);
    }
}

/// 输出项的开合：`output_index` 从 0 起连续；同一时刻只有一个打开的项；内容事件只属于打开的项，
/// 文本增量之前有内容部分；`done` 与 `added` 的 id、类型、`call_id` 一致。返回各 `output_item.done` 的项。
fn 检查输出项(events: &[Value]) -> Vec<Value> {
    let (mut open, mut part_open, mut done) = (None::<(u64, Value)>, false, Vec::new());
    for event in events {
        let kind = event["type"].as_str().unwrap_or_default();
        if kind == "response.output_item.added" {
            assert!(open.is_none(), "上一个输出项还没关闭就开了新项");
            assert_eq!(
                event["output_index"],
                json!(done.len()),
                "output_index 必须连续"
            );
            assert_eq!(event["item"]["status"], "in_progress");
            open = Some((done.len() as u64, event["item"].clone()));
            part_open = false;
        } else if kind == "response.output_item.done" {
            let (index, added) = open.take().expect("关闭了未打开的输出项");
            assert_eq!(event["output_index"], json!(index), "关闭的不是打开的项");
            for key in ["id", "type", "call_id"] {
                assert_eq!(event["item"][key], added[key], "输出项的 {key} 变了");
            }
            done.push(event["item"].clone());
        } else if event.get("item_id").is_some() {
            let (index, added) = open.as_ref().expect("内容事件之前必须有 output_item.added");
            assert_eq!(
                (&event["output_index"], &event["item_id"]),
                (&json!(index), &added["id"])
            );
            part_open |= kind.ends_with("part.added");
            if kind.ends_with("text.delta") || kind.ends_with("refusal.delta") {
                assert!(part_open, "文本增量之前必须有内容部分");
            }
        }
    }
    assert!(open.is_none(), "终止之前所有输出项都必须关闭");
    done
}

/// 用量各项都是整数，总数等于输入加输出。
fn 检查用量(usage: &Value) {
    let get = |pointer: &str| {
        usage
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("用量 {pointer} 必须是整数"))
    };
    get("/input_tokens_details/cached_tokens");
    get("/input_tokens_details/cache_write_tokens");
    get("/output_tokens_details/reasoning_tokens");
    assert_eq!(
        get("/total_tokens"),
        get("/input_tokens") + get("/output_tokens")
    );
}

/// 某类型的全部事件。
fn 事件<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[test]
fn 流式_纯文本_事件序列序号与用量() {
    let events = 渲染(&[
        文本("你好"),
        文本("，世界"),
        结束("stop"),
        用量(14, 2, 4, 0),
    ]);
    let expected = [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ];
    assert_eq!(类型(&events), expected);
    assert_eq!(
        events[3]["part"],
        json!({ "type": "output_text", "annotations": [], "logprobs": [], "text": "" })
    );
    assert_eq!(events[4]["logprobs"], json!([]));
    assert_eq!(events[6]["text"], "你好，世界");
    let response = 终止(&events);
    assert_eq!(response["status"], "completed");
    let item = &response["output"][0];
    assert!(item["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
    assert_eq!(
        (&item["type"], &item["role"], &item["status"]),
        (&json!("message"), &json!("assistant"), &json!("completed"))
    );
    assert_eq!(item["content"][0]["text"], "你好，世界");
    let usage = json!({ "input_tokens": 14, "input_tokens_details": { "cached_tokens": 4, "cache_write_tokens": 0 },
        "output_tokens": 2, "output_tokens_details": { "reasoning_tokens": 0 }, "total_tokens": 16 });
    assert_eq!(response["usage"], usage);
    assert_eq!(
        (&response["error"], &response["incomplete_details"]),
        (&Value::Null, &Value::Null)
    );
}

#[test]
fn 流式_响应对象_回显与补齐的字段() {
    let events = 渲染(&[文本("好"), 结束("stop")]);
    let created = &events[0]["response"];
    assert_eq!(
        (&created["status"], &created["output"], &created["usage"]),
        (&json!("in_progress"), &json!([]), &Value::Null)
    );
    assert_eq!(created["object"], "response");
    assert!(created["created_at"].is_u64(), "created_at 是整数秒");
    assert_eq!(created["model"], MODEL);
    assert_eq!(created["instructions"], "你是助手");
    assert_eq!(
        created["text"],
        json!({ "verbosity": "low", "format": { "type": "text" } }),
        "缺少的 text.format 应补上，verbosity 保留"
    );
    for key in [
        "metadata",
        "truncation",
        "reasoning",
        "temperature",
        "top_p",
        "max_output_tokens",
        "previous_response_id",
        "parallel_tool_calls",
        "tool_choice",
        "tools",
        "store",
        "user",
    ] {
        assert!(created.get(key).is_some(), "response 缺少字段 {key}");
    }
    assert_eq!(created["metadata"], json!({}));
    let response = 终止(&events);
    assert_eq!(
        (&response["model"], &response["created_at"]),
        (&created["model"], &created["created_at"])
    );
}

#[test]
fn 流式_推理后文本_推理项先关闭() {
    let events = 渲染(&[
        推理("比较两个"),
        推理("文件"),
        文本("改好了"),
        结束("stop"),
        用量(10, 30, 0, 20),
    ]);
    let types = 类型(&events);
    assert_eq!(
        &types[2..10],
        [
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
        ]
    );
    assert_eq!(
        events[3]["part"],
        json!({ "type": "summary_text", "text": "" })
    );
    assert_eq!(events[6]["text"], "比较两个文件");
    let output = &终止(&events)["output"];
    assert_eq!(output[0]["type"], "reasoning");
    assert!(output[0]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("rs_")));
    assert_eq!(
        output[0]["summary"],
        json!([{ "type": "summary_text", "text": "比较两个文件" }])
    );
    assert_eq!(
        (&output[1]["type"], &output[1]["content"][0]["text"]),
        (&json!("message"), &json!("改好了"))
    );
    assert_eq!(
        终止(&events)["usage"]["output_tokens_details"]["reasoning_tokens"],
        20
    );
}

#[test]
fn 流式_文本后两个并行调用_各自连续() {
    let events = 渲染(&[
        文本("我查一下。"),
        工具(0, Some("call_a"), Some("get_weather"), "{\"city\":"),
        工具(0, None, None, "\"巴黎\"}"),
        工具(1, Some("call_b"), Some("get_weather"), ""),
        工具(1, None, None, "{\"city\":\"罗马\"}"),
        结束("tool_calls"),
        用量(20, 15, 0, 0),
    ]);
    let output = &终止(&events)["output"];
    assert_eq!(output.as_array().map(Vec::len), Some(3));
    assert_eq!(output[0]["type"], "message");
    for (i, (call_id, arguments)) in [
        ("call_a", "{\"city\":\"巴黎\"}"),
        ("call_b", "{\"city\":\"罗马\"}"),
    ]
    .iter()
    .enumerate()
    {
        let item = &output[i + 1];
        assert!(item["id"].as_str().is_some_and(|id| id.starts_with("fc_")));
        assert_ne!(item["id"], json!(call_id), "输出项 id 与 call_id 不同");
        let expected = json!({ "id": item["id"], "type": "function_call", "status": "completed",
            "arguments": arguments, "call_id": call_id, "name": "get_weather" });
        assert_eq!(item, &expected);
    }
    let deltas = 事件(&events, "response.function_call_arguments.delta");
    let fragments: Vec<&Value> = deltas.iter().map(|e| &e["delta"]).collect();
    assert_eq!(
        fragments,
        [
            &json!("{\"city\":"),
            &json!("\"巴黎\"}"),
            &json!("{\"city\":\"罗马\"}")
        ]
    );
    assert_eq!(
        事件(&events, "response.function_call_arguments.done")[0]["arguments"],
        "{\"city\":\"巴黎\"}"
    );
    assert_eq!(终止(&events)["status"], "completed");
}

#[test]
fn 流式_交错到达的两个调用_参数各自完整() {
    let events = 渲染(&[
        工具(0, Some("call_a"), Some("读文件"), "{\"路径\":"),
        工具(1, Some("call_b"), Some("读文件"), "{\"路径\":"),
        工具(0, None, None, "\"甲.rs\"}"),
        工具(1, None, None, "\"乙.rs\"}"),
        结束("tool_calls"),
    ]);
    let output = &终止(&events)["output"];
    assert_eq!(output.as_array().map(Vec::len), Some(2));
    assert_eq!(
        (&output[0]["call_id"], &output[0]["arguments"]),
        (&json!("call_a"), &json!("{\"路径\":\"甲.rs\"}"))
    );
    assert_eq!(
        (&output[1]["call_id"], &output[1]["arguments"]),
        (&json!("call_b"), &json!("{\"路径\":\"乙.rs\"}"))
    );
    let done = 事件(&events, "response.function_call_arguments.done");
    assert_eq!(done[1]["arguments"], "{\"路径\":\"乙.rs\"}");
}

#[test]
fn 流式_同一序号不同_id_是两个输出项() {
    let events = 渲染(&[
        工具(0, Some("call_a"), Some("读文件"), "{\"路径\":\"甲\"}"),
        工具(0, Some("call_b"), Some("读文件"), "{\"路径\":\"乙\"}"),
        结束("tool_calls"),
    ]);
    let output = &终止(&events)["output"];
    assert_eq!(output.as_array().map(Vec::len), Some(2));
    assert_eq!(
        (&output[0]["call_id"], &output[0]["arguments"]),
        (&json!("call_a"), &json!("{\"路径\":\"甲\"}"))
    );
    assert_eq!(
        (&output[1]["call_id"], &output[1]["arguments"]),
        (&json!("call_b"), &json!("{\"路径\":\"乙\"}"))
    );
    assert_ne!(output[0]["id"], output[1]["id"]);
}

#[test]
fn 流式_纯工具回答_没有消息项_空参数为花括号() {
    let events = 渲染(&[
        工具(0, Some("call_x"), Some("列目录"), ""),
        结束("tool_calls"),
    ]);
    let types = 类型(&events);
    assert!(
        !types
            .iter()
            .any(|t| t.contains("content_part") || t.contains("output_text")),
        "纯工具回答不应有消息项的事件"
    );
    assert_eq!(events[2]["output_index"], 0);
    assert_eq!(
        events[2]["item"],
        json!({ "id": events[2]["item"]["id"], "type": "function_call", "status": "in_progress",
            "arguments": "", "call_id": "call_x", "name": "列目录" })
    );
    assert!(事件(&events, "response.function_call_arguments.delta").is_empty());
    assert_eq!(
        事件(&events, "response.function_call_arguments.done")[0]["arguments"],
        "{}"
    );
    let output = &终止(&events)["output"];
    assert_eq!(output.as_array().map(Vec::len), Some(1));
    assert_eq!(output[0]["arguments"], "{}");
}

#[test]
fn 流式_自由格式工具_输入原样拆包() {
    let wrapped = json!({ "input": PATCH }).to_string();
    let (head, tail) = wrapped.split_at(12);
    let events = 渲染(&[
        工具(0, Some("call_p"), Some("apply_patch"), head),
        工具(0, None, None, tail),
        结束("tool_calls"),
    ]);
    assert!(事件(&events, "response.function_call_arguments.delta").is_empty());
    let added = &事件(&events, "response.output_item.added")[0]["item"];
    assert_eq!(
        added,
        &json!({ "id": added["id"], "type": "custom_tool_call", "status": "in_progress",
            "call_id": "call_p", "name": "apply_patch", "input": "" })
    );
    let deltas = 事件(&events, "response.custom_tool_call_input.delta");
    assert_eq!(deltas.len(), 1, "输入应作为一个完整增量写出");
    assert_eq!(deltas[0]["delta"], PATCH);
    assert_eq!(
        事件(&events, "response.custom_tool_call_input.done")[0]["input"],
        PATCH
    );
    let item = &终止(&events)["output"][0];
    assert!(item["id"].as_str().is_some_and(|id| id.starts_with("ctc_")));
    assert_eq!(
        item,
        &json!({ "id": item["id"], "type": "custom_tool_call", "status": "completed",
            "call_id": "call_p", "name": "apply_patch", "input": PATCH })
    );
}

#[test]
fn 流式_自由格式工具_参数没有包装时原样作为输入() {
    let events = 渲染(&[
        工具(0, Some("call_p"), Some("apply_patch"), "*** Begin Patch"),
        结束("tool_calls"),
    ]);
    assert_eq!(终止(&events)["output"][0]["input"], "*** Begin Patch");
}

#[test]
fn 流式_命名空间工具_还原名字与命名空间() {
    let events = 渲染(&[
        工具(
            0,
            Some("call_n"),
            Some("浏览器__打开"),
            "{\"网址\":\"例子.中国\"}",
        ),
        结束("tool_calls"),
    ]);
    let added = &事件(&events, "response.output_item.added")[0]["item"];
    assert_eq!(
        (&added["name"], &added["namespace"]),
        (&json!("打开"), &json!("浏览器"))
    );
    let item = &终止(&events)["output"][0];
    assert_eq!(
        (&item["type"], &item["name"], &item["namespace"]),
        (&json!("function_call"), &json!("打开"), &json!("浏览器"))
    );
    assert_eq!(item["arguments"], "{\"网址\":\"例子.中国\"}");
}

#[test]
fn 流式_长度上限_未完成且原因为输出上限() {
    let events = 渲染(&[文本("写到一半"), 结束("length"), 用量(5, 100, 0, 0)]);
    assert_eq!(类型(&events).last(), Some(&"response.incomplete"));
    let response = 终止(&events);
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"],
        json!({ "reason": "max_output_tokens" })
    );
    assert_eq!(
        response["output"][0]["status"], "incomplete",
        "被截断的消息项状态为 incomplete"
    );
    assert_eq!(response["usage"]["output_tokens"], 100);
}

#[test]
fn 流式_内容过滤_未完成且原因为内容过滤() {
    let events = 渲染(&[文本("这个"), 结束("content_filter")]);
    let response = 终止(&events);
    assert_eq!(
        (&response["status"], &response["incomplete_details"]),
        (&json!("incomplete"), &json!({ "reason": "content_filter" }))
    );
    assert_eq!(类型(&events).last(), Some(&"response.incomplete"));
}

#[test]
fn 流式_没有用量块_用估计的整数() {
    let events = 渲染(&[推理("想"), 文本("甲"), 文本("乙"), 结束("stop")]);
    let usage = json!({ "input_tokens": ESTIMATE, "input_tokens_details": { "cached_tokens": 0, "cache_write_tokens": 0 },
        "output_tokens": 3, "output_tokens_details": { "reasoning_tokens": 1 }, "total_tokens": ESTIMATE + 3 });
    assert_eq!(终止(&events)["usage"], usage);
}

#[test]
fn 流式_拒答_写成拒答部分() {
    let events = 渲染(&[块(json!({ "refusal": "无法协助" }), None), 结束("stop")]);
    assert_eq!(
        事件(&events, "response.content_part.added")[0]["part"],
        json!({ "type": "refusal", "refusal": "" })
    );
    assert_eq!(
        事件(&events, "response.refusal.done")[0]["refusal"],
        "无法协助"
    );
    assert_eq!(
        终止(&events)["output"][0]["content"],
        json!([{ "type": "refusal", "refusal": "无法协助" }])
    );
}

/// 一个转告了上游错误码的流中错误。
fn 上游错误(code: &str) -> ApiError {
    let mut error = ApiError::bad_gateway(ErrorCode::UpstreamStreamError, "上游在流中报告了错误");
    error.upstream_code = Some(code.into());
    error
}

#[test]
fn 流式_失败_什么都没写时先写开头() {
    let mut stream = 状态机();
    let mut out = BytesMut::new();
    let error = ApiError::bad_gateway(ErrorCode::UpstreamStreamTruncated, "上游断开了流");
    stream.fail(&error, &mut out);
    let events = 解析(&out);
    检查结构(&events);
    assert_eq!(
        类型(&events),
        [
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
    let response = 终止(&events);
    assert_eq!(
        (&response["status"], &response["output"], &response["usage"]),
        (&json!("failed"), &json!([]), &Value::Null)
    );
    assert_eq!(
        response["error"],
        json!({ "code": "upstream_stream_truncated", "message": "上游断开了流" })
    );
}

#[test]
fn 流式_失败_文本中途_半截消息项标为未完成() {
    let mut stream = 状态机();
    let mut out = BytesMut::new();
    for data in [推理("想好了"), 文本("写到"), 文本("一半")] {
        assert_eq!(stream.on_hub_event(&data, &mut out), Ok(false));
    }
    stream.fail(&上游错误("server_error"), &mut out);
    let events = 解析(&out);
    检查结构(&events);
    let output = &终止(&events)["output"];
    assert_eq!(output.as_array().map(Vec::len), Some(2));
    assert_eq!(
        (&output[0]["type"], &output[0]["status"]),
        (&json!("reasoning"), &json!("completed"))
    );
    assert_eq!(
        (&output[1]["status"], &output[1]["content"][0]["text"]),
        (&json!("incomplete"), &json!("写到一半"))
    );
    assert_eq!(终止(&events)["error"]["code"], "server_error");
}

#[test]
fn 流式_失败_调用中途_直播的调用关闭而缓存的不写出() {
    let mut stream = 状态机();
    let mut out = BytesMut::new();
    for data in [
        工具(0, Some("call_a"), Some("读文件"), "{\"路径\":"),
        工具(1, Some("call_b"), Some("读文件"), "{\"路径\":\"乙\"}"),
        用量(9, 3, 0, 0),
    ] {
        assert_eq!(stream.on_hub_event(&data, &mut out), Ok(false));
    }
    stream.fail(&上游错误("server_error"), &mut out);
    let events = 解析(&out);
    检查结构(&events);
    let output = &终止(&events)["output"];
    assert_eq!(output.as_array().map(Vec::len), Some(1), "只有宣布过的调用");
    assert_eq!(
        (
            &output[0]["call_id"],
            &output[0]["status"],
            &output[0]["arguments"]
        ),
        (&json!("call_a"), &json!("incomplete"), &json!("{\"路径\":"))
    );
    assert_eq!(
        终止(&events)["usage"]["input_tokens"],
        9,
        "已知的用量随失败一起给出"
    );
}

#[test]
fn 流式_终止之后_失败与新事件都不写任何东西() {
    let mut stream = 状态机();
    let mut out = BytesMut::new();
    for data in [文本("好"), 结束("stop")] {
        assert_eq!(stream.on_hub_event(&data, &mut out), Ok(false));
    }
    assert_eq!(stream.on_hub_event("[DONE]", &mut out), Ok(true));
    let written = out.len();
    stream.fail(&上游错误("server_error"), &mut out);
    assert_eq!(stream.on_hub_event(&文本("多余"), &mut out), Ok(true));
    assert_eq!(stream.on_hub_event("[DONE]", &mut out), Ok(true));
    assert_eq!(out.len(), written, "终止事件之后不应再写任何东西");
    let events = 解析(&out);
    检查结构(&events);
    assert_eq!(类型(&events).last(), Some(&"response.completed"));
}

#[test]
fn 流式_上下文超长_错误码原样保留() {
    let mut stream = 状态机();
    let mut out = BytesMut::new();
    let chunk = json!({ "error": { "message": "上下文超长", "code": "context_length_exceeded" } });
    let parsed = stream
        .on_hub_event(&chunk.to_string(), &mut out)
        .expect_err("流中的错误对象应报错");
    assert_eq!(parsed.code, ErrorCode::UpstreamStreamError);
    assert_eq!(parsed.envelope_code(), "context_length_exceeded");
    assert!(out.is_empty(), "出错时不写任何东西");
    stream.fail(&parsed, &mut out);
    let events = 解析(&out);
    检查结构(&events);
    assert_eq!(终止(&events)["error"]["code"], "context_length_exceeded");
}

#[test]
fn 流式_不是_json_对象_报_502() {
    let mut stream = 状态机();
    let mut out = BytesMut::new();
    for data in ["不是 JSON", "[1, 2]", "\"字符串\""] {
        let error = stream
            .on_hub_event(data, &mut out)
            .expect_err("非对象应报错");
        assert_eq!(
            (error.status, error.code),
            (502, ErrorCode::InvalidUpstreamResponse)
        );
    }
    assert!(out.is_empty(), "出错时不写任何东西");
}

#[test]
fn 流式_完成事件_与输出项完成事件一致_用量整数() {
    let wrapped = json!({ "input": PATCH }).to_string();
    let events = 渲染(&[
        推理("先看看"),
        文本("开始修改"),
        工具(0, Some("call_a"), Some("浏览器__打开"), "{}"),
        工具(1, Some("call_p"), Some("apply_patch"), &wrapped),
        结束("tool_calls"),
        用量(100, 50, 60, 10),
    ]);
    let types: Vec<&Value> = 终止(&events)["output"]
        .as_array()
        .expect("output 是数组")
        .iter()
        .map(|item| &item["type"])
        .collect();
    assert_eq!(
        types,
        [
            &json!("reasoning"),
            &json!("message"),
            &json!("function_call"),
            &json!("custom_tool_call")
        ]
    );
    assert_eq!(
        终止(&events)["usage"]["input_tokens_details"]["cached_tokens"],
        60
    );
    assert_eq!(终止(&events)["usage"]["total_tokens"], 150);
}
