//! OpenAI Responses 方言（Codex CLI、`client.responses.create` 与 Agents SDK 使用）：`POST /v1/responses`。
//!
//! 目标说 Responses 协议时原样透传（只换 `model`）；其余上游经枢纽格式翻译。

/// 翻译时客户端工具与枢纽函数名的对应。
pub mod tools;
