//! OpenAI 过滤器的测试：路径、请求改写、流式转发、截断与错误解析。

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::stream::OpenAiStream;
use super::{chat_path, parse_openai_error, OpenAiFilter};
use crate::dialects::ChatRequest;
use crate::providers::test_target::目标;
use crate::providers::{
    upstream_body, ProviderFilter, StreamStatus, StreamTranslator, TranslateCtx,
};
use crate::streaming::{SseEvent, Usage};

/// 为客户端模型 `m` 创建流式转发器。
fn 转发器(include_usage: bool) -> OpenAiStream {
    OpenAiStream::new(TranslateCtx {
        model: "m".into(),
        include_usage,
        created: 0,
    })
}

fn 事件(data: &str) -> SseEvent {
    SseEvent {
        event: None,
        data: data.into(),
    }
}

fn 上下文() -> TranslateCtx {
    TranslateCtx {
        model: "演示".into(),
        include_usage: false,
        created: 0,
    }
}

#[test]
fn 路径_带或不带_v1_都正确() {
    assert_eq!(chat_path(""), "/v1/chat/completions");
    assert_eq!(chat_path("/v1"), "/v1/chat/completions");
    assert_eq!(chat_path("/api"), "/api/v1/chat/completions");
}

#[test]
fn 流_原样转发并识别结束标记() {
    let mut s = 转发器(false);
    let mut out = BytesMut::new();
    let chunk = r#"{"choices":[{"index":0,"delta":{"content":"你好"}}]}"#;
    assert_eq!(
        s.on_event(&事件(chunk), &mut out),
        Ok(StreamStatus::Continue)
    );
    assert_eq!(
        s.on_event(&事件("[DONE]"), &mut out),
        Ok(StreamStatus::Done)
    );
    assert_eq!(out, format!("data: {chunk}\n\ndata: [DONE]\n\n").as_bytes());
    assert!(s.on_eof(&mut out).is_ok());
}

#[test]
fn 流_记录用量且客户端没要求时去掉用量块() {
    let usage_chunk = r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}}"#;
    for include_usage in [false, true] {
        let mut s = 转发器(include_usage);
        let mut out = BytesMut::new();
        s.on_event(
            &事件(r#"{"choices":[{"index":0,"delta":{"content":"你"}}],"usage":null}"#),
            &mut out,
        )
        .expect("可翻译");
        s.on_event(&事件(usage_chunk), &mut out).expect("可翻译");
        let text = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(
            text.contains("\"prompt_tokens\":9"),
            include_usage,
            "客户端要求时才转发用量块：{text}"
        );
        assert!(text.contains("你"), "内容块照常转发");
        assert_eq!(
            s.usage(),
            Some(Usage {
                prompt: 9,
                completion: 2,
                cached: 4,
                reasoning: 0
            })
        );
    }
}

