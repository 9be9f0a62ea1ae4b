//! 测试用的网关配置：带缺省值与链式设置的结构体，序列化成 YAML 后交给 `config::parse`。
//!
//! 字段名与 src/config 中的配置文件结构一致；没有设置的可选项不写入 YAML，由网关取缺省值。
//!
//! ```
//! let config = GatewayConfig::on_loopback() // 监听回环地址的空闲端口
//!     .key(ClientKey::new("团队", "sk-test")) // 配置里只有摘要
//!     .provider(Provider::new("mock", ProviderKind::OpenAiCompatible, url)) // 一个上游
//!     .model(Model::direct("mock")); // 同名模型直达同名上游
//! ```

use std::net::SocketAddr;

use serde::Serialize;

use chatnexus::config::{self, Config, ConfigError};
use chatnexus::security::KeyHash;

pub use chatnexus::config::ProviderKind;

/// 测试网关的代理线程数：两个足以覆盖并发路径，又不占满这台机器。
const TEST_THREADS: usize = 2;
/// 回环地址。
const LOOPBACK_IP: [u8; 4] = [127, 0, 0, 1];

/// 为可选字段生成链式设置：`字段名(值)` 把值存为 `Some(值.into())`，其余字段不变。
macro_rules! setters {
    ($($(#[doc = $doc:literal])* $field:ident: $ty:ty;)*) => {
        $(
            $(#[doc = $doc])*
            pub fn $field(mut self, value: $ty) -> Self {
                self.$field = Some(value.into());
                self
            }
        )*
    };
}

/// 整个配置文件：每段都可省略，省略的段不写入 YAML。
///
/// 用途：测试用链式设置拼出配置，[`GatewayConfig::to_yaml`] 得到网关真正读取的 YAML 文本。
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewayConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<ServerSection>,
    #[serde(skip_serializing_if = "Auth::is_empty")]
    auth: Auth,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<Retry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    circuit_breaker: Option<Breaker>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_balancing: Option<Balancing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adaptive_limits: Option<Adaptive>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    providers: Vec<Provider>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    models: Vec<Model>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pricing: Vec<Price>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limits: Option<RateLimits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<Redis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<Security>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<Cache>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<Admin>,
}

/// `admin` 段：管理令牌的摘要。
#[derive(Debug, Clone, Serialize)]
struct Admin {
    token_sha256: String,
}

/// `cache` 段：本地后端、只缓存给定的模型。
#[derive(Debug, Clone, Serialize)]
pub struct Cache {
    /// 后端（`local` 或 `redis`）。
    pub backend: String,
    /// 保存多久（秒）。
    pub ttl_seconds: u64,
    /// 只缓存这些模型。
    pub models: Vec<String>,
}

impl GatewayConfig {
    /// 监听回环地址上一个空闲端口、两个代理线程的配置。
    pub fn on_loopback() -> Self {
        let port = crate::support::free_port();
        GatewayConfig {
            server: Some(ServerSection {
                listen: (LOOPBACK_IP, port).into(),
                threads: TEST_THREADS,
                ca_file: None,
                metrics_listen: None,
                admin_listen: None,
                client_write_timeout_ms: None,
                max_stream_event_bytes: None,
                max_stream_bytes: None,
                stream_keepalive_ms: None,
            }),
            ..GatewayConfig::default()
        }
    }

    /// 在回环地址的另一个空闲端口上导出 Prometheus 指标。
    pub fn with_metrics(mut self) -> Self {
        let port = crate::support::free_port();
        self.server_mut().metrics_listen = Some((LOOPBACK_IP, port).into());
        self
    }

    /// 在回环地址的另一个空闲端口上开管理接口，管理令牌为 `token`（配置里只有它的摘要）。
    pub fn with_admin(mut self, token: &str) -> Self {
        let port = crate::support::free_port();
        self.server_mut().admin_listen = Some((LOOPBACK_IP, port).into());
        self.admin = Some(Admin {
            token_sha256: KeyHash::of(token).to_hex(),
        });
        self
    }

    /// 每次写客户端的超时（毫秒）。
    pub fn client_write_timeout_ms(mut self, ms: u64) -> Self {
        self.server_mut().client_write_timeout_ms = Some(ms);
        self
    }

    /// 翻译的流的保活间隔（毫秒）。
    pub fn stream_keepalive_ms(mut self, ms: u64) -> Self {
        self.server_mut().stream_keepalive_ms = Some(ms);
        self
    }

    /// 上游流的大小上限：单个事件与整个流（字节）。
    pub fn stream_caps(mut self, event_bytes: usize, stream_bytes: u64) -> Self {
        let server = self.server_mut();
        server.max_stream_event_bytes = Some(event_bytes);
        server.max_stream_bytes = Some(stream_bytes);
        self
    }

    /// 只信任这个 CA 文件签发的上游证书。
    pub fn ca_file(mut self, path: &str) -> Self {
        self.server_mut().ca_file = Some(path.to_string());
        self
    }

    /// 显式关闭客户端鉴权。
    pub fn auth_disabled(mut self) -> Self {
        self.auth.disabled = true;
        self
    }

    /// 添加一个客户端密钥。
    pub fn key(mut self, key: ClientKey) -> Self {
        self.auth.keys.push(key);
        self
    }

    /// 添加一个上游。
    pub fn provider(mut self, provider: Provider) -> Self {
        self.providers.push(provider);
        self
    }

    /// 添加一个模型。
    pub fn model(mut self, model: Model) -> Self {
        self.models.push(model);
        self
    }

    /// 添加一个上游模型的单价。
    pub fn price(mut self, price: Price) -> Self {
        self.pricing.push(price);
        self
    }

    /// 设置故障转移的重试上限。
    pub fn retry(mut self, max_attempts: u32) -> Self {
        self.retry = Some(Retry { max_attempts });
        self
    }

    /// 设置延迟估计的衰减时间。
    pub fn latency_decay_ms(mut self, latency_decay_ms: u64) -> Self {
        self.load_balancing = Some(Balancing { latency_decay_ms });
        self
    }

    /// 设置自适应并发的评估间隔与最少样本数。
    pub fn adaptive_limits(mut self, interval_ms: u64, min_samples: u32) -> Self {
        self.adaptive_limits = Some(Adaptive {
            interval_ms,
            min_samples,
        });
        self
    }

    setters! {
        /// 设置熔断参数。
        circuit_breaker: Breaker;
        /// 设置多层限流。
        rate_limits: RateLimits;
        /// 设置 Redis。
        redis: Redis;
        /// 设置响应缓存。
        cache: Cache;
    }

    /// 允许这些来源跨域访问，预检结果缓存 `max_age_secs` 秒。
    pub fn cors(mut self, origins: &[&str], max_age_secs: u64) -> Self {
        let cors = Cors {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            max_age_secs,
        };
        self.security = Some(Security { cors });
        self
    }

    /// 网关的监听地址（[`GatewayConfig::on_loopback`] 选定的）。
    pub fn listen_addr(&self) -> SocketAddr {
        self.server_ref().listen
    }

    /// 指标的监听地址（没有导出指标时为 `None`）。
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server_ref().metrics_listen
    }

    /// 管理接口的监听地址（没有开管理接口时为 `None`）。
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.server_ref().admin_listen
    }

    /// 序列化成网关读取的 YAML 文本。
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("测试配置必须能序列化为 YAML")
    }

    /// 像网关启动时一样解析并校验配置；`env` 提供环境变量（主密钥、上游密钥等）。
    ///
    /// 序列化出的 YAML 必须能解析（解析失败是测试脚手架的错误，直接失败）；校验错误原样返回。
    pub fn build(&self, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let yaml = self.to_yaml();
        let file =
            config::parse(&yaml).unwrap_or_else(|e| panic!("测试配置必须能解析：{e}\n{yaml}"));
        config::build(file, env)
    }

    fn server_mut(&mut self) -> &mut ServerSection {
        self.server
            .as_mut()
            .expect("先用 GatewayConfig::on_loopback 选定监听端口")
    }

    fn server_ref(&self) -> &ServerSection {
        self.server
            .as_ref()
            .expect("先用 GatewayConfig::on_loopback 选定监听端口")
    }
}

