//! 流式渲染：枢纽流（Chat Completions 流式块）→ Anthropic Messages SSE 事件。
//!
//! 规则见参考文档 ingress-dialects §M5 的状态机表：每个事件都带 `event:` 行；`message_start` 恰好一次；
//! 内容块序号从 0 起连续；同一时刻只有一个打开的块，另一种增量到来时先关闭它；不为未开始的块写增量。
//!
//! 并行工具调用的约定：同一时刻只有一个工具调用“直播”（它的块打开着，参数片段即到即写）。
//! 其他工具调用的片段先缓存；只有当直播中的工具参数已经是完整的 JSON（之后不可能再合法地追加内容）、
//! 或打开的块不是工具时，缓存的调用才接着直播（先把已缓存的参数作为一个片段写出）。直到结束时仍未直播的
//! 调用，在结束原因或 `[DONE]` 到来时按首次出现的顺序整块写出（开始、一个完整参数片段、结束）。
//! 这样交错到达的并行调用、共用一个枢纽 `index` 但 id 不同的调用都能得到完整正确的参数；
//! 代价是被缓存的调用不能逐字显示。块已关闭的调用又收到非空白片段时（上游不合规范）丢弃并记警告。

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use serde::de::IgnoredAny;
use serde_json::{json, Value};

use super::names::{
    stop_reason, usage_json, BLOCK_TEXT, BLOCK_THINKING, BLOCK_TOOL_USE, DELTA_INPUT_JSON,
    EVENT_BLOCK_DELTA, EVENT_BLOCK_START, EVENT_BLOCK_STOP, EVENT_MESSAGE_DELTA,
    EVENT_MESSAGE_START, EVENT_MESSAGE_STOP, EVENT_PING, MESSAGE_ID_PREFIX, MESSAGE_TYPE,
    ROLE_ASSISTANT, TOOL_ID_PREFIX,
};
use crate::dialects::hub_stream::{parse_chunk, reasoning_of, HubChoice};
use crate::error::ApiError;
use crate::streaming::{random_id, write_event, write_event_with, Usage, DONE_SENTINEL};

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

/// 一个工具调用所处的阶段。
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolState {
    /// 还没有块：片段先缓存。
    Pending,
    /// 它的块正打开着：片段即到即写。
    Live,
    /// 块已写出并关闭。
    Closed,
}

/// 流中的一个工具调用（按首次出现的顺序保存）。
#[derive(Debug)]
struct ToolCall {
    id: String,
    /// id 是网关合成的（上游首个增量没给 id）：之后同一枢纽序号带来的 id 视为同一个调用。
    minted_id: bool,
    name: String,
    /// 至今收到的全部参数片段。
    arguments: String,
    state: ToolState,
    /// 上次检查参数完整性时的参数长度与结果（避免交错片段反复解析同一段参数）。
    checked: Option<(usize, bool)>,
}

