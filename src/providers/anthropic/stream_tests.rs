//! 流式翻译的测试：黄金用例、工具调用、用量、错误、切分与随机输入。

use bytes::Bytes;
use serde_json::{json, Value};

use super::error::{stream_error, STATUS_STREAM_ERROR};
use super::test_support::*;
use super::AnthropicFilter;
use crate::providers::ProviderFilter;

/// 期望的一个 OpenAI 流式块（id 来自录制的流）。
fn 块(delta: Value, finish: Value) -> Value {
    json!({ "id": "msg_01", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
        "choices": [ { "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish } ] })
}

/// 期望的工具调用首个增量块。
fn 工具开始(index: usize, id: &str, name: &str) -> Value {
    块(
        json!({ "tool_calls": [ { "index": index, "id": id, "type": "function", "function": { "name": name, "arguments": "" } } ] }),
        Value::Null,
    )
}

/// 期望的工具参数片段块。
fn 工具参数(index: usize, fragment: &str) -> Value {
    块(
        json!({ "tool_calls": [ { "index": index, "function": { "arguments": fragment } } ] }),
        Value::Null,
    )
}

/// 按工具序号拼接全部参数片段。
fn 拼接参数(events: &[Value], index: usize) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0].as_object())
        .filter(|call| call.get("index") == Some(&json!(index)))
        .filter_map(|call| call.get("function").and_then(|f| f["arguments"].as_str()))
        .collect()
}

#[test]
fn 流式_黄金用例_逐块一致() {
    let (out, end) = 翻译流(&[RECORDED_STREAM.as_bytes()], true);
    assert_eq!(end, Ok(()));
    let usage = json!({ "prompt_tokens": 33, "completion_tokens": 65, "total_tokens": 98,
        "prompt_tokens_details": { "cached_tokens": 10 }, "completion_tokens_details": { "reasoning_tokens": 0 } });
    let expected = vec![
        块(json!({ "role": "assistant", "content": "" }), Value::Null),
        块(json!({ "content": "我来查一下。" }), Value::Null),
        工具开始(0, "toolu_A", "get_weather"),
        工具参数(0, "{\"city\": \"巴"),
        工具参数(0, "黎\"}"),
        工具开始(1, "toolu_B", "get_time"),
        工具参数(1, "{\"tz\":\"CET\"}"),
        块(json!({}), json!("tool_calls")),
        json!({ "id": "msg_01", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL, "choices": [], "usage": usage }),
        json!("[DONE]"),
    ];
    assert_eq!(事件(&out), expected);
}

#[test]
fn 流式_文本后两个工具调用_索引为0和1() {
    let (out, _) = 翻译流(&[RECORDED_STREAM.as_bytes()], false);
    let events = 事件(&out);
    let starts: Vec<(Value, Value)> = events
        .iter()
        .map(|e| &e["choices"][0]["delta"]["tool_calls"][0])
        .filter(|call| call.get("id").is_some())
        .map(|call| (call["index"].clone(), call["id"].clone()))
        .collect();
    assert_eq!(
        starts,
        vec![(json!(0), json!("toolu_A")), (json!(1), json!("toolu_B"))],
        "工具序号不是内容块序号"
    );
    let first: Value =
        serde_json::from_str(&拼接参数(&events, 0)).expect("参数拼接后必须是合法 JSON");
    assert_eq!(first, json!({ "city": "巴黎" }));
    assert_eq!(拼接参数(&events, 1), "{\"tz\":\"CET\"}");
}

#[test]
fn 流式_无参数工具_参数补为空对象且可回传() {
    let stream = concat!(
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_9\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_N\",\"name\":\"now\",\"input\":{}}}\n\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );
    let (out, end) = 翻译流(&[stream.as_bytes()], false);
    assert_eq!(end, Ok(()));
    let arguments = 拼接参数(&事件(&out), 0);
    assert_eq!(
        arguments, "{}",
        "只收到空片段时必须补 {{}}，重复的 stop 不能再补"
    );
    let history = json!([ { "role": "user", "content": "几点了" },
        { "role": "assistant", "content": null, "tool_calls": [ { "id": "toolu_N", "type": "function", "function": { "name": "now", "arguments": arguments } } ] },
        { "role": "tool", "tool_call_id": "toolu_N", "content": "12:00" } ]);
    assert_eq!(对话(history)[1]["content"][0]["input"], json!({}));
}

#[test]
fn 流式_用量块恰好一个且在_done_之前_未要求时没有() {
    let (out, _) = 翻译流(&[RECORDED_STREAM.as_bytes()], true);
    let events = 事件(&out);
    let usage_at: Vec<usize> = (0..events.len())
        .filter(|&i| events[i].get("usage").is_some())
        .collect();
    assert_eq!(
        usage_at,
        vec![events.len() - 2],
        "恰好一个用量块，紧挨在 [DONE] 之前"
    );
    assert_eq!(events[events.len() - 2]["choices"], json!([]));
    let finish_at = events
        .iter()
        .position(|e| e["choices"][0]["finish_reason"].is_string());
    assert_eq!(finish_at, Some(events.len() - 3), "用量块在结束块之后");
    let (plain, _) = 翻译流(&[RECORDED_STREAM.as_bytes()], false);
    assert!(!plain.contains("\"usage\""), "客户端没要求时不能有用量块");
}

#[test]
fn 提示缓存_流式与非流式用量一致() {
    let (out, _) = 翻译流(&[RECORDED_STREAM.as_bytes()], true);
    let events = 事件(&out);
    let stream_usage = events[events.len() - 2]["usage"].clone();
    let reply = AnthropicFilter
        .translate_response(Bytes::from(完整响应().to_string()), &上下文(false))
        .expect("应当翻译成功");
    let full: Value = serde_json::from_slice(&reply.body).expect("JSON");
    assert_eq!(stream_usage, full["usage"]);
    assert_eq!(
        stream_usage["prompt_tokens"], 33,
        "输入含缓存读取与缓存写入"
    );
    assert_eq!(stream_usage["prompt_tokens_details"]["cached_tokens"], 10);
}

#[test]
fn 流式_累计用量覆盖起始值_没有用量的_message_delta_也接受() {
    let stream = |delta_usage: &str| {
        format!(concat!(
        "data: {{\"type\":\"message_start\",\"message\":{{\"id\":\"m\",\"usage\":{{\"input_tokens\":7,\"cache_read_input_tokens\":2,\"output_tokens\":1}}}}}}\n\n",
        "data: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}}{}}}\n\n",
        "data: {{\"type\":\"message_stop\"}}\n\n"), delta_usage)
    };
    let usage_of = |text: &str| {
        let (out, _) = 翻译流(&[text.as_bytes()], true);
        let events = 事件(&out);
        events[events.len() - 2]["usage"].clone()
    };
    let later = usage_of(&stream(",\"usage\":{\"input_tokens\":9,\"output_tokens\":20,\"output_tokens_details\":{\"thinking_tokens\":4}}"));
    assert_eq!(
        (
            later["prompt_tokens"].clone(),
            later["completion_tokens"].clone()
        ),
        (json!(11), json!(20))
    );
    assert_eq!(later["completion_tokens_details"]["reasoning_tokens"], 4);
    let missing = usage_of(&stream(""));
    assert_eq!(
        (
            missing["prompt_tokens"].clone(),
            missing["completion_tokens"].clone()
        ),
        (json!(9), json!(1))
    );
}

#[test]
fn 流式_思考块签名引用_ping_与未知事件被忽略_只有一个结束块() {
    let stream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_t\",\"usage\":{\"input_tokens\":3}}}\n\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"想\"}}\n\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"签\"}}\n\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: 未来事件\ndata: {\"type\":\"未来事件\",\"内容\":1}\n\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"答案\"}}\n\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"citations_delta\",\"citation\":{}}}\n\n",
        "data: {\"type\": \"ping\"}\n\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":6}}\n\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );
    let (out, end) = 翻译流(&[stream.as_bytes()], false);
    assert_eq!(end, Ok(()));
    let expected_deltas = vec![
        json!({ "role": "assistant", "content": "" }),
        json!({ "content": "答案" }),
        json!({}),
    ];
    let events = 事件(&out);
    let deltas: Vec<Value> = events
        .iter()
        .filter(|e| e.is_object())
        .map(|e| e["choices"][0]["delta"].clone())
        .collect();
    assert_eq!(deltas, expected_deltas, "思考、签名与引用不得输出");
    let finishes: Vec<&Value> = events
        .iter()
        .map(|e| &e["choices"][0]["finish_reason"])
        .filter(|f| f.is_string())
        .collect();
    assert_eq!(finishes, vec![&json!("stop")], "只能有一个结束块");
}