/// `server` 段。
#[derive(Debug, Clone, Serialize)]
struct ServerSection {
    listen: SocketAddr,
    threads: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_write_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_stream_event_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_stream_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_keepalive_ms: Option<u64>,
}

/// `auth` 段。
#[derive(Debug, Clone, Default, Serialize)]
struct Auth {
    #[serde(skip_serializing_if = "is_false")]
    disabled: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keys: Vec<ClientKey>,
}

impl Auth {
    fn is_empty(&self) -> bool {
        !self.disabled && self.keys.is_empty()
    }
}

/// serde 的 `skip_serializing_if` 需要的函数：假值不写入 YAML。
fn is_false(value: &bool) -> bool {
    !*value
}

/// `auth.keys` 中的一项：由明文算出 SHA-256，配置里只有摘要。
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientKey {
    name: String,
    sha256: String,
    #[serde(skip_serializing_if = "is_false")]
    disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<Vec<String>>,
    #[serde(skip_serializing_if = "is_false")]
    require_signature: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_secret_enc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Limits>,
}

impl ClientKey {
    /// 名为 `name`、明文为 `plaintext` 的客户端密钥。
    pub fn new(name: &str, plaintext: &str) -> Self {
        ClientKey {
            name: name.to_string(),
            sha256: KeyHash::of(plaintext).to_hex(),
            ..ClientKey::default()
        }
    }

