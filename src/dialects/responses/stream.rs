//! 流式渲染：枢纽流（Chat Completions 流式块）→ OpenAI Responses SSE 事件。
//!
//! 规则见参考文档 ingress-dialects §R5 的“定律”与 §R7 的状态机表：每个事件都带 `event:` 行与从 0 递增的
//! `sequence_number`；`response.created`、`response.in_progress` 在最前；每个输出项以
//! `response.output_item.added` 开始、以同一 `output_index` 的 `response.output_item.done` 结束，
//! `output_index` 从 0 起连续；同一时刻只有一个打开的输出项，另一种增量到来时先关闭它；
//! 恰好一个终止事件（`response.completed` / `response.incomplete` / `response.failed`），
//! 它的 `output` 是全部输出项（与各自的 `output_item.done` 相同），之后不再写任何东西。
//!
//! 并行工具调用按 [`crate::dialects::hub_calls`] 的约定跟踪（与 Anthropic 方言相同）：同一时刻只有一个调用
//! “直播”（输出项打开着，函数参数片段即到即写），其他调用的片段先缓存，直到结束仍未直播的调用按首次出现的
//! 顺序整项写出，这样每个输出项的事件都是连续的。自由格式工具（`custom_tool_call`）的参数
//! 是包装过的 `{"input": …}`，只能在调用结束时拆包，所以它的输入在结束时作为一个完整增量写出。
//!
//! 流中断（[`ResponsesStream::fail`]）时的约定：打开着的输出项按已收到的内容关闭，状态为 `incomplete`
//! （半截的消息与参数也如实交给客户端，并标明不完整）；还在缓存、从未宣布过的调用不写出；
//! 最后写一个 `response.failed`，它的 `output` 同样是已写出 `output_item.done` 的全部输出项。

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use serde_json::{json, Map, Value};

use super::names::{
    call_item, call_item_prefix, custom_input, function_arguments, message_item, output_text_part,
    reasoning_item, refusal_part, response_skeleton, summary_part, usage_json, CallIdentity,
    Ending, CALL_ID_PREFIX, EVENT_ARGUMENTS_DELTA, EVENT_ARGUMENTS_DONE, EVENT_CREATED,
    EVENT_CUSTOM_INPUT_DELTA, EVENT_CUSTOM_INPUT_DONE, EVENT_FAILED, EVENT_IN_PROGRESS,
    EVENT_ITEM_ADDED, EVENT_ITEM_DONE, EVENT_PART_ADDED, EVENT_PART_DONE, EVENT_REFUSAL_DELTA,
    EVENT_REFUSAL_DONE, EVENT_SUMMARY_PART_ADDED, EVENT_SUMMARY_PART_DONE,
    EVENT_SUMMARY_TEXT_DELTA, EVENT_SUMMARY_TEXT_DONE, EVENT_TEXT_DELTA, EVENT_TEXT_DONE,
    MESSAGE_ID_PREFIX, REASONING_ID_PREFIX, STATUS_COMPLETED, STATUS_FAILED, STATUS_INCOMPLETE,
    STATUS_IN_PROGRESS,
};
use super::tools::{ToolKind, ToolMap};
use crate::clock::unix_now;
use crate::dialects::hub_calls::{CallState, HubCalls};
use crate::dialects::hub_stream::{feed_hub_event, reasoning_of, HubChoice, HubRender};
use crate::error::ApiError;
use crate::streaming::{random_id, write_event_with, Usage};

/// Responses 渲染器给每个工具调用额外记的数据（调用本身由 [`HubCalls`] 跟踪）。
#[derive(Debug)]
struct CallExtra {
    /// 工具种类（直播时按函数名确定）。
    kind: ToolKind,
    /// 输出项 id（直播时分配）。
    item_id: String,
}

impl Default for CallExtra {
    /// 直播之前：按函数工具处理，还没有输出项 id。
    fn default() -> Self {
        CallExtra {
            kind: ToolKind::Function,
            item_id: String::new(),
        }
    }
}

/// 打开的输出项的种类。
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenKind {
    /// 推理项（一个摘要部分）。
    Reasoning,
    /// 消息项，内容是一个输出文本部分。
    Text,
    /// 消息项，内容是一个拒答部分。
    Refusal,
    /// 工具调用项：值为 `ResponsesStream::calls` 中的位置。
    Call(usize),
}