impl ToolCall {
    /// 参数是否已是一个完整的 JSON 值（之后再追加非空白内容就不再是合法 JSON）。
    fn is_complete(&mut self) -> bool {
        let len = self.arguments.len();
        match self.checked {
            Some((checked_len, complete)) if checked_len == len => complete,
            _ => {
                let complete = serde_json::from_str::<IgnoredAny>(&self.arguments).is_ok();
                self.checked = Some((len, complete));
                complete
            }
        }
    }
}

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
    calls: Vec<ToolCall>,
    /// 枢纽工具序号 → 该序号当前的调用在 `calls` 中的位置。
    current: HashMap<u64, usize>,
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
            calls: Vec::new(),
            current: HashMap::new(),
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
        if self.stopped {
            return Ok(true);
        }
        if data.trim() == DONE_SENTINEL {
            self.ensure_started(out);
            self.finish_message(out);
            return Ok(true);
        }
        let chunk = parse_chunk(data)?;
        self.ensure_started(out);
        if let Some(usage) = chunk.usage.as_ref().and_then(Usage::from_openai) {
            self.usage = Some(usage);
        }
        // 枢纽流只有一个候选（n = 1）；用量块的 choices 为空数组
        if let Some(choice) = chunk.choices.as_ref().and_then(|c| c.first()) {
            self.on_choice(choice, out);
        }
        Ok(false)
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
        let hub_index = call["index"].as_u64().unwrap_or(0);
        let position = self.call_for(hub_index, call["id"].as_str());
        let function = &call["function"];
        let fragment = arguments_fragment(&function["arguments"]);
        if !fragment.is_empty() {
            self.output_deltas += 1;
        }
        let entry = &mut self.calls[position];
        if entry.name.is_empty() {
            entry.name = function["name"].as_str().unwrap_or_default().to_owned();
        }
        match entry.state {
            ToolState::Closed => {
                if !fragment.trim().is_empty() {
                    log::warn!(
                        "上游在工具调用 {} 的块关闭后又发来参数片段，已丢弃",
                        entry.id
                    );
                }
            }
            ToolState::Live => {
                entry.arguments.push_str(&fragment);
                if let (false, Some(open)) = (fragment.is_empty(), self.open) {
                    write_delta(out, open.index, &input_json_delta(&fragment));
                }
            }
            ToolState::Pending => {
                entry.arguments.push_str(&fragment);
                self.try_go_live(position, out);
            }
        }
    }

    /// 找到枢纽序号 `hub_index` 上 id 为 `id` 的调用；没有时新建一个（同一序号出现新的 id 就是新的调用）。
    ///
    /// 返回：调用在 `calls` 中的位置。
    fn call_for(&mut self, hub_index: u64, id: Option<&str>) -> usize {
        let id = id.filter(|id| !id.is_empty());
        if let Some(&position) = self.current.get(&hub_index) {
            let existing = &mut self.calls[position];
            match id {
                None => return position,
                Some(id) if existing.id == id => return position,
                // 首个增量没带 id 时合成过 id：迟到的真实 id 属于同一个调用，还没写出时采用它
                Some(id) if existing.minted_id => {
                    if existing.state == ToolState::Pending {
                        existing.id = id.to_owned();
                    }
                    existing.minted_id = false;
                    return position;
                }
                Some(_) => {}
            }
        }
        // 带着已知 id 的增量属于先前的那个调用（共用序号的调用交错到达时会切回去）
        if let Some(position) = id.and_then(|id| self.calls.iter().position(|c| c.id == id)) {
            self.current.insert(hub_index, position);
            return position;
        }
        self.calls.push(ToolCall {
            id: id.map_or_else(|| random_id(TOOL_ID_PREFIX), str::to_owned),
            minted_id: id.is_none(),
            name: String::new(),
            arguments: String::new(),
            state: ToolState::Pending,
            checked: None,
        });
        let position = self.calls.len() - 1;
        self.current.insert(hub_index, position);
        position
    }

    /// 缓存中的调用在可以直播时开始直播：它已有名称，且打开的块不是工具、或是参数已完整的工具。
    fn try_go_live(&mut self, position: usize, out: &mut BytesMut) {
        if self.calls[position].name.is_empty() {
            return;
        }
        if let Some(OpenBlock {
            kind: BlockKind::Tool(live),
            ..
        }) = self.open
        {
            if !self.calls[live].is_complete() {
                return;
            }
        }
        self.close_block(out);
        self.start_tool(position, out);
    }

    /// 打开工具块：`content_block_start`，已缓存的参数非空时作为一个 `input_json_delta` 写出。
    fn start_tool(&mut self, position: usize, out: &mut BytesMut) {
        let call = &self.calls[position];
        if call.name.is_empty() {
            log::warn!("上游的工具调用 {} 没有给出函数名", call.id);
        }
        let block =
            json!({ "type": BLOCK_TOOL_USE, "id": call.id, "name": call.name, "input": {} });
        let buffered = (!call.arguments.is_empty()).then(|| input_json_delta(&call.arguments));
        let index = self.start_block(BlockKind::Tool(position), &block, out);
        if let Some(delta) = buffered {
            write_delta(out, index, &delta);
        }
        self.calls[position].state = ToolState::Live;
    }

    /// 把仍在缓存中的调用按首次出现的顺序整块写出（结束原因或 `[DONE]` 到来时，之后不会再有片段）。
    fn flush_pending(&mut self, out: &mut BytesMut) {
        for position in 0..self.calls.len() {
            if self.calls[position].state == ToolState::Pending {
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
                self.calls[position].state = ToolState::Closed;
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
        let mut writer = buf.writer();
        // 写进内存缓冲、且文本本身是合法的 UTF-8，序列化不会失败
        if serde_json::to_writer(&mut writer, text).is_err() {
            log::warn!("文本增量序列化失败");
        }
        writer.into_inner().put_slice(DELTA_TAIL);
    });
}

/// 工具参数片段：规范是字符串；个别上游直接给对象时取其 JSON 文本。
fn arguments_fragment(arguments: &Value) -> String {
    match arguments {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
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
fn emit(out: &mut BytesMut, name: &str, payload: &Value) {
    write_event(out, name, payload.to_string().as_bytes());
}
