//! ChatNexus：基于 Pingora 的 LLM 网关。
//!
//! 客户端用 OpenAI Chat Completions 协议（含 SSE 流式）访问网关，网关鉴权、读取并校验请求体、
//! 选择上游目标，再经 Pingora 的 `Connector` 与上游完成一次交换，把回复（逐个 SSE 事件）写回客户端。
//! 请求路径：`proxy`（路由、鉴权、读体）→ `upstream`（选目标、DNS）→ `exchange`（与上游交换，
//! 由 `providers` 翻译、`streaming` 解析 SSE）→ 客户端。

#![warn(clippy::all)]

pub mod config;
pub mod error;
pub mod exchange;
pub mod mock;
pub mod providers;
pub mod proxy;
pub mod request;
pub mod security;
pub mod server;
pub mod streaming;
pub mod upstream;
