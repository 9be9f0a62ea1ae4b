//! 枢纽回复的解析，供各方言的渲染器共用：流式块（`chat.completion.chunk`）的定型解析，与完整回复
//! （`chat.completion`）的解析与基本校验。
//!
//! 只解析渲染要用的字段：文本按借用读出（没有转义时零拷贝），其余字段跳过而不建 JSON 树——
//! 每个流式事件都要解析一次，它是翻译流中每个事件开销的大头。

use std::borrow::Cow;

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};
use crate::streaming::{Usage, DONE_SENTINEL};

/// 一个枢纽流式块。
#[derive(Deserialize)]
pub(crate) struct HubChunk<'a> {
    /// 候选（枢纽流只有一个；用量块为空数组）。
    #[serde(default, borrow)]
    pub choices: Option<Vec<HubChoice<'a>>>,
    /// 用量（只在用量块里是对象）。
    #[serde(default)]
    pub usage: Option<Value>,
    /// OpenAI 兼容上游在流中报错的形状。
    #[serde(default)]
    pub error: Option<Value>,
}

/// 枢纽流式块里的一个候选。
#[derive(Deserialize)]
pub(crate) struct HubChoice<'a> {
    /// 增量。
    #[serde(default, borrow)]
    pub delta: Option<HubDelta<'a>>,
    /// 结束原因（只在结束块里有）。
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// 候选的增量：文本、推理（两种字段名）、拒答、工具调用。
#[derive(Deserialize)]
pub(crate) struct HubDelta<'a> {
    /// 文本。
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
    /// 推理（DeepSeek 等）。
    #[serde(default, borrow)]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// 推理（OpenRouter、新版 vLLM）。
    #[serde(default, borrow)]
    pub reasoning: Option<Cow<'a, str>>,
    /// 拒答。
    #[serde(default, borrow)]
    pub refusal: Option<Cow<'a, str>>,
    /// 工具调用片段（较少见，保留为 JSON）。
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
}

/// 解析一个枢纽事件的 data。
///
/// 错误：不是合法的 JSON 对象 → 502 `invalid_upstream_response`；对象带非 null 的 `error`
/// （OpenAI 兼容上游在流中报错的形状）→ 502 `upstream_stream_error`，消息带上游的说明，
/// 信封码转告上游的 `code`（如 `context_length_exceeded`）。
pub(crate) fn parse_chunk(data: &str) -> Result<HubChunk<'_>, ApiError> {
    let chunk: HubChunk = serde_json::from_str(data).map_err(|e| {
        ApiError::bad_gateway(
            ErrorCode::InvalidUpstreamResponse,
            format!("上游流式块不是合法的 JSON 对象：{e}"),
        )
    })?;
    if let Some(error) = chunk.error.as_ref().filter(|e| !e.is_null()) {
        let message = error["message"].as_str().unwrap_or("未给出说明");
        let mut failure = ApiError::bad_gateway(
            ErrorCode::UpstreamStreamError,
            format!("上游在流中返回错误：{message}"),
        );
        failure.upstream_code = error["code"].as_str().map(Box::from);
        return Err(failure);
    }
    Ok(chunk)
}

/// 增量中的推理文本：优先 `reasoning_content`，否则 `reasoning`；两者都给时只取前者，避免同一段推理写两遍。
pub(crate) fn reasoning_of<'a>(delta: &'a HubDelta) -> Option<&'a str> {
    [&delta.reasoning_content, &delta.reasoning]
        .into_iter()
        .find_map(|text| text.as_deref().filter(|text| !text.is_empty()))
}

/// 把枢纽流渲染成某种方言事件的状态机：各方言实现它，共用 [`feed_hub_event`] 的事件分派。
pub(crate) trait HubRender {
    /// 是否已写出终止事件（之后来的事件一律忽略）。
    fn finished(&self) -> bool;
    /// 第一次调用时写出流开头的事件；之后什么也不做。
    fn ensure_started(&mut self, out: &mut BytesMut);
    /// 枢纽流的 `[DONE]`：关闭一切并写出终止事件。
    fn finish(&mut self, out: &mut BytesMut);
    /// 记下上游最后一次报告的用量。
    fn set_usage(&mut self, usage: Usage);
    /// 处理一个候选（增量与结束原因）。
    fn on_choice(&mut self, choice: &HubChoice, out: &mut BytesMut);
}

/// 处理一个枢纽 SSE 事件的 data（一个 `chat.completion.chunk` JSON，或 `[DONE]`），把方言事件写入 `out`；
/// 第一个事件之前先写流的开头。
///
/// 返回：`Ok(true)` 表示已写出终止事件；之后再来的事件一律忽略并仍返回 `Ok(true)`。
///
/// 错误：见 [`parse_chunk`]；出错时不写终止事件，由调用方按方言报告错误。
pub(crate) fn feed_hub_event<R: HubRender>(
    render: &mut R,
    data: &str,
    out: &mut BytesMut,
) -> Result<bool, ApiError> {
    if render.finished() {
        return Ok(true);
    }
    if data.trim() == DONE_SENTINEL {
        render.ensure_started(out);
        render.finish(out);
        return Ok(true);
    }
    let chunk = parse_chunk(data)?;
    render.ensure_started(out);
    if let Some(usage) = chunk.usage.as_ref().and_then(Usage::from_openai) {
        render.set_usage(usage);
    }
    // 枢纽流只有一个候选（n = 1）；用量块的 choices 为空数组
    if let Some(choice) = chunk.choices.as_ref().and_then(|c| c.first()) {
        render.on_choice(choice, out);
    }
    Ok(false)
}

/// 解析枢纽的完整回复并确认它有 `choices[0].message` 对象；返回整个回复。
///
/// 错误：不是合法 JSON 或缺少消息 → 502 `invalid_upstream_response`。
pub(crate) fn parse_completion(hub: &[u8]) -> Result<Value, ApiError> {
    let reply: Value = serde_json::from_slice(hub).map_err(|e| {
        ApiError::bad_gateway(
            ErrorCode::InvalidUpstreamResponse,
            format!("上游回复不是合法的 JSON：{e}"),
        )
    })?;
    if !reply["choices"][0]["message"].is_object() {
        return Err(ApiError::bad_gateway(
            ErrorCode::InvalidUpstreamResponse,
            "上游回复缺少 choices[0].message",
        ));
    }
    Ok(reply)
}