#[test]
fn 流中过载错误_返回_503_server_error_不伪造结束原因() {
    let stream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_e\",\"usage\":{\"input_tokens\":3}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"一半\"}}\n\n",
        "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
    );
    let (out, end) = 翻译流(&[stream.as_bytes()], true);
    let e = end.expect_err("流中错误必须交给 exchange");
    assert_eq!(
        (e.status, e.kind, Some(e.envelope_code())),
        (503, "server_error", Some("overloaded"))
    );
    assert!(
        e.detail().is_some_and(|d| d.contains("Overloaded")),
        "上游原文应留在日志细节里：{:?}",
        e.detail()
    );
    assert!(
        !out.contains("finish_reason\":\""),
        "不得伪造结束原因：{out}"
    );
    assert!(!out.contains("[DONE]"));
    assert_eq!(
        stream_error(&json!({ "message": "？" })).status,
        STATUS_STREAM_ERROR,
        "未知类型为 502"
    );
}

#[test]
fn 上游未发送_message_stop_就断开_返回截断错误() {
    let cut = RECORDED_STREAM
        .find("event: message_delta")
        .expect("录制的流含 message_delta");
    let (out, end) = 翻译流(&[&RECORDED_STREAM.as_bytes()[..cut]], true);
    let e = end.expect_err("截断必须报错");
    assert_eq!(
        (e.status, Some(e.envelope_code())),
        (502, Some("upstream_stream_truncated"))
    );
    assert!(
        !out.contains("finish_reason\":\"") && !out.contains("[DONE]"),
        "截断时不得输出结束块：{out}"
    );
    let (_, early) = 翻译流(
        &[b"data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"],
        false,
    );
    assert_eq!(
        early.map_err(|e| e.status),
        Err(502),
        "message_start 之前的内容事件不合协议"
    );
}

