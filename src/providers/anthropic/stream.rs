//! 流式翻译：Anthropic SSE 事件 → OpenAI 流式块。

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::Value;

use super::error::stream_error;
use super::response::{finish_reason, invalid_response, message_id, TokenCounts};
use super::EMPTY_ARGUMENTS;
use crate::error::{ApiError, ErrorCode};
use crate::providers::{StreamStatus, StreamTranslator, TranslateCtx};
use crate::streaming::{ChunkWriter, FinishReason, SseEvent, Usage};

/// 内容块增量的事件类型（也是它的 SSE 事件名）。
const BLOCK_DELTA: &str = "content_block_delta";
/// 文本增量。
const TEXT_DELTA: &str = "text_delta";
/// 工具参数片段增量。
const INPUT_JSON_DELTA: &str = "input_json_delta";

/// `content_block_delta` 事件里用得到的部分：定型解析、文本尽量借用原文，不建 JSON 树。
///
/// 流里绝大多数事件是它；解析成 `Value` 时每个事件要建两层带索引的对象（剖析里占翻译开销的四成）。
#[derive(Deserialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow)]
    delta: BlockDelta<'a>,
}

/// 增量本身：类型、文本或参数片段（缺少时为空）。
#[derive(Deserialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Cow<'a, str>,
    #[serde(borrow, default)]
    partial_json: Cow<'a, str>,
}

struct ToolBlock {
    /// OpenAI 的工具调用序号（0、1、2……），不是 Anthropic 的内容块序号。
    index: usize,
    /// 是否已发出过非空的参数片段。
    has_arguments: bool,
}

/// Anthropic 流 → OpenAI 流式块的状态机（参考文档 §5.3）。
pub(super) struct AnthropicStream {
    ctx: TranslateCtx,
    /// 收到 `message_start` 后创建（块的 id 来自它）。
    writer: Option<ChunkWriter>,
    /// 内容块序号 → 工具调用状态。
    tools: HashMap<u64, ToolBlock>,
    /// 下一个工具调用的序号。
    next_tool: usize,
    /// 最新的累计用量。
    counts: TokenCounts,
    /// 是否已写出结束块（每个流恰好一个）。
    finished: bool,
    /// 是否已收到 `message_stop`。
    done: bool,
}

/// 取得已创建的块构造器；还没收到 `message_start` 说明上游流不合协议。
fn started(writer: &Option<ChunkWriter>) -> Result<&ChunkWriter, ApiError> {
    writer
        .as_ref()
        .ok_or_else(|| invalid_response("上游流在 message_start 之前发送了内容事件".to_string()))
}

/// 事件中的内容块序号。
fn block_index(data: &Value) -> Result<u64, ApiError> {
    data["index"].as_u64().ok_or_else(missing_index)
}

/// 内容块事件缺少 `index` 的错误。
fn missing_index() -> ApiError {
    invalid_response("上游流的内容块事件缺少 index".to_string())
}

/// 从 `Value` 里取出内容块增量（通用路径：定型解析失败时用），缺少或类型不对的字段按空处理。
fn delta_of(data: &Value) -> DeltaEvent<'_> {
    let delta = &data["delta"];
    let text = |key: &str| Cow::Borrowed(delta[key].as_str().unwrap_or_default());
    DeltaEvent {
        kind: Cow::Borrowed(BLOCK_DELTA),
        index: data["index"].as_u64(),
        delta: BlockDelta {
            kind: text("type"),
            text: text("text"),
            partial_json: text("partial_json"),
        },
    }
}

impl AnthropicStream {
    /// 为一次流式响应创建状态机。
    pub(super) fn new(ctx: TranslateCtx) -> Self {
        AnthropicStream {
            ctx,
            writer: None,
            tools: HashMap::new(),
            next_tool: 0,
            counts: TokenCounts::default(),
            finished: false,
            done: false,
        }
    }

    /// `message_start`：记下 id 与输入用量，写出角色块；重复的 `message_start` 忽略。
    fn message_start(&mut self, data: &Value, out: &mut BytesMut) {
        if self.writer.is_some() {
            return;
        }
        let message = &data["message"];
        let ctx = &self.ctx;
        let writer = ChunkWriter::new(
            message_id(message),
            ctx.created,
            ctx.model.clone(),
            ctx.include_usage,
        );
        self.counts.update(&message["usage"]);
        writer.role(out);
        self.writer = Some(writer);
    }

    /// `content_block_start`：文本块的初始文本（通常为空）照常输出；`tool_use` 块分配下一个工具序号，
    /// 写出带 id、名称与空参数的首个工具增量；思考等其他块不输出。
    fn block_start(&mut self, data: &Value, out: &mut BytesMut) -> Result<(), ApiError> {
        let writer = started(&self.writer)?;
        let block = &data["content_block"];
        match block["type"].as_str() {
            Some("text") => writer.content(out, block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let index = self.next_tool;
                let tool = ToolBlock {
                    index,
                    has_arguments: false,
                };
                self.tools.insert(block_index(data)?, tool);
                self.next_tool += 1;
                let id = block["id"].as_str().unwrap_or_default();
                let name = block["name"].as_str().unwrap_or_default();
                writer.tool_call_start(out, index, id, name, "");
            }
            _ => {}
        }
        Ok(())
    }

