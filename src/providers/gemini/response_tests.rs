//! 完整响应与错误翻译的测试。

use bytes::Bytes;
use serde_json::{json, Value};

use super::error::retry_delay_secs;
use super::response::{map_finish, usage_of, COMPLETION_ID_PREFIX, MAX_TOKEN_COUNT};
use super::signature::call_id;
use super::test_support::*;
use super::GeminiFilter;
use crate::providers::ProviderFilter;
use crate::streaming::{FinishReason, Usage};

#[test]
fn 响应_黄金样例_文本与用量_思考部分不进入内容() {
    let gemini: Value = serde_json::from_str(黄金文本响应).expect("黄金响应是 JSON");
    let expected: Value = serde_json::from_str(黄金文本补全).expect("黄金补全是 JSON");
    assert_eq!(完整响应(&gemini), expected);
}

#[test]
fn 函数调用轮_非流式_结束原因为_tool_calls_参数总是字符串() {
    let gemini = json!({ "candidates": [ { "content": { "role": "model", "parts": [
        { "text": "我来查一下。" }, 函数调用("查天气"), { "functionCall": { "name": "查时间" } } ] },
        "finishReason": "STOP", "index": 0 } ], "responseId": "调用轮" });
    let reply = 完整响应(&gemini);
    let message = &reply["choices"][0]["message"];
    let calls = message["tool_calls"].as_array().expect("必须有工具调用");
    let expected_ids = [
        call_id("chatcmpl-调用轮", 0, None),
        call_id("chatcmpl-调用轮", 1, None),
    ];
    assert_eq!(
        calls[0],
        json!({ "id": expected_ids[0], "type": "function", "function": { "name": "查天气", "arguments": "{\"城市\":\"巴黎\"}" } })
    );
    assert_eq!(calls[1]["id"], expected_ids[1]);
    assert_eq!(
        calls[1]["function"]["arguments"], "{}",
        "缺少 args 时参数为空对象字符串"
    );
    assert_eq!(message["content"], "我来查一下。");
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        完整响应(&gemini)["choices"][0]["message"]["tool_calls"],
        json!(calls),
        "同一响应的 id 必须稳定"
    );
}

