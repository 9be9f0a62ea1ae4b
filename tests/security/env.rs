//! 安全测试的环境：一个模拟上游与三个网关，全部在进程内、只监听 127.0.0.1。
//!
//! - `memory`：没有 Redis，防重放用进程内存储；开启 CORS；
//! - `redis`：防重放用真实 Redis（`REDIS_URL`，缺省 redis://127.0.0.1:6379，tests/run.sh 保证可用）；
//! - `redis_down`：Redis 指向一个没人监听的端口，签名请求必须 503。
//!
//! 上游密钥与签名密钥都以密文（`api_key_enc`、`signing_secret_enc`）写在配置里，由本进程生成的主密钥解密。

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use once_cell::sync::Lazy;

use chatnexus::config;
use chatnexus::mock::{mock_service, MockSettings, MockStats};
use chatnexus::security::crypto::{MasterKey, MASTER_KEY_ENV};
use chatnexus::security::signing::{canonical_string, sign};
use chatnexus::security::KeyHash;

/// 要求签名的客户端密钥（名 `signed`）。
pub const SIGNED_KEY: &str = "sk-cnx-test-signed-client";
/// 有签名密钥但不强制签名的客户端密钥（名 `soft`）。
pub const SOFT_KEY: &str = "sk-cnx-test-soft-client";
/// 只允许模型 `mock` 的客户端密钥（名 `limited`）。
pub const LIMITED_KEY: &str = "sk-cnx-test-limited-client";
/// 不签名、不限模型的客户端密钥（名 `plain`）。
pub const PLAIN_KEY: &str = "sk-cnx-test-plain-client";
/// 只用于用量累计测试的客户端密钥（名 `usage`）。
pub const USAGE_KEY: &str = "sk-cnx-test-usage-client";
/// `signed` 的签名密钥明文。
pub const SIGNING_SECRET: &str = "cnxs-test-signing-secret-0123456789abcdef";
/// `soft` 的签名密钥明文。
pub const SOFT_SECRET: &str = "cnxs-test-soft-secret-0123456789abcdef0000";
/// 上游密钥明文（配置里只有它的密文）。
pub const UPSTREAM_KEY: &str = "sk-upstream-加密保存-绝不外泄-7f3a";
/// 允许跨域的来源。
pub const ALLOWED_ORIGIN: &str = "https://app.example.com";

/// 测试环境。
pub struct SecurityEnv {
    /// 进程内存储的网关。
    pub memory: SocketAddr,
    /// Redis 存储的网关。
    pub redis: SocketAddr,
    /// Redis 不可达的网关。
    pub redis_down: SocketAddr,
    /// 模拟上游的统计与请求记录。
    pub mock: Arc<MockStats>,
    /// 模拟上游的端口。
    pub mock_port: u16,
    /// Redis 网关使用的 Redis 地址。
    pub redis_url: String,
    /// Redis 网关使用的键前缀（每个测试进程不同）。
    pub redis_prefix: String,
}

/// 本机回环地址上的 HTTP 服务前缀。
const LOOPBACK: &str = "http://127.0.0.1";
/// 本机回环地址上的 Redis 前缀（用于一个没人监听的端口）。
const REDIS_LOOPBACK: &str = "redis://127.0.0.1";
/// HTTP 协议前缀。
const HTTP_SCHEME: &str = "http://";

/// 全部测试共享一个环境。
pub static ENV: Lazy<SecurityEnv> = Lazy::new(start);

/// 一个网关的配置。
fn gateway_yaml(port: u16, mock_port: u16, master: &MasterKey, extra: &str) -> String {
    let hash = |k: &str| KeyHash::of(k).to_hex();
    let signed_enc = master.encrypt("signed", SIGNING_SECRET.as_bytes());
    let soft_enc = master.encrypt("soft", SOFT_SECRET.as_bytes());
    let upstream_enc = master.encrypt("mock", UPSTREAM_KEY.as_bytes());
    format!(
        r#"server: {{ listen: "127.0.0.1:{port}", threads: 2 }}
auth:
  keys:
    - {{ name: signed, sha256: "{signed}", require_signature: true, signing_secret_enc: "{signed_enc}" }}
    - {{ name: soft, sha256: "{soft}", signing_secret_enc: "{soft_enc}" }}
    - {{ name: limited, sha256: "{limited}", models: [mock] }}
    - {{ name: plain, sha256: "{plain}" }}
    - {{ name: usage, sha256: "{usage}" }}
providers:
  - {{ name: mock, kind: openai_compatible, base_url: "{LOOPBACK}:{mock_port}", api_key_enc: "{upstream_enc}", timeouts: {{ first_byte_ms: 2000, idle_ms: 2000 }} }}
models:
  - {{ name: mock, targets: [ {{ provider: mock }} ] }}
  - {{ name: other, targets: [ {{ provider: mock, model: other-upstream }} ] }}
{extra}"#,
        signed = hash(SIGNED_KEY),
        soft = hash(SOFT_KEY),
        limited = hash(LIMITED_KEY),
        plain = hash(PLAIN_KEY),
        usage = hash(USAGE_KEY),
    )
}

