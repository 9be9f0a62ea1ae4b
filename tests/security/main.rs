//! 安全集成测试：请求签名与防重放（进程内存储与真实 Redis）、Redis 不可达时故障关闭、
//! 模型允许列表、CORS、安全响应头、上游只从配置取地址且收不到客户端凭据。

mod env;
mod policy;
mod signing;
#[path = "../support/mod.rs"]
mod support;
mod usage;