    /// `content_block_delta`：文本增量照常输出；参数片段按内容块序号找到工具序号后输出；
    /// 思考、签名与引用增量丢弃。
    fn block_delta(&mut self, event: &DeltaEvent, out: &mut BytesMut) -> Result<(), ApiError> {
        let writer = started(&self.writer)?;
        let delta = &event.delta;
        match delta.kind.as_ref() {
            TEXT_DELTA => writer.content(out, &delta.text),
            INPUT_JSON_DELTA => {
                let index = event.index.ok_or_else(missing_index)?;
                if let Some(tool) = self.tools.get_mut(&index) {
                    tool.has_arguments |= !delta.partial_json.is_empty();
                    writer.tool_arguments(out, tool.index, &delta.partial_json);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// 定型解析内容块增量；形状不合（例如字段类型不对）时为 `None`，交给通用路径按 `Value` 处理。
    fn parse_delta(event: &SseEvent) -> Option<DeltaEvent<'_>> {
        if event.event.as_deref() != Some(BLOCK_DELTA) {
            return None;
        }
        serde_json::from_str::<DeltaEvent>(&event.data)
            .ok()
            .filter(|delta| delta.kind == BLOCK_DELTA)
    }

    /// `content_block_stop`：没有收到任何非空参数片段的工具（无参数工具只发 `""`）补一个 `{}`，
    /// 让客户端拼出的参数是合法 JSON。
    fn block_stop(&mut self, data: &Value, out: &mut BytesMut) -> Result<(), ApiError> {
        let writer = started(&self.writer)?;
        let index = block_index(data)?;
        if let Some(tool) = self.tools.get_mut(&index).filter(|t| !t.has_arguments) {
            writer.tool_arguments(out, tool.index, EMPTY_ARGUMENTS);
            tool.has_arguments = true;
        }
        Ok(())
    }

    /// `message_delta`：更新累计用量；第一个带 `stop_reason` 的写出唯一的结束块。
    fn message_delta(&mut self, data: &Value, out: &mut BytesMut) -> Result<(), ApiError> {
        let writer = started(&self.writer)?;
        self.counts.update(&data["usage"]);
        let reason = data["delta"]["stop_reason"].as_str();
        if let Some(reason) = reason.filter(|_| !self.finished) {
            writer.finish(out, finish_reason(Some(reason)));
            self.finished = true;
        }
        Ok(())
    }

    /// `message_stop`：补写缺少的结束块，按客户端要求写用量块，再写 `[DONE]`。
    fn message_stop(&mut self, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        let writer = started(&self.writer)?;
        if !self.finished {
            writer.finish(out, FinishReason::Stop);
            self.finished = true;
        }
        writer.usage(out, &self.counts.usage());
        writer.done(out);
        self.done = true;
        Ok(StreamStatus::Done)
    }
}

/// 上游流结束时的检查（翻译与透传共用）：收到过 `message_stop` 是正常结束，否则是截断（502）。
pub(super) fn ended_or_truncated(done: bool) -> Result<(), ApiError> {
    if done {
        return Ok(());
    }
    Err(ApiError::bad_gateway(
        ErrorCode::UpstreamStreamTruncated,
        "上游 Anthropic 在发送 message_stop 之前断开了流",
    ))
}

impl StreamTranslator for AnthropicStream {
    /// 按事件 JSON 中的 `type` 分派（不依赖 `event:` 行）；ping 与未知事件按 Anthropic 的版本策略忽略。
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        if self.done {
            return Ok(StreamStatus::Done);
        }
        if let Some(delta) = Self::parse_delta(event) {
            self.block_delta(&delta, out)?;
            return Ok(StreamStatus::Continue);
        }
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|e| invalid_response(format!("上游流事件不是合法的 JSON：{e}")))?;
        match data["type"].as_str().unwrap_or_default() {
            "message_start" => self.message_start(&data, out),
            "content_block_start" => self.block_start(&data, out)?,
            BLOCK_DELTA => self.block_delta(&delta_of(&data), out)?,
            "content_block_stop" => self.block_stop(&data, out)?,
            "message_delta" => self.message_delta(&data, out)?,
            "message_stop" => return self.message_stop(out),
            "error" => return Err(stream_error(&data["error"])),
            _ => {}
        }
        Ok(StreamStatus::Continue)
    }

    /// 没收到 `message_stop` 就断开是截断：报错而不是伪装成正常结束。
    fn on_eof(&mut self, _out: &mut BytesMut) -> Result<(), ApiError> {
        ended_or_truncated(self.done)
    }

    /// `message_start` 之后才有用量（输入部分先到，输出随 `message_delta` 累计）。
    fn usage(&self) -> Option<Usage> {
        self.writer.as_ref().map(|_| self.counts.usage())
    }
}
