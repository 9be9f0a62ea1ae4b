//! 密钥不进日志：像 `chatnexus` 进程一样安装“脱敏包装 + 日志器”，只是日志器换成记录全部日志
//! （TRACE 级，比 DEBUG 更啰嗦：Pingora 在 TRACE 会打印整个上游请求头）的 `log::Log`；
//! 跑一遍覆盖四种上游协议、流式与非流式、签名与重放、上游拒绝认证、客户端鉴权失败的流量，
//! 再断言捕获的日志里找不到任何上游密钥、签名密钥、客户端密钥或主密钥的明文。
//!
//! 单独一个测试二进制：全局日志器每个进程只能装一次，且必须在网关启动之前装上。

#[path = "support/mod.rs"]
mod support;

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

use chatnexus::config;
use chatnexus::logging::{Redacting, REDACTED};
use chatnexus::mock::{mock_service, Fault, MockSettings};
use chatnexus::security::crypto::{MasterKey, MASTER_KEY_ENV};
use chatnexus::security::signing::{canonical_string, sign};
use chatnexus::security::KeyHash;

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

/// 本机回环地址上的 HTTP 服务前缀。
const LOOPBACK: &str = "http://127.0.0.1";

fn 配置(gateway: u16, mock: u16, rejecting: u16, master: &MasterKey) -> String {
    let base = format!("{LOOPBACK}:{mock}");
    let enc = |name: &str, key: &str| master.encrypt(name, key.as_bytes());
    let [oai, claude, gem, az] = ENCRYPTED_KEYS.map(|(n, k)| enc(n, k));
    let signing = master.encrypt("签名客户端", SIGNING_SECRET.as_bytes());
    let client = KeyHash::of(CLIENT_KEY).to_hex();
    let signed_client = KeyHash::of("sk-cnx-LEAKCANARY-signed-client").to_hex();
    format!(
        r#"server: {{ listen: "127.0.0.1:{gateway}", threads: 2 }}
auth:
  keys:
    - {{ name: 普通客户端, sha256: "{client}" }}
    - {{ name: 签名客户端, sha256: "{signed_client}", require_signature: true, signing_secret_enc: "{signing}" }}
providers:
  - {{ name: oai, kind: openai_compatible, base_url: "{base}/v1", api_key_enc: "{oai}" }}
  - {{ name: claude, kind: anthropic, base_url: "{base}", api_key_enc: "{claude}" }}
  - {{ name: gem, kind: gemini, base_url: "{base}", api_key_enc: "{gem}" }}
  - {{ name: az, kind: azure, base_url: "{base}", api_key_enc: "{az}", api_version: "2024-10-21" }}
  - {{ name: fromenv, kind: openai, base_url: "{base}", api_key_env: LEAK_TEST_KEY }}
  - {{ name: rejecting, kind: openai_compatible, base_url: "{LOOPBACK}:{rejecting}", api_key: "{REJECTED_KEY}" }}
models:
  - {{ name: oai, targets: [ {{ provider: oai }} ] }}
  - {{ name: claude, targets: [ {{ provider: claude, model: claude-sonnet-4-5 }} ] }}
  - {{ name: gem, targets: [ {{ provider: gem, model: gemini-2.5-flash }} ] }}
  - {{ name: az, targets: [ {{ provider: az, deployment: gpt-4o-prod }} ] }}
  - {{ name: fromenv, targets: [ {{ provider: fromenv }} ] }}
  - {{ name: rejecting, targets: [ {{ provider: rejecting }} ] }}
"#
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn body(model: &str, stream: bool) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": model, "stream": stream,
        "messages": [ { "role": "user", "content": "你好" } ],
    }))
    .expect("JSON")
}

/// 本测试用到的三个端口：网关、正常上游、拒绝网关密钥的上游。
struct Ports {
    gateway: u16,
    mock: u16,
    rejecting: u16,
}

/// 用捕获日志的环境启动网关与两个模拟上游。
fn 启动(master: &MasterKey, master_b64: &str) -> Ports {
    let ports = support::free_ports(3);
    let (gateway, mock, rejecting) = (ports[0], ports[1], ports[2]);
    let yaml = 配置(gateway, mock, rejecting, master);
    let env = |var: &str| match var {
        MASTER_KEY_ENV => Some(master_b64.to_string()),
        "LEAK_TEST_KEY" => Some(ENV_KEY.to_string()),
        _ => None,
    };
    let cfg = config::build(config::parse(&yaml).expect("配置可解析"), env).expect("配置可构建");
    // 有人把整个配置打进调试日志，也不能泄露
    log::debug!("运行时配置：{cfg:?}");
    let mut server = chatnexus::server::build(cfg, None, None);
    let (mut ok_mock, _) = mock_service(MockSettings::default());
    ok_mock.add_tcp(&format!("127.0.0.1:{mock}"));
    server.add_service(ok_mock);
    let (mut bad_mock, _) = mock_service(MockSettings {
        fault: Some(Fault::Status(401)),
        ..MockSettings::default()
    });
    bad_mock.add_tcp(&format!("127.0.0.1:{rejecting}"));
    server.add_service(bad_mock);
    support::spawn(server);
    support::wait_ports([gateway, mock, rejecting]);

    Ports {
        gateway,
        mock,
        rejecting,
    }
}

/// 四种上游各发非流式与流式请求，全部应当成功。
async fn 正常流量(client: &reqwest::Client, url: &str) {
    for model in ["oai", "claude", "gem", "az", "fromenv"] {
        for stream in [false, true] {
            let resp = client
                .post(url)
                .bearer_auth(CLIENT_KEY)
                .body(body(model, stream))
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
        .body(body("rejecting", false))
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
        .body(body("oai", false))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 401);
}

/// 签名请求：正确、重放、签名错误。
async fn 签名流量(client: &reqwest::Client, url: &str) {
    // 签名请求：正确、重放、签名错误
    let signed_body = body("oai", false);
    let nonce = format!("leak-test-nonce-{}", now());
    let ts = now().to_string();
    let signature = sign(
        SIGNING_SECRET.as_bytes(),
        &canonical_string("POST", "/v1/chat/completions", &ts, &nonce, &signed_body),
    );
    for (sig, expected) in [
        (signature.clone(), 200),
        (signature.clone(), 401),
        ("0".repeat(64), 401),
    ] {
        let resp = client
            .post(url)
            .bearer_auth("sk-cnx-LEAKCANARY-signed-client")
            .header("x-chatnexus-timestamp", &ts)
            .header("x-chatnexus-nonce", &nonce)
            .header("x-chatnexus-signature", sig)
            .body(signed_body.clone())
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
        "必须捕获到 Pingora 打印上游请求头的 TRACE 日志，且其中的密钥已被隐藏"
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
    let ports = 启动(&master, &master_b64);
    let url = format!("{LOOPBACK}:{}/v1/chat/completions", ports.gateway);
    let client = reqwest::Client::new();
    正常流量(&client, &url).await;
    错误流量(&client, &url).await;
    签名流量(&client, &url).await;
    // 访问日志在响应写完之后才记，稍等片刻
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 配置加载失败的错误消息同样不含明文
    let wrong_master = MasterKey::generate().to_base64().to_string();
    let yaml = 配置(ports.gateway, ports.mock, ports.rejecting, &master);
    let err = config::build(config::parse(&yaml).expect("可解析"), |var| {
        (var == MASTER_KEY_ENV).then(|| wrong_master.clone())
    })
    .expect_err("主密钥不对必须失败")
    .to_string();

    断言日志干净(&err, &master_b64);
}
