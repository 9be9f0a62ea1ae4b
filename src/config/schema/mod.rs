//! 配置文件（YAML）的结构，按 YAML 段分文件。字段级校验在反序列化时完成，错误自动带上 YAML 路径。

mod cache;
mod models;
mod providers;
mod security;
mod server;

use serde::Deserialize;

use super::failover::{BalancingSettings, BreakerSettings, RetrySettings};
use super::limits::{AdaptiveSettings, RateLimitSettings};
use crate::metrics::Price;
use crate::mock::MockSettings;

pub use cache::{CacheBackend, CacheMode, CacheScope, CacheSettings};
pub use models::{ModelConfig, ModelKind, TargetConfig};
pub use providers::{BaseUrl, ProviderConfig, ProviderKind, Timeouts};
pub use security::{
    AdminSection, AuthSettings, BudgetSettings, CorsSettings, RedisSettings, SecuritySettings,
};
pub use server::{
    AccessLogFormat, AccessLogSettings, ListenAddr, ResponsesSettings, ServerSettings,
};

/// 整个配置文件。
///
/// 用途：`config::load` 把 YAML 反序列化为它，再校验并构建运行时 [`super::Config`]。
///
/// ```
/// let file = chatnexus::config::parse("auth: { disabled: true }").unwrap(); // 其余段全用缺省值
/// assert!(file.auth.disabled && file.providers.is_empty()); // 没有任何上游
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// 监听与服务端参数。
    #[serde(default)]
    pub server: ServerSettings,
    /// 客户端鉴权。
    #[serde(default)]
    pub auth: AuthSettings,
    /// 管理接口的令牌（配置了 `server.admin_listen` 时必填）。
    #[serde(default)]
    pub admin: Option<AdminSection>,
    /// 上游提供方。
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// 客户端可见的模型及其上游目标。
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// 随网关一起启动的内置上游模拟器（离线演示、测试、压测）。
    #[serde(default)]
    pub mock: Option<MockListen>,
    /// 价目表：每个上游模型每百万 token 的美元单价。
    #[serde(default)]
    pub pricing: Vec<Price>,
    /// 访问日志的格式与内容。
    #[serde(default)]
    pub access_log: AccessLogSettings,
    /// OpenAI Responses 接口的会话保存。
    #[serde(default)]
    pub responses: ResponsesSettings,
    /// 美元预算的全局规则。
    #[serde(default)]
    pub budgets: BudgetSettings,
    /// 响应缓存；不写即不缓存。
    #[serde(default)]
    pub cache: Option<CacheSettings>,
    /// 安全设置：CORS、签名时间窗口、进程内防重放存储上限。
    #[serde(default)]
    pub security: SecuritySettings,
    /// 防重放用的 Redis（不配置时使用进程内存储）。
    #[serde(default)]
    pub redis: Option<RedisSettings>,
    /// 故障转移的重试上限。
    #[serde(default)]
    pub retry: RetrySettings,
    /// 被动健康检测（熔断）参数。
    #[serde(default)]
    pub circuit_breaker: BreakerSettings,
    /// 负载均衡（延迟估计）参数。
    #[serde(default)]
    pub load_balancing: BalancingSettings,
    /// 多层限流（全局、客户端密钥、客户端 IP、模型）。
    #[serde(default)]
    pub rate_limits: RateLimitSettings,
    /// 上游自适应并发的调整阈值。
    #[serde(default)]
    pub adaptive_limits: AdaptiveSettings,
}

/// `mock` 段：内置模拟器的监听地址与行为。
///
/// 用途：默认配置用它在本机起一个模拟上游，让网关无需任何 API key 即可应答。
///
/// ```
/// let m: chatnexus::config::MockListen = serde_yaml::from_str("listen: 127.0.0.1:18081").unwrap(); // 只给地址
/// assert_eq!(m.behavior.chunks, 8); // 行为取缺省值
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockListen {
    /// 模拟器监听地址（应为回环地址）。
    pub listen: ListenAddr,
    /// 模拟器行为（分块数、延迟、用量、故障模式）。
    #[serde(default)]
    pub behavior: MockSettings,
}
