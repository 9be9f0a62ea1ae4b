//! Gemini 回复的线上形状：完整响应、流式事件（以 CRLF 空行结束）与 `usageMetadata`。

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use super::{GeminiError, ROLE_MODEL};
use crate::mock::io::{send_raw, start_stream};
use crate::mock::plan::{MockUsage, PlannedCall, Reply};
use crate::mock::{MockApp, STREAM_ERROR_MESSAGE};

/// 第一个 functionCall 部分携带的思维签名（base64 的 `sig-0`）。
const THOUGHT_SIGNATURE: &str = "c2lnLTA=";
/// SSE 事件的前缀。
const EVENT_PREFIX: &str = "data: ";
/// SSE 事件的结束符（故意用 CRLF）。
const EVENT_END: &str = "\r\n\r\n";
/// 正常结束的结束原因（函数调用轮也用它）。
const FINISH_STOP: &str = "STOP";
/// 流中错误故障报告的状态码（INTERNAL）。
const STREAM_ERROR_STATUS: u16 = 500;

/// 一次回复的公共信息。
pub(super) struct Meta {
    pub(super) id: String,
    pub(super) model: String,
    pub(super) usage: MockUsage,
}

/// `usageMetadata`：`candidatesTokenCount` 不含思考 token；为零的字段省略（与 proto3 JSON 相同）。
fn usage_metadata(usage: &MockUsage) -> Value {
    let mut meta = json!({
        "promptTokenCount": usage.prompt,
        "candidatesTokenCount": usage.completion.saturating_sub(usage.reasoning),
        "totalTokenCount": usage.prompt + usage.completion,
    });
    if usage.cached > 0 {
        meta["cachedContentTokenCount"] = json!(usage.cached);
    }
    if usage.reasoning > 0 {
        meta["thoughtsTokenCount"] = json!(usage.reasoning);
    }
    meta
}

/// 第 `index` 个函数调用部分；只有第一个带思维签名（与真实 API 相同）。
fn call_part(index: usize, call: &PlannedCall) -> Value {
    let mut part = json!({ "functionCall": { "name": call.name, "args": call.arguments } });
    if index == 0 {
        part["thoughtSignature"] = json!(THOUGHT_SIGNATURE);
    }
    part
}

/// 一个 `GenerateContentResponse`：一个候选、用量、模型版本与响应 id。
fn envelope(meta: &Meta, candidate: Value, usage: Value) -> Value {
    json!({ "candidates": [candidate], "usageMetadata": usage, "modelVersion": meta.model, "responseId": meta.id })
}

/// 模型一方的 `Content`。
fn content(parts: Vec<Value>) -> Value {
    json!({ "role": ROLE_MODEL, "parts": parts })
}

/// 非流式回复：文本或并行的函数调用，结束原因 STOP。
pub(super) fn full_response(meta: &Meta, reply: &Reply) -> Value {
    let parts = match reply {
        Reply::Text(pieces) => vec![json!({ "text": pieces.concat() })],
        Reply::Tools(calls) => calls
            .iter()
            .enumerate()
            .map(|(i, c)| call_part(i, c))
            .collect(),
    };
    let candidate = json!({ "content": content(parts), "finishReason": FINISH_STOP, "index": 0 });
    envelope(meta, candidate, usage_metadata(&meta.usage))
}

/// 流中的内容事件：每段文本一个事件（带累计用量），每个函数调用单独一个事件。
fn stream_events(meta: &Meta, reply: &Reply) -> Vec<Value> {
    let u = meta.usage;
    let visible = u.completion.saturating_sub(u.reasoning);
    let running = |done: u64| json!({ "promptTokenCount": u.prompt, "candidatesTokenCount": done, "totalTokenCount": u.prompt + done });
    match reply {
        Reply::Text(pieces) => {
            let n = pieces.len().max(1) as u64;
            pieces
                .iter()
                .zip(1u64..)
                .map(|(text, i)| {
                    let candidate =
                        json!({ "content": content(vec![json!({ "text": text })]), "index": 0 });
                    envelope(meta, candidate, running(visible * i / n))
                })
                .collect()
        }
        Reply::Tools(calls) => calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let candidate = json!({ "content": content(vec![call_part(i, c)]), "index": 0 });
                envelope(meta, candidate, running(0))
            })
            .collect(),
    }
}

