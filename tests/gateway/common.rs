//! 集成测试公用：在进程内启动网关与多个模拟上游（全部监听 127.0.0.1 的空闲端口）。

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use once_cell::sync::Lazy;
use pingora::server::Server;

use chatnexus::config;
use chatnexus::mock::{mock_service, Fault, MockSettings, MockStats};
use chatnexus::security::KeyHash;

/// 测试用的客户端密钥。
pub const CLIENT_KEY: &str = "sk-chatnexus-test-client";
/// 测试用的上游密钥（配置为明文 api_key）。
pub const UPSTREAM_KEY: &str = "sk-upstream-secret-密钥不该外泄";
/// 模拟上游的地址前缀（只用回环地址）。
const LOOPBACK: &str = "http://127.0.0.1";
/// 缺少密钥而被停用的上游地址（永远不会被访问）。
const OPENAI_URL: &str = "https://api.openai.com";
/// HTTPS 模拟上游的地址前缀：用主机名访问，走 DNS 缓存、SNI 与证书校验。
const SECURE_URL: &str = "https://localhost";
/// 用 IP 访问 HTTPS 模拟上游：与证书中的主机名不符，必须被拒绝。
const MISMATCH_URL: &str = "https://127.0.0.1";
/// 网关、连不上的上游、HTTPS 上游、指标各占一个端口，其后是各模拟上游的端口。
const FIXED_PORTS: usize = 4;
/// 价目表中 `metered` 模型的输入单价（美元 / 百万 token）。
pub const PRICE_INPUT: f64 = 1.25;
/// 价目表中 `metered` 模型的输出单价。
pub const PRICE_OUTPUT: f64 = 10.0;
/// 价目表中 `metered` 模型的缓存命中单价。
pub const PRICE_CACHED: f64 = 0.125;
/// 模拟上游 provider 行的缺省选项：首字节 1 秒、块间隔 2 秒超时。
const DEFAULT_OPTIONS: &str = "timeouts: { first_byte_ms: 1000, idle_ms: 2000 }";
/// 全局的故障转移设置：连续 3 次失败即熔断，冷却 3 秒起（测试不必久等恢复，又远长于两个相邻请求的间隔）；
/// 延迟估计衰减 1 秒，偶发的调度抖动很快被淡化。
const FAILOVER_SETTINGS: &str = "retry: { max_attempts: 3 }\ncircuit_breaker: { consecutive_failures: 3, cooldown_ms: 3000, max_cooldown_ms: 6000 }\nload_balancing: { latency_decay_ms: 1000 }";
/// 故障转移测试的模型：故障目标在首选层（priority 0），备用目标在下一层，尝试顺序因此确定；
/// 同层的两两组合测试负载均衡与一千个请求零失败。`dead` 与 `probe-dead` 是没有进程监听的端口。
const FAILOVER_MODELS: &[&str] = &[
    "  - { name: pair-refused, targets: [ { provider: dead }, { provider: steady, priority: 1 } ] }",
    "  - { name: pair-500, targets: [ { provider: fo-500 }, { provider: steady, priority: 1 } ] }",
    "  - { name: metered-retry, targets: [ { provider: retry-500 }, { provider: steady, priority: 1 } ] }",
    "  - { name: pair-503, targets: [ { provider: fo-503 }, { provider: steady, priority: 1 } ] }",
    "  - { name: pair-529, targets: [ { provider: fo-529, model: claude-sonnet-4-5, max_tokens: 1024 }, { provider: steady, priority: 1 } ] }",
    "  - { name: pair-429, targets: [ { provider: fo-429 }, { provider: steady, priority: 1 } ] }",
    "  - { name: pair-hang, targets: [ { provider: fo-hang }, { provider: steady, priority: 1 } ] }",
    "  - { name: pair-slow, targets: [ { provider: fo-slow }, { provider: steady, priority: 1 } ] }",
    "  - { name: pair-thinking, targets: [ { provider: fo-thinking }, { provider: steady, priority: 1 } ] }",
    "  - { name: pair-garbage, targets: [ { provider: fo-garbage }, { provider: steady, priority: 1 } ] }",
    "  - { name: pair-drop, targets: [ { provider: fo-drop }, { provider: fo-drop-backup, priority: 1 } ] }",
    "  - { name: pair-retranslate, targets: [ { provider: fo-gem-500, model: gemini-2.5-flash }, { provider: claude, model: claude-sonnet-4-5, max_tokens: 1024, priority: 1 } ] }",
    "  - { name: pair-recover, targets: [ { provider: fo-flaky }, { provider: fo-recover-backup, priority: 1 } ] }",
    "  - { name: pair-2x, targets: [ { provider: fo-fast }, { provider: fo-half } ] }",
    "  - { name: pair-down, targets: [ { provider: dead }, { provider: fo-down-503 } ] }",
    "  - { name: pair-probe, targets: [ { provider: probe-dead }, { provider: steady } ] }",
    "  - { name: pair-mix-refused, targets: [ { provider: dead }, { provider: steady } ] }",
    "  - { name: pair-mix-500, targets: [ { provider: mix-500 }, { provider: steady } ] }",
    "  - { name: pair-mix-garbage, targets: [ { provider: mix-garbage }, { provider: steady } ] }",
    "  - { name: pair-mix-429, targets: [ { provider: mix-429 }, { provider: steady } ] }",
];