    /// 停用该密钥。
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }

    /// 只允许这些模型。
    pub fn models(mut self, models: &[&str]) -> Self {
        self.models = Some(models.iter().map(|m| m.to_string()).collect());
        self
    }

    /// 强制每个请求都签名。
    pub fn require_signature(mut self) -> Self {
        self.require_signature = true;
        self
    }

    setters! {
        /// 加密保存的签名密钥（`v1:…`）。
        signing_secret_enc: String;
        /// 该密钥对 `rate_limits.per_key` 的覆盖。
        limits: Limits;
    }
}

/// `providers` 中的一项。
#[derive(Debug, Clone, Serialize)]
pub struct Provider {
    name: String,
    kind: ProviderKind,
    base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_enc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeouts: Option<Timeouts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<Concurrency>,
}

impl Provider {
    /// 名为 `name`、协议为 `kind`、地址为 `base_url` 的上游，其余取网关缺省值。
    pub fn new(name: &str, kind: ProviderKind, base_url: &str) -> Self {
        Provider {
            name: name.to_string(),
            kind,
            base_url: base_url.to_string(),
            api_key: None,
            api_key_env: None,
            api_key_enc: None,
            api_version: None,
            timeouts: None,
            health_check: None,
            concurrency: None,
        }
    }

    setters! {
        /// 明文上游密钥。
        api_key: &str;
        /// 存放上游密钥的环境变量名。
        api_key_env: &str;
        /// 加密保存的上游密钥（`v1:…`）。
        api_key_enc: String;
        /// Azure 的 `api-version`。
        api_version: &str;
        /// 各阶段超时。
        timeouts: Timeouts;
    }

    /// 每 `interval_ms` 毫秒探测一次 `path`，`timeout_ms` 内没有应答算失败。
    pub fn health_check(mut self, path: &str, interval_ms: u64, timeout_ms: u64) -> Self {
        self.health_check = Some(HealthCheck {
            path: path.to_string(),
            interval_ms,
            timeout_ms,
        });
        self
    }

    /// 每个目标的自适应并发：基准 `base`，下限 `floor`。
    pub fn concurrency(mut self, base: u32, floor: u32) -> Self {
        self.concurrency = Some(Concurrency { base, floor });
        self
    }
}

/// `providers[].timeouts`：首字节与块间隔必填，总时长可选。
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timeouts {
    first_byte_ms: u64,
    idle_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_ms: Option<u64>,
}

impl Timeouts {
    /// 首字节 `first_byte_ms`、块间隔 `idle_ms` 毫秒。
    pub fn new(first_byte_ms: u64, idle_ms: u64) -> Self {
        Timeouts {
            first_byte_ms,
            idle_ms,
            total_ms: None,
        }
    }

    setters! {
        /// 总时长上限。
        total_ms: u64;
    }
}

/// 主动健康检查 `providers[].health_check`。
#[derive(Debug, Clone, Serialize)]
struct HealthCheck {
    path: String,
    interval_ms: u64,
    timeout_ms: u64,
}

/// 自适应并发 `providers[].concurrency`。
#[derive(Debug, Clone, Copy, Serialize)]
struct Concurrency {
    base: u32,
    floor: u32,
}

/// `models` 中的一项。
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    targets: Vec<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Limits>,
}

impl Model {
    /// 名为 `name`、还没有目标的模型。
    pub fn new(name: &str) -> Self {
        Model {
            name: name.to_string(),
            kind: None,
            targets: Vec::new(),
            limits: None,
        }
    }

    /// 名为 `name`、还没有目标的向量模型（`kind: embeddings`）。
    pub fn embeddings(name: &str) -> Self {
        Model {
            kind: Some("embeddings".to_string()),
            ..Model::new(name)
        }
    }

    /// 只有一个同名上游作目标的模型（上游模型名也相同）。
    pub fn direct(name: &str) -> Self {
        Model::new(name).target(Target::to(name))
    }

    /// 添加一个目标。
    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    setters! {
        /// 该模型对 `rate_limits.per_model` 的覆盖。
        limits: Limits;
    }
}

/// `models[].targets` 中的一项。
#[derive(Debug, Clone, Default, Serialize)]
pub struct Target {
    provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
}

impl Target {
    /// 由上游 `provider` 服务、沿用客户端模型名的目标。
    pub fn to(provider: &str) -> Self {
        Target {
            provider: provider.to_string(),
            ..Target::default()
        }
    }

