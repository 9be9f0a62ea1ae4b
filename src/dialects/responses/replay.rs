//! 响应缓存用的 OpenAI Responses 格式函数：从事件流里取出终止事件带的完整 `response`
//! （[`ResponseCapture`]），判断它是否正常结束（[`completed_normally`]），以及把它重放为
//! Responses 事件流（[`replay_stream`]）。
//!
//! 终止事件（`response.completed` / `response.incomplete`）本身就带着全部输出项与用量，
//! 所以累加器只需要认出它，不必逐个拼接增量。

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::names::{
    EVENT_ARGUMENTS_DELTA, EVENT_ARGUMENTS_DONE, EVENT_COMPLETED, EVENT_CREATED,
    EVENT_CUSTOM_INPUT_DELTA, EVENT_CUSTOM_INPUT_DONE, EVENT_INCOMPLETE, EVENT_IN_PROGRESS,
    EVENT_ITEM_ADDED, EVENT_ITEM_DONE, EVENT_PART_ADDED, EVENT_PART_DONE, EVENT_REFUSAL_DELTA,
    EVENT_REFUSAL_DONE, EVENT_SUMMARY_PART_ADDED, EVENT_SUMMARY_PART_DONE,
    EVENT_SUMMARY_TEXT_DELTA, EVENT_SUMMARY_TEXT_DONE, EVENT_TEXT_DELTA, EVENT_TEXT_DONE,
    ITEM_CUSTOM_TOOL_CALL, ITEM_FUNCTION_CALL, ITEM_MESSAGE, ITEM_REASONING, STATUS_COMPLETED,
    STATUS_INCOMPLETE, STATUS_IN_PROGRESS,
};
use crate::dialects::ReplyBuilder;
use crate::streaming::write_event;

/// 被输出上限截断的未完成原因（与 Chat 的 `length` 一样算正常结束）。
const REASON_MAX_OUTPUT_TOKENS: &str = "max_output_tokens";

/// 从 Responses 事件流里取出终止事件带的完整 `response`（响应缓存保存流式回复用）。
///
/// 用途：转发 Responses 流时把每个事件的 data 喂给它；只有 `response.completed` 或
/// `response.incomplete` 的 data 才解析，其余事件只做一次子串查找。
///
/// ```
/// use chatnexus::dialects::responses::replay::ResponseCapture; // 终止事件捕获器
/// use chatnexus::dialects::ReplyBuilder; // push 与 finish 来自它
/// let mut c = ResponseCapture::default(); // 新的捕获器
/// c.push(r#"{"type":"response.output_text.delta","delta":"你好"}"#); // 增量不用解析
/// c.push(r#"{"type":"response.completed","response":{"id":"resp_1","status":"completed","output":[]}}"#); // 终止事件
/// assert_eq!(c.finish().expect("见过终止事件")["id"], "resp_1");
/// ```
#[derive(Debug, Default)]
pub struct ResponseCapture {
    /// 终止事件里的 `response`。
    response: Option<Value>,
}

