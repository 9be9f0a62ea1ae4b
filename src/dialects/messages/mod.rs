//! Anthropic Messages 方言（`POST /v1/messages`）：上游不是 Anthropic 时，把枢纽（Chat Completions）
//! 的回复渲染回 Anthropic 的形状——完整回复见 [`response`]，流式事件见 [`stream`]。
//!
//! 两者共用的名字（停止原因、块类型、事件名）与用量换算在 `names.rs`；测试在同名的 `*_tests.rs` 中。

/// 完整回复：`chat.completion` → Anthropic `message` 对象。
pub mod response;
/// 流式回复：枢纽流式块 → Anthropic SSE 事件的状态机。
pub mod stream;

mod names;

#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod stream_tests;
