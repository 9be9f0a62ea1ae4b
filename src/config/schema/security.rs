//! 配置文件的 `auth`、`security` 与 `redis` 段：客户端密钥、CORS、签名时间窗口与防重放存储。

use serde::Deserialize;

use crate::security::{ClientKey, KeyHash, Secret};

/// `auth` 段。
///
/// 用途：列出客户端密钥；没有密钥时必须显式 `disabled: true` 才能启动。
///
/// ```
/// let a: chatnexus::config::AuthSettings = serde_yaml::from_str("disabled: true").unwrap(); // 显式关闭鉴权
/// assert!(a.keys.is_empty()); // 此时可以没有任何客户端密钥
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// 为真时关闭客户端鉴权（每次启动都会警告）。
    #[serde(default)]
    pub disabled: bool,
    /// 客户端密钥（只存 SHA-256）。
    #[serde(default)]
    pub keys: Vec<ClientKey>,
}

/// `admin` 段：管理接口的令牌（只存 SHA-256）。
///
/// 用途：配置了 `server.admin_listen` 时必须有它；管理接口的每个请求都带 `Authorization: Bearer <令牌>`。
///
/// ```
/// let a: chatnexus::config::AdminSection = serde_yaml::from_str("{ token_sha256_env: ADMIN_TOKEN_SHA256 }").unwrap(); // 从环境变量读
/// assert!(a.token_sha256.is_none()); // 摘要来自环境变量
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// 管理令牌明文的 SHA-256（与 `token_sha256_env` 二选一）。
    #[serde(default)]
    pub token_sha256: Option<KeyHash>,
    /// 存放管理令牌 SHA-256 的环境变量名（与 `token_sha256` 二选一）。
    #[serde(default)]
    pub token_sha256_env: Option<String>,
}

/// `budgets` 段：美元预算的全局规则。
///
/// 用途：带预算的密钥请求没有价格的模型时怎么办——缺省拒绝（403 `model_not_priced`，无法预留费用），
/// 也可以按 0 美元计（只适合确实免费的自建模型）。
///
/// ```
/// let b: chatnexus::config::BudgetSettings = serde_yaml::from_str("{ allow_unpriced_models: true }").unwrap(); // 放行
/// assert!(b.allow_unpriced_models); // 没有价格的模型按 0 美元计
/// ```
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    /// 为真时带预算的密钥也能用没有价格的模型，费用按 0 美元计（不预留、不扣）。
    #[serde(default)]
    pub allow_unpriced_models: bool,
}

/// 签名时间窗口的缺省值（秒）。
const DEFAULT_SIGNATURE_WINDOW_SECS: u64 = crate::security::signing::DEFAULT_WINDOW_SECS;
/// CORS 预检结果的缺省缓存时间（秒）。
const DEFAULT_CORS_MAX_AGE_SECS: u64 = 600;
/// Redis 键的缺省前缀。
const DEFAULT_REDIS_KEY_PREFIX: &str = "chatnexus:";
/// Redis 单次连接或命令的缺省超时（毫秒）。
const DEFAULT_REDIS_TIMEOUT_MS: u64 = 1000;

/// `security` 段。
///
/// 用途：CORS 允许列表、签名时间窗口、进程内防重放存储的条目上限。
///
/// ```
/// let s = chatnexus::config::SecuritySettings::default(); // 全部缺省
/// assert!(s.cors.allowed_origins.is_empty()); // CORS 缺省关闭
/// assert_eq!(s.signature_window_secs, 300); // 时间戳允许 ±300 秒
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// 浏览器跨域访问（缺省关闭）。
    #[serde(default)]
    pub cors: CorsSettings,
    /// 签名时间戳与服务器时间允许相差的秒数（两个方向）。
    #[serde(default = "default_signature_window_secs")]
    pub signature_window_secs: u64,
    /// 没有配置 Redis 时，进程内防重放存储最多记住的 nonce 数；满了拒绝签名请求（503）。
    #[serde(default = "default_memory_nonce_capacity")]
    pub memory_nonce_capacity: usize,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            cors: CorsSettings::default(),
            signature_window_secs: DEFAULT_SIGNATURE_WINDOW_SECS,
            memory_nonce_capacity: crate::security::nonce::DEFAULT_MEMORY_CAPACITY,
        }
    }
}