impl ReplyBuilder for ResponseCapture {
    /// 喂一个事件的 data；是终止事件时记下它的 `response`。
    fn push(&mut self, data: &str) {
        if !data.contains(EVENT_COMPLETED) && !data.contains(EVENT_INCOMPLETE) {
            return;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let kind = event["type"].as_str().unwrap_or_default();
        if kind == EVENT_COMPLETED || kind == EVENT_INCOMPLETE {
            self.response = Some(event["response"].clone()).filter(Value::is_object);
        }
    }

    /// 见过终止事件时交出它的 `response`，否则为 `None`（流被截断或失败）。
    fn finish(&mut self) -> Option<Value> {
        self.response.take()
    }
}

/// 完整回复是否正常结束：状态为 `completed`，或因输出上限而 `incomplete`。
///
/// 参数：`response` 为 Responses 的 `response` 对象。
pub fn completed_normally(response: &Value) -> bool {
    match response["status"].as_str() {
        Some(STATUS_COMPLETED) => true,
        Some(STATUS_INCOMPLETE) => {
            response["incomplete_details"]["reason"].as_str() == Some(REASON_MAX_OUTPUT_TOKENS)
        }
        _ => false,
    }
}

/// 一种以增量流出的文本：所在的数组字段、序号字段、片段的开始/结束事件、增量/完成事件与文本字段。
struct TextKind {
    /// 输出项里放片段的数组字段（没有片段、文本直接在项上时为 `None`）。
    container: Option<(&'static str, &'static str, &'static str, &'static str)>,
    /// 增量事件。
    delta: &'static str,
    /// 完成事件。
    done: &'static str,
    /// 文本所在的字段。
    field: &'static str,
}

/// 消息里的输出文本片段。
const OUTPUT_TEXT: TextKind = TextKind {
    container: Some((
        "content",
        "content_index",
        EVENT_PART_ADDED,
        EVENT_PART_DONE,
    )),
    delta: EVENT_TEXT_DELTA,
    done: EVENT_TEXT_DONE,
    field: "text",
};
/// 消息里的拒答片段。
const REFUSAL: TextKind = TextKind {
    container: Some((
        "content",
        "content_index",
        EVENT_PART_ADDED,
        EVENT_PART_DONE,
    )),
    delta: EVENT_REFUSAL_DELTA,
    done: EVENT_REFUSAL_DONE,
    field: "refusal",
};
/// 推理项里的摘要片段。
const SUMMARY: TextKind = TextKind {
    container: Some((
        "summary",
        "summary_index",
        EVENT_SUMMARY_PART_ADDED,
        EVENT_SUMMARY_PART_DONE,
    )),
    delta: EVENT_SUMMARY_TEXT_DELTA,
    done: EVENT_SUMMARY_TEXT_DONE,
    field: "text",
};
/// 函数调用的参数。
const ARGUMENTS: TextKind = TextKind {
    container: None,
    delta: EVENT_ARGUMENTS_DELTA,
    done: EVENT_ARGUMENTS_DONE,
    field: "arguments",
};
/// 自定义工具调用的输入。
const CUSTOM_INPUT: TextKind = TextKind {
    container: None,
    delta: EVENT_CUSTOM_INPUT_DELTA,
    done: EVENT_CUSTOM_INPUT_DONE,
    field: "input",
};

/// 重放时的事件写出器：事件 `type` 与从 0 起递增的 `sequence_number` 在前。
#[derive(Default)]
struct Replayer {
    out: BytesMut,
    sequence: u64,
}

/// 把完整的 `response` 重放为 Responses 事件流：`response.created` 与 `response.in_progress`
/// （状态 in_progress、没有输出项与用量），每个输出项一组 added/增量/done（文本、拒答、摘要、参数
/// 各一个完整的增量），最后是与原状态对应的终止事件，带完整的回复。
///
/// 参数：`response` 为保存的完整回复。
pub fn replay_stream(response: &Value) -> Bytes {
    let mut replay = Replayer::default();
    let mut skeleton = response.as_object().cloned().unwrap_or_default();
    skeleton.insert("status".into(), json!(STATUS_IN_PROGRESS));
    skeleton.insert("output".into(), json!([]));
    skeleton.insert("usage".into(), Value::Null);
    skeleton.insert("incomplete_details".into(), Value::Null);
    for kind in [EVENT_CREATED, EVENT_IN_PROGRESS] {
        replay.emit(kind, json!({ "response": skeleton }));
    }
    let items = response["output"].as_array().into_iter().flatten();
    for (index, item) in items.enumerate() {
        replay.item(index, item);
    }
    let ending = if response["status"] == STATUS_INCOMPLETE {
        EVENT_INCOMPLETE
    } else {
        EVENT_COMPLETED
    };
    replay.emit(ending, json!({ "response": response }));
    replay.out.freeze()
}

impl Replayer {
    /// 重放一个输出项：added（文本字段清空、片段数组为空）、各片段的增量、done（完整的项）。
    fn item(&mut self, index: usize, item: &Value) {
        let kinds: &[TextKind] = match item["type"].as_str().unwrap_or_default() {
            ITEM_MESSAGE => &[OUTPUT_TEXT, REFUSAL],
            ITEM_REASONING => &[SUMMARY],
            ITEM_FUNCTION_CALL => &[ARGUMENTS],
            ITEM_CUSTOM_TOOL_CALL => &[CUSTOM_INPUT],
            _ => &[],
        };
        let mut added = item.clone();
        added["status"] = json!(STATUS_IN_PROGRESS);
        for kind in kinds {
            match kind.container {
                Some((array, ..)) => added[array] = json!([]),
                None => added[kind.field] = json!(""),
            }
        }
        self.emit(
            EVENT_ITEM_ADDED,
            json!({ "output_index": index, "item": added }),
        );
        let ids = (&item["id"], index);
        match kinds.first().and_then(|k| k.container) {
            Some((array, ..)) => {
                let parts = item[array].as_array().into_iter().flatten();
                for (position, part) in parts.enumerate() {
                    let kind = kinds.iter().find(|k| !part[k.field].is_null());
                    if let Some(kind) = kind {
                        self.part(kind, ids, position, part);
                    }
                }
            }
            None => {
                if let Some(kind) = kinds.first() {
                    self.text(kind, ids, Map::new(), &item[kind.field]);
                }
            }
        }
        self.emit(
            EVENT_ITEM_DONE,
            json!({ "output_index": index, "item": item }),
        );
    }

