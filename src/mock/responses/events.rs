//! Responses 的事件流（参考文档 §R5）：每个事件带 `event:` 行与递增的 `sequence_number`；
//! `response.created` 在前，每个输出项以 `output_item.added` 打开、`output_item.done` 关闭，
//! 恰好一个终止事件（`response.completed`，流中错误故障时为 `response.failed`）。

use bytes::{Bytes, BytesMut};
use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};

use super::reply::{
    full_item, full_response, opened_item, response_object, summary_part, text_part, Content, Meta,
    OutputItem, CUSTOM_INPUT, REASONING_SUMMARY,
};
use crate::mock::io::{send_raw, start_stream};
use crate::mock::plan;
use crate::mock::{MockApp, STREAM_ERROR_MESSAGE};
use crate::streaming::write_data;

/// 流中错误故障在 `response.failed` 里报告的错误码。
const FAILED_CODE: &str = "server_error";
/// 关闭一个输出项的事件类型。
const ITEM_DONE: &str = "response.output_item.done";
/// 增量事件类型的结尾（每个增量之前按设置延迟、按故障断开）。
const DELTA_SUFFIX: &str = ".delta";
/// 推理摘要与函数参数拆成的增量数。
const FRAGMENTS: usize = 2;

/// 一个事件：`type` 在前，其余字段随后（序号在发送时插入）。
fn event(kind: &str, fields: Value) -> Value {
    let mut event = Map::new();
    event.insert("type".into(), json!(kind));
    if let Value::Object(fields) = fields {
        event.extend(fields);
    }
    Value::Object(event)
}

/// 输出项打开与关闭之间的事件（不含 `output_index`）。
fn inner_events(item: &OutputItem) -> Vec<Value> {
    let id = &item.id;
    match &item.content {
        Content::Reasoning { .. } => {
            let at = json!({ "item_id": id, "summary_index": 0 });
            let deltas = plan::split_reply(REASONING_SUMMARY, FRAGMENTS);
            part_events(
                "response.reasoning_summary_text",
                &at,
                "response.reasoning_summary_part",
                &deltas,
                summary_part,
            )
        }
        Content::Message { pieces } => {
            let at = json!({ "item_id": id, "content_index": 0 });
            part_events(
                "response.output_text",
                &at,
                "response.content_part",
                pieces,
                text_part,
            )
        }
        Content::Function { arguments, .. } => {
            let deltas = plan::split_reply(arguments, FRAGMENTS);
            let done = json!({ "item_id": id, "arguments": arguments });
            fragment_events("response.function_call_arguments", id, &deltas, done)
        }
        Content::Custom { .. } => {
            let done = json!({ "item_id": id, "input": CUSTOM_INPUT });
            fragment_events(
                "response.custom_tool_call_input",
                id,
                &[CUSTOM_INPUT.into()],
                done,
            )
        }
    }
}

/// 片段式内容（消息文本、推理摘要）的事件：片段打开、各增量、文本完成、片段关闭。
///
/// `prefix` 为增量事件的前缀（如 `response.output_text`），`part_kind` 为片段事件的前缀（如 `response.content_part`），
/// `at` 为各事件共有的定位字段，`part` 由文本构造片段。
fn part_events(
    prefix: &str,
    at: &Value,
    part_kind: &str,
    pieces: &[String],
    part: fn(&str) -> Value,
) -> Vec<Value> {
    let with = |extra: Value| {
        let mut fields = at.clone();
        if let (Some(f), Value::Object(extra)) = (fields.as_object_mut(), extra) {
            f.extend(extra);
        }
        fields
    };
    let text = pieces.concat();
    let logprobs = prefix.ends_with("output_text");
    let delta = |d: &str| match logprobs {
        true => with(json!({ "delta": d, "logprobs": [] })),
        false => with(json!({ "delta": d })),
    };
    let mut events = vec![event(
        &format!("{part_kind}.added"),
        with(json!({ "part": part("") })),
    )];
    events.extend(
        pieces
            .iter()
            .map(|p| event(&format!("{prefix}.delta"), delta(p))),
    );
    let done = match logprobs {
        true => with(json!({ "text": text, "logprobs": [] })),
        false => with(json!({ "text": text })),
    };
    events.push(event(&format!("{prefix}.done"), done));
    events.push(event(
        &format!("{part_kind}.done"),
        with(json!({ "part": part(&text) })),
    ));
    events
}

/// 参数式内容（函数参数、自由格式输入）的事件：各增量，然后完成事件。
fn fragment_events(prefix: &str, id: &str, deltas: &[String], done: Value) -> Vec<Value> {
    let mut events: Vec<Value> = deltas
        .iter()
        .map(|d| {
            event(
                &format!("{prefix}.delta"),
                json!({ "item_id": id, "delta": d }),
            )
        })
        .collect();
    events.push(event(&format!("{prefix}.done"), done));
    events
}

/// 一个输出项的全部事件：`output_item.added`、内部事件（都带 `output_index`）、`output_item.done`。
fn item_events(item: &OutputItem, index: usize) -> Vec<Value> {
    let added = event(
        "response.output_item.added",
        json!({ "output_index": index, "item": opened_item(item) }),
    );
    let inner = inner_events(item).into_iter().map(|mut e| {
        e["output_index"] = json!(index);
        e
    });
    let done = event(
        ITEM_DONE,
        json!({ "output_index": index, "item": full_item(item) }),
    );
    std::iter::once(added)
        .chain(inner)
        .chain(std::iter::once(done))
        .collect()
}