fn default_signature_window_secs() -> u64 {
    DEFAULT_SIGNATURE_WINDOW_SECS
}

fn default_memory_nonce_capacity() -> usize {
    crate::security::nonce::DEFAULT_MEMORY_CAPACITY
}

/// `security.cors` 段：允许跨域访问的来源列表（精确匹配 `scheme://host[:port]`）。
///
/// 用途：列表为空（缺省）时不发任何 CORS 头、不应答预检。
///
/// ```
/// let c: chatnexus::config::CorsSettings = serde_yaml::from_str("allowed_origins: ['https://app.example.com']").unwrap(); // 一个来源
/// assert_eq!(c.max_age_secs, 600); // 预检结果缓存 10 分钟
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// 允许的来源，如 `https://app.example.com`；不支持通配符。
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// 预检结果的缓存时间（`Access-Control-Max-Age`，秒）。
    #[serde(default = "default_cors_max_age_secs")]
    pub max_age_secs: u64,
}

impl CorsSettings {
    /// 来源是否在允许列表里（ASCII 大小写不敏感的精确匹配，不做前缀匹配）。
    ///
    /// ```
    /// let cors: chatnexus::config::CorsSettings = serde_yaml::from_str("allowed_origins: ['https://app.example.com']").unwrap(); // 允许一个来源
    /// assert!(cors.allows_origin("https://app.example.com")); // 列表中的来源
    /// assert!(!cors.allows_origin("https://app.example.com.evil.test")); // 不做前缀匹配
    /// ```
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }
}

impl Default for CorsSettings {
    fn default() -> Self {
        CorsSettings {
            allowed_origins: Vec::new(),
            max_age_secs: DEFAULT_CORS_MAX_AGE_SECS,
        }
    }
}

fn default_cors_max_age_secs() -> u64 {
    DEFAULT_CORS_MAX_AGE_SECS
}

/// `redis` 段：防重放 nonce 存储与分布式限流共用的 Redis（单机或集群）。
///
/// 用途：`url`（明文连接串）与 `url_env`（存放连接串的环境变量名，推荐，连接串常含密码）二选一；
/// `cluster: true` 时连接串是逗号分隔的若干集群节点。
///
/// ```
/// let r: chatnexus::config::RedisSettings = serde_yaml::from_str("url_env: REDIS_URL").unwrap(); // 从环境变量取连接串
/// assert_eq!((r.key_prefix.as_str(), r.timeout_ms), ("chatnexus:", 1000)); // 缺省前缀与超时
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// 连接串，如 `redis://127.0.0.1:6379/0`。
    #[serde(default)]
    pub url: Option<Secret>,
    /// 存放连接串的环境变量名，如 `REDIS_URL`。
    #[serde(default)]
    pub url_env: Option<String>,
    /// 键前缀，多个网关集群共用一个 Redis 时用它隔离。
    #[serde(default = "default_redis_key_prefix")]
    pub key_prefix: String,
    /// 连接或单条命令的超时（毫秒）；超时按不可用处理：签名请求得到 503，限流改用本地阶段。
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// 为真时按 Redis Cluster 连接（连接串为逗号分隔的节点列表）。
    #[serde(default)]
    pub cluster: bool,
}

fn default_redis_key_prefix() -> String {
    DEFAULT_REDIS_KEY_PREFIX.to_string()
}

fn default_redis_timeout_ms() -> u64 {
    DEFAULT_REDIS_TIMEOUT_MS
}
