//! 密钥不进日志：像 `chatnexus` 进程一样安装“脱敏包装 + 日志器”，只是日志器换成记录全部日志
//! （TRACE 级，比 DEBUG 更啰嗦：网关与 Pingora 在 TRACE 会打印整个上游请求头）的 `log::Log`；
//! 跑一遍覆盖四种上游协议、流式与非流式、签名与重放、上游拒绝认证、客户端鉴权失败的流量，
//! 再断言捕获的日志里找不到任何上游密钥、签名密钥、客户端密钥或主密钥的明文。
//!
//! 单独一个测试二进制：全局日志器每个进程只能装一次，且必须在网关启动之前装上。

#[path = "support/mod.rs"]
mod support;

use std::sync::Mutex;
use std::time::Duration;

use log::{LevelFilter, Log, Metadata, Record};

use chatnexus::logging::{Redacting, REDACTED};
use chatnexus::mock::{Fault, MockSettings};
use chatnexus::security::crypto::{MasterKey, MASTER_KEY_ENV};

use support::body::chat_bytes;
use support::config::{ClientKey, GatewayConfig, Model, Provider, ProviderKind, Target};
use support::gateway::{Emulators, Gateway, Launch};
use support::now;
use support::signing::{fresh_nonce, sign_request, signed_post, Signed};

/// 以 api_key_enc 保存的上游密钥（四种协议各一个）。
const ENCRYPTED_KEYS: [(&str, &str); 4] = [
    ("oai", "sk-LEAKCANARY-openai-enc-4f1d2c"),
    ("claude", "sk-ant-LEAKCANARY-anthropic-enc-9a7e"),
    ("gem", "AIza-LEAKCANARY-gemini-enc-55b0"),
    ("az", "LEAKCANARY-azure-enc-c3d4e5"),
];
/// 以 api_key_env 提供的上游密钥。
const ENV_KEY: &str = "sk-LEAKCANARY-from-env-0e0e";
/// 被上游拒绝（401）的上游密钥。
const REJECTED_KEY: &str = "sk-LEAKCANARY-rejected-7777";
/// 客户端签名密钥。
const SIGNING_SECRET: &str = "cnxs-LEAKCANARY-signing-secret-000000000000";
/// 客户端密钥。
const CLIENT_KEY: &str = "sk-cnx-LEAKCANARY-client-key";

/// 捕获全部日志的日志器。
struct Capture {
    lines: Mutex<Vec<String>>,
}

impl Log for Capture {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture {
    lines: Mutex::new(Vec::new()),
};

/// 把日志转给静态的 [`CAPTURE`]（`set_boxed_logger` 需要拥有所有权的日志器）。
struct ToCapture;

impl Log for ToCapture {
    fn enabled(&self, metadata: &Metadata) -> bool {
        CAPTURE.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        CAPTURE.log(record)
    }

    fn flush(&self) {}
}

/// 签名客户端的密钥。
const SIGNED_CLIENT_KEY: &str = "sk-cnx-LEAKCANARY-signed-client";
/// `fromenv` 上游读取密钥的环境变量。
const LEAK_KEY_ENV: &str = "LEAK_TEST_KEY";
/// 聊天接口路径。
const CHAT_PATH: &str = "/v1/chat/completions";
/// 伪造签名的长度：与真实签名（64 个十六进制字符）一样长。
const FORGED_SIGNATURE_LEN: usize = 64;
/// OpenAI 协议上游的路径前缀。
const OPENAI_PATH: &str = "/v1";

/// 网关配置：四种协议的上游密钥以密文保存，另有从环境变量取密钥的与会被上游拒绝的上游。
fn 配置(base: &str, rejecting: &str, master: &MasterKey) -> GatewayConfig {
    let [oai, claude, gem, az] = ENCRYPTED_KEYS.map(|(n, k)| master.encrypt(n, k.as_bytes()));
    let signing = master.encrypt("签名客户端", SIGNING_SECRET.as_bytes());
    let openai_url = format!("{base}{OPENAI_PATH}");
    GatewayConfig::on_loopback()
        .key(ClientKey::new("普通客户端", CLIENT_KEY))
        .key(
            ClientKey::new("签名客户端", SIGNED_CLIENT_KEY)
                .require_signature()
                .signing_secret_enc(signing),
        )
        .provider(
            Provider::new("oai", ProviderKind::OpenAiCompatible, &openai_url).api_key_enc(oai),
        )
        .provider(Provider::new("claude", ProviderKind::Anthropic, base).api_key_enc(claude))
        .provider(Provider::new("gem", ProviderKind::Gemini, base).api_key_enc(gem))
        .provider(
            Provider::new("az", ProviderKind::Azure, base)
                .api_key_enc(az)
                .api_version("2024-10-21"),
        )
        .provider(Provider::new("fromenv", ProviderKind::OpenAi, base).api_key_env(LEAK_KEY_ENV))
        .provider(
            Provider::new("rejecting", ProviderKind::OpenAiCompatible, rejecting)
                .api_key(REJECTED_KEY),
        )
        .model(Model::direct("oai"))
        .model(Model::new("claude").target(Target::to("claude").model("claude-sonnet-4-5")))
        .model(Model::new("gem").target(Target::to("gem").model("gemini-2.5-flash")))
        .model(Model::new("az").target(Target::to("az").deployment("gpt-4o-prod")))
        .model(Model::direct("fromenv"))
        .model(Model::direct("rejecting"))
}

/// 用捕获日志的环境启动网关与两个模拟上游（正常的、拒绝网关密钥的），返回网关与它的配置。
fn 启动(master: &MasterKey, master_b64: &str) -> (Gateway, GatewayConfig) {
    let mut mocks = Emulators::default();
    let base = mocks.add("正常", MockSettings::default());
    let rejecting = mocks.add(
        "拒绝",
        MockSettings {
            fault: Some(Fault::Status(401)),
            ..MockSettings::default()
        },
    );
    let config = 配置(&base, &rejecting, master);
    let gateway = Launch::new(config.clone())
        .env(MASTER_KEY_ENV, master_b64)
        .env(LEAK_KEY_ENV, ENV_KEY)
        .emulators(&mut mocks)
        .start();
    (gateway, config)
}

/// 四种上游各发非流式与流式请求，全部应当成功。
async fn 正常流量(client: &reqwest::Client, url: &str) {
    for model in ["oai", "claude", "gem", "az", "fromenv"] {
        for stream in [false, true] {
            let resp = client
                .post(url)
                .bearer_auth(CLIENT_KEY)
                .body(chat_bytes(model, stream))
                .send()
                .await
                .expect("请求失败");
            assert_eq!(resp.status(), 200, "{model} stream={stream}");
            let _ = resp.text().await;
        }
    }
}

/// 上游拒绝网关的密钥、客户端密钥错误：错误消息与日志都不能带出密钥。
async fn 错误流量(client: &reqwest::Client, url: &str) {
    // 上游拒绝网关的密钥：错误消息与日志都不能带出密钥
    let resp = client
        .post(url)
        .bearer_auth(CLIENT_KEY)
        .body(chat_bytes("rejecting", false))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.expect("读响应");
    assert!(
        !text.contains(REJECTED_KEY),
        "错误响应泄露了上游密钥：{text}"
    );
    // 客户端密钥错误、未知模型
    let resp = client
        .post(url)
        .bearer_auth("sk-cnx-LEAKCANARY-wrong-key")
        .body(chat_bytes("oai", false))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 401);
}

