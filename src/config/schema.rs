//! 配置文件（YAML）的结构。字段级校验在反序列化时完成，错误自动带上 YAML 路径。

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::failover::{BalancingSettings, BreakerSettings, HealthCheck, RetrySettings};
use super::limits::{AdaptiveSettings, ConcurrencySettings, RateLimitSettings};
use crate::metrics::Price;
use crate::mock::MockSettings;
use crate::runtime_dir;
use crate::security::{ClientKey, LimitOverride, Secret};

/// 默认监听 IP：所有 IPv4 地址。
const DEFAULT_LISTEN_IP: [u8; 4] = [0, 0, 0, 0];
/// 默认监听端口。
const DEFAULT_LISTEN_PORT: u16 = 8080;
/// 默认优雅退出等待：10 分钟，长于绝大多数流式回答。
const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 600;
/// 每次写客户端的缺省超时：30 秒。
const DEFAULT_CLIENT_WRITE_TIMEOUT_MS: u64 = 30_000;
/// 上游流中单个事件的缺省上限：16 MiB（容得下 base64 图片，挡住无限长的一行）。
const DEFAULT_MAX_STREAM_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// 一个上游流的缺省总上限：256 MiB（远超最长的推理输出）。
const DEFAULT_MAX_STREAM_BYTES: u64 = 256 * 1024 * 1024;
/// 默认请求体上限：10 MiB。
const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// 默认连接（含 TLS 握手）超时。
const DEFAULT_CONNECT_MS: u64 = 10_000;
/// 默认首字节超时：推理模型可能思考数分钟。
const DEFAULT_FIRST_BYTE_MS: u64 = 300_000;
/// 默认流式两块之间的最长间隔。
const DEFAULT_IDLE_MS: u64 = 120_000;
/// 默认一个请求的总时长上限：30 分钟（长推理加长输出的流也够用）。
const DEFAULT_TOTAL_MS: u64 = 1_800_000;
/// 目标的缺省权重。
const DEFAULT_WEIGHT: u32 = 1;
/// HTTP 默认端口。
const HTTP_PORT: u16 = 80;
/// HTTPS 默认端口。
const HTTPS_PORT: u16 = 443;

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

/// 访问日志的格式。
///
/// 用途：`text` 为带中文字段名的一行文本，`json` 为每行一个 JSON 对象（便于日志系统解析）。
///
/// ```
/// let f: chatnexus::config::AccessLogFormat = serde_yaml::from_str("json").unwrap(); // JSON 行
/// assert_eq!(f, chatnexus::config::AccessLogFormat::Json); // 解析为 JSON 格式
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// 中文字段名的文本行。
    #[default]
    Text,
    /// JSON 行。
    Json,
}

/// `access_log` 段。
///
/// 用途：决定每个请求一行的访问日志用什么格式、是否包含提示词。
///
/// ```
/// let a = chatnexus::config::AccessLogSettings::default(); // 缺省
/// assert!(!a.include_prompts); // 缺省不记录提示词
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSettings {
    /// 日志格式。
    #[serde(default)]
    pub format: AccessLogFormat,
    /// 为真时在访问日志中附上请求的 `messages`（截断）；缺省关闭，提示词可能含敏感信息。
    #[serde(default)]
    pub include_prompts: bool,
}

