//! 限流集成测试：真实 HTTP 经 127.0.0.1 访问进程内的网关（可多个实例共享一个 Redis 或 Redis 集群），
//! 网关再访问进程内的模拟上游。

mod adaptive;
mod admin;
mod budgets;
mod cache;
mod env;
mod exact;
mod hardening;
mod layers;
mod outage;
mod redis_server;
mod round_trip;
#[path = "../support/mod.rs"]
mod support;
mod tokens;