#[test]
fn 流_用量块的选项判断_带内容的块照常转发_空数组允许空白() {
    let usage = r#""usage":{"prompt_tokens":3,"completion_tokens":1}"#;
    let cases = [
        // (块, 客户端没要求用量时是否转发, 是否记下用量)
        (format!(r#"{{"choices":[ ],{usage}}}"#), false, true),
        (format!(r#"{{"choices":null,{usage}}}"#), false, true),
        (format!(r#"{{{usage}}}"#), false, true),
        (
            r#"{"choices":[],"usage":{"prompt_tokens":3,"prompt_tokens_details":null}}"#
                .to_string(),
            false,
            true,
        ),
        (
            r#"{"choices":[],"usage":{"prompt_tokens":3,"prompt_tokens_details":5,"completion_tokens_details":[1]}}"#
                .to_string(),
            false,
            true,
        ),
        (
            format!(r#"{{"choices":[{{"index":0,"delta":{{"content":"好"}}}}],{usage}}}"#),
            true,
            true,
        ),
        (
            r#"{"choices":[],"usage":{"prompt_tokens":"三"},"x":[}"#.to_string(),
            true,
            false,
        ),
        (
            r#"{"choices":[],"usage":{},"usage":7}"#.to_string(),
            true,
            false,
        ),
    ];
    for (chunk, forwarded, counted) in cases {
        let mut s = 转发器(false);
        let mut out = BytesMut::new();
        assert_eq!(
            s.on_event(&事件(&chunk), &mut out),
            Ok(StreamStatus::Continue),
            "{chunk}"
        );
        assert_eq!(!out.is_empty(), forwarded, "是否转发：{chunk}");
        assert_eq!(s.usage().is_some(), counted, "是否记下用量：{chunk}");
    }
}

#[test]
fn 请求_流式时要求上游给出用量_已要求时原样转发() {
    let req = |body: &str| ChatRequest::parse(Bytes::from(body.to_string())).expect("合法请求");
    let plain = req(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"你好"}]}"#);
    let forced: Value =
        serde_json::from_slice(&upstream_body(&plain, &目标("m", None), true).expect("可序列化"))
            .expect("JSON");
    assert_eq!(forced["stream_options"]["include_usage"], true);
    let merged = req(
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1},"messages":[{"role":"user","content":"你好"}]}"#,
    );
    let merged: Value =
        serde_json::from_slice(&upstream_body(&merged, &目标("m", None), true).expect("可序列化"))
            .expect("JSON");
    assert_eq!(
        (
            merged["stream_options"]["include_usage"].as_bool(),
            merged["stream_options"]["x"].as_u64()
        ),
        (Some(true), Some(1))
    );
    let asked = req(
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"你好"}]}"#,
    );
    assert_eq!(
        upstream_body(&asked, &目标("m", None), true).expect("可序列化"),
        asked.raw,
        "已要求用量且模型相同时零拷贝转发"
    );
}

#[test]
fn 流_缺少结束标记_视为截断() {
    let mut s = 转发器(false);
    let e = s.on_eof(&mut BytesMut::new()).expect_err("截断必须报错");
    assert_eq!(Some(e.envelope_code()), Some("upstream_stream_truncated"));
}

#[test]
fn 错误_解析信封或原文() {
    let info = parse_openai_error(
        br#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":"x"}}"#,
    );
    assert_eq!(
        (info.message.as_str(), info.code.as_deref()),
        ("bad", Some("x"))
    );
    let info = parse_openai_error(b"<html>502</html>");
    assert_eq!(info.message, "<html>502</html>");
}

#[test]
fn 完整响应_非_json_返回_502() {
    let e = OpenAiFilter
        .translate_response(Bytes::from_static(b"oops"), &上下文())
        .expect_err("应失败");
    assert_eq!(e.status, 502);
}

#[test]
fn 完整响应_只读最后一个用量键_内容里的引号与同名字符串不被当成键() {
    let body = r#"{"id":"甲","usage":{"prompt_tokens":12,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}},"choices":[{"message":{"content":"他说 \"usage\": 99","tool_calls":[{"function":{"name":"usage","arguments":"{}"}}]}}]}"#;
    let reply = OpenAiFilter
        .translate_response(Bytes::from_static(body.as_bytes()), &上下文())
        .expect("合法的回复");
    assert_eq!(
        reply.usage,
        Some(Usage {
            prompt: 12,
            completion: 5,
            cached: 4,
            reasoning: 0
        }),
        "工具名 usage 后面没有冒号，内容里的引号是转义的：都不是键"
    );
    assert_eq!(reply.body, body.as_bytes(), "模型名相同时原样转发");
}

#[test]
fn 完整响应_没有用量或用量为_null_时不计量_html_与截断的回复返回_502() {
    for body in [r#"{"choices":[]}"#, r#" {"usage":null,"choices":[]} "#] {
        let reply = OpenAiFilter
            .translate_response(Bytes::from_static(body.as_bytes()), &上下文())
            .expect("合法的回复");
        assert_eq!(reply.usage, None, "{body}");
    }
    for body in ["<html>502</html>", r#"{"choices":[{"message":"#] {
        let e = OpenAiFilter
            .translate_response(Bytes::from_static(body.as_bytes()), &上下文())
            .expect_err("不像 JSON 对象的回复必须报错");
        assert_eq!(
            (e.status, e.envelope_code()),
            (502, "invalid_upstream_response"),
            "{body}"
        );
    }
}
