//! 响应缓存用的 Anthropic Messages 格式函数：把 Messages 事件流累加成完整的 `message`
//! （[`MessageBuilder`]），判断完整回复是否正常结束（[`completed_normally`]），以及把完整回复重放为
//! Messages 事件流（[`replay_stream`]）。
//!
//! 透传（Anthropic 上游）与翻译（其他上游）写给客户端的都是同一种事件，累加器对两者一视同仁。

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::names::{
    BLOCK_TEXT, BLOCK_THINKING, BLOCK_TOOL_USE, DELTA_INPUT_JSON, EVENT_BLOCK_DELTA,
    EVENT_BLOCK_START, EVENT_BLOCK_STOP, EVENT_MESSAGE_DELTA, EVENT_MESSAGE_START,
    EVENT_MESSAGE_STOP, EVENT_PING,
};
use super::stream::emit;
use crate::dialects::ReplyBuilder;
use crate::streaming::write_event;

/// 表示回复正常结束的停止原因（拒答、暂停与缺失都不缓存）。
const NORMAL_STOP_REASONS: [&str; 4] = ["end_turn", "max_tokens", "stop_sequence", "tool_use"];
/// 流中错误事件的类型。
const EVENT_ERROR: &str = "error";
/// 文本增量。
const DELTA_TEXT: &str = "text_delta";
/// 思考增量。
const DELTA_THINKING: &str = "thinking_delta";
/// 思考签名增量。
const DELTA_SIGNATURE: &str = "signature_delta";
/// 服务端工具调用块（与 `tool_use` 一样以 JSON 片段流出输入）。
const BLOCK_SERVER_TOOL_USE: &str = "server_tool_use";
/// 重放时的 ping 事件负载。
const PING_PAYLOAD: &[u8] = br#"{"type":"ping"}"#;

/// 把 Anthropic Messages 事件流累加成完整的 `message` 对象（响应缓存保存流式回复用）。
///
/// 用途：转发 Messages 流时把每个事件的 data 喂给它；见过 `message_stop` 且中途没有错误时
/// [`MessageBuilder::finish`] 交出完整回复，否则交出 `None`。
///
/// ```
/// use chatnexus::dialects::messages::replay::MessageBuilder; // 事件累加器
/// use chatnexus::dialects::ReplyBuilder; // push 与 finish 来自它
/// let mut b = MessageBuilder::default(); // 新的累加器
/// b.push(r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":3}}}"#); // 消息开始
/// b.push(r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#); // 文本块开始
/// b.push(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"你好"}}"#);
/// b.push(r#"{"type":"content_block_stop","index":0}"#); // 文本块结束
/// b.push(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}"#); // 停止原因与用量
/// b.push(r#"{"type":"message_stop"}"#); // 消息结束
/// let message = b.finish().expect("流完整，应得到完整回复");
/// assert_eq!(message["content"][0]["text"], "你好"); // 文本拼接完整
/// ```
#[derive(Debug, Default)]
pub struct MessageBuilder {
    /// `message_start` 给出的消息骨架（之后合并停止原因与用量）。
    message: Option<Map<String, Value>>,
    /// 按 `index` 排列的内容块。
    blocks: Vec<Value>,
    /// 按 `index` 累加的工具输入 JSON 片段。
    partial: Vec<String>,
    /// 是否见过 `message_stop`。
    stopped: bool,
    /// 是否遇到解析失败、乱序或错误事件。
    failed: bool,
}

impl ReplyBuilder for MessageBuilder {
    /// 喂一个事件的 data（一个 JSON 对象）。失败或结束之后的事件一律忽略。
    fn push(&mut self, data: &str) {
        if self.failed || self.stopped {
            return;
        }
        let applied = serde_json::from_str::<Value>(data)
            .ok()
            .is_some_and(|event| self.apply(&event));
        if !applied {
            log::debug!("Messages 流式回复不完整，不缓存：无法累加事件 {data}");
            self.failed = true;
        }
    }

