//! 限流测试的环境：一组模拟上游（整个测试进程共用）与按需启动的网关实例。

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;
use pingora::server::Server;

use chatnexus::config;
use chatnexus::mock::{mock_service, Fault, MockSettings, MockStats};
use chatnexus::security::KeyHash;

/// 模拟上游的地址前缀（只用回环地址）。
const LOOPBACK: &str = "http://127.0.0.1";
/// 聊天接口路径。
const CHAT_PATH: &str = "/v1/chat/completions";
/// 轮询 Redis 等待结算的间隔。
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// 等待异步结果的上限（只防挂起，不是性能断言）。
pub const HANG_GUARD: Duration = Duration::from_secs(30);
/// 测试请求的 `max_tokens`。
pub const MAX_TOKENS: u64 = 100;
/// 模拟上游 `fast` 报告的输入 token 数。
pub const FAST_PROMPT_TOKENS: u64 = 30;
/// 模拟上游 `fast` 报告的输出 token 数。
pub const FAST_COMPLETION_TOKENS: u64 = 12;
/// 首字节很慢的模拟上游的延迟：远长于并发请求到达网关的时间，测试因此不依赖调度快慢。
const SLOW_FIRST_BYTE_MS: u64 = 3_000;

/// 测试用的客户端密钥：名 → 明文（HTTP 头只能是 ASCII）。名为 `甲` 的密钥配置了每分钟 3 个请求的覆盖。
pub const KEYS: &[(&str, &str)] = &[
    ("甲", "sk-limits-test-0001"),
    ("乙", "sk-limits-test-0002"),
    ("丙", "sk-limits-test-0003"),
    ("丁", "sk-limits-test-0004"),
    ("戊", "sk-limits-test-0005"),
];

/// 名为 `name` 的客户端密钥明文。
pub fn key(name: &str) -> &'static str {
    KEYS.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .unwrap_or_else(|| panic!("没有名为 {name} 的测试密钥"))
}

/// 全部模拟上游：名称 → （端口、统计）。
pub struct Mocks {
    by_name: HashMap<&'static str, (u16, Arc<MockStats>)>,
}

impl Mocks {
    /// 一个模拟上游的统计。
    pub fn stats(&self, name: &str) -> &MockStats {
        self.by_name
            .get(name)
            .map(|(_, s)| s.as_ref())
            .unwrap_or_else(|| panic!("没有名为 {name} 的模拟上游"))
    }

    fn port(&self, name: &str) -> u16 {
        self.by_name
            .get(name)
            .map(|(p, _)| *p)
            .unwrap_or_else(|| panic!("没有名为 {name} 的模拟上游"))
    }
}

/// 整个测试进程共用的模拟上游。
pub static MOCKS: Lazy<Mocks> = Lazy::new(start_mocks);

fn mock_specs() -> Vec<(&'static str, MockSettings)> {
    let fast = MockSettings {
        chunks: 3,
        prompt_tokens: Some(FAST_PROMPT_TOKENS),
        completion_tokens: Some(FAST_COMPLETION_TOKENS),
        ..MockSettings::default()
    };
    let slow = MockSettings {
        first_byte_delay_ms: SLOW_FIRST_BYTE_MS,
        ..fast.clone()
    };
    vec![
        ("fast", fast.clone()),
        ("backup", fast.clone()),
        ("slow-a", slow.clone()),
        ("slow-b", slow),
        (
            "stream",
            MockSettings {
                chunks: 50,
                chunk_delay_ms: 100,
                ..MockSettings::default()
            },
        ),
        (
            "fails",
            MockSettings {
                fault: Some(Fault::Status(500)),
                ..fast
            },
        ),
    ]
}