/// 模拟上游说的协议，决定测试配置中的 provider 类型。
#[derive(Clone, Copy)]
enum Kind {
    OpenAi,
    OpenAiOfficial,
    Anthropic,
    Gemini,
    Azure,
}

/// 一个模拟上游的名称、协议、行为与网关为它配置的上游密钥。
struct MockSpec {
    name: &'static str,
    kind: Kind,
    settings: MockSettings,
    key: &'static str,
    /// provider 行中的超时与健康检查选项。
    options: &'static str,
}

/// Gemini 模拟器视为无效的上游密钥（返回 400 API_KEY_INVALID）。
pub const INVALID_UPSTREAM_KEY: &str = "invalid-key";

/// 进程内运行的网关与模拟上游。
pub struct TestEnv {
    /// 网关地址。
    pub gateway: SocketAddr,
    /// 按名称索引的模拟上游统计。
    pub mocks: HashMap<&'static str, Arc<MockStats>>,
    /// 一个没有任何进程监听的端口（连接被拒）。
    pub dead_port: u16,
    /// Prometheus 指标的监听地址。
    pub metrics: SocketAddr,
}

impl TestEnv {
    /// 网关接口的完整地址。
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.gateway, path)
    }

    /// 取一个模拟上游的统计。
    pub fn mock(&self, name: &str) -> &MockStats {
        self.mocks
            .get(name)
            .map(Arc::as_ref)
            .unwrap_or_else(|| panic!("没有名为 {name} 的模拟上游"))
    }
}

/// 全部测试共享一个环境（Pingora 的 `Server` 适合每进程一个）。
pub static ENV: Lazy<TestEnv> = Lazy::new(start_env);

/// 用测试的上游密钥与缺省选项描述一个模拟上游。
fn spec(name: &'static str, kind: Kind, settings: MockSettings) -> MockSpec {
    MockSpec {
        name,
        kind,
        settings,
        key: UPSTREAM_KEY,
        options: DEFAULT_OPTIONS,
    }
}

