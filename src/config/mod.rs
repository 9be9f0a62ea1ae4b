//! 配置：YAML 文件（conf/chatnexus.yaml）加环境变量与 `.env`。
//!
//! 加载分三步：反序列化（字段级错误带 YAML 路径）→ 跨字段校验（一次列出全部问题）→
//! 构建运行时 [`Config`]（解析上游密钥，缺失密钥的上游被停用并警告）。

mod build;
mod cidr;
mod failover;
mod limits;
mod schema;
#[cfg(test)]
mod security_tests;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use zeroize::Zeroizing;

use crate::metrics::PriceTable;
use crate::redis_link::RedisLink;
use crate::security::{ClientKeys, KeyHash, LimitOverride, Secret};

/// 运行时可共享、可原子替换的配置（热重载整体替换，每个请求读取一次）。
pub type SharedConfig = Arc<ArcSwap<Config>>;

pub use build::build;
pub use cidr::{canonical_ip, Cidr};
pub use failover::{BalancingSettings, BreakerSettings, HealthCheck, RetrySettings};
pub use limits::{
    AdaptiveSettings, AuthFailureSettings, ConcurrencySettings, FailureMode, LayerSettings,
    RateLimitSettings,
};
pub use schema::{
    AccessLogFormat, AccessLogSettings, AdminSection, AuthSettings, BaseUrl, BudgetSettings,
    CacheBackend, CacheMode, CacheScope, CacheSettings, ConfigFile, CorsSettings, ListenAddr,
    MockListen, ModelConfig, ModelKind, ProviderConfig, ProviderKind, RedisSettings,
    ResponsesSettings, SecuritySettings, ServerSettings, TargetConfig, Timeouts,
};

/// 上游名是否合法（字母、数字、`._-`，1 到 64 个字符）；命令行加密前用它检查 `--provider`。
///
/// ```
/// assert!(chatnexus::config::valid_provider_name("openai-prod")); // ASCII 名称合法
/// assert!(!chatnexus::config::valid_provider_name("带 空格"));
/// ```
pub fn valid_provider_name(name: &str) -> bool {
    validate::is_valid_name(name)
}

/// 客户端密钥名是否合法（不空、无空白与控制字符、不超过 64 个字符，可用中文）。
///
/// ```
/// assert!(chatnexus::config::valid_client_name("团队甲"));
/// assert!(!chatnexus::config::valid_client_name("a b")); // 含空白不合法
/// ```
pub fn valid_client_name(name: &str) -> bool {
    validate::is_valid_label(name, validate::MAX_NAME_LEN)
}

/// 配置文件的默认路径。
pub const DEFAULT_CONFIG_PATH: &str = "conf/chatnexus.yaml";

/// 一条校验问题：出错字段的 YAML 路径与中文说明。
///
/// 用途：`chatnexus -t` 和启动失败时逐条打印，运维据路径直接定位到字段。
///
/// ```
/// let i = chatnexus::config::ConfigIssue::new("server.max_body_bytes", "必须大于 0");
/// assert_eq!(i.to_string(), "server.max_body_bytes: 必须大于 0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// 字段路径，如 `providers[1].base_url`。
    pub path: String,
    /// 中文说明。
    pub message: String,
}

impl ConfigIssue {
    /// 构造一条问题。
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// 加载配置失败的原因。
///
/// 用途：`main` 打印它并以非零码退出；每种情况都指明文件或字段。
///
/// ```
/// let e = chatnexus::config::parse("server: { listen: 1 }").unwrap_err(); // 地址缺少端口
/// assert!(e.to_string().contains("server.listen")); // 错误信息指明字段路径
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// 文件读不到。
    #[error("无法读取配置文件 {path}：{source}")]
    Read {
        /// 文件路径。
        path: String,
        /// 底层 IO 错误。
        source: std::io::Error,
    },
    /// YAML 语法或字段类型错误。
    #[error("配置解析失败，字段 `{path}`：{message}")]
    Parse {
        /// 出错字段的 YAML 路径。
        path: String,
        /// 解析器给出的说明（含行列号）。
        message: String,
    },
    /// 跨字段校验失败。
    #[error("配置校验失败，共 {} 处问题：\n{}", .0.len(), join_issues(.0))]
    Invalid(Vec<ConfigIssue>),
}

