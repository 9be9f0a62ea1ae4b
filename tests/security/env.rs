//! 安全测试的环境：一个模拟上游与三个网关，全部在进程内、只监听 127.0.0.1。
//!
//! - `memory`：没有 Redis，防重放用进程内存储；开启 CORS；
//! - `redis`：防重放用真实 Redis（`REDIS_URL`，缺省 redis://127.0.0.1:6379，tests/run.sh 保证可用）；
//! - `redis_down`：Redis 指向一个没人监听的端口，签名请求必须 503。
//!
//! 上游密钥与签名密钥都以密文（`api_key_enc`、`signing_secret_enc`）写在配置里，由本进程生成的主密钥解密。

use once_cell::sync::Lazy;

use chatnexus::mock::{MockSettings, MockStats};
use chatnexus::security::crypto::{MasterKey, MASTER_KEY_ENV};

use crate::support::body::chat_bytes;
use crate::support::config::{
    ClientKey, GatewayConfig, Model, Provider, ProviderKind, Redis, Target, Timeouts,
};
use crate::support::gateway::{Emulators, Gateway, Launch};
use crate::support::now;
use crate::support::signing::{fresh_nonce, sign_request, signed_post};

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
    pub memory: Gateway,
    /// Redis 存储的网关。
    pub redis: Gateway,
    /// Redis 不可达的网关。
    pub redis_down: Gateway,
    /// 模拟上游（名为 `mock`）。
    pub mocks: Emulators,
    /// Redis 网关使用的 Redis 地址。
    pub redis_url: String,
    /// Redis 网关使用的键前缀（每个测试进程不同）。
    pub redis_prefix: String,
}

impl SecurityEnv {
    /// 模拟上游的统计与请求记录。
    pub fn mock(&self) -> &MockStats {
        self.mocks.stats(MOCK)
    }

    /// 模拟上游的端口。
    pub fn mock_port(&self) -> u16 {
        self.mocks.port(MOCK)
    }
}

/// 聊天接口路径。
const CHAT_PATH: &str = "/v1/chat/completions";
/// 模拟上游、它的 provider 与同名模型的名字。
const MOCK: &str = "mock";
/// 本机回环地址上的 Redis 前缀（用于一个没人监听的端口）。
const REDIS_LOOPBACK: &str = "redis://127.0.0.1";
/// Redis 网关从这个环境变量读取连接串。
const REDIS_URL_ENV: &str = "TEST_REDIS_URL";
/// 可用 Redis 的命令超时（毫秒）。
const REDIS_TIMEOUT_MS: u64 = 2000;
/// 不可达 Redis 的命令超时（毫秒）：短，签名请求很快得到 503。
const DOWN_REDIS_TIMEOUT_MS: u64 = 300;
/// CORS 预检结果的缓存时间（秒）。
const CORS_MAX_AGE_SECS: u64 = 120;
/// 模拟上游的首字节与块间隔超时（毫秒）。
const MOCK_TIMEOUT_MS: u64 = 2000;

/// 全部测试共享一个环境。
pub static ENV: Lazy<SecurityEnv> = Lazy::new(start);

/// 三个网关共同的配置：五个客户端密钥、以密文保存密钥的上游与两个模型。
fn gateway_config(mock_url: &str, master: &MasterKey) -> GatewayConfig {
    let encrypt = |name: &str, secret: &str| master.encrypt(name, secret.as_bytes());
    let upstream = Provider::new(MOCK, ProviderKind::OpenAiCompatible, mock_url)
        .api_key_enc(encrypt(MOCK, UPSTREAM_KEY))
        .timeouts(Timeouts::new(MOCK_TIMEOUT_MS, MOCK_TIMEOUT_MS));
    GatewayConfig::on_loopback()
        .key(
            ClientKey::new("signed", SIGNED_KEY)
                .require_signature()
                .signing_secret_enc(encrypt("signed", SIGNING_SECRET)),
        )
        .key(ClientKey::new("soft", SOFT_KEY).signing_secret_enc(encrypt("soft", SOFT_SECRET)))
        .key(ClientKey::new("limited", LIMITED_KEY).models(&[MOCK]))
        .key(ClientKey::new("plain", PLAIN_KEY))
        .key(ClientKey::new("usage", USAGE_KEY))
        .provider(upstream)
        .model(Model::direct(MOCK))
        .model(Model::new("other").target(Target::to(MOCK).model("other-upstream")))
}

fn start() -> SecurityEnv {
    let _ = env_logger::builder().is_test(true).try_init();
    let master = MasterKey::generate();
    let master_b64 = master.to_base64().to_string();
    let redis_url = crate::support::redis_url();
    let redis_prefix = crate::support::unique_prefix("chatnexus-it");
    let mut mocks = Emulators::default();
    let mock_url = mocks.add(
        MOCK,
        MockSettings {
            chunks: 3,
            ..MockSettings::default()
        },
    );
    let base = || gateway_config(&mock_url, &master);
    let launch = |config| {
        Launch::new(config)
            .env(MASTER_KEY_ENV, &master_b64)
            .env(REDIS_URL_ENV, &redis_url)
    };
    let memory = launch(base().cors(&[ALLOWED_ORIGIN], CORS_MAX_AGE_SECS))
        .emulators(&mut mocks)
        .start();
    let shared = Redis::url_env(REDIS_URL_ENV, REDIS_TIMEOUT_MS).key_prefix(&redis_prefix);
    let redis = launch(base().redis(shared)).start();
    let dead = format!("{REDIS_LOOPBACK}:{}", crate::support::free_port());
    let redis_down = launch(base().redis(Redis::url(&dead, DOWN_REDIS_TIMEOUT_MS))).start();
    SecurityEnv {
        memory,
        redis,
        redis_down,
        mocks,
        redis_url,
        redis_prefix,
    }
}

/// 签好名的聊天请求（`signed` 密钥、当前时间、新 nonce）。
pub fn signed_chat(
    client: &reqwest::Client,
    gateway: Gateway,
    model: &str,
) -> reqwest::RequestBuilder {
    let body = chat_bytes(model, false);
    let signed = sign_request(
        SIGNING_SECRET,
        "POST",
        CHAT_PATH,
        now(),
        &fresh_nonce(),
        &body,
    );
    signed_post(client, gateway, CHAT_PATH, SIGNED_KEY, body, &signed)
}

pub use crate::support::expect_error;
