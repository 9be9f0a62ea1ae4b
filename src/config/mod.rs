//! 配置：YAML 文件（conf/chatnexus.yaml）加环境变量与 `.env`。
//!
//! 加载分三步：反序列化（字段级错误带 YAML 路径）→ 跨字段校验（一次列出全部问题）→
//! 构建运行时 [`Config`]（解析上游密钥，缺失密钥的上游被停用并警告）。

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
use log::{info, warn};
use zeroize::Zeroizing;

use crate::metrics::PriceTable;
use crate::redis_link::RedisLink;
use crate::security::crypto::{MasterKeys, MASTER_KEY_ENV};
use crate::security::{Client, ClientKeys, KeyHash, LimitOverride, Secret};

/// 运行时可共享、可原子替换的配置（热重载整体替换，每个请求读取一次）。
pub type SharedConfig = Arc<ArcSwap<Config>>;

pub use cidr::{canonical_ip, Cidr};
pub use failover::{BalancingSettings, BreakerSettings, HealthCheck, RetrySettings};
pub use limits::{
    AdaptiveSettings, AuthFailureSettings, ConcurrencySettings, FailureMode, LayerSettings,
    RateLimitSettings,
};
pub use schema::{
    AccessLogFormat, AccessLogSettings, AuthSettings, BaseUrl, ConfigFile, CorsSettings,
    ListenAddr, MockListen, ModelConfig, ProviderConfig, ProviderKind, RedisSettings,
    SecuritySettings, ServerSettings, TargetConfig, Timeouts,
};

/// 签名密钥解密后的最短字节数：再短就可能被离线穷举。
const MIN_SIGNING_SECRET_BYTES: usize = 32;

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
    /// 客户端没给 `max_tokens` 时使用的值。
    pub max_tokens: Option<u64>,
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
/// let m = chatnexus::config::Model { name: "演示".into(), targets: vec![], limits: None }; // 没有目标的模型
/// assert!(m.targets.is_empty()); // 请求它会得到 503
/// ```
#[derive(Debug, Clone)]
pub struct Model {
    /// 模型名。
    pub name: String,
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

/// 校验 [`ConfigFile`] 并构建 [`Config`]。
///
/// 参数：`env` 按变量名取环境变量（便于测试注入），用于上游密钥、主密钥与 Redis 连接串。
/// 错误：一次返回全部校验问题；解密失败、主密钥不合法也在其中，并指出字段路径。
pub fn build(
    file: ConfigFile,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let issues = validate::validate(&file);
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    if file.auth.disabled {
        warn!("客户端鉴权已关闭（auth.disabled: true），任何人都能调用本网关");
    }
    let mut issues = Vec::new();
    let encrypted = file.providers.iter().any(|p| p.api_key_enc.is_some())
        || file
            .auth
            .keys
            .iter()
            .any(|k| k.signing_secret_enc.is_some());
    // 只在配置里有密文时才读取主密钥；读取时严格校验，长度或编码不对就是启动错误
    let master = if encrypted {
        master_keys(&env, &mut issues)
    } else {
        None
    };
    let mut secrets = Secrets {
        master: master.as_ref(),
        master_invalid: encrypted && master.is_none() && !issues.is_empty(),
        issues: &mut issues,
    };
    let providers: Vec<Arc<Provider>> = file
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| Arc::new(build_provider(p, i, &env, &mut secrets)))
        .collect();
    let clients = build_clients(&file, &env, &mut secrets);
    let redis = build_redis(file.redis.as_ref(), &env, &mut issues);
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    Ok(assemble(file, providers, clients, redis))
}

/// 用已解析的上游、客户端与 Redis 组装运行时配置，并建立模型索引。
fn assemble(
    file: ConfigFile,
    providers: Vec<Arc<Provider>>,
    clients: Vec<Client>,
    redis: Option<RedisTarget>,
) -> Config {
    let models = build_models(&file.models, &providers);
    let model_index = models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.clone(), i))
        .collect();
    Config {
        server: file.server,
        auth_disabled: file.auth.disabled,
        clients: ClientKeys::new(clients),
        providers,
        models,
        mock: file.mock,
        pricing: PriceTable::new(file.pricing),
        access_log: file.access_log,
        security: file.security,
        redis,
        retry: file.retry,
        breaker: file.circuit_breaker,
        balancing: file.load_balancing,
        rate_limits: file.rate_limits,
        adaptive: file.adaptive_limits,
        model_index,
    }
}