    /// 流正常结束时的完整 `message`：骨架加上全部内容块、停止原因与合并后的用量。
    ///
    /// 返回：没见过 `message_start` 或 `message_stop`、或中途失败时为 `None`。
    fn finish(&mut self) -> Option<Value> {
        if self.failed || !self.stopped {
            return None;
        }
        let mut message = self.message.take()?;
        message.insert(
            "content".into(),
            Value::Array(std::mem::take(&mut self.blocks)),
        );
        Some(Value::Object(message))
    }
}

impl MessageBuilder {
    /// 按事件类型累加；返回事件是否合乎顺序（错误事件与乱序的块都算失败）。
    fn apply(&mut self, event: &Value) -> bool {
        match event["type"].as_str().unwrap_or_default() {
            EVENT_MESSAGE_START => {
                self.message = event["message"].as_object().cloned();
                self.message.is_some()
            }
            EVENT_BLOCK_START => self.start_block(event),
            EVENT_BLOCK_DELTA => self.apply_delta(event),
            EVENT_BLOCK_STOP => self.stop_block(event),
            EVENT_MESSAGE_DELTA => self.apply_message_delta(event),
            EVENT_MESSAGE_STOP => {
                self.stopped = true;
                true
            }
            EVENT_ERROR => false,
            _ => true,
        }
    }

    /// `content_block_start`：按序号放下新块（序号必须连续）。
    fn start_block(&mut self, event: &Value) -> bool {
        let index = event["index"].as_u64().map(|i| i as usize);
        if index != Some(self.blocks.len()) || !event["content_block"].is_object() {
            return false;
        }
        self.blocks.push(event["content_block"].clone());
        self.partial.push(String::new());
        true
    }

    /// `content_block_delta`：文本、思考、签名追加到块的对应字段，工具输入片段先攒着。
    fn apply_delta(&mut self, event: &Value) -> bool {
        let Some(index) = event["index"].as_u64().map(|i| i as usize) else {
            return false;
        };
        let (Some(block), Some(partial)) =
            (self.blocks.get_mut(index), self.partial.get_mut(index))
        else {
            return false;
        };
        let delta = &event["delta"];
        let (field, piece) = match delta["type"].as_str().unwrap_or_default() {
            DELTA_TEXT => ("text", &delta["text"]),
            DELTA_THINKING => ("thinking", &delta["thinking"]),
            DELTA_SIGNATURE => ("signature", &delta["signature"]),
            DELTA_INPUT_JSON => {
                partial.push_str(delta["partial_json"].as_str().unwrap_or_default());
                return true;
            }
            _ => return true,
        };
        append_text(block, field, piece.as_str().unwrap_or_default());
        true
    }

    /// `content_block_stop`：攒着的工具输入片段解析成 `input`（没有片段时保留块开头给的输入）。
    fn stop_block(&mut self, event: &Value) -> bool {
        let index = event["index"].as_u64().map(|i| i as usize);
        let Some(index) = index.filter(|i| *i < self.blocks.len()) else {
            return false;
        };
        let partial = std::mem::take(&mut self.partial[index]);
        if partial.is_empty() {
            return true;
        }
        match serde_json::from_str::<Value>(&partial) {
            Ok(input) => {
                self.blocks[index]["input"] = input;
                true
            }
            Err(_) => false,
        }
    }

    /// `message_delta`：停止原因与停止序列写进骨架，用量逐个字段覆盖（流尾的用量是累计值）。
    fn apply_message_delta(&mut self, event: &Value) -> bool {
        let Some(message) = self.message.as_mut() else {
            return false;
        };
        for (field, value) in event["delta"].as_object().into_iter().flatten() {
            message.insert(field.clone(), value.clone());
        }
        if let Some(usage) = event["usage"].as_object() {
            let merged = message.entry("usage").or_insert_with(|| json!({}));
            for (field, value) in usage {
                merged[field.as_str()] = value.clone();
            }
        }
        true
    }
}

