//! 枢纽流式块（Chat Completions 的 `chat.completion.chunk`）的定型解析，供各方言的流式渲染器共用。
//!
//! 只解析渲染要用的字段：文本按借用读出（没有转义时零拷贝），其余字段跳过而不建 JSON 树——
//! 每个流式事件都要解析一次，它是翻译流中每个事件开销的大头。

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};

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