/// 读取并严格校验主密钥；没设置返回 `None`（需要解密的字段各自报告缺少主密钥）。
fn master_keys(
    env: &impl Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<MasterKeys> {
    match MasterKeys::from_env(env) {
        Ok(keys) => {
            if keys.as_ref().is_some_and(MasterKeys::old_equals_current) {
                warn!("旧主密钥与当前主密钥相同，轮换没有生效");
            }
            keys
        }
        Err(e) => {
            issues.push(ConfigIssue::new(
                format!("环境变量 {MASTER_KEY_ENV}"),
                e.to_string(),
            ));
            None
        }
    }
}

/// 解密密文字段时共用的主密钥与问题列表。
struct Secrets<'a> {
    master: Option<&'a MasterKeys>,
    /// 主密钥设置了但不合法（已报告过，不再逐字段重复“缺少主密钥”）。
    master_invalid: bool,
    issues: &'a mut Vec<ConfigIssue>,
}

impl Secrets<'_> {
    /// 解密 `path` 处的密文，附加数据为 `aad`；失败时记一条带路径的问题。
    fn decrypt(&mut self, path: String, aad: &str, text: &str) -> Option<Secret> {
        let Some(master) = self.master else {
            if self.master_invalid {
                return None;
            }
            self.issues.push(ConfigIssue::new(
                path,
                format!("该字段是密文，需要主密钥：请设置环境变量 {MASTER_KEY_ENV}（或写入 .env）"),
            ));
            return None;
        };
        match master.decrypt(aad, text) {
            Ok(opened) => {
                if opened.used_old_key {
                    warn!("{path} 由旧主密钥解密；请用 `chatnexus keys reencrypt` 改用当前主密钥加密，然后移除旧主密钥");
                }
                Some(opened.secret)
            }
            Err(e) => {
                self.issues.push(ConfigIssue::new(path, e.to_string()));
                None
            }
        }
    }
}

/// 解析一个提供方的密钥；密钥环境变量未设置时停用它并警告，而不是让进程崩溃。
fn build_provider(
    p: &ProviderConfig,
    index: usize,
    env: &impl Fn(&str) -> Option<String>,
    secrets: &mut Secrets<'_>,
) -> Provider {
    let mut enabled = true;
    let api_key = if let Some(var) = &p.api_key_env {
        let value = env(var).map(Zeroizing::new);
        match value.as_deref().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            Some(value) => Some(Secret::new(value.to_string())),
            None => {
                warn!(
                    "上游 `{}` 的密钥环境变量 {var} 未设置，已停用该上游",
                    p.name
                );
                enabled = false;
                None
            }
        }
    } else if let Some(enc) = &p.api_key_enc {
        let path = format!("providers[{index}].api_key_enc");
        secrets.decrypt(path, &p.name, enc)
    } else if let Some(secret) = &p.api_key {
        warn!(
            "上游 `{}` 在配置文件中使用明文 api_key，建议改用 api_key_env 或 api_key_enc",
            p.name
        );
        Some(secret.clone())
    } else {
        None
    };
    Provider {
        name: p.name.clone(),
        kind: p.kind,
        base_url: p.base_url.clone(),
        api_key,
        timeouts: p.timeouts,
        enabled,
        api_version: p.api_version.clone(),
        health_check: p.health_check.clone(),
        concurrency: p.concurrency,
    }
}

/// 构建运行时客户端：取得密钥摘要，解密签名密钥（附加数据为密钥名）并检查长度。
fn build_clients(
    file: &ConfigFile,
    env: &impl Fn(&str) -> Option<String>,
    secrets: &mut Secrets<'_>,
) -> Vec<Client> {
    file.auth
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, key)| {
            let hash = client_hash(file, i, env, secrets.issues)?;
            let signing = key.signing_secret_enc.as_ref().and_then(|enc| {
                let path = format!("auth.keys[{i}].signing_secret_enc");
                let secret = secrets.decrypt(path.clone(), &key.name, enc)?;
                if secret.expose().len() < MIN_SIGNING_SECRET_BYTES {
                    secrets.issues.push(ConfigIssue::new(
                        path,
                        format!("签名密钥太短，至少 {MIN_SIGNING_SECRET_BYTES} 字节（用 `chatnexus keys gen-client --signing` 生成）"),
                    ));
                    return None;
                }
                Some(secret)
            });
            Some(Client::from_config(key, hash, signing))
        })
        .collect()
}