fn start_mocks() -> Mocks {
    let _ = env_logger::builder().is_test(true).try_init();
    let specs = mock_specs();
    let ports = crate::support::free_ports(specs.len());
    let mut server = Server::new(None).expect("创建模拟上游服务");
    server.bootstrap();
    let mut by_name = HashMap::new();
    for ((name, settings), port) in specs.into_iter().zip(ports) {
        let (mut service, stats) = mock_service(settings);
        service.add_tcp(&format!("127.0.0.1:{port}"));
        server.add_service(service);
        by_name.insert(name, (port, stats));
    }
    let all: Vec<u16> = by_name.values().map(|(p, _)| *p).collect();
    crate::support::spawn(server);
    crate::support::wait_ports(all);
    Mocks { by_name }
}

/// 网关配置：客户端密钥、上游与模型固定，`extra` 追加 `redis`、`rate_limits` 等段。
fn gateway_yaml(port: u16, extra: &str) -> String {
    let keys: Vec<String> = KEYS
        .iter()
        .map(|(name, key)| {
            let hash = KeyHash::of(key).to_hex();
            let over = if *name == "甲" {
                ", limits: { requests: 3 }"
            } else {
                ""
            };
            format!("    - {{ name: {name}, sha256: \"{hash}\"{over} }}")
        })
        .collect();
    let provider = |name: &str, options: &str| {
        let port = MOCKS.port(name);
        format!("  - {{ name: {name}, kind: openai_compatible, base_url: \"{LOOPBACK}:{port}/v1\", timeouts: {{ first_byte_ms: 10000, idle_ms: 5000 }}{options} }}")
    };
    let concurrency = ", concurrency: { base: 2, floor: 1 }";
    let providers = [
        provider("fast", ""),
        provider("backup", ""),
        provider("stream", ""),
        provider("slow-a", concurrency),
        provider("slow-b", ", concurrency: { base: 1, floor: 1 }"),
        provider("fails", ", concurrency: { base: 8, floor: 1 }"),
    ];
    format!(
        r#"server: {{ listen: "127.0.0.1:{port}", threads: 2 }}
auth:
  keys:
{keys}
circuit_breaker: {{ consecutive_failures: 1000, failure_ratio: 1.0, min_requests: 1000 }}
adaptive_limits: {{ interval_ms: 200, min_samples: 5 }}
providers:
{providers}
models:
  - {{ name: fast, targets: [ {{ provider: fast }} ] }}
  - {{ name: cheap, targets: [ {{ provider: fast }} ], limits: {{ requests: 2 }} }}
  - {{ name: stream, targets: [ {{ provider: stream }} ] }}
  - {{ name: shed, targets: [ {{ provider: slow-a }}, {{ provider: backup, priority: 1 }} ] }}
  - {{ name: lone, targets: [ {{ provider: slow-b }} ] }}
  - {{ name: fails, targets: [ {{ provider: fails }} ] }}
{extra}
"#,
        keys = keys.join("\n"),
        providers = providers.join("\n"),
    )
}

/// 启动一个网关实例，返回它的地址。
///
/// 参数：追加的配置段（`redis`、`rate_limits`）。
pub fn start_gateway(extra: &str) -> SocketAddr {
    let port = crate::support::free_ports(1)[0];
    let yaml = gateway_yaml(port, extra);
    let parsed = config::parse(&yaml).unwrap_or_else(|e| panic!("测试配置必须能解析：{e}"));
    let cfg = config::build(parsed, |_| None)
        .unwrap_or_else(|e| panic!("测试配置必须通过校验：{e}\n{yaml}"));
    crate::support::spawn(chatnexus::server::build(cfg, None, None));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    crate::support::wait_ready(addr);
    addr
}

/// 一个使用共享 Redis（`REDIS_URL`）的网关及其 Redis 键前缀。
pub struct RedisGateway {
    /// 网关地址。
    pub gateway: SocketAddr,
    /// 该网关使用的 Redis 键前缀（每个测试文件不同）。
    pub prefix: String,
}

