//! 流式渲染：枢纽流（Chat Completions 流式块）→ Anthropic Messages SSE 事件。
//!
//! 规则见参考文档 ingress-dialects §M5 的状态机表：每个事件都带 `event:` 行；`message_start` 恰好一次；
//! 内容块序号从 0 起连续；同一时刻只有一个打开的块，另一种增量到来时先关闭它；不为未开始的块写增量。
//!
//! 并行工具调用按 [`crate::dialects::hub_calls`] 的约定跟踪（同一时刻只有一个调用的块打开着、片段即到即写，
//! 其他调用先缓存）；这里只写工具块的事件（`content_block_start`、`input_json_delta`、`content_block_stop`）。

use bytes::{BufMut, BytesMut};
use serde_json::{json, Value};

use super::names::{
    stop_reason, usage_json, BLOCK_TEXT, BLOCK_THINKING, BLOCK_TOOL_USE, DELTA_INPUT_JSON,
    EVENT_BLOCK_DELTA, EVENT_BLOCK_START, EVENT_BLOCK_STOP, EVENT_MESSAGE_DELTA,
    EVENT_MESSAGE_START, EVENT_MESSAGE_STOP, EVENT_PING, MESSAGE_ID_PREFIX, MESSAGE_TYPE,
    ROLE_ASSISTANT, TOOL_ID_PREFIX,
};
use crate::dialects::hub_calls::{CallState, HubCalls};
use crate::dialects::hub_stream::{feed_hub_event, reasoning_of, HubChoice, HubRender};
use crate::error::ApiError;
use crate::streaming::{random_id, write_event, write_event_with, write_json_str, Usage};

/// 文本增量事件负载在序号之前的部分（最常见的事件直接按字节写出，不建 JSON 树）。
const TEXT_DELTA_HEAD: &[u8] = br#"{"type":"content_block_delta","index":"#;
/// 文本增量事件负载在序号与文本之间的部分。
const TEXT_DELTA_MIDDLE: &[u8] = br#","delta":{"type":"text_delta","text":"#;
/// 思考增量事件负载在序号与文本之间的部分。
const THINKING_DELTA_MIDDLE: &[u8] = br#","delta":{"type":"thinking_delta","thinking":"#;
/// 增量事件负载的结尾。
const DELTA_TAIL: &[u8] = b"}}";
/// 增量事件负载里除文本外的固定字节数（预留空间用）。
const DELTA_OVERHEAD: usize = 96;
/// ping 事件的负载（与 Anthropic 官方流逐字节相同）。
const PING_PAYLOAD: &[u8] = br#"{"type": "ping"}"#;
/// `message_start` 中输出 token 的起始值（Anthropic 官方流也写 1，最终值在 `message_delta` 中）。
const START_OUTPUT_TOKENS: u64 = 1;

/// 当前打开的内容块的种类。
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// 工具块：值为 `MessagesStream::calls` 中的位置。
    Tool(usize),
}

/// 当前打开的内容块。
#[derive(Debug, Clone, Copy)]
struct OpenBlock {
    index: u64,
    kind: BlockKind,
}

/// 枢纽流（Chat Completions 流式块）→ Anthropic Messages 事件的状态机。
///
/// 用途：客户端走 `/v1/messages` 而上游不是 Anthropic 时，`providers` 产出的枢纽流式块逐个交给
/// [`MessagesStream::on_hub_event`]，写出 Anthropic SDK 与 Claude Code 能消费的事件序列。
///
/// ```
/// use chatnexus::dialects::messages::stream::MessagesStream; // 状态机
/// let mut s = MessagesStream::new("演示模型".into(), 12); // 估计输入 12 个 token
/// let mut out = bytes::BytesMut::new(); // 输出缓冲
/// let chunk = r#"{"choices":[{"index":0,"delta":{"content":"你好"},"finish_reason":"stop"}]}"#;
/// assert_eq!(s.on_hub_event(chunk, &mut out), Ok(false)); // 流还没结束
/// assert_eq!(s.on_hub_event("[DONE]", &mut out), Ok(true)); // 写出了 message_stop
/// let text = std::str::from_utf8(&out).unwrap(); // 全部事件
/// assert!(text.starts_with("event: message_start\n")); // 第一个事件
/// assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")); // 最后一个事件
/// ```
#[derive(Debug)]
pub struct MessagesStream {
    id: String,
    model: String,
    input_estimate: u64,
    started: bool,
    stopped: bool,
    next_index: u64,
    open: Option<OpenBlock>,
    /// 流中的工具调用（Messages 不需要额外数据）。
    calls: HubCalls<()>,
    finish: Option<String>,
    /// 上游最后一次报告的用量（用量块，或带 `usage` 的普通块）。
    usage: Option<Usage>,
    /// 非空的输出增量个数：上游不报用量时作为输出 token 的估计。
    output_deltas: u64,
}