/// 第 `i` 个客户端密钥的摘要：`sha256` 直接使用；`sha256_env` 从环境变量读取（未设置或格式不对是启动
/// 错误），并同样不允许把演示密钥用在非回环监听上。
fn client_hash(
    file: &ConfigFile,
    i: usize,
    env: &impl Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<KeyHash> {
    let key = &file.auth.keys[i];
    if let Some(hash) = key.sha256 {
        return Some(hash);
    }
    let var = key.sha256_env.as_deref()?;
    let path = format!("auth.keys[{i}].sha256_env");
    let parsed = match env(var) {
        Some(text) => KeyHash::try_from(text).map_err(|e| format!("环境变量 {var}：{e}")),
        None => Err(format!(
            "环境变量 {var} 未设置（或写入 .env）；用 `chatnexus keys gen-client --name 名称` 生成密钥与摘要"
        )),
    };
    match parsed {
        Ok(hash) if !key.disabled && validate::exposes_demo_key(&hash, file) => {
            issues.push(validate::demo_key_issue(&path, file));
            None
        }
        Ok(hash) => Some(hash),
        Err(message) => {
            issues.push(ConfigIssue::new(path, message));
            None
        }
    }
}

/// 取出 Redis 连接串：`url` 直接使用，`url_env` 从环境变量读取（未设置是启动错误）。
fn build_redis(
    redis: Option<&RedisSettings>,
    env: &impl Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<RedisTarget> {
    let redis = redis?;
    let url = match (&redis.url, &redis.url_env) {
        (Some(url), _) => {
            if url.expose().contains('@') {
                warn!("redis.url 在配置文件中带有凭据，建议改用 redis.url_env");
            }
            url.clone()
        }
        (None, Some(var)) => {
            let value = env(var).map(Zeroizing::new);
            let Some(value) = value.as_deref().map(|v| v.trim()).filter(|v| !v.is_empty()) else {
                issues.push(ConfigIssue::new(
                    "redis.url_env",
                    format!("环境变量 {var} 未设置：配置了 redis 段就必须能连上 Redis（不需要时删除整个 redis 段）"),
                ));
                return None;
            };
            if let Err(message) = validate::check_redis_url(value, redis.cluster) {
                issues.push(ConfigIssue::new(
                    "redis.url_env",
                    format!("环境变量 {var}：{message}"),
                ));
                return None;
            }
            Secret::new(value.to_string())
        }
        (None, None) => return None,
    };
    info!(
        "防重放与分布式限流使用 Redis{}（键前缀 `{}`）",
        if redis.cluster { " 集群" } else { "" },
        redis.key_prefix
    );
    Some(RedisTarget {
        url,
        key_prefix: redis.key_prefix.clone(),
        timeout: Duration::from_millis(redis.timeout_ms),
        cluster: redis.cluster,
    })
}

/// 把模型的目标与提供方连接起来（校验已保证提供方存在）。
fn build_models(models: &[ModelConfig], providers: &[Arc<Provider>]) -> Vec<Model> {
    let by_name: HashMap<&str, &Arc<Provider>> =
        providers.iter().map(|p| (p.name.as_str(), p)).collect();
    let build_target = |model: &ModelConfig, t: &TargetConfig| {
        let provider = by_name.get(t.provider.as_str())?;
        let upstream_model = t.model.clone().unwrap_or_else(|| model.name.clone());
        let deployment = t
            .deployment
            .clone()
            .unwrap_or_else(|| upstream_model.clone());
        Some(Target {
            provider: Arc::clone(provider),
            key: Arc::from(format!("{}/{deployment}", provider.name)),
            deployment,
            model: upstream_model,
            max_tokens: t.max_tokens,
            weight: t.weight,
            priority: t.priority,
        })
    };
    models
        .iter()
        .map(|m| Model {
            name: m.name.clone(),
            limits: m.limits,
            targets: m
                .targets
                .iter()
                .filter_map(|t| build_target(m, t))
                .collect(),
        })
        .collect()
}