/// 签名请求：正确、重放、签名错误。
async fn 签名流量(client: &reqwest::Client, gateway: Gateway) {
    let body = chat_bytes("oai", false);
    let signed = sign_request(
        SIGNING_SECRET,
        "POST",
        CHAT_PATH,
        now(),
        &fresh_nonce(),
        &body,
    );
    let forged = Signed {
        signature: "0".repeat(FORGED_SIGNATURE_LEN),
        ..signed.clone()
    };
    for (signed, expected) in [(&signed, 200), (&signed, 401), (&forged, 401)] {
        let resp = signed_post(
            client,
            gateway,
            CHAT_PATH,
            SIGNED_CLIENT_KEY,
            body.clone(),
            signed,
        )
        .send()
        .await
        .expect("请求失败");
        assert_eq!(resp.status(), expected);
        let _ = resp.text().await;
    }
}

/// 断言捕获的日志确实覆盖了各级别与关键路径，且任何密钥都不在日志或配置错误消息里。
fn 断言日志干净(config_error: &str, master_b64: &str) {
    let lines = CAPTURE
        .lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let all = lines.join("\n");
    assert!(
        lines.iter().any(|l| l.starts_with("DEBUG")),
        "必须捕获到 DEBUG 级日志，否则本测试没有意义"
    );
    assert!(all.contains("已连接上游"), "必须捕获到网关自己的调试日志");
    assert!(
        all.contains("访问 请求ID=") && all.contains("POST /v1/chat/completions"),
        "必须捕获到访问日志"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("TRACE")
            && l.contains("authorization: ")
            && l.contains(REDACTED)),
        "必须捕获到打印上游请求头的 TRACE 日志（网关写出上游请求时记下），且其中的密钥已被隐藏"
    );
    let mut secrets: Vec<&str> = ENCRYPTED_KEYS.iter().map(|(_, k)| *k).collect();
    secrets.extend([
        ENV_KEY,
        REJECTED_KEY,
        SIGNING_SECRET,
        CLIENT_KEY,
        master_b64,
    ]);
    for secret in &secrets {
        assert!(!config_error.contains(secret), "配置错误消息泄露了密钥");
        if let Some(line) = lines.iter().find(|l| l.contains(secret)) {
            panic!("日志泄露了密钥：{line}");
        }
    }
    // 再宽一点：任何日志行都不应出现金丝雀标记
    if let Some(line) = lines.iter().find(|l| l.contains("LEAKCANARY")) {
        panic!("日志中出现了密钥片段：{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 调试日志下跑完各种流量_日志中没有任何密钥明文() {
    // 与 chatnexus::logging::init 相同的包装，只是内层换成捕获器
    log::set_boxed_logger(Box::new(Redacting::new(ToCapture)))
        .expect("本测试二进制里只装这一个日志器");
    log::set_max_level(LevelFilter::Trace);
    let master = MasterKey::generate();
    let master_b64 = master.to_base64().to_string();
    let (gateway, config) = 启动(&master, &master_b64);
    let url = gateway.url(CHAT_PATH);
    let client = reqwest::Client::new();
    正常流量(&client, &url).await;
    错误流量(&client, &url).await;
    签名流量(&client, gateway).await;
    // 访问日志在响应写完之后才记，稍等片刻
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 配置加载失败的错误消息同样不含明文
    let wrong_master = MasterKey::generate().to_base64().to_string();
    let err = config
        .build(|var| (var == MASTER_KEY_ENV).then(|| wrong_master.clone()))
        .expect_err("主密钥不对必须失败")
        .to_string();

    断言日志干净(&err, &master_b64);
}