    setters! {
        /// 发给上游的模型名。
        model: &str;
        /// 客户端没给 `max_tokens` 时使用的值。
        max_tokens: u64;
        /// 输出上限：客户端要的更多时截到它。
        max_output_tokens: u64;
        /// Azure 部署名。
        deployment: &str;
        /// 优先级层（0 最优先）。
        priority: u32;
    }
}

/// `pricing` 中的一项：每百万 token 的美元单价。
#[derive(Debug, Clone, Serialize)]
pub struct Price {
    /// 上游模型名。
    pub model: String,
    /// 输入单价。
    pub input: f64,
    /// 输出单价。
    pub output: f64,
    /// 缓存命中单价。
    pub cached: f64,
}

/// `retry` 段。
#[derive(Debug, Clone, Copy, Serialize)]
struct Retry {
    max_attempts: u32,
}

/// `circuit_breaker` 段：没有设置的参数取网关缺省值。
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Breaker {
    /// 连续失败多少次即熔断。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// 窗口内失败比例达到多少即熔断。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_ratio: Option<f64>,
    /// 按比例判断所需的最少请求数。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    /// 首次熔断的冷却时间。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_ms: Option<u64>,
    /// 冷却时间的上限。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cooldown_ms: Option<u64>,
}

/// `load_balancing` 段。
#[derive(Debug, Clone, Copy, Serialize)]
struct Balancing {
    latency_decay_ms: u64,
}

/// `adaptive_limits` 段。
#[derive(Debug, Clone, Copy, Serialize)]
struct Adaptive {
    interval_ms: u64,
    min_samples: u32,
}

/// 限流的一层（也用作密钥与模型的覆盖）：没有设置的上限不写入。
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Limits {
    /// 窗口内的请求数上限。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// 请求数窗口（毫秒）。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    /// 每分钟的 token 上限。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
}

impl Limits {
    /// 只限请求数（缺省窗口一分钟）。
    pub fn requests(requests: u64) -> Self {
        Limits {
            requests: Some(requests),
            ..Limits::default()
        }
    }

    /// 只限每分钟的 token 数。
    pub fn tokens_per_minute(tokens: u64) -> Self {
        Limits {
            tokens_per_minute: Some(tokens),
            ..Limits::default()
        }
    }
}

/// `rate_limits` 段：没有设置的层不限流。
#[derive(Debug, Clone, Default, Serialize)]
pub struct RateLimits {
    /// 可信代理（只信任它们转发的 `X-Forwarded-For`）。
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// 全局层。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<Limits>,
    /// 每个客户端密钥。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_key: Option<Limits>,
    /// 每个客户端 IP。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_ip: Option<Limits>,
    /// 网关实例数（Redis 不可用时按它分摊本地份额）。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<u64>,
    /// Redis 出错后多久再试（毫秒）。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_retry_ms: Option<u64>,
    /// 按 IP 的鉴权失败限流。
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_failures: Option<AuthFailures>,
}

/// `rate_limits.auth_failures` 段：窗口内允许的鉴权失败次数。
#[derive(Debug, Clone, Serialize)]
pub struct AuthFailures {
    /// 窗口内允许的失败次数。
    pub limit: u64,
    /// 窗口（毫秒）。
    pub window_ms: u64,
}

/// `redis` 段：`url` 与 `url_env` 二选一。
#[derive(Debug, Clone, Serialize)]
pub struct Redis {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_prefix: Option<String>,
    timeout_ms: u64,
    #[serde(skip_serializing_if = "is_false")]
    cluster: bool,
}

impl Redis {
    /// 命令超时 `timeout_ms` 毫秒、还没有连接串的 `redis` 段。
    fn new(timeout_ms: u64) -> Self {
        Redis {
            url: None,
            url_env: None,
            key_prefix: None,
            timeout_ms,
            cluster: false,
        }
    }

    /// 连接串写在配置里，命令超时 `timeout_ms` 毫秒。
    pub fn url(url: &str, timeout_ms: u64) -> Self {
        Redis {
            url: Some(url.to_string()),
            ..Redis::new(timeout_ms)
        }
    }

    /// 连接串从环境变量 `var` 读取，命令超时 `timeout_ms` 毫秒。
    pub fn url_env(var: &str, timeout_ms: u64) -> Self {
        Redis {
            url_env: Some(var.to_string()),
            ..Redis::new(timeout_ms)
        }
    }

    setters! {
        /// 键前缀。
        key_prefix: &str;
    }

    /// 按 Redis Cluster 连接（连接串为逗号分隔的节点）。
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self
    }
}

/// `security` 段。
#[derive(Debug, Clone, Serialize)]
struct Security {
    cors: Cors,
}

/// `security.cors` 段。
#[derive(Debug, Clone, Serialize)]
struct Cors {
    allowed_origins: Vec<String>,
    max_age_secs: u64,
}