/// 把一段文本追加到块的字段上（字段不存在时新建）。
fn append_text(block: &mut Value, field: &str, piece: &str) {
    let mut text = block[field].as_str().unwrap_or_default().to_owned();
    text.push_str(piece);
    block[field] = Value::String(text);
}

/// 完整回复是否正常结束（停止原因为 end_turn、max_tokens、stop_sequence、tool_use 之一）。
///
/// 参数：`message` 为 Anthropic 的 `message` 对象。
pub fn completed_normally(message: &Value) -> bool {
    message["stop_reason"]
        .as_str()
        .is_some_and(|reason| NORMAL_STOP_REASONS.contains(&reason))
}

/// 把完整的 `message` 重放为 Messages 事件流：`message_start`（内容为空、停止原因为 null）、ping，
/// 每个内容块一组 start/delta/stop（文本、思考与签名、工具输入各一个完整的增量），
/// `message_delta`（停止原因与完整用量）、`message_stop`。
///
/// 参数：`message` 为保存的完整回复。
pub fn replay_stream(message: &Value) -> Bytes {
    let mut out = BytesMut::new();
    let mut skeleton = message.as_object().cloned().unwrap_or_default();
    skeleton.insert("content".into(), json!([]));
    skeleton.insert("stop_reason".into(), Value::Null);
    skeleton.insert("stop_sequence".into(), Value::Null);
    let start = json!({ "type": EVENT_MESSAGE_START, "message": skeleton });
    emit(&mut out, EVENT_MESSAGE_START, &start);
    write_event(&mut out, EVENT_PING, PING_PAYLOAD);
    let blocks = message["content"].as_array().into_iter().flatten();
    for (index, block) in blocks.enumerate() {
        replay_block(&mut out, index, block);
    }
    let delta = json!({
        "type": EVENT_MESSAGE_DELTA,
        "delta": { "stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"] },
        "usage": message["usage"],
    });
    emit(&mut out, EVENT_MESSAGE_DELTA, &delta);
    let stop = json!({ "type": EVENT_MESSAGE_STOP });
    emit(&mut out, EVENT_MESSAGE_STOP, &stop);
    out.freeze()
}

/// 重放一个内容块：开头的块去掉要以增量流出的字段，再把它们各作为一个增量写出。
fn replay_block(out: &mut BytesMut, index: usize, block: &Value) {
    let mut head = block.clone();
    let mut deltas = Vec::new();
    match block["type"].as_str().unwrap_or_default() {
        BLOCK_TEXT => {
            head["text"] = json!("");
            deltas.push(json!({ "type": DELTA_TEXT, "text": block["text"] }));
        }
        BLOCK_THINKING => {
            head["thinking"] = json!("");
            head["signature"] = json!("");
            deltas.push(json!({ "type": DELTA_THINKING, "thinking": block["thinking"] }));
            if block["signature"].as_str().is_some_and(|s| !s.is_empty()) {
                deltas.push(json!({ "type": DELTA_SIGNATURE, "signature": block["signature"] }));
            }
        }
        BLOCK_TOOL_USE | BLOCK_SERVER_TOOL_USE => {
            head["input"] = json!({});
            let input = block["input"].to_string();
            deltas.push(json!({ "type": DELTA_INPUT_JSON, "partial_json": input }));
        }
        _ => {}
    }
    let start = json!({ "type": EVENT_BLOCK_START, "index": index, "content_block": head });
    emit(out, EVENT_BLOCK_START, &start);
    for delta in deltas {
        let event = json!({ "type": EVENT_BLOCK_DELTA, "index": index, "delta": delta });
        emit(out, EVENT_BLOCK_DELTA, &event);
    }
    let stop = json!({ "type": EVENT_BLOCK_STOP, "index": index });
    emit(out, EVENT_BLOCK_STOP, &stop);
}
