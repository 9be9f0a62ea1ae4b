//! 配置文件的 `server` 与 `access_log` 段：监听地址、请求体与流的上限、进程文件、访问日志格式。

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::runtime_dir;

/// 默认监听 IP：所有 IPv4 地址。
const DEFAULT_LISTEN_IP: [u8; 4] = [0, 0, 0, 0];
/// 默认监听端口。
const DEFAULT_LISTEN_PORT: u16 = 8080;
/// 默认优雅退出等待：10 分钟，长于绝大多数流式回答。
const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 600;
/// 每次写客户端的缺省超时：30 秒。
const DEFAULT_CLIENT_WRITE_TIMEOUT_MS: u64 = 30_000;
/// 翻译的流里上游沉默多久就给客户端补一个保活事件（毫秒）：Claude Code 与 Codex 的空闲看门狗在
/// 长时间收不到事件时会重发请求。
const DEFAULT_STREAM_KEEPALIVE_MS: u64 = 10_000;
/// 上游流中单个事件的缺省上限：16 MiB（容得下 base64 图片，挡住无限长的一行）。
const DEFAULT_MAX_STREAM_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// 一个上游流的缺省总上限：256 MiB（远超最长的推理输出）。
const DEFAULT_MAX_STREAM_BYTES: u64 = 256 * 1024 * 1024;
/// 向量请求缺省最多的输入条数（与 OpenAI 的批量上限相同）。
const DEFAULT_EMBEDDINGS_MAX_INPUTS: usize = 2048;
/// 向量请求全部输入缺省的总字节上限：2 MiB（OpenAI 每个请求最多 30 万 token，约合 1.2 MB 英文）。
const DEFAULT_EMBEDDINGS_MAX_INPUT_BYTES: usize = 2 * 1024 * 1024;
/// 访问日志缺省攒一秒再写出（同 nginx 的 `access_log … flush=1s`）。
const DEFAULT_ACCESS_FLUSH_MS: u64 = 1_000;
/// 默认请求体上限：10 MiB。
const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

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
/// 用途：决定每个请求一行的访问日志用什么格式、是否包含提示词、攒多久写出一次。
///
/// ```
/// let a = chatnexus::config::AccessLogSettings::default(); // 缺省
/// assert!(!a.include_prompts); // 缺省不记录提示词
/// assert_eq!(a.flush_interval(), std::time::Duration::from_secs(1)); // 缺省攒一秒
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSettings {
    /// 日志格式。
    #[serde(default)]
    pub format: AccessLogFormat,
    /// 为真时在访问日志中附上请求的 `messages`（截断）；缺省关闭，提示词可能含敏感信息。
    #[serde(default)]
    pub include_prompts: bool,
    /// 访问日志攒在内存里、最多多久写出一次（毫秒；攒满 64 KiB 时提前写出）。0 表示每行立即写出。
    /// 告警与错误总是立即写出（连同之前攒着的行）。
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        AccessLogSettings {
            format: AccessLogFormat::default(),
            include_prompts: false,
            flush_ms: default_flush_ms(),
        }
    }
}

impl AccessLogSettings {
    /// 攒行的写出间隔；为 0 时不攒。
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_ms)
    }
}

fn default_flush_ms() -> u64 {
    DEFAULT_ACCESS_FLUSH_MS
}

/// `responses` 段：OpenAI Responses 接口的会话保存。
///
/// 用途：翻译到别家上游时，网关在 Redis 里保存每个回复（按客户端密钥隔离），`previous_response_id` 据此展开。
///
/// ```
/// let r = chatnexus::config::ResponsesSettings::default(); // 缺省
/// assert_eq!(r.store_ttl_secs, 86_400); // 保存一天
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsesSettings {
    /// 保存的回复多久过期（秒，缺省一天；需要 `redis` 段）。
    #[serde(default = "default_store_ttl_secs")]
    pub store_ttl_secs: u64,
}

impl Default for ResponsesSettings {
    fn default() -> Self {
        ResponsesSettings {
            store_ttl_secs: default_store_ttl_secs(),
        }
    }
}

impl ResponsesSettings {
    /// 保存的回复的过期时间。
    pub fn store_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.store_ttl_secs)
    }
}