#[test]
fn 提示词被拦截_没有候选_返回空内容与_content_filter() {
    for candidates in [None, Some(json!([]))] {
        let mut gemini = json!({ "promptFeedback": { "blockReason": "SAFETY" }, "usageMetadata": { "promptTokenCount": 5, "totalTokenCount": 5 } });
        if let Some(list) = candidates {
            gemini["candidates"] = list;
        }
        let reply = 完整响应(&gemini);
        assert!(reply["choices"][0]["message"]["content"].is_null());
        assert_eq!(reply["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(reply["usage"]["prompt_tokens"], 5);
    }
    let empty = 完整响应(&json!({}));
    assert_eq!(empty["choices"][0]["finish_reason"], "stop", "空响应不崩溃");
    assert!(empty["id"]
        .as_str()
        .is_some_and(|id| id.starts_with(COMPLETION_ID_PREFIX)));
}

#[test]
fn 候选没有内容_返回空消息与映射后的结束原因() {
    let gemini = json!({ "candidates": [ { "finishReason": "MALFORMED_FUNCTION_CALL", "index": 0 } ], "responseId": "坏调用" });
    let reply = 完整响应(&gemini);
    assert!(reply["choices"][0]["message"]["content"].is_null());
    assert!(reply["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
}

#[test]
fn 思考模型用量_输出含思考_输入含工具结果_总数等于两者之和() {
    let meta = json!({ "promptTokenCount": 100, "toolUsePromptTokenCount": 20, "candidatesTokenCount": 30,
        "thoughtsTokenCount": 50, "cachedContentTokenCount": 60, "totalTokenCount": 200 });
    let usage = usage_of(&meta);
    assert_eq!(
        usage,
        Usage {
            prompt: 120,
            completion: 80,
            cached: 60,
            reasoning: 50
        }
    );
    assert_eq!(usage.to_json()["total_tokens"], 200);
    assert_eq!(usage_of(&Value::Null), Usage::default());
    let huge =
        usage_of(&json!({ "promptTokenCount": u64::MAX, "toolUsePromptTokenCount": u64::MAX }));
    assert_eq!(huge.prompt, 2 * MAX_TOKEN_COUNT, "超大计数封顶，求和不溢出");
}

#[test]
fn 结束原因_按推荐列映射() {
    let cases = [
        (Some("STOP"), false, FinishReason::Stop),
        (Some("STOP"), true, FinishReason::ToolCalls),
        (
            Some("FINISH_REASON_UNSPECIFIED"),
            true,
            FinishReason::ToolCalls,
        ),
        (None, false, FinishReason::Stop),
        (Some("MAX_TOKENS"), true, FinishReason::Length),
        (Some("SAFETY"), false, FinishReason::ContentFilter),
        (Some("RECITATION"), false, FinishReason::ContentFilter),
        (Some("OTHER"), false, FinishReason::ContentFilter),
        (Some("IMAGE_OTHER"), false, FinishReason::ContentFilter),
        (Some("MALFORMED_FUNCTION_CALL"), false, FinishReason::Stop),
        (Some("UNEXPECTED_TOOL_CALL"), true, FinishReason::Stop),
        (Some("未来的新原因"), false, FinishReason::Stop),
    ];
    for (reason, saw_call, expected) in cases {
        assert_eq!(
            map_finish(reason, saw_call),
            expected,
            "{reason:?}，有调用：{saw_call}"
        );
    }
}

#[test]
fn 多个候选时只取第_0_个() {
    let gemini = json!({ "candidates": [
        { "content": { "parts": [ { "text": "第二个" } ] }, "finishReason": "MAX_TOKENS", "index": 1 },
        { "content": { "parts": [ { "text": "第一个" } ] }, "finishReason": "STOP", "index": 0 } ] });
    let reply = 完整响应(&gemini);
    assert_eq!(reply["choices"][0]["message"]["content"], "第一个");
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
}

#[test]
fn 响应无法解析_返回_502() {
    for body in [&b"<html>502</html>"[..], b"[1,2]", b""] {
        let e = GeminiFilter
            .translate_response(Bytes::copy_from_slice(body), &上下文(false))
            .expect_err("应失败");
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (502, Some("invalid_upstream_response"))
        );
    }
}

#[test]
fn 无效密钥_400_映射为_401_再报告为上游认证失败() {
    let body = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
        "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
    let info = GeminiFilter.parse_error(400, body);
    assert_eq!(info.status, Some(401));
    assert_eq!(
        info.message,
        "API key not valid. Please pass a valid API key."
    );
    let e = super::super::map_upstream_error(400, info, "gem");
    assert_eq!(
        (e.status, Some(e.envelope_code())),
        (502, Some("upstream_auth_failed"))
    );
    let plain = GeminiFilter.parse_error(
        400,
        r#"{"error":{"code":400,"message":"坏参数","status":"INVALID_ARGUMENT"}}"#.as_bytes(),
    );
    assert_eq!(
        (plain.status, plain.code.as_deref()),
        (None, Some("invalid_argument"))
    );
}

#[test]
fn 限流_429_按_retry_info_向上取整且没有响应头也能给出等待秒数() {
    for (delay, seconds) in [
        ("38s", 38),
        ("45.837906927s", 46),
        ("2.5s", 3),
        ("1.000s", 1),
        ("0s", 0),
    ] {
        let body = json!({ "error": { "code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED",
            "details": [ { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay } ] } });
        let info = GeminiFilter.parse_error(429, body.to_string().as_bytes());
        assert_eq!(info.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(info.retry_after, Some(seconds), "retryDelay {delay}");
    }
    for bad in [
        "",
        "s",
        "38",
        "-1s",
        "1.5.2s",
        ".5s",
        "三秒s",
        "99999999999999999999999s",
    ] {
        assert_eq!(retry_delay_secs(bad), None, "`{bad}` 不是合法的时长");
    }
    let e = super::super::map_upstream_error(429, GeminiFilter.parse_error(429, br#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"2.5s"}]}}"#), "gem");
    assert_eq!((e.status, e.retry_after), (429, Some(3)));
}

#[test]
fn 按天配额耗尽_报告_insufficient_quota_且不建议等待() {
    let body = json!({ "error": { "code": 429, "message": "You exceeded your current quota", "status": "RESOURCE_EXHAUSTED", "details": [
        { "@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [ { "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier" } ] },
        { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s" } ] } });
    let info = GeminiFilter.parse_error(429, body.to_string().as_bytes());
    assert_eq!(
        (info.code.as_deref(), info.retry_after),
        (Some("insufficient_quota"), None)
    );
    let per_minute = body.to_string().replace("PerDay", "PerMinute");
    let info = GeminiFilter.parse_error(429, per_minute.as_bytes());
    assert_eq!(
        (info.code.as_deref(), info.retry_after),
        (Some("rate_limit_exceeded"), Some(38))
    );
}

#[test]
fn 模型不存在_数组包裹与非_json_错误() {
    let not_found =
        r#"[{"error":{"code":404,"message":"models/不存在 is not found","status":"NOT_FOUND"}}]"#
            .as_bytes();
    let info = GeminiFilter.parse_error(404, not_found);
    assert_eq!(info.code.as_deref(), Some("model_not_found"));
    assert_eq!(info.message, "models/不存在 is not found");
    let html = GeminiFilter.parse_error(502, b"<html>Bad Gateway</html>");
    assert_eq!(
        (html.message.as_str(), html.code),
        ("<html>Bad Gateway</html>", None)
    );
    let unavailable = GeminiFilter.parse_error(
        503,
        br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
    );
    assert_eq!(
        super::super::map_upstream_error(503, unavailable, "gem").status,
        503
    );
}