    /// 重放一个片段：片段开始（文本清空）、文本的增量与完成、片段结束（完整的片段）。
    fn part(
        &mut self,
        kind: &TextKind,
        (id, index): (&Value, usize),
        position: usize,
        part: &Value,
    ) {
        let Some((_, position_field, added, done)) = kind.container else {
            return;
        };
        let mut place = Map::new();
        place.insert("item_id".into(), id.clone());
        place.insert("output_index".into(), json!(index));
        place.insert(position_field.into(), json!(position));
        let mut empty = part.clone();
        empty[kind.field] = json!("");
        self.emit_at(added, &place, "part", empty);
        self.text(kind, (id, index), place.clone(), &part[kind.field]);
        self.emit_at(done, &place, "part", part.clone());
    }

    /// 一段文本的增量事件（整段一个增量）与完成事件。
    fn text(
        &mut self,
        kind: &TextKind,
        (id, index): (&Value, usize),
        place: Map<String, Value>,
        text: &Value,
    ) {
        let mut place = place;
        place.insert("item_id".into(), id.clone());
        place.insert("output_index".into(), json!(index));
        self.emit_at(kind.delta, &place, "delta", text.clone());
        self.emit_at(kind.done, &place, kind.field, text.clone());
    }

    /// 写一个带定位字段（项 id、输出序号、片段序号）与一个值字段的事件。
    fn emit_at(&mut self, kind: &str, place: &Map<String, Value>, field: &str, value: Value) {
        let mut fields = place.clone();
        fields.insert(field.into(), value);
        self.emit(kind, Value::Object(fields));
    }

    /// 写一个事件：`type`、`sequence_number` 在前，其余字段随后；`event:` 行与 `type` 相同。
    fn emit(&mut self, kind: &str, fields: Value) {
        let mut event = Map::new();
        event.insert("type".into(), json!(kind));
        event.insert("sequence_number".into(), json!(self.sequence));
        self.sequence += 1;
        if let Value::Object(fields) = fields {
            event.extend(fields);
        }
        write_event(
            &mut self.out,
            kind,
            Value::Object(event).to_string().as_bytes(),
        );
    }
}
