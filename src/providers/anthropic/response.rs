//! 响应翻译：Anthropic 完整响应 → OpenAI 补全，以及两种模式共用的结束原因与用量换算。

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::EMPTY_ARGUMENTS;
use crate::error::{ApiError, ErrorCode};
use crate::providers::convert::{Completion, ToolCall};
use crate::providers::TranslateCtx;
use crate::streaming::{random_id, FinishReason, Usage};

/// 上游没给消息 id 时合成 id 的前缀。
const MESSAGE_ID_PREFIX: &str = "msg_";

pub(super) fn invalid_response(message: String) -> ApiError {
    ApiError::bad_gateway(ErrorCode::InvalidUpstreamResponse, message)
}

/// 上游的消息 id；缺失时合成一个。
pub(super) fn message_id(message: &Value) -> String {
    message["id"]
        .as_str()
        .map_or_else(|| random_id(MESSAGE_ID_PREFIX), str::to_string)
}

/// 把 Anthropic 完整响应翻译为补全：文本块拼接为 `content`，`tool_use` 块成为工具调用（id 原样保留）。
///
/// 错误：不是 JSON 或缺少 `content` 数组时返回 502。
pub(super) fn completion_of(body: &[u8], ctx: &TranslateCtx) -> Result<Completion, ApiError> {
    let message: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("上游返回了无法解析的 JSON：{e}")))?;
    let blocks = message["content"]
        .as_array()
        .ok_or_else(|| invalid_response("上游响应缺少 content 数组".to_string()))?;
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let tool_calls = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(tool_call_of)
        .collect();
    let mut counts = TokenCounts::default();
    counts.update(&message["usage"]);
    Ok(Completion {
        id: message_id(&message),
        created: ctx.created,
        model: ctx.model.clone(),
        content: (!text.is_empty()).then_some(text),
        tool_calls,
        finish: finish_reason(message["stop_reason"].as_str()),
        usage: counts.usage(),
    })
}

/// `tool_use` 块 → 工具调用；`input` 对象序列化为 JSON 字符串（OpenAI 的参数永远是字符串）。
fn tool_call_of(block: &Value) -> ToolCall {
    let arguments = match &block["input"] {
        Value::Null => EMPTY_ARGUMENTS.to_string(),
        input => input.to_string(),
    };
    ToolCall {
        id: block["id"].as_str().unwrap_or_default().to_string(),
        name: block["name"].as_str().unwrap_or_default().to_string(),
        arguments,
    }
}

/// `stop_reason` → `finish_reason`（参考文档 §5.2）。
///
/// refusal 为内容过滤，上下文超限与 max_tokens 一样是长度；end_turn、stop_sequence、pause_turn、
/// null 与未知值都是 stop。
pub(super) fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// Anthropic 语义的 token 计数（`input` 不含缓存）。
///
/// 流中 `message_delta` 的用量是累计值，出现的字段覆盖 `message_start` 中的旧值。
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct TokenCounts {
    input: u64,
    cache_read: u64,
    cache_creation: u64,
    output: u64,
    thinking: u64,
}

/// 定型解析的 Anthropic `usage` 对象（透传的旁路观察者用它，只解析用量、跳过其余字段而不建树）。
#[derive(Debug, Default, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    input_tokens: Tokens,
    #[serde(default)]
    cache_read_input_tokens: Tokens,
    #[serde(default)]
    cache_creation_input_tokens: Tokens,
    #[serde(default)]
    output_tokens: Tokens,
    #[serde(default)]
    output_tokens_details: Option<ThinkingDetails>,
}

/// 输出用量的细分 `usage.output_tokens_details`。
#[derive(Debug, Default, Deserialize)]
pub(super) struct ThinkingDetails {
    #[serde(default)]
    thinking_tokens: Tokens,
}

/// 宽容的计数：非负整数为 `Some`，缺失、null、小数、字符串等为 `None`（不覆盖已有的值）。
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tokens(Option<u64>);

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Tokens(Value::deserialize(deserializer)?.as_u64()))
    }
}

impl TokenCounts {
    /// 用定型解析的 `usage` 中出现的字段覆盖当前值（与 [`TokenCounts::update`] 相同的规则）。
    pub(super) fn merge(&mut self, wire: &WireUsage) {
        let thinking = wire
            .output_tokens_details
            .as_ref()
            .map_or(Tokens(None), |d| d.thinking_tokens);
        let fields = [
            (&mut self.input, wire.input_tokens),
            (&mut self.cache_read, wire.cache_read_input_tokens),
            (&mut self.cache_creation, wire.cache_creation_input_tokens),
            (&mut self.output, wire.output_tokens),
            (&mut self.thinking, thinking),
        ];
        for (slot, value) in fields {
            if let Tokens(Some(n)) = value {
                *slot = n;
            }
        }
    }

    /// 用一个 `usage` 对象中出现的字段覆盖当前值；缺失的字段保持不变。
    pub(super) fn update(&mut self, usage: &Value) {
        let fields = [
            (&mut self.input, &usage["input_tokens"]),
            (&mut self.cache_read, &usage["cache_read_input_tokens"]),
            (
                &mut self.cache_creation,
                &usage["cache_creation_input_tokens"],
            ),
            (&mut self.output, &usage["output_tokens"]),
            (
                &mut self.thinking,
                &usage["output_tokens_details"]["thinking_tokens"],
            ),
        ];
        for (slot, value) in fields {
            if let Some(n) = value.as_u64() {
                *slot = n;
            }
        }
    }

    /// 换算为 OpenAI 语义：输入含缓存读取与缓存写入，缓存命中为缓存读取，推理为思考 token。
    ///
    /// 数值来自上游，用饱和加法，异常的巨大计数不会让网关溢出。
    pub(super) fn usage(&self) -> Usage {
        Usage {
            prompt: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_creation),
            completion: self.output,
            cached: self.cache_read,
            reasoning: self.thinking,
        }
    }
}