fn start() -> SecurityEnv {
    let _ = env_logger::builder().is_test(true).try_init();
    let master = MasterKey::generate();
    let master_b64 = master.to_base64().to_string();
    let ports = crate::support::free_ports(5);
    let (memory, redis, redis_down, mock_port, dead) =
        (ports[0], ports[1], ports[2], ports[3], ports[4]);
    let redis_url = crate::support::redis_url();
    let redis_prefix = crate::support::unique_prefix("chatnexus-it");
    let configs = [
        (memory, format!("security: {{ cors: {{ allowed_origins: [\"{ALLOWED_ORIGIN}\"], max_age_secs: 120 }} }}")),
        (redis, format!("redis: {{ url_env: TEST_REDIS_URL, key_prefix: \"{redis_prefix}\", timeout_ms: 2000 }}")),
        (redis_down, format!("redis: {{ url: \"{REDIS_LOOPBACK}:{dead}\", timeout_ms: 300 }}")),
    ];
    let (mut mock_svc, stats) = mock_service(MockSettings {
        chunks: 3,
        ..MockSettings::default()
    });
    mock_svc.add_tcp(&format!("127.0.0.1:{mock_port}"));
    let mut mock_svc = Some(mock_svc);
    for (port, extra) in configs {
        let yaml = gateway_yaml(port, mock_port, &master, &extra);
        let env = |var: &str| match var {
            MASTER_KEY_ENV => Some(master_b64.clone()),
            "TEST_REDIS_URL" => Some(redis_url.clone()),
            _ => None,
        };
        let cfg = config::build(config::parse(&yaml).expect("测试配置必须能解析"), env)
            .expect("测试配置必须通过校验");
        let mut server = chatnexus::server::build(cfg, None, None);
        if let Some(service) = mock_svc.take() {
            server.add_service(service);
        }
        crate::support::spawn(server);
    }
    crate::support::wait_ports([memory, redis, redis_down, mock_port]);
    SecurityEnv {
        memory: ([127, 0, 0, 1], memory).into(),
        redis: ([127, 0, 0, 1], redis).into(),
        redis_down: ([127, 0, 0, 1], redis_down).into(),
        mock: stats,
        mock_port,
        redis_url,
        redis_prefix,
    }
}

/// 每次测试运行独有的 Redis 键前缀，避免与其他运行或残留数据互相干扰。
/// 网关上某个路径的完整地址。
pub fn url(gateway: SocketAddr, path: &str) -> String {
    format!("{HTTP_SCHEME}{gateway}{path}")
}

/// 当前 Unix 秒。
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// 一个新的随机 nonce（32 个 URL 安全字符）。
pub fn fresh_nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("n{:x}-{n:08x}-{}", nanos, std::process::id())
}

/// 聊天请求体。
pub fn chat_body(model: &str, stream: bool) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [ { "role": "user", "content": "签名请求测试" } ],
    }))
    .expect("JSON")
}

/// 一组签名参数。
#[derive(Clone)]
pub struct Signed {
    /// 时间戳。
    pub timestamp: String,
    /// 请求携带的 nonce。
    pub nonce: String,
    /// 签名。
    pub signature: String,
}

/// 按 docs/security.md 的规范串签名。
pub fn sign_request(
    secret: &str,
    method: &str,
    path: &str,
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> Signed {
    let ts = timestamp.to_string();
    let canonical = canonical_string(method, path, &ts, nonce, body);
    Signed {
        signature: sign(secret.as_bytes(), &canonical),
        timestamp: ts,
        nonce: nonce.to_string(),
    }
}

/// 带客户端密钥与签名头的 POST。
pub fn signed_post(
    client: &reqwest::Client,
    gateway: SocketAddr,
    path: &str,
    key: &str,
    body: Vec<u8>,
    signed: &Signed,
) -> reqwest::RequestBuilder {
    client
        .post(url(gateway, path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header("x-chatnexus-timestamp", &signed.timestamp)
        .header("x-chatnexus-nonce", &signed.nonce)
        .header("x-chatnexus-signature", &signed.signature)
        .body(body)
}

/// 签好名的聊天请求（`signed` 密钥、当前时间、新 nonce）。
pub fn signed_chat(
    client: &reqwest::Client,
    gateway: SocketAddr,
    model: &str,
) -> reqwest::RequestBuilder {
    let body = chat_body(model, false);
    let signed = sign_request(
        SIGNING_SECRET,
        "POST",
        "/v1/chat/completions",
        now(),
        &fresh_nonce(),
        &body,
    );
    signed_post(
        client,
        gateway,
        "/v1/chat/completions",
        SIGNED_KEY,
        body,
        &signed,
    )
}

pub use crate::support::expect_error;
