//! 流式翻译：Gemini SSE 事件 → OpenAI 流式块。

use bytes::BytesMut;
use serde_json::Value;

use super::error::error_info;
use super::response::{
    completion_id, map_finish, parse_object, pieces, primary_candidate, prompt_blocked, usage_of,
    Piece,
};
use super::signature::call_id;
use crate::error::{ApiError, ErrorCode};
use crate::providers::{stream_error, StreamStatus, StreamTranslator, TranslateCtx};
use crate::streaming::{ChunkWriter, FinishReason, SseEvent, Usage};

/// 流的结束信号：最后一次见到的结束原因，或提示词被拦截（没有候选）。
enum End {
    /// 候选给出的结束原因（Gemini 原文，如 `STOP`）。
    Reason(String),
    /// 提示词被拦截：只有 `promptFeedback.blockReason`，没有候选。
    PromptBlocked,
}

/// 流的累计状态。
#[derive(Default)]
struct StreamState {
    /// 补全 id（首个事件的 `responseId` 或随机），也是合成工具调用 id 的种子。
    id: String,
    /// 下一个工具调用的序号：跨块递增，不用块内位置（分在两个块里的并行调用不会撞号）。
    next_tool_index: usize,
    /// 是否见过函数调用（STOP 因此映射为 `tool_calls`）。
    saw_function_call: bool,
    /// 最后一次见到的结束信号；Gemini 没有结束标记，只在连接关闭时据此输出唯一的结束块。
    end: Option<End>,
    /// 最后一次的用量：上游给的是累计值，以最后一次为准，不相加，没有用量的块不清零。
    usage: Usage,
}

/// Gemini 流式翻译器。
pub(super) struct GeminiStream {
    /// 请求级信息（模型名、创建时间、是否输出用量块）。
    ctx: TranslateCtx,
    /// 首个事件到达时创建（id 取自它的 `responseId`）。
    writer: Option<ChunkWriter>,
    /// 跨事件的累计状态。
    state: StreamState,
}

impl GeminiStream {
    /// 为一次流式响应创建翻译器（块构造器等首个事件到达时再建）。
    pub(super) fn new(ctx: TranslateCtx) -> Self {
        GeminiStream {
            ctx,
            writer: None,
            state: StreamState::default(),
        }
    }
}

impl StreamTranslator for GeminiStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        if event.data.trim().is_empty() {
            return Ok(StreamStatus::Continue);
        }
        let response = parse_event(&event.data)?;
        let writer = self.writer.get_or_insert_with(|| {
            self.state.id = completion_id(&response);
            let ctx = &self.ctx;
            let writer = ChunkWriter::new(
                self.state.id.clone(),
                ctx.created,
                ctx.model.clone(),
                ctx.include_usage,
            );
            writer.role(out);
            writer
        });
        self.state.apply(&response, writer, out);
        Ok(StreamStatus::Continue)
    }

    fn on_eof(&mut self, out: &mut BytesMut) -> Result<(), ApiError> {
        let (Some(writer), Some(end)) = (&self.writer, &self.state.end) else {
            return Err(ApiError::bad_gateway(
                ErrorCode::UpstreamStreamTruncated,
                "上游在给出结束原因（finishReason）之前断开了流",
            ));
        };
        let finish = match end {
            End::Reason(reason) => map_finish(Some(reason.as_str()), self.state.saw_function_call),
            End::PromptBlocked => FinishReason::ContentFilter,
        };
        writer.finish(out, finish);
        writer.usage(out, &self.state.usage);
        writer.done(out);
        Ok(())
    }

    /// 最近一次的累计用量；上游一次都没报告时为 `None`。
    fn usage(&self) -> Option<Usage> {
        (self.state.usage != Usage::default()).then_some(self.state.usage)
    }
}

impl StreamState {
    /// 翻译一个事件：文本增量、每个函数调用一个完整的工具调用增量；记下结束原因与最新用量。
    fn apply(&mut self, response: &Value, writer: &ChunkWriter, out: &mut BytesMut) {
        let candidate = primary_candidate(response);
        for piece in pieces(candidate) {
            match piece {
                Piece::Text(text) => writer.content(out, text),
                Piece::Call {
                    name,
                    arguments,
                    signature,
                } => {
                    let index = self.next_tool_index;
                    self.next_tool_index += 1;
                    self.saw_function_call = true;
                    let id = call_id(&self.id, index, signature);
                    writer.tool_call_start(out, index, &id, name, &arguments);
                }
            }
        }
        if let Some(reason) = candidate["finishReason"].as_str() {
            self.end = Some(End::Reason(reason.to_string()));
        } else if prompt_blocked(response, candidate) {
            self.end = Some(End::PromptBlocked);
        }
        if response["usageMetadata"].is_object() {
            self.usage = usage_of(&response["usageMetadata"]);
        }
    }
}

/// 解析一个流事件；上游在流中报告的错误（`{"error":…}`）转为 502 错误事件。
fn parse_event(data: &str) -> Result<Value, ApiError> {
    let value = parse_object(data.as_bytes())?;
    if value["error"].is_object() {
        return Err(stream_error(error_info(0, &value["error"])));
    }
    Ok(value)
}