impl MessagesStream {
    /// 为一次流式回复创建状态机。
    ///
    /// 参数：`model` 为客户端请求的模型名（写进 `message_start`）；`input_estimate` 为估计的输入 token
    /// （`message_start` 的 `usage.input_tokens`，真实值在 `message_delta` 中给出）。
    pub fn new(model: String, input_estimate: u64) -> Self {
        MessagesStream {
            id: random_id(MESSAGE_ID_PREFIX),
            model,
            input_estimate,
            started: false,
            stopped: false,
            next_index: 0,
            open: None,
            calls: HubCalls::new(TOOL_ID_PREFIX),
            finish: None,
            usage: None,
            output_deltas: 0,
        }
    }

    /// 处理一个枢纽 SSE 事件的 data（一个 `chat.completion.chunk` JSON，或 `[DONE]`），把 Anthropic
    /// 事件写入 `out`。
    ///
    /// 返回：`Ok(true)` 表示已写出 `message_stop`（流正常结束）；之后再来的事件一律忽略并仍返回 `Ok(true)`。
    ///
    /// 错误：data 不是合法的 JSON 对象 → 502 `invalid_upstream_response`；上游在流中发来错误对象
    /// （`{"error":…}`）→ 502 `upstream_stream_error`。出错时不写 `message_stop`，由调用方写 `event: error`。
    pub fn on_hub_event(&mut self, data: &str, out: &mut BytesMut) -> Result<bool, ApiError> {
        feed_hub_event(self, data, out)
    }

    /// 写一个 ping 事件（上游长时间无输出时由调用方调用）；`message_start` 还没写出时先写
    /// `message_start`（它后面本来就跟着一个 ping，不再重复）。流已结束时什么也不写。
    pub fn ping(&mut self, out: &mut BytesMut) {
        if self.stopped {
            return;
        }
        if self.started {
            write_event(out, EVENT_PING, PING_PAYLOAD);
        } else {
            self.ensure_started(out);
        }
    }

    /// 文本或思考增量：空增量不写（不产生空块）；打开的块种类不同时先关闭它，再开新块。
    fn stream_text(&mut self, kind: BlockKind, text: &str, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        self.output_deltas += 1;
        let index = match self.open {
            Some(open) if open.kind == kind => open.index,
            _ => {
                self.close_block(out);
                let block = match kind {
                    BlockKind::Thinking => {
                        json!({ "type": BLOCK_THINKING, "thinking": "", "signature": "" })
                    }
                    _ => json!({ "type": BLOCK_TEXT, "text": "" }),
                };
                self.start_block(kind, &block, out)
            }
        };
        write_text_delta(out, index, kind, text);
    }

    /// 一个枢纽工具调用增量：找到（或新建）它所属的调用，按调用的阶段直播、缓存或丢弃片段。
    fn tool_delta(&mut self, call: &Value, out: &mut BytesMut) {
        let delta = self.calls.on_delta(call);
        if !delta.fragment.is_empty() {
            self.output_deltas += 1;
        }
        match delta.state {
            CallState::Closed => {}
            CallState::Live => {
                if let (false, Some(open)) = (delta.fragment.is_empty(), self.open) {
                    write_delta(out, open.index, &input_json_delta(&delta.fragment));
                }
            }
            CallState::Pending => self.try_go_live(delta.position, out),
        }
    }

    /// 缓存中的调用在可以直播时开始直播：它已有名称，且打开的块不是工具、或是参数已完整的工具。
    fn try_go_live(&mut self, position: usize, out: &mut BytesMut) {
        let live = match self.open {
            Some(OpenBlock {
                kind: BlockKind::Tool(live),
                ..
            }) => Some(live),
            _ => None,
        };
        if self.calls.can_go_live(position, live) {
            self.close_block(out);
            self.start_tool(position, out);
        }
    }

    /// 打开工具块：`content_block_start`，已缓存的参数非空时作为一个 `input_json_delta` 写出。
    fn start_tool(&mut self, position: usize, out: &mut BytesMut) {
        let call = &self.calls[position];
        let block =
            json!({ "type": BLOCK_TOOL_USE, "id": call.id, "name": call.name, "input": {} });
        let buffered = (!call.arguments.is_empty()).then(|| input_json_delta(&call.arguments));
        let index = self.start_block(BlockKind::Tool(position), &block, out);
        if let Some(delta) = buffered {
            write_delta(out, index, &delta);
        }
        self.calls[position].go_live();
    }

    /// 把仍在缓存中的调用按首次出现的顺序整块写出（结束原因或 `[DONE]` 到来时，之后不会再有片段）。
    fn flush_pending(&mut self, out: &mut BytesMut) {
        for position in 0..self.calls.len() {
            if self.calls[position].state == CallState::Pending {
                self.start_tool(position, out);
                self.close_block(out);
            }
        }
    }

    /// 写出 `content_block_start` 并把它记为打开的块。
    ///
    /// 返回：新块的序号（在最终 `content` 中的位置，从 0 起连续）。
    fn start_block(&mut self, kind: BlockKind, block: &Value, out: &mut BytesMut) -> u64 {
        let index = self.next_index;
        self.next_index += 1;
        let start = json!({ "type": EVENT_BLOCK_START, "index": index, "content_block": block });
        emit(out, EVENT_BLOCK_START, &start);
        self.open = Some(OpenBlock { index, kind });
        index
    }

