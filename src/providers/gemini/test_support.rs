//! 各测试文件共用的测试工具：测试配置与目标、黄金样例、请求构造与驱动流式翻译器的函数。

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::GeminiFilter;
use crate::config::{self, Target};
use crate::dialects::ChatRequest;
use crate::error::ApiError;
use crate::providers::{ProviderFilter, StreamStatus, TranslateCtx, UpstreamRequest};
use crate::streaming::SseEvent;

/// 测试配置：一个带路径前缀的 Gemini 上游与两个模型，其中一个在目标上配置了输出上限。
pub(super) const 测试配置: &str = "auth: { disabled: true }\nproviders: [ { name: gem, kind: gemini, base_url: 'http://127.0.0.1:9/proxy', api_key: 'sk-gemini-测试' } ]\nmodels: [ { name: 演示, targets: [ { provider: gem, model: gemini-2.5-flash } ] }, { name: 有上限, targets: [ { provider: gem, model: gemini-2.5-pro, max_tokens: 512 } ] } ]";

/// 黄金样例的 OpenAI 请求：系统与开发者消息、图片、带签名的工具调用历史、工具结果与各种参数。
pub(super) const 黄金请求: &str = r#"{
  "model": "演示", "stream": false,
  "messages": [
    { "role": "system", "content": "你是助手" },
    { "role": "user", "content": [ { "type": "text", "text": "巴黎天气如何？" }, { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } } ] },
    { "role": "assistant", "content": "", "tool_calls": [ { "id": "call_0123456789abcdef_sigbc2lnLTA", "type": "function", "function": { "name": "查天气", "arguments": "{\"城市\":\"巴黎\"}" } } ] },
    { "role": "tool", "tool_call_id": "call_0123456789abcdef_sigbc2lnLTA", "content": "{\"温度\":18}" },
    { "role": "developer", "content": [ { "type": "text", "text": "回答要简短" } ] },
    { "role": "user", "content": "谢谢" }
  ],
  "max_tokens": 256, "temperature": 0.2, "top_p": 0.9, "stop": "结束", "seed": 7,
  "presence_penalty": 0.5, "frequency_penalty": 0.25, "user": "用户甲", "parallel_tool_calls": true,
  "tools": [ { "type": "function", "function": { "name": "查天气", "description": "查询天气", "strict": true,
               "parameters": { "type": "object", "properties": { "城市": { "type": "string" } }, "required": ["城市"] } } } ],
  "tool_choice": { "type": "function", "function": { "name": "查天气" } },
  "response_format": { "type": "json_schema", "json_schema": { "name": "天气", "schema": { "type": "object" } } }
}"#;

/// 黄金样例期望的 Gemini 请求体。
pub(super) const 黄金上游请求: &str = r#"{
  "contents": [
    { "role": "user", "parts": [ { "text": "巴黎天气如何？" }, { "inlineData": { "mimeType": "image/png", "data": "iVBORw0KGgo=" } } ] },
    { "role": "model", "parts": [ { "functionCall": { "name": "查天气", "args": { "城市": "巴黎" } }, "thoughtSignature": "c2lnLTA=" } ] },
    { "role": "user", "parts": [ { "functionResponse": { "name": "查天气", "response": { "output": { "温度": 18 } } } }, { "text": "谢谢" } ] }
  ],
  "systemInstruction": { "parts": [ { "text": "你是助手" }, { "text": "回答要简短" } ] },
  "tools": [ { "functionDeclarations": [ { "name": "查天气", "description": "查询天气",
               "parametersJsonSchema": { "type": "object", "properties": { "城市": { "type": "string" } }, "required": ["城市"] } } ] } ],
  "toolConfig": { "functionCallingConfig": { "mode": "ANY", "allowedFunctionNames": ["查天气"] } },
  "generationConfig": { "maxOutputTokens": 256, "temperature": 0.2, "topP": 0.9, "seed": 7,
                        "presencePenalty": 0.5, "frequencyPenalty": 0.25, "stopSequences": ["结束"],
                        "responseMimeType": "application/json", "responseJsonSchema": { "type": "object" } }
}"#;

/// 黄金样例的 Gemini 文本响应：含一个思考摘要部分（不得进入内容）。
pub(super) const 黄金文本响应: &str = r#"{
  "candidates": [ { "content": { "role": "model", "parts": [ { "text": "先想一想", "thought": true }, { "text": "巴黎今天" }, { "text": "晴，18 度。" } ] },
                    "finishReason": "STOP", "index": 0 } ],
  "usageMetadata": { "promptTokenCount": 20, "candidatesTokenCount": 9, "thoughtsTokenCount": 4, "cachedContentTokenCount": 8, "totalTokenCount": 33 },
  "modelVersion": "gemini-2.5-flash", "responseId": "resp-甲"
}"#;

