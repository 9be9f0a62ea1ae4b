//! 配置文件的 `providers` 段：上游的协议类型、基础地址、密钥来源与各阶段超时。

use std::time::Duration;

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::config::{ConcurrencySettings, HealthCheck};
use crate::security::Secret;

/// 默认连接（含 TLS 握手）超时。
const DEFAULT_CONNECT_MS: u64 = 10_000;
/// 默认首字节超时：推理模型可能思考数分钟。
const DEFAULT_FIRST_BYTE_MS: u64 = 300_000;
/// 默认流式两块之间的最长间隔。
const DEFAULT_IDLE_MS: u64 = 120_000;
/// 默认一个请求的总时长上限：30 分钟（长推理加长输出的流也够用）。
const DEFAULT_TOTAL_MS: u64 = 1_800_000;
/// HTTP 默认端口。
const HTTP_PORT: u16 = 80;
/// HTTPS 默认端口。
const HTTPS_PORT: u16 = 443;

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
    /// 上游也提供 `/v1/responses`（只用于 `openai_compatible`，如 vLLM；`openai` 类型总是提供）：
    /// Responses 客户端的请求原样透传而不经翻译。
    #[serde(default)]
    pub responses: bool,
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
    /// `Host` 头的值：解析配置时算好并校验，每个请求只复制引用。
    host_header: HeaderValue,
}

impl BaseUrl {
    /// `Host` 头的值：非默认端口时带上端口。
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }
}

/// `Host` 头的值：非默认端口时带上端口（IPv6 地址加方括号）。
///
/// 错误：主机名含有不能出现在 HTTP 头里的字符。
fn host_value(host: &str, port: u16, default_port: u16) -> Result<HeaderValue, String> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let text = if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    };
    HeaderValue::try_from(text.as_str()).map_err(|_| format!("主机名 `{text}` 不能用作 Host 头"))
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
        let host = authority.host().trim_matches(['[', ']']).to_string();
        let port = authority.port_u16().unwrap_or(default_port);
        Ok(BaseUrl {
            tls,
            host_header: host_value(&host, port, default_port)?,
            host,
            port,
            path: uri.path().trim_end_matches('/').to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 解析(url: &str) -> BaseUrl {
        BaseUrl::try_from(url.to_string()).expect("URL 合法")
    }

    #[test]
    fn host_头_缺省端口不带端口_其他端口带上_ipv6_加方括号() {
        assert_eq!(
            解析("https://api.openai.com/v1").host_header(),
            "api.openai.com"
        );
        assert_eq!(
            解析("http://127.0.0.1:8080").host_header(),
            "127.0.0.1:8080"
        );
        assert_eq!(解析("http://[::1]:8080/").host_header(), "[::1]:8080");
        assert_eq!(解析("https://[::1]").host_header(), "[::1]");
    }
}
