//! 模拟上游的集成测试：经 127.0.0.1 的真实 HTTP 直接访问模拟器（不经网关），检查它说的线上格式。

#[path = "../support/mod.rs"]
mod support;

mod responses;