/// 当前打开的输出项。
#[derive(Debug)]
struct OpenItem {
    kind: OpenKind,
    output_index: u64,
    /// 输出项 id。
    id: String,
    /// 推理或消息至今的全部文本（工具调用的参数在 [`HubCalls`] 里）。
    text: String,
}

/// 枢纽流（Chat Completions 流式块）→ OpenAI Responses 事件的状态机。
///
/// 用途：客户端走 `/v1/responses` 而上游不说 Responses 协议时，枢纽流式块逐个交给
/// [`ResponsesStream::on_hub_event`]，写出 openai SDK 与 Codex CLI 能消费的事件序列；交换在 200 之后失败时
/// 调用 [`ResponsesStream::fail`] 写出 `response.failed`。
///
/// ```
/// use std::sync::Arc; // 共享的工具对应表
/// use chatnexus::dialects::responses::stream::ResponsesStream; // 状态机
/// let mut template = serde_json::Map::new(); // 请求回显
/// template.insert("model".into(), "演示模型".into());
/// let mut s = ResponsesStream::new(template, Arc::default(), 12); // 估计输入 12 个 token
/// let mut out = bytes::BytesMut::new(); // 输出缓冲
/// let chunk = r#"{"choices":[{"index":0,"delta":{"content":"你好"},"finish_reason":"stop"}]}"#;
/// assert_eq!(s.on_hub_event(chunk, &mut out), Ok(false)); // 流还没结束
/// assert_eq!(s.on_hub_event("[DONE]", &mut out), Ok(true)); // 写出了 response.completed
/// let text = std::str::from_utf8(&out).unwrap(); // 全部事件
/// assert!(text.starts_with("event: response.created\n")); // 第一个事件
/// assert!(text.contains("event: response.completed\n")); // 终止事件
/// ```
#[derive(Debug)]
pub struct ResponsesStream {
    /// `response` 对象骨架（状态为进行中，`output: []`）。
    response: Map<String, Value>,
    tools: Arc<ToolMap>,
    input_estimate: u64,
    /// 下一个事件的 `sequence_number`。
    sequence: u64,
    started: bool,
    /// 已写出终止事件：之后什么也不写。
    terminated: bool,
    next_output_index: u64,
    open: Option<OpenItem>,
    /// 流中的工具调用（id 即输出项的 `call_id`，名字是枢纽函数名）。
    calls: HubCalls<CallExtra>,
    /// 已关闭的输出项（与各自的 `output_item.done` 相同），按 `output_index` 排列。
    output: Vec<Value>,
    finish: Option<String>,
    /// 上游最后一次报告的用量（用量块，或带 `usage` 的普通块）。
    usage: Option<Usage>,
    /// 非空的输出增量个数：上游不报用量时作为输出 token 的估计。
    output_deltas: u64,
    /// 其中推理增量的个数：上游不报用量时作为推理 token 的估计。
    reasoning_deltas: u64,
    /// 正常结束时终止事件里的完整 `response` 对象（会话保存用）。
    completed: Option<Value>,
}

impl ResponsesStream {
    /// 为一次流式回复创建状态机。
    ///
    /// 参数：`template` 为调用方填好请求回显的 `response` 骨架（`instructions`、`tools`、`tool_choice`、
    /// `model` = 客户端的模型名等），这里补上 `id`（`resp_…`）、`object`、`created_at`、`status`、`output`、
    /// `usage`、`error`、`incomplete_details` 与参考文档 §R4 要求而回显中缺少的字段；`tools` 为工具名对应表；
    /// `input_estimate` 为估计的输入 token（只在上游不报用量时使用）。
    pub fn new(template: Map<String, Value>, tools: Arc<ToolMap>, input_estimate: u64) -> Self {
        ResponsesStream {
            response: response_skeleton(&template, unix_now()),
            tools,
            input_estimate,
            sequence: 0,
            started: false,
            terminated: false,
            next_output_index: 0,
            open: None,
            calls: HubCalls::new(CALL_ID_PREFIX),
            output: Vec::new(),
            finish: None,
            usage: None,
            output_deltas: 0,
            reasoning_deltas: 0,
            completed: None,
        }
    }

    /// 正常结束（`response.completed` 或 `response.incomplete`）时的完整 `response` 对象；还没结束或失败时为 `None`。
    pub fn final_response(&self) -> Option<&Value> {
        self.completed.as_ref()
    }

