//! 配置文件的 `cache` 段：响应缓存（后端、过期时间、大小上限、哪些模型、何时可用、隔离范围）。

use serde::Deserialize;

/// 缓存条目的缺省过期时间（秒）：5 分钟。
const DEFAULT_TTL_SECONDS: u64 = 300;
/// 单条缓存的缺省上限：1 MiB。
const DEFAULT_MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// 进程内后端的缺省总上限：64 MiB。
const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// 缓存存放在哪里。
///
/// 用途：`local` 为进程内 LRU（每个实例各一份），`redis` 为所有实例共享（需要 `redis` 段）。
///
/// ```
/// let b: chatnexus::config::CacheBackend = serde_yaml::from_str("redis").unwrap(); // 共享缓存
/// assert_eq!(b, chatnexus::config::CacheBackend::Redis); // 解析为 Redis 后端
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheBackend {
    /// 进程内 LRU，按总字节数淘汰。
    #[default]
    Local,
    /// 配置的 Redis（单节点或集群），所有实例共享。
    Redis,
}

/// 哪些请求可以用缓存。
///
/// 用途：`deterministic` 只缓存采样固定的请求（`temperature: 0` 或给了 `seed`，且 `n` 为 1），
/// `always` 缓存所有请求（同样的提示词总是得到同一个回答）。
///
/// ```
/// let m = chatnexus::config::CacheMode::default(); // 缺省
/// assert_eq!(m, chatnexus::config::CacheMode::Deterministic); // 只缓存采样固定的请求
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// 只缓存采样固定的请求。
    #[default]
    Deterministic,
    /// 缓存所有请求。
    Always,
}

/// 缓存条目在谁之间共享。
///
/// 用途：`key`（缺省）按客户端密钥隔离，一个密钥永远拿不到另一个密钥的回答；
/// `team` 按团队共享（目前还没有团队，行为与 `key` 相同）；`global` 所有客户端共享。
///
/// ```
/// let s: chatnexus::config::CacheScope = serde_yaml::from_str("global").unwrap(); // 全局共享
/// assert_eq!(s, chatnexus::config::CacheScope::Global); // 解析为全局范围
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheScope {
    /// 按客户端密钥隔离。
    #[default]
    Key,
    /// 按团队共享（团队功能上线前与 `key` 相同）。
    Team,
    /// 所有客户端共享。
    Global,
}

/// `cache` 段：响应缓存；整段不写即不缓存。
///
/// 用途：网关据此决定请求能否走缓存、缓存键的范围、条目存在哪里与存多久。
///
/// ```
/// let c: chatnexus::config::CacheSettings = serde_yaml::from_str("ttl_seconds: 60").unwrap(); // 只改过期时间
/// assert_eq!(c.backend, chatnexus::config::CacheBackend::Local); // 缺省进程内
/// assert_eq!(c.max_entry_bytes, 1024 * 1024); // 单条缺省 1 MiB
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// 存放位置：`local`（缺省）或 `redis`（需要 `redis` 段）。
    #[serde(default)]
    pub backend: CacheBackend,
    /// 条目多久过期（秒，缺省 300，必须大于 0）。
    #[serde(default = "default_ttl_seconds")]
    pub ttl_seconds: u64,
    /// 单条缓存的上限（字节，按序列化后的大小；缺省 1 MiB），更大的回复不缓存。
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: usize,
    /// `local` 后端的总上限（字节，缺省 64 MiB），超出时淘汰最久没用的条目。
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// 只缓存这些客户端可见的模型；不写表示全部模型。
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// 哪些请求可以用缓存（缺省 `deterministic`）。
    #[serde(default)]
    pub mode: CacheMode,
    /// 缓存条目在谁之间共享（缺省 `key`）。
    #[serde(default)]
    pub scope: CacheScope,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            backend: CacheBackend::default(),
            ttl_seconds: DEFAULT_TTL_SECONDS,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
            models: None,
            mode: CacheMode::default(),
            scope: CacheScope::default(),
        }
    }
}

impl CacheSettings {
    /// 条目的过期时间。
    pub fn ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ttl_seconds)
    }
}

/// 缺省过期秒数。
fn default_ttl_seconds() -> u64 {
    DEFAULT_TTL_SECONDS
}

/// 缺省单条上限。
fn default_max_entry_bytes() -> usize {
    DEFAULT_MAX_ENTRY_BYTES
}

/// 缺省总上限。
fn default_max_bytes() -> usize {
    DEFAULT_MAX_BYTES
}