/// 保存的回复缺省一天过期。
fn default_store_ttl_secs() -> u64 {
    DEFAULT_STORE_TTL_SECS
}

/// 保存的回复的缺省过期秒数（一天）。
const DEFAULT_STORE_TTL_SECS: u64 = 86_400;

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
    /// 工作线程之间是否互相偷任务（Pingora 的 `work_stealing`）。缺省关：每个线程一个单线程运行时，
    /// 连接接入时随机分给一个线程、之后一直留在那里，调度不经过跨线程的队列与唤醒（单线程时交替压测每请求 CPU 少 4%–17%）；
    /// 个别线程上长流扎堆、其余线程空闲时可以打开。
    #[serde(default)]
    pub work_stealing: bool,
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
    /// 管理接口与管理页面的独立监听地址（应只对本机或运维网络开放，不能与公开端口相同）；不配置则没有管理接口。
    #[serde(default)]
    pub admin_listen: Option<ListenAddr>,
    /// 每次写客户端的超时（毫秒）：客户端不读、写不出去超过这么久就放弃这个请求，释放上游连接与额度。
    #[serde(default = "default_client_write_timeout_ms")]
    pub client_write_timeout_ms: u64,
    /// 上游流中单个 SSE 事件（含单行）的上限（字节），超过时以流中错误结束。
    #[serde(default = "default_max_stream_event_bytes")]
    pub max_stream_event_bytes: usize,
    /// 一个上游流的总字节数上限，超过时以流中错误结束。
    #[serde(default = "default_max_stream_bytes")]
    pub max_stream_bytes: u64,
    /// 翻译给 Messages 与 Responses 客户端的流里，上游沉默多久（毫秒）就补一个保活事件
    /// （Anthropic 的 `ping`、Responses 的 `response.in_progress`）。
    #[serde(default = "default_stream_keepalive_ms")]
    pub stream_keepalive_ms: u64,
    /// 一个向量请求最多的输入条数，超过时 400 `too_many_inputs`。
    #[serde(default = "default_embeddings_max_inputs")]
    pub embeddings_max_inputs: usize,
    /// 一个向量请求全部输入的总字节上限（token id 每个按 4 字节计），超过时 400 `input_too_large`。
    #[serde(default = "default_embeddings_max_input_bytes")]
    pub embeddings_max_input_bytes: usize,
}

impl ServerSettings {
    /// 每次写客户端的超时。
    pub fn client_write_timeout(&self) -> Duration {
        Duration::from_millis(self.client_write_timeout_ms)
    }

    /// 翻译的流的保活间隔。
    pub fn stream_keepalive(&self) -> Duration {
        Duration::from_millis(self.stream_keepalive_ms)
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: default_listen(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            threads: None,
            work_stealing: false,
            ca_file: None,
            pid_file: default_pid_file(),
            upgrade_sock: default_upgrade_sock(),
            grace_period_seconds: DEFAULT_GRACE_PERIOD_SECONDS,
            metrics_listen: None,
            admin_listen: None,
            client_write_timeout_ms: DEFAULT_CLIENT_WRITE_TIMEOUT_MS,
            max_stream_event_bytes: DEFAULT_MAX_STREAM_EVENT_BYTES,
            max_stream_bytes: DEFAULT_MAX_STREAM_BYTES,
            stream_keepalive_ms: DEFAULT_STREAM_KEEPALIVE_MS,
            embeddings_max_inputs: DEFAULT_EMBEDDINGS_MAX_INPUTS,
            embeddings_max_input_bytes: DEFAULT_EMBEDDINGS_MAX_INPUT_BYTES,
        }
    }
}

fn default_listen() -> ListenAddr {
    ListenAddr(SocketAddr::from((DEFAULT_LISTEN_IP, DEFAULT_LISTEN_PORT)))
}

fn default_embeddings_max_inputs() -> usize {
    DEFAULT_EMBEDDINGS_MAX_INPUTS
}

fn default_embeddings_max_input_bytes() -> usize {
    DEFAULT_EMBEDDINGS_MAX_INPUT_BYTES
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

fn default_stream_keepalive_ms() -> u64 {
    DEFAULT_STREAM_KEEPALIVE_MS
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