/// `server` 段。
///
/// 用途：决定监听地址、请求体上限和工作线程数。
///
/// ```
/// let s: chatnexus::config::ServerSettings = serde_yaml::from_str("listen: 127.0.0.1:9000").unwrap(); // 只改监听地址
/// assert_eq!(s.max_body_bytes, 10 * 1024 * 1024); // 请求体上限缺省 10 MiB
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// 对客户端的监听地址。
    #[serde(default = "default_listen")]
    pub listen: ListenAddr,
    /// 请求体上限（字节），超过返回 413。
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// 代理服务的工作线程数，缺省为 CPU 核数。
    #[serde(default)]
    pub threads: Option<usize>,
    /// 校验 HTTPS 上游证书用的 CA 文件（PEM）；设置后只信任其中的 CA，缺省用系统证书。
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// 进程号文件：`chatnexus reload` 从这里找到要通知的进程，守护进程模式下由 Pingora 写入。
    /// 缺省在私有运行时目录下（见 [`runtime_dir::default_dir`]）。
    #[serde(default = "default_pid_file")]
    pub pid_file: PathBuf,
    /// 平滑升级时新旧进程交接监听套接字用的 Unix 套接字路径（新旧进程必须相同），缺省在私有运行时目录下。
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: PathBuf,
    /// 平滑升级或优雅退出时，旧进程等待进行中的请求与流结束的秒数（应长于最长的流）。
    #[serde(default = "default_grace_period_seconds")]
    pub grace_period_seconds: u64,
    /// Prometheus 指标的独立监听地址（应只对内网开放）；不配置则不导出指标。
    #[serde(default)]
    pub metrics_listen: Option<ListenAddr>,
    /// 每次写客户端的超时（毫秒）：客户端不读、写不出去超过这么久就放弃这个请求，释放上游连接与额度。
    #[serde(default = "default_client_write_timeout_ms")]
    pub client_write_timeout_ms: u64,
    /// 上游流中单个 SSE 事件（含单行）的上限（字节），超过时以流中错误结束。
    #[serde(default = "default_max_stream_event_bytes")]
    pub max_stream_event_bytes: usize,
    /// 一个上游流的总字节数上限，超过时以流中错误结束。
    #[serde(default = "default_max_stream_bytes")]
    pub max_stream_bytes: u64,
}

impl ServerSettings {
    /// 每次写客户端的超时。
    pub fn client_write_timeout(&self) -> Duration {
        Duration::from_millis(self.client_write_timeout_ms)
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: default_listen(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            threads: None,
            ca_file: None,
            pid_file: default_pid_file(),
            upgrade_sock: default_upgrade_sock(),
            grace_period_seconds: DEFAULT_GRACE_PERIOD_SECONDS,
            metrics_listen: None,
            client_write_timeout_ms: DEFAULT_CLIENT_WRITE_TIMEOUT_MS,
            max_stream_event_bytes: DEFAULT_MAX_STREAM_EVENT_BYTES,
            max_stream_bytes: DEFAULT_MAX_STREAM_BYTES,
        }
    }
}

fn default_listen() -> ListenAddr {
    ListenAddr(SocketAddr::from((DEFAULT_LISTEN_IP, DEFAULT_LISTEN_PORT)))
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

fn default_pid_file() -> PathBuf {
    runtime_dir::default_dir().join(runtime_dir::PID_FILE_NAME)
}

fn default_upgrade_sock() -> PathBuf {
    runtime_dir::default_dir().join(runtime_dir::UPGRADE_SOCK_NAME)
}

fn default_grace_period_seconds() -> u64 {
    DEFAULT_GRACE_PERIOD_SECONDS
}

fn default_client_write_timeout_ms() -> u64 {
    DEFAULT_CLIENT_WRITE_TIMEOUT_MS
}

fn default_max_stream_event_bytes() -> usize {
    DEFAULT_MAX_STREAM_EVENT_BYTES
}

fn default_max_stream_bytes() -> u64 {
    DEFAULT_MAX_STREAM_BYTES
}

/// 一个 `IP:端口` 监听地址。
///
/// 用途：在加载配置时就校验地址格式，而不是等到绑定端口才失败。
///
/// ```
/// use chatnexus::config::ListenAddr; // 监听地址类型
/// assert!(ListenAddr::try_from("127.0.0.1:8080".to_string()).is_ok()); // IP:端口 合法
/// assert!(ListenAddr::try_from("localhost".to_string()).is_err()); // 缺少端口、不是 IP
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ListenAddr(pub SocketAddr);

impl TryFrom<String> for ListenAddr {
    type Error = String;

    /// 解析 `IP:端口`；格式错误时返回中文错误。
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value
            .parse()
            .map(ListenAddr)
            .map_err(|_| format!("`{value}` 不是合法的 IP:端口 地址"))
    }
}

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

