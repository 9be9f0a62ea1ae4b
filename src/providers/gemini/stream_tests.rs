//! 流式翻译的测试：黄金样例、切分、并行函数调用、结束原因、用量、错误与随机输入。

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::signature::{call_id, extract_signature};
use super::test_support::*;
use super::GeminiFilter;
use crate::error::ApiError;
use crate::providers::{ProviderFilter, StreamStatus};
use crate::streaming::{SseEvent, SseParser};

/// 期望的一个 OpenAI 流式块（id、时间与模型固定为录制流的值）。
fn 期望块(delta: Value, finish: Value) -> Value {
    json!({ "id": "chatcmpl-流甲", "object": "chat.completion.chunk", "created": 7, "model": "演示",
            "choices": [ { "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish } ] })
}

/// 把字节按给定切分逐段交给 SSE 解析器与翻译器（与 exchange 的驱动方式相同），返回输出与结束结果。
fn 解析并翻译(pieces: &[&[u8]], include_usage: bool) -> (Vec<u8>, Result<(), ApiError>) {
    let mut parser = SseParser::default();
    let mut translator = GeminiFilter.stream_translator(上下文(include_usage));
    let (mut events, mut out) = (Vec::new(), BytesMut::new());
    let mut feed = |events: &mut Vec<SseEvent>, out: &mut BytesMut| -> Result<(), ApiError> {
        events
            .drain(..)
            .try_for_each(|e| translator.on_event(&e, out).map(|_| ()))
    };
    for piece in pieces {
        parser.push(piece, &mut events);
        if let Err(e) = feed(&mut events, &mut out) {
            return (out.to_vec(), Err(e));
        }
    }
    parser.finish(&mut events);
    let fed = feed(&mut events, &mut out);
    let end = fed.and_then(|_| translator.on_eof(&mut out));
    (out.to_vec(), end)
}

#[test]
fn 流_黄金样例_录制的流逐块翻译() {
    let (out, end) = 解析并翻译(&[录制的流.as_bytes()], true);
    assert!(end.is_ok(), "正常结束的流不应报错：{end:?}");
    let text = String::from_utf8(out).expect("UTF-8");
    assert!(text.ends_with("data: [DONE]\n\n"), "必须以 [DONE] 结束");
    let first = call_id("chatcmpl-流甲", 0, Some("c2lnLTA="));
    let second = call_id("chatcmpl-流甲", 1, None);
    let usage = json!({ "prompt_tokens": 8, "completion_tokens": 8, "total_tokens": 16,
        "prompt_tokens_details": { "cached_tokens": 0 }, "completion_tokens_details": { "reasoning_tokens": 2 } });
    let expected = vec![
        期望块(json!({ "role": "assistant", "content": "" }), Value::Null),
        期望块(json!({ "content": "好的，" }), Value::Null),
        期望块(
            json!({ "tool_calls": [ { "index": 0, "id": first, "type": "function", "function": { "name": "查天气", "arguments": "{\"城市\":\"巴黎\"}" } } ] }),
            Value::Null,
        ),
        期望块(
            json!({ "tool_calls": [ { "index": 1, "id": second, "type": "function", "function": { "name": "查时间", "arguments": "{}" } } ] }),
            Value::Null,
        ),
        期望块(json!({}), json!("tool_calls")),
        json!({ "id": "chatcmpl-流甲", "object": "chat.completion.chunk", "created": 7, "model": "演示", "choices": [], "usage": usage }),
    ];
    assert_eq!(块(&text), expected);
    assert_eq!(extract_signature(&first).as_deref(), Some("c2lnLTA="));
}

#[test]
fn 任意字节位置切分_输出逐字节相同() {
    let bytes = 录制的流.as_bytes();
    let (reference, end) = 解析并翻译(&[bytes], true);
    assert!(end.is_ok());
    for cut in 0..=bytes.len() {
        let (split, end) = 解析并翻译(&[&bytes[..cut], &bytes[cut..]], true);
        assert!(end.is_ok(), "在第 {cut} 字节切开后不应报错");
        assert_eq!(split, reference, "在第 {cut} 字节切开后输出不同");
    }
    let single: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(
        解析并翻译(&single, true).0,
        reference,
        "逐字节喂入后输出不同"
    );
}

#[test]
fn 并行函数调用_同一块里_索引为0和1() {
    let events = [事件(
        json!([函数调用("查天气"), 函数调用("查天气")]),
        Some("STOP"),
    )];
    let (out, end) = 运行流(&events, false);
    assert!(end.is_ok());
    let calls = 工具增量(&块(&out));
    let indices: Vec<&Value> = calls.iter().map(|c| &c["index"]).collect();
    assert_eq!(indices, [&json!(0), &json!(1)]);
    assert_ne!(
        calls[0]["id"], calls[1]["id"],
        "同名工具调用两次也必须有不同的 id"
    );
    assert!(
        calls
            .iter()
            .all(|c| c["function"]["arguments"] == "{\"城市\":\"巴黎\"}"),
        "参数不得拼接"
    );
}

#[test]
fn 并行函数调用_分在两个块里_索引为0和1() {
    let events = [
        事件(json!([函数调用("查天气")]), None),
        事件(json!([函数调用("查时间")]), None),
        json!({ "candidates": [ { "finishReason": "STOP", "index": 0 } ] }),
    ];
    let (out, end) = 运行流(&events, false);
    assert!(end.is_ok());
    let chunks = 块(&out);
    let calls = 工具增量(&chunks);
    let summary: Vec<(Value, Value)> = calls
        .iter()
        .map(|c| (c["index"].clone(), c["function"]["name"].clone()))
        .collect();
    assert_eq!(
        summary,
        [(json!(0), json!("查天气")), (json!(1), json!("查时间"))]
    );
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    assert!(
        chunks.iter().all(|c| c["id"] == "chatcmpl-事件甲"),
        "流 id 必须始终相同"
    );
}

#[test]
fn 函数调用轮_结束原因在无内容的末块里_映射为_tool_calls() {
    let events = [
        事件(json!([函数调用("查天气")]), None),
        json!({ "candidates": [ { "content": { "role": "model", "parts": [ { "text": "" } ] }, "finishReason": "STOP", "index": 0 } ] }),
    ];
    let (out, end) = 运行流(&events, false);
    assert!(end.is_ok());
    assert_eq!(结束原因(&块(&out)), ["tool_calls"]);
    assert!(out.ends_with("data: [DONE]\n\n"));
}

#[test]
fn 每块都带_stop_只输出一个结束块_开头的空_stop_也容忍() {
    let events = [
        json!({ "candidates": [ { "content": { "role": "model", "parts": [] }, "finishReason": "STOP", "index": 0 } ] }),
        事件(json!([ { "text": "第一段" } ]), Some("STOP")),
        事件(json!([ { "text": "第二段" } ]), Some("STOP")),
        事件(json!([ { "text": "第三段" } ]), Some("MAX_TOKENS")),
    ];
    let (out, end) = 运行流(&events, false);
    assert!(end.is_ok());
    let chunks = 块(&out);
    assert_eq!(结束原因(&chunks), ["length"], "只输出最后的结束原因");
    assert_eq!(
        chunks.last().map(|c| &c["choices"][0]["finish_reason"]),
        Some(&json!("length")),
        "结束块在最后"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "第一段第二段第三段");
}

#[test]
fn 要求用量时恰好一个用量块在结束块之后_不要求时没有() {
    let mut last = 事件(json!([ { "text": "你好" } ]), Some("STOP"));
    last["usageMetadata"] =
        json!({ "promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5 });
    let (with_usage, _) = 运行流(std::slice::from_ref(&last), true);
    let chunks = 块(&with_usage);
    let usage: Vec<&Value> = chunks.iter().filter(|c| c.get("usage").is_some()).collect();
    assert_eq!(usage.len(), 1, "恰好一个用量块");
    assert_eq!(chunks.last(), Some(usage[0]), "用量块在最后（[DONE] 之前）");
    assert_eq!(usage[0]["choices"], json!([]));
    assert_eq!(usage[0]["usage"]["total_tokens"], 5);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
    let (without, _) = 运行流(&[last], false);
    assert!(
        块(&without).iter().all(|c| c.get("usage").is_none()),
        "未要求时没有用量块"
    );
    assert!(with_usage.ends_with("data: [DONE]\n\n") && without.ends_with("data: [DONE]\n\n"));
}

#[test]
fn 累计用量_最后一次为准_不相加_没有用量的块不清零() {
    let with_usage = |text: &str, candidates: u64, finish: Option<&str>| {
        let mut event = 事件(json!([ { "text": text } ]), finish);
        event["usageMetadata"] = json!({ "promptTokenCount": 10, "candidatesTokenCount": candidates, "thoughtsTokenCount": 4, "totalTokenCount": 14 + candidates });
        event
    };
    let events = [
        with_usage("一", 1, None),
        with_usage("二", 2, None),
        json!({ "candidates": [ { "finishReason": "STOP", "index": 0 } ], "usageMetadata": { "promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 4, "totalTokenCount": 19 } }),
        json!({ "responseId": "事件甲" }),
    ];
    let (out, end) = 运行流(&events, true);
    assert!(end.is_ok());
    let chunks = 块(&out);
    let usage = &chunks.last().expect("必须有用量块")["usage"];
    assert_eq!(
        (
            &usage["prompt_tokens"],
            &usage["completion_tokens"],
            &usage["total_tokens"]
        ),
        (&json!(10), &json!(9), &json!(19)),
        "用量以最后一次为准且不相加：{usage}"
    );
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 4);
}

#[test]
fn 没有结束原因就断开_返回截断错误() {
    let (out, end) = 运行流(&[事件(json!([ { "text": "说到一半" } ]), None)], true);
    let e = end.expect_err("没有结束原因的流必须报错");
    assert_eq!(
        (e.status, Some(e.envelope_code())),
        (502, Some("upstream_stream_truncated"))
    );
    assert!(
        !out.contains("[DONE]") && 结束原因(&块(&out)).is_empty(),
        "截断的流不能有结束块与 [DONE]"
    );
    let (_, empty) = 运行流(&[], true);
    assert_eq!(
        Some(empty.expect_err("空流必须报错").envelope_code()),
        Some("upstream_stream_truncated")
    );
}

#[test]
fn 流中的错误对象与非_json_事件_返回错误() {
    let cases = [
        (
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
            "upstream_stream_error",
        ),
        ("不是 JSON", "invalid_upstream_response"),
        ("[1,2]", "invalid_upstream_response"),
    ];
    for (data, code) in cases {
        let mut translator = GeminiFilter.stream_translator(上下文(false));
        let event = SseEvent {
            event: None,
            data: data.into(),
        };
        let e = translator
            .on_event(&event, &mut BytesMut::new())
            .expect_err("应返回错误");
        assert_eq!((e.status, e.code.as_str()), (502, code), "事件 {data}");
    }
    let mut translator = GeminiFilter.stream_translator(上下文(false));
    let blank = SseEvent {
        event: None,
        data: " ".into(),
    };
    assert_eq!(
        translator.on_event(&blank, &mut BytesMut::new()),
        Ok(StreamStatus::Continue)
    );
}

#[test]
fn 流中提示词被拦截_输出_content_filter() {
    let events = [
        json!({ "promptFeedback": { "blockReason": "PROHIBITED_CONTENT" }, "usageMetadata": { "promptTokenCount": 6, "totalTokenCount": 6 } }),
    ];
    let (out, end) = 运行流(&events, true);
    assert!(end.is_ok(), "被拦截的流是正常结束");
    let chunks = 块(&out);
    assert_eq!(结束原因(&chunks), ["content_filter"]);
    assert_eq!(
        chunks.last().map(|c| &c["usage"]["prompt_tokens"]),
        Some(&json!(6))
    );
}

/// 测试用的确定性伪随机数（xorshift64），保证失败可复现。
struct 随机数(u64);

impl 随机数 {
    fn 下一个(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound.max(1) as u64) as usize
    }
}

/// 随机 JSON 的键：多数是 Gemini 的真实字段名，容易走进各个分支。
const 随机键: &[&str] = &[
    "candidates",
    "content",
    "parts",
    "text",
    "thought",
    "functionCall",
    "name",
    "args",
    "thoughtSignature",
    "finishReason",
    "index",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "toolUsePromptTokenCount",
    "responseId",
    "promptFeedback",
    "blockReason",
    "error",
    "message",
    "status",
    "details",
    "@type",
    "retryDelay",
    "reason",
    "violations",
    "quotaId",
    "中文键",
];

/// 随机 JSON 的字符串值。
const 随机串: &[&str] = &[
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "38s",
    "9.9s",
    "1.5.2s",
    "API_KEY_INVALID",
    "type.googleapis.com/google.rpc.RetryInfo",
    "google.rpc.QuotaFailure",
    "PerDay",
    "RESOURCE_EXHAUSTED",
    "",
    "你好",
    "c2lnLTA=",
];

fn 随机_json(rng: &mut 随机数, depth: usize) -> Value {
    let kind = if depth == 0 {
        rng.下一个(5)
    } else {
        rng.下一个(7)
    };
    match kind {
        0 => Value::Null,
        1 => json!(rng.下一个(2) == 0),
        2 => [json!(u64::MAX), json!(-1), json!(1e308), json!(0), json!(7)][rng.下一个(5)].clone(),
        3 | 4 => json!(随机串[rng.下一个(随机串.len())]),
        5 => (0..rng.下一个(4))
            .map(|_| 随机_json(rng, depth - 1))
            .collect(),
        _ => {
            let fields = (0..rng.下一个(5)).map(|_| {
                (
                    随机键[rng.下一个(随机键.len())].to_string(),
                    随机_json(rng, depth - 1),
                )
            });
            Value::Object(fields.collect())
        }
    }
}

#[test]
fn 随机_json_不会让翻译器崩溃_输出总是合法_json() {
    let mut rng = 随机数(0x9E37_79B9_7F4A_7C15);
    for _ in 0..300 {
        let documents: Vec<Value> = (0..rng.下一个(6)).map(|_| 随机_json(&mut rng, 5)).collect();
        let mut translator = GeminiFilter.stream_translator(上下文(true));
        let mut out = BytesMut::new();
        for document in &documents {
            let event = SseEvent {
                event: None,
                data: document.to_string(),
            };
            let _ = translator.on_event(&event, &mut out);
        }
        let _ = translator.on_eof(&mut out);
        let text = String::from_utf8(out.to_vec()).expect("输出必须是 UTF-8");
        assert!(text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .all(|d| serde_json::from_str::<Value>(d).is_ok()));
        for document in &documents {
            let bytes = Bytes::from(document.to_string());
            if let Ok(reply) = GeminiFilter.translate_response(bytes.clone(), &上下文(false)) {
                serde_json::from_slice::<Value>(&reply.body).expect("完整响应必须是 JSON");
            }
            let _ = GeminiFilter.parse_error(429, &bytes);
        }
    }
}

#[test]
fn 乱码字节不会让解析器与翻译器崩溃() {
    let mut rng = 随机数(0xDEAD_BEEF_CAFE_F00D);
    let alphabet: &[u8] = b"data: {}[]\":,\r\n\r\n0123456789candidatesfinishReason\xff\xfe\xe4\xbd";
    for _ in 0..300 {
        let bytes: Vec<u8> = (0..rng.下一个(400))
            .map(|_| alphabet[rng.下一个(alphabet.len())])
            .collect();
        let cut = rng.下一个(bytes.len() + 1);
        let _ = 解析并翻译(&[&bytes[..cut], &bytes[cut..]], rng.下一个(2) == 0);
        let _ = GeminiFilter.parse_error(400, &bytes);
        let _ = GeminiFilter.translate_response(Bytes::from(bytes), &上下文(false));
    }
}