fn mock_specs() -> Vec<MockSpec> {
    let with = |chunks, delay, fault| MockSettings {
        chunks,
        chunk_delay_ms: delay,
        fault,
        ..MockSettings::default()
    };
    let mut specs = vec![
        spec("fast", Kind::OpenAi, with(5, 0, None)),
        spec("paced", Kind::OpenAi, with(5, 20, None)),
        spec("slow", Kind::OpenAi, with(20, 100, None)),
        spec("abandon", Kind::OpenAi, with(50, 100, None)),
        spec("big", Kind::OpenAi, with(1, 0, None)),
        spec("broken", Kind::OpenAi, with(5, 0, Some(Fault::Status(503)))),
        spec("badkey", Kind::OpenAi, with(5, 0, Some(Fault::Status(401)))),
        spec("hang", Kind::OpenAi, with(5, 0, Some(Fault::Hang))),
        spec(
            "dropper",
            Kind::OpenAi,
            with(5, 0, Some(Fault::DropAfter(2))),
        ),
    ];
    specs.extend(translated_specs());
    let metered = MockSettings {
        chunks: 4,
        prompt_tokens: Some(30),
        completion_tokens: Some(12),
        cached_tokens: 10,
        reasoning_tokens: 5,
        ..MockSettings::default()
    };
    specs.push(spec("metered", Kind::OpenAiOfficial, metered.clone()));
    specs.push(spec("metered-exact", Kind::OpenAiOfficial, metered));
    specs.push(spec(
        "metered-slow",
        Kind::OpenAiOfficial,
        with(40, 50, None),
    ));
    specs.extend(failover_specs());
    specs
}

/// 故障转移测试的模拟上游：每种故障一个（测试据各自的记录断言请求确实到过它）。
fn failover_specs() -> Vec<MockSpec> {
    let healthy = MockSettings {
        chunks: 3,
        ..MockSettings::default()
    };
    let delayed = |ms| MockSettings {
        first_byte_delay_ms: ms,
        ..healthy.clone()
    };
    let mut specs = vec![
        spec("steady", Kind::OpenAi, healthy.clone()),
        spec("fo-slow", Kind::OpenAi, delayed(3_000)),
        spec("fo-thinking", Kind::OpenAi, delayed(300)),
        spec("fo-drop-backup", Kind::OpenAi, healthy.clone()),
        spec("fo-recover-backup", Kind::OpenAi, healthy.clone()),
        spec("fo-fast", Kind::OpenAi, delayed(40)),
        spec("fo-half", Kind::OpenAi, delayed(80)),
    ];
    specs.extend(fault_specs());
    specs.extend(timeout_specs(&healthy));
    specs
}

/// 带故障的模拟上游；限流与 503 的 `Retry-After` 为 120 秒，测试期间一直有效。
fn fault_specs() -> Vec<MockSpec> {
    let fault = |f| MockSettings {
        chunks: 3,
        retry_after_secs: 120,
        fault: Some(f),
        ..MockSettings::default()
    };
    vec![
        spec("fo-500", Kind::OpenAi, fault(Fault::Status(500))),
        spec("fo-503", Kind::OpenAi, fault(Fault::Status(503))),
        spec("fo-529", Kind::Anthropic, fault(Fault::Status(529))),
        spec("fo-gem-500", Kind::Gemini, fault(Fault::Status(500))),
        spec("fo-429", Kind::OpenAi, fault(Fault::Status(429))),
        spec("fo-hang", Kind::OpenAi, fault(Fault::Hang)),
        spec("fo-garbage", Kind::OpenAi, fault(Fault::Garbage)),
        spec("fo-drop", Kind::OpenAi, fault(Fault::DropAfter(1))),
        spec("fo-flaky", Kind::OpenAi, fault(Fault::Status(500))),
        spec("fo-down-503", Kind::OpenAi, fault(Fault::Status(503))),
        spec("mix-500", Kind::OpenAi, fault(Fault::Status(500))),
        spec("mix-garbage", Kind::OpenAi, fault(Fault::Garbage)),
        spec("mix-429", Kind::OpenAi, fault(Fault::Status(429))),
        spec("retry-500", Kind::OpenAi, fault(Fault::Status(500))),
    ]
}