fn join_issues(issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues.iter().map(|i| format!("  - {i}")).collect();
    lines.join("\n")
}

/// 运行时的一个上游提供方。
///
/// 用途：`exchange` 用它连接上游、写认证头、套用超时。
///
/// ```
/// let yaml = "auth: { disabled: true }\nproviders: [ { name: local, kind: openai_compatible, base_url: 'http://127.0.0.1:8000' } ]\nmodels: [ { name: 演示, targets: [ { provider: local, model: qwen2.5 } ] } ]";
/// let cfg = chatnexus::config::build(chatnexus::config::parse(yaml).unwrap(), |_| None).unwrap(); // 不注入任何环境变量
/// assert!(cfg.providers[0].enabled); // 本地上游无需密钥，处于启用状态
/// ```
#[derive(Debug)]
pub struct Provider {
    /// 名称。
    pub name: String,
    /// 协议类型。
    pub kind: ProviderKind,
    /// 基础地址。
    pub base_url: BaseUrl,
    /// 上游密钥（已解析，可能没有）。
    pub api_key: Option<Secret>,
    /// 超时。
    pub timeouts: Timeouts,
    /// 为假时不参与选择（例如密钥环境变量未设置）。
    pub enabled: bool,
    /// Azure 的 `api-version`。
    pub api_version: Option<String>,
    /// 主动健康探测（没有配置时只做被动检测）。
    pub health_check: Option<HealthCheck>,
    /// 每个目标的自适应并发设置（没有配置时不限制并发）。
    pub concurrency: Option<ConcurrencySettings>,
    /// 上游也提供 OpenAI Responses 接口（`openai` 类型总是提供）：Responses 客户端的请求原样透传。
    pub responses: bool,
}

/// 一个上游目标：由哪个提供方、以什么模型名服务。
///
/// 用途：`upstream::Balancer` 在它们之中选择，`exchange` 逐个尝试。
///
/// ```
/// let yaml = "auth: { disabled: true }\nproviders: [ { name: local, kind: openai_compatible, base_url: 'http://127.0.0.1:8000' } ]\nmodels: [ { name: 演示, targets: [ { provider: local, model: qwen2.5 } ] } ]";
/// let cfg = chatnexus::config::build(chatnexus::config::parse(yaml).unwrap(), |_| None).unwrap(); // 不注入任何环境变量
/// assert_eq!(cfg.model("演示").unwrap().targets[0].model, "qwen2.5"); // 目标模型名来自 targets[].model
/// ```
#[derive(Debug, Clone)]
pub struct Target {
    /// 提供方。
    pub provider: Arc<Provider>,
    /// 发给上游的模型名。
    pub model: String,
    /// 发给上游的模型名写成的响应头值（`x-chatnexus-upstream-model`），构建配置时做好，每个请求只复制引用。
    pub model_header: Option<http::HeaderValue>,
    /// 客户端没给 `max_tokens` 时使用的值。
    pub max_tokens: Option<u64>,
    /// 该目标的输出上限：客户端要的更多时截到它（`None` 表示不截）。
    pub max_output_tokens: Option<u64>,
    /// Azure 部署名（已按缺省规则填好）。
    pub deployment: String,
    /// 同一优先级内的相对权重（至少为 1）。
    pub weight: u32,
    /// 优先级层，0 最优先。
    pub priority: u32,
    /// 运行时状态（延迟、熔断、限流）的键：`提供方名/部署名`。
    ///
    /// 配置重载后键相同的目标沿用原有状态；多个模型指向同一上游部署时共享状态。
    pub key: Arc<str>,
}

/// 客户端可见的一个模型。
///
/// 用途：`/v1/models` 列出它们；聊天请求按名字找到目标。
///
/// ```
/// let m = chatnexus::config::Model { name: "演示".into(), kind: Default::default(), targets: vec![], limits: None }; // 没有目标的模型
/// assert!(m.targets.is_empty()); // 请求它会得到 503
/// ```
#[derive(Debug, Clone)]
pub struct Model {
    /// 模型名。
    pub name: String,
    /// 模型的种类（聊天或向量）。
    pub kind: ModelKind,
    /// 上游目标（按配置顺序）。
    pub targets: Vec<Target>,
    /// 该模型对每个模型一层限流的覆盖。
    pub limits: Option<LimitOverride>,
}

