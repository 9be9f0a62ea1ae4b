//! 网关集成测试：真实 HTTP 经 127.0.0.1 访问进程内的网关，网关再访问模拟上游。

mod anthropic;
mod azure;
mod body;
mod bounds;
mod cache;
mod cache_dialects;
mod chat;
mod common;
mod embeddings;
mod errors;
mod failover;
mod gemini;
mod hardening;
mod messages;
mod metrics;
mod responses;
#[path = "../support/mod.rs"]
mod support;
mod upstream_trouble;