/// 超时与主动健康检查用的模拟上游：总时长、块间隔超时各一个，以及一个被定期探测的健康上游。
fn timeout_specs(healthy: &MockSettings) -> Vec<MockSpec> {
    let paced = |delay| MockSettings {
        chunks: 10,
        chunk_delay_ms: delay,
        ..MockSettings::default()
    };
    let with_options = |name, settings, options| MockSpec {
        options,
        ..spec(name, Kind::OpenAi, settings)
    };
    vec![
        with_options(
            "fo-total",
            paced(200),
            "timeouts: { first_byte_ms: 1000, idle_ms: 2000, total_ms: 700 }",
        ),
        with_options(
            "fo-idle",
            paced(1_500),
            "timeouts: { first_byte_ms: 1000, idle_ms: 300 }",
        ),
        with_options(
            "fo-probed",
            healthy.clone(),
            "timeouts: { first_byte_ms: 1000, idle_ms: 2000 }, health_check: { path: /v1/models, interval_ms: 200, timeout_ms: 200 }",
        ),
    ]
}

/// 说 Anthropic、Gemini、Azure 协议的模拟上游：正常（带缓存与推理用量）、限流或过载、流中断开。
fn translated_specs() -> Vec<MockSpec> {
    let fault = |f| MockSettings {
        fault: Some(f),
        ..MockSettings::default()
    };
    let usage = MockSettings {
        chunks: 4,
        prompt_tokens: Some(30),
        completion_tokens: Some(12),
        cached_tokens: 10,
        reasoning_tokens: 5,
        ..MockSettings::default()
    };
    vec![
        spec("claude", Kind::Anthropic, usage.clone()),
        spec("claude-529", Kind::Anthropic, fault(Fault::Status(529))),
        spec("claude-drop", Kind::Anthropic, fault(Fault::DropAfter(2))),
        spec("gem", Kind::Gemini, usage.clone()),
        spec("gem-429", Kind::Gemini, fault(Fault::Status(429))),
        spec("gem-drop", Kind::Gemini, fault(Fault::DropAfter(2))),
        MockSpec {
            key: INVALID_UPSTREAM_KEY,
            ..spec("gem-badkey", Kind::Gemini, MockSettings::default())
        },
        spec("az", Kind::Azure, usage),
        spec("az-429", Kind::Azure, fault(Fault::Status(429))),
    ]
}

/// 一个模拟上游在配置中的 provider 行。
fn provider_line(spec: &MockSpec, port: u16) -> String {
    let (name, key, options) = (spec.name, spec.key, spec.options);
    let (kind, url, extra) = match spec.kind {
        Kind::OpenAi => ("openai_compatible", format!("{LOOPBACK}:{port}/v1"), ""),
        Kind::OpenAiOfficial => ("openai", format!("{LOOPBACK}:{port}/v1"), ""),
        Kind::Anthropic => ("anthropic", format!("{LOOPBACK}:{port}"), ""),
        Kind::Gemini => ("gemini", format!("{LOOPBACK}:{port}"), ""),
        Kind::Azure => (
            "azure",
            format!("{LOOPBACK}:{port}"),
            ", api_version: \"2024-10-21\"",
        ),
    };
    format!("  - {{ name: {name}, kind: {kind}, base_url: \"{url}\", api_key: \"{key}\", {options}{extra} }}")
}

/// 一个模拟上游对应的模型行（模型名与上游同名）。
fn model_line(spec: &MockSpec) -> String {
    let name = spec.name;
    let target = match spec.kind {
        Kind::OpenAi | Kind::OpenAiOfficial => String::new(),
        Kind::Anthropic => ", model: claude-sonnet-4-5, max_tokens: 1024".to_string(),
        Kind::Gemini => ", model: gemini-2.5-flash".to_string(),
        Kind::Azure => ", deployment: gpt-4o-prod".to_string(),
    };
    format!("  - {{ name: {name}, targets: [ {{ provider: {name}{target} }} ] }}")
}

/// 测试环境用到的端口与证书。
struct Layout {
    gateway: u16,
    mocks: Vec<(MockSpec, u16)>,
    dead: u16,
    secure: u16,
    metrics: u16,
    ca_file: String,
}

