//! 完整响应与错误翻译的测试。

use bytes::Bytes;
use serde_json::{json, Value};

use super::test_support::*;
use super::AnthropicFilter;
use crate::providers::{map_upstream_error, ProviderFilter};

#[test]
fn 响应_黄金用例_文本与两个工具调用() {
    let body = Bytes::from(完整响应().to_string());
    let reply = AnthropicFilter
        .translate_response(body, &上下文(false))
        .expect("应当翻译成功");
    let expected = json!({
        "id": "msg_01", "object": "chat.completion", "created": CREATED, "model": MODEL,
        "choices": [ { "index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "我来查一下。", "refusal": null, "tool_calls": [
                { "id": "toolu_A", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"巴黎\"}" } },
                { "id": "toolu_B", "type": "function", "function": { "name": "get_time", "arguments": "{\"tz\":\"CET\"}" } },
            ] } } ],
        "usage": { "prompt_tokens": 33, "completion_tokens": 65, "total_tokens": 98,
            "prompt_tokens_details": { "cached_tokens": 10 }, "completion_tokens_details": { "reasoning_tokens": 0 } },
    });
    let actual: Value = serde_json::from_slice(&reply.body).expect("JSON");
    assert_eq!(actual, expected, "工具参数必须是 JSON 字符串，id 原样保留");
}

#[test]
fn 响应_只有工具调用时内容为_null_思考块被丢弃_思考用量计入推理() {
    let body = json!({ "id": "msg_2", "content": [
            { "type": "thinking", "thinking": "想一想", "signature": "签名" },
            { "type": "tool_use", "id": "toolu_C", "name": "now", "input": {} } ],
        "stop_reason": "tool_use",
        "usage": { "input_tokens": 5, "output_tokens": 40, "output_tokens_details": { "thinking_tokens": 30 } } });
    let reply = AnthropicFilter
        .translate_response(Bytes::from(body.to_string()), &上下文(false))
        .expect("应当翻译成功");
    let v: Value = serde_json::from_slice(&reply.body).expect("JSON");
    assert!(v["choices"][0]["message"]["content"].is_null());
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{}"
    );
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        30
    );
    assert_eq!(v["usage"]["total_tokens"], 45);
}

#[test]
fn 拒绝_暂停_上下文超限等停止原因的映射() {
    let cases = [
        (json!("end_turn"), "stop"),
        (json!("stop_sequence"), "stop"),
        (json!("max_tokens"), "length"),
        (json!("tool_use"), "tool_calls"),
        (json!("pause_turn"), "stop"),
        (json!("refusal"), "content_filter"),
        (json!("model_context_window_exceeded"), "length"),
        (Value::Null, "stop"),
        (json!("未来的原因"), "stop"),
    ];
    for (reason, expected) in cases {
        let body = json!({ "id": "msg_3", "content": [], "stop_reason": reason, "usage": {} });
        let reply = AnthropicFilter
            .translate_response(Bytes::from(body.to_string()), &上下文(false))
            .expect("应当翻译成功");
        let v: Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(
            v["choices"][0]["finish_reason"], expected,
            "stop_reason {reason}"
        );
    }
    let refusal = RECORDED_STREAM.replace(
        "\"stop_reason\":\"tool_use\"",
        "\"stop_reason\":\"refusal\"",
    );
    let (out, _) = 翻译流(&[refusal.as_bytes()], false);
    assert!(
        out.contains("\"finish_reason\":\"content_filter\""),
        "流式的 refusal 同样映射：{out}"
    );
}

#[test]
fn 响应_无法解析时返回_502() {
    for body in ["不是 JSON", "{\"type\":\"message\"}", "[]"] {
        let e = AnthropicFilter
            .translate_response(Bytes::from(body), &上下文(false))
            .expect_err("应当失败");
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (502, Some("invalid_upstream_response"))
        );
    }
}

#[test]
fn 错误_类型映射为状态码与错误码() {
    let cases = [
        (529, "overloaded_error", 503, "overloaded"),
        (429, "rate_limit_error", 429, "rate_limit_exceeded"),
        (404, "not_found_error", 404, "model_not_found"),
        (402, "billing_error", 429, "insufficient_quota"),
        (400, "invalid_request_error", 400, "invalid_request_error"),
        (500, "api_error", 500, "server_error"),
    ];
    for (status, kind, expected_status, code) in cases {
        let body = json!({ "type": "error", "error": { "type": kind, "message": "出错了" }, "request_id": "req_1" });
        let info = AnthropicFilter.parse_error(status, body.to_string().as_bytes());
        assert_eq!(info.status.unwrap_or(status), expected_status, "{kind}");
        assert_eq!(
            (info.code.as_deref(), info.kind.as_deref()),
            (Some(code), Some(kind))
        );
        assert_eq!(info.message, "出错了");
    }
    let unknown = json!({ "type": "error", "error": { "type": "未来的错误", "message": "？" } });
    let info = AnthropicFilter.parse_error(418, unknown.to_string().as_bytes());
    assert_eq!(
        (info.status, info.code),
        (None, None),
        "未知类型按 HTTP 状态码处理"
    );
}

#[test]
fn 错误_非_json_响应体也能处理_529_映射为_503_server_error() {
    let info = AnthropicFilter.parse_error(529, b"<html>overloaded</html>");
    assert_eq!(info.message, "<html>overloaded</html>");
    let e = map_upstream_error(529, info, "claude");
    assert_eq!(
        (e.status, e.kind, Some(e.envelope_code())),
        (503, "server_error", Some("overloaded"))
    );
    let info = AnthropicFilter.parse_error(413, b"request too large");
    assert_eq!((info.status, info.code.as_deref()), (None, None));
    assert_eq!(map_upstream_error(413, info, "claude").status, 413);
}
