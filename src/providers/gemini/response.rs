//! 响应翻译：Gemini 完整响应 → OpenAI 补全，以及与流式共用的部分拆解、结束原因与用量换算。

use serde_json::Value;

use super::signature::call_id;
use crate::error::{ApiError, ErrorCode};
use crate::providers::convert::{Completion, ToolCall};
use crate::providers::TranslateCtx;
use crate::streaming::{random_id, FinishReason, Usage};

/// 补全 id 的前缀。
pub(super) const COMPLETION_ID_PREFIX: &str = "chatcmpl-";
/// 没有参数的函数调用在 OpenAI 中的参数字符串。
const EMPTY_ARGUMENTS: &str = "{}";
/// 上游响应无法解析时的错误码。
const CODE_INVALID_RESPONSE: ErrorCode = ErrorCode::InvalidUpstreamResponse;
/// 表示正常结束的 Gemini 结束原因（有函数调用时映射为 `tool_calls`）。
const STOP_REASONS: &[&str] = &["STOP", "FINISH_REASON_UNSPECIFIED"];
/// 映射为 `content_filter` 的 Gemini 结束原因（`OTHER` 按 LiteLLM 的做法也归入此类）。
const FILTER_REASONS: &[&str] = &[
    "SAFETY",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "RECITATION",
    "LANGUAGE",
    "OTHER",
    "IMAGE_RECITATION",
    "IMAGE_OTHER",
    "NO_IMAGE",
];
/// 映射为 `length` 的 Gemini 结束原因。
const LENGTH_REASON: &str = "MAX_TOKENS";
/// Gemini 的 token 计数是 int32；超出的值按此封顶，避免求和溢出。
pub(super) const MAX_TOKEN_COUNT: u64 = i32::MAX as u64;

/// 候选内容中对 OpenAI 有意义的一个部分。
pub(super) enum Piece<'a> {
    /// 非思考的非空文本。
    Text(&'a str),
    /// 一个完整的函数调用：函数名、参数 JSON 字符串与可能附带的思维签名。
    Call {
        name: &'a str,
        arguments: String,
        signature: Option<&'a str>,
    },
}

/// 取出候选内容的各部分：丢弃思考摘要（`thought: true`）、空文本和 OpenAI 无法表示的数据（如图片输出）。
pub(super) fn pieces(candidate: &Value) -> impl Iterator<Item = Piece<'_>> {
    candidate["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(piece)
}

/// 一个部分 → [`Piece`]：函数调用整体取出（参数序列化为字符串，缺省为 `{}`），文本跳过思考与空串。
fn piece(part: &Value) -> Option<Piece<'_>> {
    if let Some(call) = part.get("functionCall").filter(|c| c.is_object()) {
        let arguments = match &call["args"] {
            Value::Null => EMPTY_ARGUMENTS.to_string(),
            args => args.to_string(),
        };
        return Some(Piece::Call {
            name: call["name"].as_str().unwrap_or_default(),
            arguments,
            signature: part["thoughtSignature"].as_str(),
        });
    }
    let text = part["text"].as_str().filter(|t| !t.is_empty())?;
    (part["thought"] != true).then_some(Piece::Text(text))
}

/// 第 0 个候选（`index` 缺省时按位置）；网关只输出一个选项，没有候选时为 Null。
pub(super) fn primary_candidate(response: &Value) -> &Value {
    response["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .find(|(i, c)| c["index"].as_u64().unwrap_or(*i as u64) == 0)
        .map_or(&Value::Null, |(_, c)| c)
}

/// 提示词被拦截：没有候选且 `promptFeedback.blockReason` 存在。
pub(super) fn prompt_blocked(response: &Value, candidate: &Value) -> bool {
    candidate.is_null() && response["promptFeedback"]["blockReason"].is_string()
}

/// 补全 id：`chatcmpl-` + `responseId`，没有时随机生成。
pub(super) fn completion_id(response: &Value) -> String {
    match response["responseId"].as_str().filter(|id| !id.is_empty()) {
        Some(id) => format!("{COMPLETION_ID_PREFIX}{id}"),
        None => random_id(COMPLETION_ID_PREFIX),
    }
}

/// Gemini 结束原因 → OpenAI：函数调用轮也以 STOP 结束，有函数调用时改为 `tool_calls`。
pub(super) fn map_finish(reason: Option<&str>, saw_call: bool) -> FinishReason {
    match reason {
        Some(LENGTH_REASON) => FinishReason::Length,
        Some(r) if FILTER_REASONS.contains(&r) => FinishReason::ContentFilter,
        Some(r) if saw_call && STOP_REASONS.contains(&r) => FinishReason::ToolCalls,
        None if saw_call => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// `usageMetadata` → OpenAI 用量：输入含工具结果 token，输出含思考 token，总数恒为两者之和。
pub(super) fn usage_of(meta: &Value) -> Usage {
    let count = |key: &str| meta[key].as_u64().unwrap_or(0).min(MAX_TOKEN_COUNT);
    let thoughts = count("thoughtsTokenCount");
    Usage {
        prompt: count("promptTokenCount") + count("toolUsePromptTokenCount"),
        completion: count("candidatesTokenCount") + thoughts,
        cached: count("cachedContentTokenCount"),
        reasoning: thoughts,
    }
}

/// 完整响应 → OpenAI 补全。
pub(super) fn completion(response: &Value, ctx: &TranslateCtx) -> Completion {
    let id = completion_id(response);
    let candidate = primary_candidate(response);
    let mut content: Option<String> = None;
    let mut tool_calls = Vec::new();
    for piece in pieces(candidate) {
        match piece {
            Piece::Text(text) => content.get_or_insert_with(String::new).push_str(text),
            Piece::Call {
                name,
                arguments,
                signature,
            } => tool_calls.push(ToolCall {
                id: call_id(&id, tool_calls.len(), signature),
                name: name.to_string(),
                arguments,
            }),
        }
    }
    let finish = if prompt_blocked(response, candidate) {
        FinishReason::ContentFilter
    } else {
        map_finish(candidate["finishReason"].as_str(), !tool_calls.is_empty())
    };
    Completion {
        id,
        created: ctx.created,
        model: ctx.model.clone(),
        content,
        tool_calls,
        finish,
        usage: usage_of(&response["usageMetadata"]),
    }
}

/// 解析上游 JSON，要求是对象；否则返回 502。
pub(super) fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ApiError::bad_gateway(
            CODE_INVALID_RESPONSE,
            "上游返回的 JSON 不是对象",
        )),
        Err(e) => Err(ApiError::bad_gateway(
            CODE_INVALID_RESPONSE,
            format!("上游返回了无法解析的 JSON：{e}"),
        )),
    }
}