/// 上游协议类型。
///
/// 用途：决定用哪个 `providers::*` 过滤器翻译请求与响应。
///
/// ```
/// use chatnexus::config::ProviderKind; // 上游协议类型
/// let k: ProviderKind = serde_yaml::from_str("openai_compatible").unwrap(); // 如 vLLM
/// assert!(!k.requires_key()); // 本地服务可以不配密钥
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ProviderKind {
    /// OpenAI 官方 API。
    #[serde(rename = "openai")]
    OpenAi,
    /// 任意兼容 OpenAI 的服务（vLLM、Ollama、DeepSeek……）。
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
    /// Anthropic 的 Messages 接口。
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Google Gemini（Generative Language 接口）。
    #[serde(rename = "gemini")]
    Gemini,
    /// Azure OpenAI（按部署名寻址）。
    #[serde(rename = "azure")]
    Azure,
}

impl ProviderKind {
    /// 配置里的类型名（如 `openai_compatible`）：写给客户端的上游错误只说是哪类上游，不说名字与地址。
    pub fn label(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Azure => "azure",
        }
    }

    /// 该类型是否必须配置上游密钥（只有自建的兼容服务可以不要）。
    pub fn requires_key(self) -> bool {
        !matches!(self, ProviderKind::OpenAiCompatible)
    }
}

/// `providers` 中的一项。
///
/// 用途：描述一个上游：协议、地址、密钥来源和超时。
///
/// ```
/// let yaml = "{ name: local, kind: openai_compatible, base_url: 'http://127.0.0.1:8000' }"; // 本地 vLLM
/// let p: chatnexus::config::ProviderConfig = serde_yaml::from_str(yaml).unwrap(); // 解析一项
/// assert_eq!(p.base_url.port, 8000); // 端口从 URL 中拆出
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// 唯一名称，被 `models[].targets[].provider` 引用。
    pub name: String,
    /// 协议类型。
    pub kind: ProviderKind,
    /// 上游基础地址，如 `https://api.openai.com`。
    pub base_url: BaseUrl,
    /// 存放上游密钥的环境变量名（推荐）。
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// 明文上游密钥（可用但启动时警告）。
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// 加密的上游密钥 `v1:<base64>`（AES-256-GCM，附加数据是本上游的 `name`），
    /// 由 `chatnexus keys encrypt --provider NAME` 生成，启动时用 `CHATNEXUS_MASTER_KEY` 解密。
    #[serde(default)]
    pub api_key_enc: Option<String>,
    /// 超时设置。
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Azure 的 `api-version`（`azure` 类型必填，如 `2024-10-21`）。
    #[serde(default)]
    pub api_version: Option<String>,
    /// 主动健康探测（缺省不探测，只靠真实流量做被动检测）。
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// 每个目标的自适应并发上限（缺省不限制并发）。
    #[serde(default)]
    pub concurrency: Option<ConcurrencySettings>,
}

/// 与上游交换时的各阶段超时（毫秒）。
///
/// 用途：连接、首字节、流式块间隔、总时长各自超时都映射为 504 或流中的错误事件。
///
/// ```
/// let t = chatnexus::config::Timeouts::default(); // 缺省超时
/// assert!(t.first_byte() > t.connect()); // 首字节超时远长于连接超时
/// ```
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP 连接加 TLS 握手。
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// 发出请求后等待响应头。
    #[serde(default = "default_first_byte_ms")]
    pub first_byte_ms: u64,
    /// 响应体两次读取之间的最长间隔。
    #[serde(default = "default_idle_ms")]
    pub idle_ms: u64,
    /// 从开始与上游交换（含全部重试）到响应写完的总时长上限。
    #[serde(default = "default_total_ms")]
    pub total_ms: u64,
}

impl Timeouts {
    /// 连接超时。
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }

    /// 首字节超时。
    pub fn first_byte(&self) -> Duration {
        Duration::from_millis(self.first_byte_ms)
    }

    /// 块间隔超时。
    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }

    /// 总时长上限。
    pub fn total(&self) -> Duration {
        Duration::from_millis(self.total_ms)
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: DEFAULT_CONNECT_MS,
            first_byte_ms: DEFAULT_FIRST_BYTE_MS,
            idle_ms: DEFAULT_IDLE_MS,
            total_ms: DEFAULT_TOTAL_MS,
        }
    }
}

fn default_connect_ms() -> u64 {
    DEFAULT_CONNECT_MS
}

