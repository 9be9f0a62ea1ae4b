//! OpenAI Responses 方言（Codex CLI、`client.responses.create` 与 Agents SDK 使用）：`POST /v1/responses`。
//!
//! 目标说 Responses 协议时原样透传（只换 `model`）；其余上游经枢纽格式翻译。

mod names;
/// 完整回复：枢纽的 `chat.completion` → Responses `response` 对象。
pub mod response;
/// 流式回复：枢纽流式块 → Responses 事件的状态机（含 200 之后的失败）。
pub mod stream;
/// 翻译时客户端工具与枢纽函数名的对应。
pub mod tools;

#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod stream_tests;