/// 生成测试配置：每个模拟上游一个 provider 与一个同名模型，外加连不上的、缺密钥的和 HTTPS 的上游。
fn config_yaml(layout: &Layout) -> String {
    let client = KeyHash::of(CLIENT_KEY).to_hex();
    let disabled = KeyHash::of("sk-disabled").to_hex();
    let (gateway, ca_file, metrics) = (layout.gateway, &layout.ca_file, layout.metrics);
    let mut lines = vec![
        format!("server: {{ listen: \"127.0.0.1:{gateway}\", threads: 2, ca_file: \"{ca_file}\", metrics_listen: \"127.0.0.1:{metrics}\" }}"),
        format!("auth: {{ keys: [ {{ name: 测试团队, sha256: \"{client}\" }}, {{ name: 停用, sha256: \"{disabled}\", disabled: true }} ] }}"),
        FAILOVER_SETTINGS.to_string(),
        "providers:".to_string(),
    ];
    lines.extend(
        layout
            .mocks
            .iter()
            .map(|(spec, port)| provider_line(spec, *port)),
    );
    let (dead, secure) = (layout.dead, layout.secure);
    lines.push(format!(
        "  - {{ name: dead, kind: openai_compatible, base_url: \"{LOOPBACK}:{dead}\" }}"
    ));
    lines.push(format!("  - {{ name: probe-dead, kind: openai_compatible, base_url: \"{LOOPBACK}:{dead}\", health_check: {{ path: /v1/models, interval_ms: 200, timeout_ms: 200 }} }}"));
    lines.push(format!("  - {{ name: nokey, kind: openai, base_url: \"{OPENAI_URL}\", api_key_env: CHATNEXUS_TEST_UNSET_KEY }}"));
    lines.push(format!(
        "  - {{ name: secure, kind: openai_compatible, base_url: \"{SECURE_URL}:{secure}\" }}"
    ));
    lines.push(format!(
        "  - {{ name: mismatch, kind: openai_compatible, base_url: \"{MISMATCH_URL}:{secure}\" }}"
    ));
    lines.push("models:".to_string());
    lines.extend(layout.mocks.iter().map(|(spec, _)| model_line(spec)));
    for name in ["dead", "nokey", "secure", "mismatch"] {
        lines.push(format!(
            "  - {{ name: {name}, targets: [ {{ provider: {name} }} ] }}"
        ));
    }
    lines.push(
        "  - { name: 改名, targets: [ { provider: fast, model: upstream-model } ] }".to_string(),
    );
    lines.extend(FAILOVER_MODELS.iter().map(|line| line.to_string()));
    lines.push("pricing:".to_string());
    for model in ["metered", "metered-exact"] {
        lines.push(format!("  - {{ model: {model}, input: {PRICE_INPUT}, output: {PRICE_OUTPUT}, cached: {PRICE_CACHED} }}"));
    }
    lines.join("\n")
}

/// 测试用的证书文件：现场签发的 CA 与由它签发的 `localhost` 证书。
struct TestTls {
    ca: String,
    cert: String,
    key: String,
}

impl TestTls {
    /// 签发证书并写入临时目录（每个测试进程一份）。
    fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("chatnexus-test-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("创建证书目录");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA 参数");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("生成 CA 私钥");
        let ca = ca_params.self_signed(&ca_key).expect("签发 CA");
        let leaf_key = KeyPair::generate().expect("生成服务端私钥");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("服务端证书参数")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("签发服务端证书");
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("写证书文件");
            path.display().to_string()
        };
        TestTls {
            ca: write("ca.pem", ca.pem()),
            cert: write("leaf.pem", leaf.pem()),
            key: write("leaf.key", leaf_key.serialize_pem()),
        }
    }
}