    /// 处理一个枢纽 SSE 事件的 data（一个 `chat.completion.chunk` JSON，或 `[DONE]`），把 Responses
    /// 事件写入 `out`；第一次调用时先写 `response.created` 与 `response.in_progress`。
    ///
    /// 返回：`Ok(true)` 表示已写出终止事件（`[DONE]` 时写 `response.completed` 或 `response.incomplete`）；
    /// 之后再来的事件一律忽略并仍返回 `Ok(true)`。
    ///
    /// 错误：data 不是合法的 JSON 对象 → 502 `invalid_upstream_response`；上游在流中发来错误对象
    /// （`{"error":…}`）→ 502 `upstream_stream_error`（信封码转告上游的 `code`）。出错时什么也不写，
    /// 由调用方接着调用 [`ResponsesStream::fail`]。
    pub fn on_hub_event(&mut self, data: &str, out: &mut BytesMut) -> Result<bool, ApiError> {
        feed_hub_event(self, data, out)
    }

    /// 交换在 200 之后失败（上游错误、截断、超时）：还什么都没写时先写 `response.created` 与
    /// `response.in_progress`，把打开的输出项按已有内容以 `incomplete` 状态关闭（见模块说明），
    /// 再写恰好一个 `response.failed`：状态 `failed`，`output` 为已关闭的全部输出项，上游报过用量时带上用量，
    /// `error` 为 `{code, message}`——`code` 优先用转告的上游错误码（`context_length_exceeded` 原样保留，
    /// Codex 按它处理上下文超长），否则用网关的错误码。已写过终止事件时什么也不做。
    pub fn fail(&mut self, error: &ApiError, out: &mut BytesMut) {
        if self.terminated {
            return;
        }
        self.ensure_started(out);
        self.close_open(STATUS_INCOMPLETE, out);
        let mut response = self.response_with(STATUS_FAILED, self.usage.as_ref());
        response.insert(
            "error".into(),
            json!({ "code": error.envelope_code(), "message": error.message }),
        );
        self.emit(out, EVENT_FAILED, json!({ "response": response }));
        self.terminated = true;
    }

    /// 推理、文本或拒答增量：空增量不写（不产生空输出项）；打开的输出项种类不同时先关闭它，再开新项。
    fn stream_text(&mut self, kind: OpenKind, text: &str, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        self.output_deltas += 1;
        if kind == OpenKind::Reasoning {
            self.reasoning_deltas += 1;
        }
        if self.open.as_ref().map(|open| open.kind) != Some(kind) {
            self.close_open(STATUS_COMPLETED, out);
            self.open_text_item(kind, out);
        }
        let sequence = self.sequence;
        let Some(open) = self.open.as_mut() else {
            return;
        };
        open.text.push_str(text);
        if kind == OpenKind::Text {
            // 最常见的事件直接按字节写出，不建 JSON 树（字段顺序与 emit 相同）
            write_text_delta(out, sequence, &open.id, open.output_index, text);
            self.sequence += 1;
            return;
        }
        let (item_id, output_index) = (open.id.clone(), open.output_index);
        let (event, fields) = match kind {
            OpenKind::Reasoning => (
                EVENT_SUMMARY_TEXT_DELTA,
                json!({ "item_id": item_id, "output_index": output_index, "summary_index": 0, "delta": text }),
            ),
            _ => (
                EVENT_REFUSAL_DELTA,
                json!({ "item_id": item_id, "output_index": output_index, "content_index": 0, "delta": text }),
            ),
        };
        self.emit(out, event, fields);
    }