/// 生命周期事件（created、in_progress）里的 response：进行中、没有输出与用量。
fn in_progress(m: &Meta) -> Value {
    json!({ "response": response_object(m, "in_progress", Vec::new(), Value::Null, Value::Null) })
}

/// 无故障时流的全部事件（不含序号）：created、in_progress、各输出项、completed。
fn events(m: &Meta, items: &[OutputItem]) -> Vec<Value> {
    let mut events = vec![
        event("response.created", in_progress(m)),
        event("response.in_progress", in_progress(m)),
    ];
    events.extend(
        items
            .iter()
            .enumerate()
            .flat_map(|(i, item)| item_events(item, i)),
    );
    events.push(event(
        "response.completed",
        json!({ "response": full_response(m, items) }),
    ));
    events
}

/// 流中错误的终止事件：`response.failed`，带已完成的输出项与错误。
fn failed(m: &Meta, done: Vec<Value>) -> Value {
    let error = json!({ "code": FAILED_CODE, "message": STREAM_ERROR_MESSAGE });
    event(
        "response.failed",
        json!({ "response": response_object(m, "failed", done, Value::Null, error) }),
    )
}

/// 写一个具名事件（`event:` 行为事件类型），JSON 中插入序号；返回是否成功。
async fn send_event(session: &mut ServerSession, sequence: usize, event: &Value) -> bool {
    let kind = event["type"].as_str().unwrap_or_default();
    let mut numbered = Map::new();
    numbered.insert("type".into(), json!(kind));
    numbered.insert("sequence_number".into(), json!(sequence));
    if let Value::Object(fields) = event {
        numbered.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut out = BytesMut::from(format!("event: {kind}\n").as_bytes());
    write_data(&mut out, Value::Object(numbered).to_string().as_bytes());
    send_raw(session, out.freeze(), false).await
}

/// 流式回复：每个增量之前按设置延迟或按故障断开（`error_after` 先发 `response.failed`）；
/// 写失败（对端断开）记为中断的流。
pub(super) async fn stream(
    app: &MockApp,
    session: &mut ServerSession,
    m: &Meta,
    items: &[OutputItem],
) -> bool {
    if !start_stream(session).await {
        return false;
    }
    let mut done = Vec::new();
    let mut pieces = 0;
    for (sequence, event) in events(m, items).iter().enumerate() {
        let is_delta = event["type"]
            .as_str()
            .is_some_and(|t| t.ends_with(DELTA_SUFFIX));
        if is_delta && !app.before_piece(pieces).await {
            if app.error_due(pieces) {
                send_event(session, sequence, &failed(m, done)).await;
            }
            return false;
        }
        pieces += usize::from(is_delta);
        if event["type"] == ITEM_DONE {
            done.push(event["item"].clone());
        }
        if !send_event(session, sequence, event).await {
            app.count_stream(false);
            return false;
        }
    }
    let ok = send_raw(session, Bytes::new(), true).await;
    app.count_stream(ok);
    ok
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mock::plan::Reply;
    use crate::mock::responses::reply::{items_of, ENCRYPTED_PREFIX};
    use crate::mock::responses::tests::{信息, 工具回复};

    /// 事件的类型序列。
    fn 类型(events: &[Value]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn 事件流_文本_符合事件规律_最后是带完整输出的_completed() {
        let items = items_of(
            &Reply::Text(vec!["你".into(), "好".into()]),
            &[],
            false,
            false,
        );
        let events = events(&信息(), &items);
        assert_eq!(
            类型(&events),
            [
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
            ]
        );
        assert_eq!(events[0]["response"]["status"], "in_progress");
        assert!(events[0]["response"]["usage"].is_null());
        assert_eq!(events[2]["item"]["content"], json!([]));
        assert_eq!(events[5]["delta"], "好");
        assert_eq!(events[6]["text"], "你好");
        assert!(events[2..9].iter().all(|e| e["output_index"] == 0));
        assert_eq!(events[9]["response"]["output"][0], events[8]["item"]);
        assert_eq!(events[9]["response"]["usage"]["total_tokens"], 42);
    }

    #[test]
    fn 事件流_推理在前_带密文_工具调用各自打开关闭() {
        let items = items_of(&工具回复(), &["apply_patch".to_string()], true, true);
        let events = events(&信息(), &items);
        let kinds = 类型(&events);
        assert_eq!(
            kinds[2..9],
            [
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                ITEM_DONE,
            ]
        );
        assert!(
            events[2]["item"].get("encrypted_content").is_none(),
            "打开时没有密文"
        );
        assert!(events[8]["item"]["encrypted_content"]
            .as_str()
            .is_some_and(|c| c.starts_with(ENCRYPTED_PREFIX)));
        let arguments: String = events
            .iter()
            .filter(|e| e["type"] == "response.function_call_arguments.delta")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(arguments, "{\"城市\":\"巴黎\"}");
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "response.custom_tool_call_input.done"
                    && e["output_index"] == 2)
        );
        let completed = events.last().expect("有终止事件");
        assert_eq!(
            completed["response"]["output"].as_array().map(Vec::len),
            Some(3)
        );
    }

    #[test]
    fn 失败事件_带已完成的输出项与_server_error() {
        let failed = failed(&信息(), vec![json!({ "id": "rs_mock_1" })]);
        assert_eq!(failed["type"], "response.failed");
        assert_eq!(failed["response"]["status"], "failed");
        assert_eq!(
            failed["response"]["error"],
            json!({ "code": FAILED_CODE, "message": STREAM_ERROR_MESSAGE })
        );
        assert_eq!(failed["response"]["output"][0]["id"], "rs_mock_1");
    }
}
