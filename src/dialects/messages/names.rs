//! Anthropic Messages 线上格式中的名字与两种渲染共用的换算：停止原因、内容块类型、流事件名、用量。

use serde_json::{json, Value};

use crate::streaming::Usage;

/// 消息 id 的前缀（Anthropic 的消息 id 形如 `msg_…`）。
pub(super) const MESSAGE_ID_PREFIX: &str = "msg_";
/// 上游没给工具调用 id 时合成 id 的前缀（与 Anthropic 自己的 `toolu_…` 一致）。
pub(super) const TOOL_ID_PREFIX: &str = "toolu_";
/// 消息对象的 `type`。
pub(super) const MESSAGE_TYPE: &str = "message";
/// 助手角色。
pub(super) const ROLE_ASSISTANT: &str = "assistant";

/// 内容块类型：文本。
pub(super) const BLOCK_TEXT: &str = "text";
/// 内容块类型：思考。
pub(super) const BLOCK_THINKING: &str = "thinking";
/// 内容块类型：工具调用。
pub(super) const BLOCK_TOOL_USE: &str = "tool_use";

/// 停止原因：正常结束。
pub(super) const STOP_END_TURN: &str = "end_turn";
/// 停止原因：达到输出上限。
pub(super) const STOP_MAX_TOKENS: &str = "max_tokens";
/// 停止原因：模型要求调用工具（Claude Code 只在这个停止原因下执行工具）。
pub(super) const STOP_TOOL_USE: &str = "tool_use";
/// 停止原因：模型拒绝回答（对应枢纽的内容过滤）。
pub(super) const STOP_REFUSAL: &str = "refusal";

/// 枢纽结束原因：达到长度上限。
const FINISH_LENGTH: &str = "length";
/// 枢纽结束原因：调用工具。
const FINISH_TOOL_CALLS: &str = "tool_calls";
/// 枢纽结束原因：调用函数（旧版 function_call）。
const FINISH_FUNCTION_CALL: &str = "function_call";
/// 枢纽结束原因：内容过滤。
const FINISH_CONTENT_FILTER: &str = "content_filter";

/// 流事件名：消息开始。
pub(super) const EVENT_MESSAGE_START: &str = "message_start";
/// 流事件名：内容块开始。
pub(super) const EVENT_BLOCK_START: &str = "content_block_start";
/// 流事件名：内容块增量。
pub(super) const EVENT_BLOCK_DELTA: &str = "content_block_delta";
/// 流事件名：内容块结束。
pub(super) const EVENT_BLOCK_STOP: &str = "content_block_stop";
/// 流事件名：消息级增量（停止原因与最终用量）。
pub(super) const EVENT_MESSAGE_DELTA: &str = "message_delta";
/// 流事件名：消息结束。
pub(super) const EVENT_MESSAGE_STOP: &str = "message_stop";
/// 流事件名：心跳。
pub(super) const EVENT_PING: &str = "ping";

/// 增量类型：工具参数的 JSON 片段。
pub(super) const DELTA_INPUT_JSON: &str = "input_json_delta";

/// 把枢纽的 `finish_reason` 映射为 Anthropic 的 `stop_reason`。
///
/// 参数：`finish` 为枢纽的结束原因（没有时为 `None`）；`saw_tools` 为回复中是否出现过工具调用。
/// 长度上限与内容过滤优先；其余情况（含 `stop`、未知取值与没有结束原因）只要出现过工具调用就是
/// `tool_use`——有些上游调用工具时仍报 `stop`，停止原因不是 `tool_use` 时 Claude Code 不会执行工具。
pub(super) fn stop_reason(finish: Option<&str>, saw_tools: bool) -> &'static str {
    match finish {
        Some(FINISH_LENGTH) => STOP_MAX_TOKENS,
        Some(FINISH_CONTENT_FILTER) => STOP_REFUSAL,
        Some(FINISH_TOOL_CALLS | FINISH_FUNCTION_CALL) => STOP_TOOL_USE,
        _ if saw_tools => STOP_TOOL_USE,
        _ => STOP_END_TURN,
    }
}

/// 按 Anthropic 语义写出 `usage` 对象。
///
/// Anthropic 的 `input_tokens` 只计未命中缓存的输入，总输入是三个输入字段之和；枢纽的 `prompt`
/// 含缓存命中，所以 `input_tokens = prompt − cached`，`cache_read_input_tokens = cached`。
/// 枢纽不区分缓存写入，`cache_creation_input_tokens` 恒为 0。
pub(super) fn usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.prompt.saturating_sub(usage.cached),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached,
        "output_tokens": usage.completion,
    })
}