    /// 打开推理项（`output_item.added` + `reasoning_summary_part.added`）或消息项（`output_item.added` +
    /// `content_part.added`），记为打开的输出项。
    fn open_text_item(&mut self, kind: OpenKind, out: &mut BytesMut) {
        let output_index = self.next_index();
        let (id, item, part_event, part) = if kind == OpenKind::Reasoning {
            let id = random_id(REASONING_ID_PREFIX);
            let item = reasoning_item(&id, STATUS_IN_PROGRESS, None);
            let part = json!({ "item_id": id, "output_index": output_index, "summary_index": 0,
                "part": summary_part("") });
            (id, item, EVENT_SUMMARY_PART_ADDED, part)
        } else {
            let id = random_id(MESSAGE_ID_PREFIX);
            let item = message_item(&id, STATUS_IN_PROGRESS, Vec::new());
            let empty = match kind {
                OpenKind::Refusal => refusal_part(""),
                _ => output_text_part(""),
            };
            let part = json!({ "item_id": id, "output_index": output_index, "content_index": 0,
                "part": empty });
            (id, item, EVENT_PART_ADDED, part)
        };
        let added = json!({ "output_index": output_index, "item": item });
        self.emit(out, EVENT_ITEM_ADDED, added);
        self.emit(out, part_event, part);
        self.open = Some(OpenItem {
            kind,
            output_index,
            id,
            text: String::new(),
        });
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
                let extra = &self.calls[delta.position].extra;
                // 自由格式工具的输入要等调用结束拆包后才写出
                if extra.kind == ToolKind::Function && !delta.fragment.is_empty() {
                    let item_id = extra.item_id.clone();
                    let fields = json!({ "item_id": item_id, "output_index": self.open_index(),
                        "delta": delta.fragment });
                    self.emit(out, EVENT_ARGUMENTS_DELTA, fields);
                }
            }
            CallState::Pending => self.try_go_live(delta.position, out),
        }
    }

    /// 缓存中的调用在可以直播时开始直播：它已有名称，且打开的输出项不是调用、或是参数已完整的调用。
    fn try_go_live(&mut self, position: usize, out: &mut BytesMut) {
        let live = match self.open.as_ref().map(|open| open.kind) {
            Some(OpenKind::Call(live)) => Some(live),
            _ => None,
        };
        if self.calls.can_go_live(position, live) {
            self.close_open(STATUS_COMPLETED, out);
            self.start_call(position, out);
        }
    }

    /// 打开调用的输出项：按工具对应表确定种类与名字，写 `output_item.added`（参数或输入为空串）；
    /// 函数调用已缓存的参数作为一个 `function_call_arguments.delta` 写出。调用方须先关闭打开的输出项。
    fn start_call(&mut self, position: usize, out: &mut BytesMut) {
        let tools = Arc::clone(&self.tools);
        let output_index = self.next_index();
        let call = &mut self.calls[position];
        call.go_live();
        let tool = tools.resolve(&call.name);
        call.extra.kind = tool.kind;
        call.extra.item_id = random_id(call_item_prefix(tool.kind));
        let identity = CallIdentity {
            item_id: &call.extra.item_id,
            call_id: &call.id,
            tool,
        };
        let item = call_item(&identity, STATUS_IN_PROGRESS, "");
        let buffered = (tool.kind == ToolKind::Function && !call.arguments.is_empty())
            .then(|| call.arguments.clone());
        let item_id = call.extra.item_id.clone();
        self.emit(
            out,
            EVENT_ITEM_ADDED,
            json!({ "output_index": output_index, "item": item }),
        );
        if let Some(delta) = buffered {
            let fields =
                json!({ "item_id": item_id, "output_index": output_index, "delta": delta });
            self.emit(out, EVENT_ARGUMENTS_DELTA, fields);
        }
        self.open = Some(OpenItem {
            kind: OpenKind::Call(position),
            output_index,
            id: item_id,
            text: String::new(),
        });
    }

    /// 把仍在缓存中的调用按首次出现的顺序整项写出（结束原因或 `[DONE]` 到来时，之后不会再有片段）。
    fn flush_pending(&mut self, status: &str, out: &mut BytesMut) {
        for position in 0..self.calls.len() {
            if self.calls[position].state == CallState::Pending {
                self.start_call(position, out);
                self.close_open(status, out);
            }
        }
    }

    /// 关闭打开的输出项（没有时什么也不做）：写出它的收尾事件与 `output_item.done`，并把它加进 `output`。
    ///
    /// 参数：`status` 为输出项的最终状态（正常关闭为 `completed`，结局未完成或流中断时为 `incomplete`）。
    fn close_open(&mut self, status: &str, out: &mut BytesMut) {
        let Some(open) = self.open.take() else {
            return;
        };
        let item = match open.kind {
            OpenKind::Reasoning => self.close_reasoning(&open, status, out),
            OpenKind::Text | OpenKind::Refusal => self.close_message(&open, status, out),
            OpenKind::Call(position) => self.close_call(position, open.output_index, status, out),
        };
        let done = json!({ "output_index": open.output_index, "item": item });
        self.emit(out, EVENT_ITEM_DONE, done);
        self.output.push(item);
    }

    /// 推理项的收尾：`reasoning_summary_text.done` 与 `reasoning_summary_part.done`。
    ///
    /// 返回：最终的推理项。
    fn close_reasoning(&mut self, open: &OpenItem, status: &str, out: &mut BytesMut) -> Value {
        let (id, index, text) = (&open.id, open.output_index, &open.text);
        let done =
            json!({ "item_id": id, "output_index": index, "summary_index": 0, "text": text });
        self.emit(out, EVENT_SUMMARY_TEXT_DONE, done);
        let part = json!({ "item_id": id, "output_index": index, "summary_index": 0,
            "part": summary_part(text) });
        self.emit(out, EVENT_SUMMARY_PART_DONE, part);
        reasoning_item(id, status, Some(text))
    }

    /// 消息项的收尾：`output_text.done`（或 `refusal.done`）与 `content_part.done`。
    ///
    /// 返回：最终的消息项（一个内容部分）。
    fn close_message(&mut self, open: &OpenItem, status: &str, out: &mut BytesMut) -> Value {
        let (id, index, text) = (&open.id, open.output_index, &open.text);
        let (event, done, part) = if open.kind == OpenKind::Refusal {
            let done = json!({ "item_id": id, "output_index": index, "content_index": 0, "refusal": text });
            (EVENT_REFUSAL_DONE, done, refusal_part(text))
        } else {
            let done = json!({ "item_id": id, "output_index": index, "content_index": 0,
                "text": text, "logprobs": [] });
            (EVENT_TEXT_DONE, done, output_text_part(text))
        };
        self.emit(out, event, done);
        let part_done =
            json!({ "item_id": id, "output_index": index, "content_index": 0, "part": part });
        self.emit(out, EVENT_PART_DONE, part_done);
        message_item(id, status, vec![part])
    }

    /// 调用项的收尾：函数调用写 `function_call_arguments.done`（空参数为 `{}`）；自由格式工具把包装的参数
    /// 拆包，写一个完整的 `custom_tool_call_input.delta`（输入非空时）与 `.done`。之后该调用不再接收片段。
    ///
    /// 返回：最终的调用项。
    fn close_call(
        &mut self,
        position: usize,
        output_index: u64,
        status: &str,
        out: &mut BytesMut,
    ) -> Value {
        let tools = Arc::clone(&self.tools);
        let call = &mut self.calls[position];
        call.state = CallState::Closed;
        let call = &self.calls[position];
        let tool = tools.resolve(&call.name);
        let identity = CallIdentity {
            item_id: &call.extra.item_id,
            call_id: &call.id,
            tool,
        };
        let mut events = Vec::new();
        let item = match tool.kind {
            ToolKind::Function => {
                let arguments = function_arguments(&call.arguments);
                events.push((
                    EVENT_ARGUMENTS_DONE,
                    json!({ "item_id": call.extra.item_id,
                    "output_index": output_index, "arguments": arguments }),
                ));
                call_item(&identity, status, arguments)
            }
            ToolKind::Custom => {
                let input = custom_input(&call.arguments, &call.id);
                if !input.is_empty() {
                    events.push((
                        EVENT_CUSTOM_INPUT_DELTA,
                        json!({ "item_id": call.extra.item_id,
                        "output_index": output_index, "delta": input }),
                    ));
                }
                events.push((
                    EVENT_CUSTOM_INPUT_DONE,
                    json!({ "item_id": call.extra.item_id,
                    "output_index": output_index, "input": input }),
                ));
                call_item(&identity, status, &input)
            }
        };
        for (event, fields) in events {
            self.emit(out, event, fields);
        }
        item
    }

    /// `[DONE]`：关闭打开的输出项、写出缓存的调用，再写终止事件（`response.completed` 或
    /// `response.incomplete`），它的 `output` 是全部输出项，`usage` 总是整数。
    ///
    /// 没有收到结束原因时按完成处理并记警告（枢纽的 `[DONE]` 是上游明确的结束标记；真正的截断由调用方
    /// 以 [`ResponsesStream::fail`] 报告）。上游没报用量时输入用估计值，输出用非空增量的个数——Codex 靠
    /// 整数用量追踪上下文，缺了会解析失败。
    fn finish_response(&mut self, out: &mut BytesMut) {
        if self.finish.is_none() {
            log::warn!("枢纽流在给出结束原因之前就发来了 [DONE]，按正常完成处理");
        }
        let ending = Ending::of(self.finish.as_deref());
        self.close_open(ending.status(), out);
        self.flush_pending(ending.status(), out);
        let usage = self.usage.unwrap_or(Usage {
            prompt: self.input_estimate,
            completion: self.output_deltas,
            cached: 0,
            reasoning: self.reasoning_deltas,
        });
        let mut response = self.response_with(ending.status(), Some(&usage));
        response.insert("incomplete_details".into(), ending.details());
        let response = Value::Object(response);
        self.completed = Some(response.clone());
        self.emit(out, ending.event(), json!({ "response": response }));
        self.terminated = true;
    }

    /// 终止事件里的 `response` 对象：骨架加上状态、全部输出项与用量（没有时为 null）。
    fn response_with(&self, status: &str, usage: Option<&Usage>) -> Map<String, Value> {
        let mut response = self.response.clone();
        response.insert("status".into(), json!(status));
        response.insert("output".into(), Value::Array(self.output.clone()));
        response.insert("usage".into(), usage.map_or(Value::Null, usage_json));
        response
    }

    /// 分配下一个 `output_index`（从 0 起连续）。
    fn next_index(&mut self) -> u64 {
        let index = self.next_output_index;
        self.next_output_index += 1;
        index
    }

    /// 打开的输出项的 `output_index`（没有打开的项时为下一个序号，不会发生）。
    fn open_index(&self) -> u64 {
        self.open
            .as_ref()
            .map_or(self.next_output_index, |open| open.output_index)
    }

    /// 写出一个事件：`type` 与递增的 `sequence_number` 在前，`event:` 行与 `type` 相同。
    ///
    /// 参数：`kind` 为事件类型；`fields` 为其余字段（一个 JSON 对象）。直接把字段对象序列化在固定的开头之后，
    /// 不为每个事件再建一个合并后的对象。
    fn emit(&mut self, out: &mut BytesMut, kind: &str, fields: Value) {
        let sequence = self.next_sequence();
        write_event_with(out, kind, EVENT_OVERHEAD, |buf| {
            write_event_head(buf, kind, sequence);
            let start = buf.len();
            let mut writer = buf.writer();
            let written = serde_json::to_writer(&mut writer, &fields).is_ok();
            let buf = writer.into_inner();
            // 字段对象的 `{` 换成 `,` 接在开头之后；空对象只留结尾的 `}`
            if !written || buf.len() <= start + EMPTY_OBJECT_LEN {
                buf.truncate(start);
                buf.put_u8(OBJECT_CLOSE);
            } else {
                buf[start] = FIELD_SEPARATOR;
            }
        });
    }

    /// 写出一个只带 `response` 字段的生命周期事件，`response` 是已序列化好的对象。
    fn emit_with_response(&mut self, out: &mut BytesMut, kind: &str, response: &[u8]) {
        let sequence = self.next_sequence();
        write_event_with(out, kind, EVENT_OVERHEAD + response.len(), |buf| {
            write_event_head(buf, kind, sequence);
            buf.put_slice(RESPONSE_FIELD);
            buf.put_slice(response);
            buf.put_u8(OBJECT_CLOSE);
        });
    }

    /// 保活：还没开始时写出 `response.created` 与 `response.in_progress`，之后再写一个
    /// `response.in_progress`（同一个回复 id；openai SDK 接受重复的它，Codex 的空闲计时因此重置）。已结束时什么也不写。
    pub fn keep_alive(&mut self, out: &mut BytesMut) {
        if self.terminated {
            return;
        }
        if !self.started {
            self.ensure_started(out);
            return;
        }
        match serde_json::to_vec(&self.response) {
            Ok(response) => self.emit_with_response(out, EVENT_IN_PROGRESS, &response),
            Err(e) => log::warn!("序列化回复骨架失败：{e}"),
        }
    }

    /// 取下一个事件序号。
    fn next_sequence(&mut self) -> u64 {
        let sequence = self.sequence;
        self.sequence += 1;
        sequence
    }
}