fn start_env() -> TestEnv {
    let _ = env_logger::builder().is_test(true).try_init();
    let tls = TestTls::generate();
    let specs = mock_specs();
    let ports = crate::support::free_ports(FIXED_PORTS + specs.len());
    let layout = Layout {
        gateway: ports[0],
        mocks: specs
            .into_iter()
            .zip(ports[FIXED_PORTS..].iter().copied())
            .collect(),
        dead: ports[1],
        secure: ports[2],
        metrics: ports[3],
        ca_file: tls.ca.clone(),
    };
    let yaml = config_yaml(&layout);
    let cfg = config::build(config::parse(&yaml).expect("测试配置必须能解析"), |_| None)
        .expect("测试配置必须通过校验");
    let mut server = chatnexus::server::build(cfg, None, None);
    let mocks = add_mocks(&mut server, &layout, &tls);
    crate::support::spawn(server);
    let gateway: SocketAddr = ([127, 0, 0, 1], layout.gateway).into();
    crate::support::wait_ready(gateway);
    for port in layout
        .mocks
        .iter()
        .map(|(_, port)| *port)
        .chain([layout.secure])
    {
        crate::support::wait_ready(([127, 0, 0, 1], port).into());
    }
    TestEnv {
        gateway,
        mocks,
        dead_port: layout.dead,
        metrics: ([127, 0, 0, 1], layout.metrics).into(),
    }
}

/// 把全部模拟上游（含 HTTPS 的那个）加入同一个 `Server`，返回按名称索引的统计。
fn add_mocks(
    server: &mut Server,
    layout: &Layout,
    tls: &TestTls,
) -> HashMap<&'static str, Arc<MockStats>> {
    let mut mocks = HashMap::new();
    for (spec, port) in &layout.mocks {
        let (mut service, stats) = mock_service(spec.settings.clone());
        service.add_tcp(&format!("127.0.0.1:{port}"));
        server.add_service(service);
        mocks.insert(spec.name, stats);
    }
    let (mut secure, stats) = mock_service(MockSettings::default());
    secure
        .add_tls(&format!("127.0.0.1:{}", layout.secure), &tls.cert, &tls.key)
        .expect("HTTPS 模拟上游必须能加载测试证书");
    server.add_service(secure);
    mocks.insert("secure", stats);
    mocks
}

/// 构造聊天请求体。
pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [ { "role": "user", "content": "你好，请介绍一下你自己" } ],
    })
}

/// 用客户端密钥发送一个聊天请求。
pub async fn send_chat(model: &str, stream: bool) -> reqwest::Response {
    let client = reqwest::Client::new();
    authed(&client, ENV.url("/v1/chat/completions"))
        .json(&chat_body(model, stream))
        .send()
        .await
        .expect("请求失败")
}

/// 响应的内容类型（没有时为空串）。
pub fn content_type(resp: &reqwest::Response) -> &str {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// 发送请求并把响应体解析为 JSON。
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    let resp = request.send().await.expect("请求失败");
    resp.json().await.expect("响应必须是 JSON")
}

/// 带客户端密钥的 HTTP 客户端请求。
pub fn authed(client: &reqwest::Client, url: String) -> reqwest::RequestBuilder {
    client.post(url).bearer_auth(CLIENT_KEY)
}

/// 解析 SSE 文本中的全部 `data:` 负载。
pub fn sse_payloads(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// 拼接流式块中的全部 `delta.content`。
pub fn stream_content(payloads: &[String]) -> String {
    payloads
        .iter()
        .filter(|p| p.as_str() != "[DONE]")
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// 请求一个会在流中途断开的模型，断言：HTTP 200、恰好一个错误事件且在最后、没有 `[DONE]`、
/// 没有伪造的结束原因；返回该错误对象。
pub async fn expect_stream_cut(model: &str) -> serde_json::Value {
    let resp = send_chat(model, true).await;
    assert_eq!(resp.status(), 200, "断开前响应头已经发出");
    let text = resp.text().await.expect("流必须干净地结束");
    let payloads = sse_payloads(&text);
    assert!(
        !payloads.iter().any(|p| p == "[DONE]"),
        "出错的流不能发 [DONE]：{text}"
    );
    let errors = payloads.iter().filter(|p| p.contains("\"error\"")).count();
    assert_eq!(errors, 1, "只能有一个错误事件：{text}");
    assert!(
        !text.contains("\"finish_reason\":\""),
        "断开的流不能伪造结束原因：{text}"
    );
    let last: serde_json::Value = serde_json::from_str(payloads.last().expect("至少一个事件"))
        .expect("最后一个事件必须是 JSON");
    last["error"].clone()
}

pub use crate::support::expect_error;