/// 最后一个事件：只有结束原因与最终用量，没有任何部分。
fn final_event(meta: &Meta) -> Value {
    envelope(
        meta,
        json!({ "finishReason": FINISH_STOP, "index": 0 }),
        usage_metadata(&meta.usage),
    )
}

/// 流式回复：内容事件逐个发出（按故障设置可在中途断开），最后一个事件发完即结束响应。
pub(super) async fn stream(
    app: &MockApp,
    session: &mut ServerSession,
    meta: &Meta,
    reply: &Reply,
) -> bool {
    if !start_stream(session).await {
        return false;
    }
    for (i, event) in stream_events(meta, reply).iter().enumerate() {
        if !app.before_piece(i).await {
            if app.error_due(i) {
                let error = GeminiError::new(STREAM_ERROR_STATUS, STREAM_ERROR_MESSAGE);
                send_event(session, &error.body(), false).await;
            }
            return false;
        }
        if !send_event(session, event, false).await {
            app.count_stream(false);
            return false;
        }
    }
    let ok = send_event(session, &final_event(meta), true).await;
    app.count_stream(ok);
    ok
}

/// 写一个以 CRLF 空行结束的 `data:` 事件，`end` 为真时同时结束响应体；返回是否成功。
async fn send_event(session: &mut ServerSession, event: &Value, end: bool) -> bool {
    let data = format!("{EVENT_PREFIX}{event}{EVENT_END}");
    send_raw(session, Bytes::from(data), end).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 用量() -> MockUsage {
        MockUsage {
            prompt: 30,
            completion: 12,
            cached: 10,
            reasoning: 5,
        }
    }

    fn 元信息() -> Meta {
        Meta {
            id: "resp-1".into(),
            model: "gemini-2.5-flash".into(),
            usage: 用量(),
        }
    }

    #[test]
    fn 用量_候选数不含思考_零值字段省略() {
        assert_eq!(
            usage_metadata(&用量()),
            json!({ "promptTokenCount": 30, "candidatesTokenCount": 7, "totalTokenCount": 42, "cachedContentTokenCount": 10, "thoughtsTokenCount": 5 })
        );
        let plain = MockUsage {
            prompt: 3,
            completion: 2,
            cached: 0,
            reasoning: 0,
        };
        assert_eq!(
            usage_metadata(&plain),
            json!({ "promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5 })
        );
    }

    #[test]
    fn 回复_并行调用分开发送_只有第一个带签名_末事件没有部分() {
        let calls = ["甲", "乙"].map(|name| PlannedCall {
            name: name.into(),
            arguments: serde_json::Map::new(),
        });
        let reply = Reply::Tools(calls.into());
        let events = stream_events(&元信息(), &reply);
        assert_eq!(events.len(), 2, "每个函数调用单独一个事件");
        let part = |i: usize| events[i]["candidates"][0]["content"]["parts"].clone();
        assert_eq!(part(0)[0]["thoughtSignature"], THOUGHT_SIGNATURE);
        assert!(part(1)[0].get("thoughtSignature").is_none());
        assert!(events
            .iter()
            .all(|e| e["candidates"][0].get("finishReason").is_none()));
        let last = final_event(&元信息());
        assert_eq!(
            last["candidates"][0],
            json!({ "finishReason": FINISH_STOP, "index": 0 })
        );
        assert_eq!(last["usageMetadata"]["totalTokenCount"], 42);
        let full = full_response(&元信息(), &reply);
        assert_eq!(
            full["candidates"][0]["content"]["parts"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        assert_eq!(full["responseId"], "resp-1");
    }

    #[test]
    fn 回复_文本分块带累计用量() {
        let reply = Reply::Text(vec!["你好".into(), "世界".into()]);
        let events = stream_events(&元信息(), &reply);
        let running: Vec<&Value> = events
            .iter()
            .map(|e| &e["usageMetadata"]["candidatesTokenCount"])
            .collect();
        assert_eq!(
            running,
            [&json!(3), &json!(7)],
            "累计值递增，最后等于不含思考的输出数"
        );
        assert_eq!(
            events[1]["candidates"][0]["content"]["parts"][0]["text"],
            "世界"
        );
        let full = full_response(&元信息(), &reply);
        assert_eq!(
            full["candidates"][0]["content"]["parts"],
            json!([ { "text": "你好世界" } ])
        );
    }
}