#[test]
fn 流式_回车换行_注释与任意位置切分_输出逐字节相同() {
    let (expected, end) = 翻译流(&[RECORDED_STREAM.as_bytes()], true);
    assert_eq!(end, Ok(()));
    let crlf = format!(
        ": 保活注释\r\n\r\n{}",
        RECORDED_STREAM.replace('\n', "\r\n")
    );
    for text in [RECORDED_STREAM, crlf.as_str()] {
        for cut in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            let (actual, end) = 翻译流(&[a, b], true);
            assert_eq!(end, Ok(()), "在第 {cut} 字节处切分后流未正常结束");
            assert_eq!(actual, expected, "在第 {cut} 字节处切分后输出不同");
        }
    }
    let bytes: Vec<&[u8]> = RECORDED_STREAM.as_bytes().chunks(1).collect();
    assert_eq!(翻译流(&bytes, true).0, expected, "逐字节喂入后输出不同");
}

/// 随机测试的轮数。
const FUZZ_ROUNDS: u64 = 3000;
/// 随机测试的固定种子（失败可复现）。
const FUZZ_SEED: u64 = 0x5eed_c1a0_de00_0001;
/// 每轮随机事件数。
const FUZZ_EVENTS: usize = 24;
/// 每轮随机字节的最大长度。
const FUZZ_MAX_BYTES: u64 = 256;

/// 确定性伪随机数（xorshift64）。
struct XorShift(u64);

impl XorShift {
    /// 下一个伪随机数。
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// 随机取一个元素。
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let at = self.next() % items.len() as u64;
        &items[usize::try_from(at).unwrap_or_default()]
    }
}

/// 随机取一个各种类型（含边界值）的 JSON 值。
fn 随机值(rng: &mut XorShift) -> Value {
    let values = [
        Value::Null,
        json!(0),
        json!(1),
        json!(2),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!("文本"),
        json!(""),
        json!("{\"a\":"),
        json!({}),
        json!([]),
        json!(true),
        json!("overloaded_error"),
    ];
    rng.pick(&values).clone()
}