impl HubRender for ResponsesStream {
    fn finished(&self) -> bool {
        self.terminated
    }

    /// 第一次调用时写出 `response.created` 与 `response.in_progress`；之后什么也不做。
    fn ensure_started(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        // 两个事件带同一个（可能很大的）回复骨架：只序列化一次
        let response = match serde_json::to_vec(&self.response) {
            Ok(bytes) => bytes,
            Err(e) => {
                log::warn!("序列化回复骨架失败：{e}");
                return;
            }
        };
        for kind in [EVENT_CREATED, EVENT_IN_PROGRESS] {
            self.emit_with_response(out, kind, &response);
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.finish_response(out);
    }

    fn set_usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    /// 处理一个候选：推理、文本、拒答、工具调用依次处理，最后处理结束原因（关闭一切，写出缓存的调用）。
    fn on_choice(&mut self, choice: &HubChoice, out: &mut BytesMut) {
        if let Some(delta) = &choice.delta {
            if let Some(reasoning) = reasoning_of(delta) {
                self.stream_text(OpenKind::Reasoning, reasoning, out);
            }
            if let Some(text) = delta.content.as_deref() {
                self.stream_text(OpenKind::Text, text, out);
            }
            if let Some(refusal) = delta.refusal.as_deref() {
                self.stream_text(OpenKind::Refusal, refusal, out);
            }
            for call in delta.tool_calls.iter().flatten() {
                self.tool_delta(call, out);
            }
        }
        if let Some(reason) = choice.finish_reason.as_deref() {
            self.finish = Some(reason.to_owned());
            let status = Ending::of(Some(reason)).status();
            self.close_open(status, out);
            self.flush_pending(status, out);
        }
    }
}

/// 序号与条目 id 之间。
const TEXT_DELTA_ITEM: &[u8] = br#","item_id":"#;
/// 条目 id 与输出序号之间。
const TEXT_DELTA_INDEX: &[u8] = br#","output_index":"#;
/// 输出序号与文本之间。
const TEXT_DELTA_TEXT: &[u8] = br#","content_index":0,"delta":"#;
/// 文本之后的结尾。
const TEXT_DELTA_TAIL: &[u8] = br#","logprobs":[]}"#;
/// 文本增量事件里除文本外的固定字节数（预留空间用）。
const TEXT_DELTA_OVERHEAD: usize = 160;

/// 写出一个 `response.output_text.delta` 事件：固定部分按字节写，只有 id 与文本经 JSON 转义。
fn write_text_delta(
    out: &mut BytesMut,
    sequence: u64,
    item_id: &str,
    output_index: u64,
    text: &str,
) {
    write_event_with(
        out,
        EVENT_TEXT_DELTA,
        text.len() + TEXT_DELTA_OVERHEAD,
        |buf| {
            write_event_head(buf, EVENT_TEXT_DELTA, sequence);
            buf.put_slice(TEXT_DELTA_ITEM);
            let mut writer = buf.writer();
            // 写进内存缓冲的合法 UTF-8 字符串，序列化不会失败
            let written = serde_json::to_writer(&mut writer, item_id).is_ok();
            let buf = writer.into_inner();
            buf.put_slice(TEXT_DELTA_INDEX);
            buf.put_slice(itoa::Buffer::new().format(output_index).as_bytes());
            buf.put_slice(TEXT_DELTA_TEXT);
            let mut writer = buf.writer();
            if !(written && serde_json::to_writer(&mut writer, text).is_ok()) {
                log::warn!("文本增量序列化失败");
            }
            writer.into_inner().put_slice(TEXT_DELTA_TAIL);
        },
    );
}

/// 事件开头 `{"type":` 之前的部分。
const EVENT_HEAD: &[u8] = br#"{"type":"#;
/// 事件类型与序号之间。
const SEQUENCE_FIELD: &[u8] = br#","sequence_number":"#;
/// 生命周期事件的 `response` 字段名（接在序号之后）。
const RESPONSE_FIELD: &[u8] = br#","response":"#;
/// 字符串的引号。
const QUOTE: u8 = 0x22;
/// JSON 对象的结尾。
const OBJECT_CLOSE: u8 = 0x7d;
/// 字段之间的分隔符。
const FIELD_SEPARATOR: u8 = b',';
/// 空对象 `{}` 的字节数。
const EMPTY_OBJECT_LEN: usize = 2;
/// 事件里除字段外的固定字节数（预留空间用）。
const EVENT_OVERHEAD: usize = 128;

/// 写出事件的开头：`{"type":"<类型>","sequence_number":<序号>`（类型是常量名，不含需要转义的字符）。
fn write_event_head(buf: &mut BytesMut, kind: &str, sequence: u64) {
    buf.put_slice(EVENT_HEAD);
    buf.put_u8(QUOTE);
    buf.put_slice(kind.as_bytes());
    buf.put_u8(QUOTE);
    buf.put_slice(SEQUENCE_FIELD);
    buf.put_slice(itoa::Buffer::new().format(sequence).as_bytes());
}
