//! ChatNexus：基于 Pingora 的 LLM 网关。
//!
//! 客户端用 OpenAI Chat Completions 协议（含 SSE 流式）访问网关，网关鉴权、读取并校验请求体、
//! 选择上游目标，再经 Pingora 的 `Connector` 与上游完成一次交换，把回复（逐个 SSE 事件）写回客户端。
//! 请求路径：`proxy`（路由、鉴权、读体）→ `upstream`（选目标、DNS）→ `exchange`（与上游交换，
//! 由 `providers` 翻译、`streaming` 解析 SSE）→ 客户端。

#![warn(clippy::all)]
#![deny(clippy::too_many_lines)]

/// 管理接口：独立监听、令牌鉴权，管理虚拟密钥。
pub mod admin;
/// 美元预算：按密钥、按 UTC 自然日与自然月，先预留后结算，跨实例精确。
pub mod budgets;
/// 响应缓存：能否缓存、缓存键与条目的存取（进程内 LRU 或 Redis）。
pub mod cache;
/// 墙上时钟。
pub mod clock;
/// 配置：YAML、环境变量与 `.env` 的加载和校验。
pub mod config;
/// 客户端方言：Chat Completions（枢纽格式）及其解析与校验。
pub mod dialects;
/// 网关写给客户端的响应与每个响应都带的头。
pub mod downstream;
/// 优雅退出时进行中的请求一结束就退出。
pub mod drain;
/// 返回给客户端的错误与 OpenAI 错误信封。
pub mod error;
/// 与上游的一次交换（Pingora `Connector`）。
pub mod exchange;
/// 多层限流（本地 + Redis）。
pub mod limits;
/// 日志脱敏：认证类请求头的值不进日志。
pub mod logging;
/// Prometheus 指标、用量与费用。
pub mod metrics;
/// 上游模拟器（演示、测试、压测）。
pub mod mock;
/// 各上游协议的翻译过滤器。
pub mod providers;
/// Pingora `ProxyHttp` 实现与本地应答的接口。
pub mod proxy;
/// 防重放与限流共用的 Redis 连接。
pub mod redis_link;
/// 配置热重载（SIGHUP）。
pub mod reload;
/// Responses 会话的保存（`previous_response_id`）。
pub mod response_store;
/// 私有运行时目录（进程号文件、升级套接字）与私密文件的权限检查。
pub mod runtime_dir;
/// 密钥的内存保护与客户端鉴权。
pub mod security;
/// 组装 Pingora `Server`。
pub mod server;
/// SSE 增量解析与写出。
pub mod streaming;
/// 上游目标、DNS 缓存与 `HttpPeer`。
pub mod upstream;
/// 虚拟密钥：管理接口创建、保存在 Redis 里、所有实例一秒内生效的客户端密钥。
pub mod virtual_keys;
