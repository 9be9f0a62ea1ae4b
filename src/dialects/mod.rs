//! 客户端方言：客户端对网关说的协议。
//!
//! Chat Completions（[`chat`]）是枢纽格式：每种方言先翻译成它，再由 `providers` 翻译到上游的协议；
//! 方言与上游的协议相同时请求体原样透传。新方言（如 Anthropic Messages、OpenAI Responses）
//! 在这里各占一个文件夹：请求 → 枢纽、枢纽回复 → 方言、流事件、方言的错误格式。

/// Chat Completions：枢纽格式，也是 OpenAI SDK 使用的方言。
pub mod chat;
/// Anthropic Messages：Claude Code 与 anthropic SDK 使用的方言（把枢纽回复渲染为 Anthropic 形状）。
pub mod messages;

pub use chat::ChatRequest;