impl RedisGateway {
    /// 启动一个使用共享 Redis 的网关：`name` 用于键前缀，`limits` 为 `rate_limits` 段。
    pub fn start(name: &str, limits: &str) -> Self {
        let prefix = crate::support::unique_prefix(name);
        let redis = redis_section(&crate::support::redis_url(), &prefix);
        RedisGateway {
            gateway: start_gateway(&format!("{redis}\n{limits}")),
            prefix,
        }
    }

    /// 该网关某一层某个主体在 Redis 中的计数（`field` 为 `r` 请求数或 `t` token 数）。
    pub fn counted(&self, segment: &str, subject: &str, field: &str) -> i64 {
        let key = limiter_key(&self.prefix, segment, subject);
        hash_field(&crate::support::redis_url(), &key, field)
    }
}

/// 启动共享同一个 Redis 的 `count` 个网关实例。
pub fn start_gateways(count: usize, extra: &str) -> Vec<SocketAddr> {
    (0..count).map(|_| start_gateway(extra)).collect()
}

/// `redis` 段：单机。
pub fn redis_section(url: &str, prefix: &str) -> String {
    format!("redis: {{ url: \"{url}\", key_prefix: \"{prefix}\", timeout_ms: 2000 }}")
}

/// 一个请求的选项：模型、是否流式、`max_tokens`、可选的 `X-Forwarded-For`。
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    /// 模型名。
    pub model: &'a str,
    /// 是否流式。
    pub stream: bool,
    /// 输出上限 `max_tokens`。
    pub max_tokens: u64,
    /// `X-Forwarded-For` 的值。
    pub forwarded: Option<&'a str>,
}

impl Default for Ask<'_> {
    fn default() -> Self {
        Ask {
            model: "fast",
            stream: false,
            max_tokens: MAX_TOKENS,
            forwarded: None,
        }
    }
}

/// 用密钥 `key` 向网关发一个聊天请求。
pub async fn chat(
    client: &reqwest::Client,
    gateway: SocketAddr,
    key: &str,
    ask: Ask<'_>,
) -> reqwest::Response {
    let body = serde_json::json!({
        "model": ask.model,
        "stream": ask.stream,
        "max_tokens": ask.max_tokens,
        "messages": [ { "role": "user", "content": "请讲一个关于限流的笑话" } ],
    });
    let mut request = client
        .post(format!("http://{gateway}{CHAT_PATH}"))
        .bearer_auth(key)
        .json(&body);
    if let Some(forwarded) = ask.forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.expect("请求必须送达网关")
}

/// 响应头的文本值（没有时为空串）。
pub fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// 限流键：`{<前缀>rl}:<层>:<主体>`（与 docs/rate-limiting.md 描述的格式一致）。
pub fn limiter_key(prefix: &str, segment: &str, subject: &str) -> String {
    format!("{{{prefix}rl}}:{segment}:{subject}")
}

/// 读 Redis 哈希的一个整数字段（没有时为 0）；`url` 为单机地址。
pub fn hash_field(url: &str, key: &str, field: &str) -> i64 {
    let client = redis::Client::open(url).expect("Redis 地址合法");
    let mut conn = client.get_connection().expect("连接 Redis");
    let value: Option<i64> = redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query(&mut conn)
        .expect("HGET");
    value.unwrap_or(0)
}

/// 轮询直到 `ready` 为真（只防挂起：超过上限即失败）。
pub async fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG_GUARD;
    while !ready() {
        assert!(Instant::now() < deadline, "等待超时：{what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// 断言响应是限流拒绝：429、OpenAI 信封、`code: rate_limit_exceeded`、带 `Retry-After`，消息点名该层。
pub async fn expect_refused(resp: reqwest::Response, layer: &str) -> serde_json::Value {
    let retry_after: u64 = header(&resp, "retry-after")
        .parse()
        .expect("拒绝必须带 Retry-After 秒数");
    assert!(retry_after >= 1, "Retry-After 至少 1 秒");
    let error = crate::support::expect_error(resp, 429).await;
    assert_eq!(error["code"], "rate_limit_exceeded");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(layer),
        "消息必须点名「{layer}」层：{message}"
    );
    error
}