    /// 关闭打开的块（没有时什么也不做）；工具块关闭后其调用不再接收片段。
    fn close_block(&mut self, out: &mut BytesMut) {
        if let Some(open) = self.open.take() {
            emit(
                out,
                EVENT_BLOCK_STOP,
                &json!({ "type": EVENT_BLOCK_STOP, "index": open.index }),
            );
            if let BlockKind::Tool(position) = open.kind {
                self.calls[position].state = CallState::Closed;
            }
        }
    }

    /// `[DONE]`：关闭打开的块、写出缓存的调用，再写 `message_delta`（停止原因与用量）和 `message_stop`。
    ///
    /// 没有收到结束原因时按 `end_turn`（出现过工具调用则 `tool_use`）；上游没报用量时输入用估计值，
    /// 输出用非空增量的个数——`usage.output_tokens` 缺失会让 anthropic SDK 出错、Claude Code 挂起。
    fn finish_message(&mut self, out: &mut BytesMut) {
        self.close_block(out);
        self.flush_pending(out);
        let usage = self.usage.unwrap_or(Usage {
            prompt: self.input_estimate,
            completion: self.output_deltas,
            cached: 0,
            reasoning: 0,
        });
        let reason = stop_reason(self.finish.as_deref(), !self.calls.is_empty());
        let delta = json!({
            "type": EVENT_MESSAGE_DELTA,
            "delta": { "stop_reason": reason, "stop_sequence": null },
            "usage": usage_json(&usage),
        });
        emit(out, EVENT_MESSAGE_DELTA, &delta);
        emit(
            out,
            EVENT_MESSAGE_STOP,
            &json!({ "type": EVENT_MESSAGE_STOP }),
        );
        self.stopped = true;
    }
}

impl HubRender for MessagesStream {
    fn finished(&self) -> bool {
        self.stopped
    }

    /// 第一次调用时写出 `message_start` 和一个 ping；之后什么也不做（保证 `message_start` 恰好一次）。
    fn ensure_started(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let start = json!({
            "type": EVENT_MESSAGE_START,
            "message": {
                "id": self.id, "type": MESSAGE_TYPE, "role": ROLE_ASSISTANT, "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {
                    "input_tokens": self.input_estimate, "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0, "output_tokens": START_OUTPUT_TOKENS,
                },
            },
        });
        emit(out, EVENT_MESSAGE_START, &start);
        write_event(out, EVENT_PING, PING_PAYLOAD);
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.finish_message(out);
    }

    fn set_usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    /// 处理一个候选：推理、文本、工具调用依次处理，最后处理结束原因。
    fn on_choice(&mut self, choice: &HubChoice, out: &mut BytesMut) {
        if let Some(delta) = &choice.delta {
            if let Some(thinking) = reasoning_of(delta) {
                self.stream_text(BlockKind::Thinking, thinking, out);
            }
            if let Some(text) = delta.content.as_deref() {
                self.stream_text(BlockKind::Text, text, out);
            }
            for call in delta.tool_calls.iter().flatten() {
                self.tool_delta(call, out);
            }
        }
        if let Some(reason) = choice.finish_reason.as_deref() {
            self.finish = Some(reason.to_owned());
            self.close_block(out);
            self.flush_pending(out);
        }
    }
}

/// 写出文本或思考的 `content_block_delta` 事件：固定部分按字节写，只有文本经 JSON 转义。
fn write_text_delta(out: &mut BytesMut, index: u64, kind: BlockKind, text: &str) {
    let middle = match kind {
        BlockKind::Thinking => THINKING_DELTA_MIDDLE,
        _ => TEXT_DELTA_MIDDLE,
    };
    write_event_with(out, EVENT_BLOCK_DELTA, text.len() + DELTA_OVERHEAD, |buf| {
        buf.put_slice(TEXT_DELTA_HEAD);
        buf.put_slice(itoa::Buffer::new().format(index).as_bytes());
        buf.put_slice(middle);
        write_json_str(buf, text);
        buf.put_slice(DELTA_TAIL);
    });
}

/// 工具参数片段增量。
fn input_json_delta(fragment: &str) -> Value {
    json!({ "type": DELTA_INPUT_JSON, "partial_json": fragment })
}

/// 写出一个 `content_block_delta` 事件。
fn write_delta(out: &mut BytesMut, index: u64, delta: &Value) {
    let event = json!({ "type": EVENT_BLOCK_DELTA, "index": index, "delta": delta });
    emit(out, EVENT_BLOCK_DELTA, &event);
}

/// 写出一个具名事件，负载为 JSON 文本。
pub(super) fn emit(out: &mut BytesMut, name: &str, payload: &Value) {
    write_event(out, name, payload.to_string().as_bytes());
}