/// 随机组合的 Anthropic 事件：类型、序号与各字段都可能不合法。
fn 随机事件(rng: &mut XorShift) -> Value {
    let types = [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
        "ping",
        "未知",
    ];
    let blocks = [
        "text",
        "tool_use",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
    ];
    let deltas = [
        "text_delta",
        "input_json_delta",
        "thinking_delta",
        "signature_delta",
        "citations_delta",
    ];
    let index = match rng.next() % 4 {
        0 => 随机值(rng),
        n => json!(n - 1),
    };
    json!({
        "type": rng.pick(&types), "index": index,
        "message": { "id": 随机值(rng), "usage": { "input_tokens": 随机值(rng), "output_tokens": 随机值(rng) } },
        "content_block": { "type": rng.pick(&blocks), "id": 随机值(rng), "name": 随机值(rng), "text": 随机值(rng) },
        "delta": { "type": rng.pick(&deltas), "text": 随机值(rng), "partial_json": 随机值(rng), "stop_reason": 随机值(rng) },
        "usage": { "output_tokens": 随机值(rng) },
        "error": { "type": 随机值(rng), "message": 随机值(rng) },
    })
}

/// 无论输入如何，输出都必须是合法的 OpenAI 事件：JSON 块或最后的 `[DONE]`，且最多一个结束块。
fn 检查输出(out: &str) {
    let payloads: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
    let mut finishes = 0;
    for (i, payload) in payloads.iter().enumerate() {
        let data = payload
            .strip_prefix("data: ")
            .expect("每个输出事件都以 data: 开头");
        if data == "[DONE]" {
            assert_eq!(i, payloads.len() - 1, "[DONE] 必须是最后一个事件：{out}");
            continue;
        }
        let chunk: Value = serde_json::from_str(data).expect("每个输出事件都是 JSON");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        finishes += usize::from(chunk["choices"][0]["finish_reason"].is_string());
    }
    assert!(finishes <= 1, "最多一个结束块：{out}");
}

#[test]
fn 流式_垃圾字节与随机事件不会崩溃且输出始终合法() {
    let mut rng = XorShift(FUZZ_SEED);
    let start = "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_f\"}}\n\n";
    for round in 0..FUZZ_ROUNDS {
        let mut text = String::from(if round % 2 == 0 { start } else { "" });
        for _ in 0..FUZZ_EVENTS {
            text.push_str(&format!("event: 随机\ndata: {}\n\n", 随机事件(&mut rng)));
        }
        let (out, _) = 翻译流(&[text.as_bytes()], round % 3 == 0);
        检查输出(&out);
        let garbage: Vec<u8> = (0..rng.next() % FUZZ_MAX_BYTES)
            .map(|_| *rng.pick(b"data: {}\n\r\"type:message_stop\xff\xfe"))
            .collect();
        let (out, _) = 翻译流(&[start.as_bytes(), &garbage], true);
        检查输出(&out);
    }
}

#[test]
fn 流式_没有事件名时走通用解析_输出与有事件名时逐字节相同() {
    let without_names: String = RECORDED_STREAM
        .lines()
        .filter(|line| !line.starts_with("event:"))
        .map(|line| format!("{line}\n"))
        .collect();
    let (named, named_end) = 翻译流(&[RECORDED_STREAM.as_bytes()], true);
    let (plain, plain_end) = 翻译流(&[without_names.as_bytes()], true);
    assert_eq!((named_end, plain_end), (Ok(()), Ok(())));
    assert_eq!(named, plain, "定型快速路径与通用路径的输出必须一致");
}

#[test]
fn 流式_增量字段类型不对时按空处理_不报错也不输出() {
    let stream = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"usage\":{\"input_tokens\":1}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":5}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"第二段\\n带换行\"}}\n\n",
    );
    let (out, _) = 翻译流(&[stream.as_bytes()], false);
    let contents: Vec<Value> = 事件(&out)
        .iter()
        .map(|e| e["choices"][0]["delta"]["content"].clone())
        .collect();
    assert_eq!(contents, vec![json!(""), json!("第二段\n带换行")]);
}