/// 黄金样例期望的 OpenAI 响应。
pub(super) const 黄金文本补全: &str = r#"{
  "id": "chatcmpl-resp-甲", "object": "chat.completion", "created": 7, "model": "演示",
  "choices": [ { "index": 0, "message": { "role": "assistant", "content": "巴黎今天晴，18 度。", "refusal": null }, "logprobs": null, "finish_reason": "stop" } ],
  "usage": { "prompt_tokens": 20, "completion_tokens": 13, "total_tokens": 33,
             "prompt_tokens_details": { "cached_tokens": 8 }, "completion_tokens_details": { "reasoning_tokens": 4 } }
}"#;

/// 一段录下的 Gemini 流：CRLF 行尾、注释行、跨两行的 data、思考部分、两个分在不同块里的函数调用、
/// 累计用量与只有结束原因和用量的末块。
pub(super) const 录制的流: &str = concat!(
    ": 保活注释\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"想\",\"thought\":true}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"totalTokenCount\":8},\"responseId\":\"流甲\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"好的，\"}],\"role\":\"model\"},\"index\":0}],\r\ndata: \"responseId\":\"流甲\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"查天气\",\"args\":{\"城市\":\"巴黎\"}},\"thoughtSignature\":\"c2lnLTA=\"}],\"role\":\"model\"},\"index\":0}],\"responseId\":\"流甲\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"查时间\",\"args\":{}}}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":3,\"totalTokenCount\":11},\"responseId\":\"流甲\"}\r\n\r\n",
    "data: {\"candidates\":[{\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":6,\"thoughtsTokenCount\":2,\"totalTokenCount\":16},\"responseId\":\"流甲\"}\r\n\r\n",
);

pub(super) fn 目标(model: &str) -> Target {
    let parsed = config::parse(测试配置).expect("测试配置必须能解析");
    let cfg = config::build(parsed, |_| None).expect("测试配置必须通过校验");
    cfg.model(model).expect("模型必须存在").targets[0].clone()
}

pub(super) fn 请求(body: &Value) -> ChatRequest {
    ChatRequest::parse(Bytes::from(body.to_string())).expect("测试请求必须通过校验")
}

pub(super) fn 构造(body: &Value) -> Result<UpstreamRequest, ApiError> {
    GeminiFilter.build_request(&请求(body), &目标("演示"))
}

/// 翻译成功后的上游请求体。
pub(super) fn 翻译(body: &Value) -> Value {
    let upstream = 构造(body).expect("请求应能翻译");
    serde_json::from_slice(&upstream.body).expect("上游请求体必须是 JSON")
}

pub(super) fn 翻译错误(body: &Value) -> ApiError {
    构造(body).expect_err("请求应被拒绝")
}

/// 只含给定消息的请求。
pub(super) fn 消息(messages: Value) -> Value {
    json!({ "model": "演示", "messages": messages })
}

pub(super) fn 上下文(include_usage: bool) -> TranslateCtx {
    TranslateCtx {
        model: "演示".into(),
        include_usage,
        created: 7,
    }
}

/// 把 Gemini 完整响应翻译为 OpenAI 响应。
pub(super) fn 完整响应(gemini: &Value) -> Value {
    let body = GeminiFilter
        .translate_response(Bytes::from(gemini.to_string()), &上下文(false))
        .expect("响应应能翻译");
    serde_json::from_slice(&body.body).expect("翻译结果必须是 JSON")
}

/// 逐个喂入流事件（每个元素是一个事件的 data），返回输出文本与 `on_eof` 的结果。
pub(super) fn 运行流(events: &[Value], include_usage: bool) -> (String, Result<(), ApiError>) {
    let mut translator = GeminiFilter.stream_translator(上下文(include_usage));
    let mut out = BytesMut::new();
    for data in events {
        let event = SseEvent {
            event: None,
            data: data.to_string(),
        };
        let status = translator.on_event(&event, &mut out).expect("事件应能翻译");
        assert_eq!(
            status,
            StreamStatus::Continue,
            "Gemini 没有结束标记，事件不能结束流"
        );
    }
    let end = translator.on_eof(&mut out);
    (
        String::from_utf8(out.to_vec()).expect("输出必须是 UTF-8"),
        end,
    )
}

/// 输出中的全部 JSON 块（不含 `[DONE]`）。
pub(super) fn 块(out: &str) -> Vec<Value> {
    out.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("每个块都是 JSON"))
        .collect()
}

/// 全部工具调用增量。
pub(super) fn 工具增量(chunks: &[Value]) -> Vec<Value> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .cloned()
        .collect()
}

/// 全部非空的结束原因。
pub(super) fn 结束原因(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["finish_reason"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// 一个只含给定部分与结束原因的流事件。
pub(super) fn 事件(parts: Value, finish: Option<&str>) -> Value {
    let mut candidate = json!({ "content": { "role": "model", "parts": parts }, "index": 0 });
    if let Some(reason) = finish {
        candidate["finishReason"] = json!(reason);
    }
    json!({ "candidates": [candidate], "responseId": "事件甲" })
}

pub(super) fn 函数调用(name: &str) -> Value {
    json!({ "functionCall": { "name": name, "args": { "城市": "巴黎" } } })
}