fn default_first_byte_ms() -> u64 {
    DEFAULT_FIRST_BYTE_MS
}

fn default_idle_ms() -> u64 {
    DEFAULT_IDLE_MS
}

fn default_total_ms() -> u64 {
    DEFAULT_TOTAL_MS
}

/// 解析后的上游基础地址。
///
/// 用途：拆出协议、主机、端口和路径前缀，供 DNS 解析、SNI、Host 头和请求路径使用。
///
/// ```
/// let u = chatnexus::config::BaseUrl::try_from("https://api.openai.com/v1/".to_string()).unwrap(); // 带结尾斜杠
/// assert!(u.tls && u.port == 443); // HTTPS 缺省端口
/// assert_eq!((u.host.as_str(), u.path.as_str()), ("api.openai.com", "/v1")); // 路径去掉结尾斜杠
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BaseUrl {
    /// 是否 HTTPS。
    pub tls: bool,
    /// 主机名或 IP（不含端口）。
    pub host: String,
    /// 端口（缺省按协议取 80/443）。
    pub port: u16,
    /// 路径前缀，不以 `/` 结尾（可为空）。
    pub path: String,
}

impl BaseUrl {
    /// `Host` 头的值：非默认端口时带上端口。
    pub fn host_header(&self) -> String {
        let default_port = if self.tls { HTTPS_PORT } else { HTTP_PORT };
        if self.port == default_port {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl TryFrom<String> for BaseUrl {
    type Error = String;

    /// 解析 `http(s)://主机[:端口][/路径]`；不带查询串，错误信息为中文。
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let uri: http::Uri = value
            .parse()
            .map_err(|_| format!("`{value}` 不是合法的 URL"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("`{value}` 必须以 http:// 或 https:// 开头")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{value}` 缺少主机名"))?;
        if uri.query().is_some() {
            return Err(format!("`{value}` 不能带查询串"));
        }
        let default_port = if tls { HTTPS_PORT } else { HTTP_PORT };
        Ok(BaseUrl {
            tls,
            host: authority.host().trim_matches(['[', ']']).to_string(),
            port: authority.port_u16().unwrap_or(default_port),
            path: uri.path().trim_end_matches('/').to_string(),
        })
    }
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

/// `models` 中的一项：客户端可见的模型名及其上游目标（按优先级分层、层内按权重与延迟选择）。
///
/// 用途：请求里的 `model` 据此映射到上游。
///
/// ```
/// let yaml = "{ name: 演示, targets: [ { provider: mock } ] }"; // 一个目标
/// let m: chatnexus::config::ModelConfig = serde_yaml::from_str(yaml).unwrap(); // 解析一项
/// assert_eq!(m.targets[0].model, None); // 未写上游模型名时沿用“演示”
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// 客户端请求里使用的模型名。
    pub name: String,
    /// 上游目标。
    pub targets: Vec<TargetConfig>,
    /// 该模型对 `rate_limits.per_model` 的覆盖。
    #[serde(default)]
    pub limits: Option<LimitOverride>,
}

/// 一个上游目标。
///
/// 用途：指明由哪个 provider 服务、向上游发送的模型名。
///
/// ```
/// let yaml = "{ provider: openai, model: gpt-4o-mini }"; // 指定上游模型名
/// let t: chatnexus::config::TargetConfig = serde_yaml::from_str(yaml).unwrap(); // 解析一项
/// assert_eq!(t.model.as_deref(), Some("gpt-4o-mini")); // 发给上游的名字
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// 引用的上游名（`providers[].name`）。
    pub provider: String,
    /// 发给上游的模型名，缺省与客户端可见名相同。
    #[serde(default)]
    pub model: Option<String>,
    /// 客户端没给 `max_tokens` 时使用的值（Anthropic 必须有；缺省 4096）。
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Azure 部署名（只用于 `azure` 类型，缺省等于上游模型名）。
    #[serde(default)]
    pub deployment: Option<String>,
    /// 同一优先级内的相对权重（缺省 1）。
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// 优先级层，0 最优先（缺省 0）；只有更优先的层全部不可用时才使用下一层。
    #[serde(default)]
    pub priority: u32,
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
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