/// 校验并构建完成的运行时配置。
///
/// 用途：网关的所有请求处理都只读它。
///
/// ```
/// let yaml = "auth: { disabled: true }\nproviders: [ { name: local, kind: openai_compatible, base_url: 'http://127.0.0.1:8000' } ]\nmodels: [ { name: 演示, targets: [ { provider: local, model: qwen2.5 } ] } ]";
/// let cfg = chatnexus::config::build(chatnexus::config::parse(yaml).unwrap(), |_| None).unwrap(); // 不注入任何环境变量
/// assert!(cfg.model("演示").is_some() && cfg.model("不存在").is_none()); // 按客户端可见名查找
/// ```
#[derive(Debug)]
pub struct Config {
    /// `server` 段。
    pub server: ServerSettings,
    /// 是否关闭了客户端鉴权。
    pub auth_disabled: bool,
    /// 客户端密钥表。
    pub clients: ClientKeys,
    /// 管理令牌的 SHA-256（配置了 `server.admin_listen` 时才有）。
    pub admin_token: Option<KeyHash>,
    /// 全部上游提供方（按配置顺序）。
    pub providers: Vec<Arc<Provider>>,
    /// 全部模型（按配置顺序）。
    pub models: Vec<Model>,
    /// 内置模拟器设置。
    pub mock: Option<MockListen>,
    /// 价目表。
    pub pricing: PriceTable,
    /// 访问日志设置。
    pub access_log: AccessLogSettings,
    /// OpenAI Responses 接口的会话保存。
    pub responses: ResponsesSettings,
    /// 美元预算的全局规则。
    pub budgets: BudgetSettings,
    /// 响应缓存；`None` 时不缓存。
    pub cache: Option<CacheSettings>,
    /// 安全设置（CORS、签名时间窗口、进程内防重放存储上限）。
    pub security: SecuritySettings,
    /// 防重放用的 Redis；`None` 时使用进程内存储。
    pub redis: Option<RedisTarget>,
    /// 故障转移的重试上限。
    pub retry: RetrySettings,
    /// 熔断参数。
    pub breaker: BreakerSettings,
    /// 负载均衡参数。
    pub balancing: BalancingSettings,
    /// 多层限流。
    pub rate_limits: RateLimitSettings,
    /// 上游自适应并发的调整阈值。
    pub adaptive: AdaptiveSettings,
    model_index: HashMap<String, usize>,
}

/// 解析完成的 Redis 设置（连接串已从配置或环境变量取出）。
///
/// 用途：网关启动时据此建立防重放存储。
///
/// ```
/// let yaml = "auth: { disabled: true }\nredis: { url_env: MY_REDIS }"; // 连接串来自环境变量
/// let cfg = chatnexus::config::build(chatnexus::config::parse(yaml).unwrap(), |v| (v == "MY_REDIS").then(|| "redis://127.0.0.1:6379".to_string())).unwrap(); // 注入变量
/// assert_eq!(cfg.redis.unwrap().url.expose(), "redis://127.0.0.1:6379"); // 连接串来自环境变量
/// ```
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// 连接串（可能含密码，按密钥对待）。
    pub url: Secret,
    /// 键前缀。
    pub key_prefix: String,
    /// 连接与单条命令的超时。
    pub timeout: Duration,
    /// 是否为 Redis Cluster（`url` 为逗号分隔的节点列表）。
    pub cluster: bool,
}

impl RedisTarget {
    /// 按这些设置创建共享的 Redis 连接（不连接）。
    ///
    /// 错误：连接串无法解析（配置校验已检查过，出现即是缺陷）。
    pub fn link(&self) -> Result<RedisLink, redis::RedisError> {
        RedisLink::open(self.url.expose(), self.cluster, self.timeout)
    }
}

impl Config {
    /// 按客户端可见名查找模型。
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.model_index.get(name).map(|&i| &self.models[i])
    }
}

/// 从文件加载配置：读文件、解析、校验、构建。
///
/// 参数：YAML 路径；环境变量从进程环境读取（`.env` 应已由调用方载入）。
/// 错误：读不到文件、YAML 错误或校验失败，均带中文说明。
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    // 文件原文可能含明文 api_key 或 Redis 密码：用完即清零
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?,
        );
    build(parse(&text)?, |name| std::env::var(name).ok())
}

/// 把 YAML 文本反序列化为 [`ConfigFile`]，错误带字段路径。
pub fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}
