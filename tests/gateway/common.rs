//! 集成测试公用：在进程内启动网关与多个模拟上游（全部监听 127.0.0.1 的空闲端口）。

use once_cell::sync::Lazy;

use chatnexus::mock::{Fault, MockSettings, MockStats};

use crate::support::body::chat_body;
use crate::support::config::{
    Breaker, Cache, ClientKey, GatewayConfig, Model, Price, Provider, ProviderKind, Target,
    Timeouts,
};
use crate::support::gateway::{Emulators, Gateway, Launch, LOOPBACK_HTTP};
use crate::support::header;

/// 测试用的客户端密钥。
pub const CLIENT_KEY: &str = "sk-chatnexus-test-client";
/// 测试用的上游密钥（配置为明文 api_key）。
pub const UPSTREAM_KEY: &str = "sk-upstream-secret-密钥不该外泄";
/// 缺少密钥而被停用的上游地址（永远不会被访问）。
const OPENAI_URL: &str = "https://api.openai.com";
/// HTTPS 模拟上游的地址前缀：用主机名访问，走 DNS 缓存、SNI 与证书校验。
const SECURE_URL: &str = "https://localhost";
/// 用 IP 访问 HTTPS 模拟上游：与证书中的主机名不符，必须被拒绝。
const MISMATCH_URL: &str = "https://127.0.0.1";
/// 价目表中 `metered` 模型的输入单价（美元 / 百万 token）。
pub const PRICE_INPUT: f64 = 1.25;
/// 价目表中 `metered` 模型的输出单价。
pub const PRICE_OUTPUT: f64 = 10.0;
/// 价目表中 `metered` 模型的缓存命中单价。
pub const PRICE_CACHED: f64 = 0.125;
/// 模拟上游的缺省超时：首字节 1 秒、块间隔 2 秒。
const FIRST_BYTE_MS: u64 = 1000;
/// 模拟上游的缺省块间隔超时。
const IDLE_MS: u64 = 2000;
/// 主动健康检查探测的路径。
const PROBE_PATH: &str = "/v1/models";
/// 主动健康检查的间隔与超时（毫秒）。
const PROBE_MS: u64 = 200;
/// Anthropic 目标的上游模型名。
const CLAUDE_MODEL: &str = "claude-sonnet-4-5";
/// Anthropic 目标的缺省 `max_tokens`。
const CLAUDE_MAX_TOKENS: u64 = 1024;
/// Gemini 目标的上游模型名。
const GEMINI_MODEL: &str = "gemini-2.5-flash";
/// 向量模型在 OpenAI 上的上游模型名（价目表里有它）。
pub const EMBEDDING_MODEL: &str = "text-embedding-3-small";
/// 向量模型每百万输入 token 的价格。
pub const EMBEDDING_PRICE_INPUT: f64 = 0.02;
/// 向量模拟上游报告的输入 token 数。
pub const EMBEDDING_PROMPT_TOKENS: u64 = 9;
/// 向量模型在 Azure 上的部署名。
pub const EMBEDDING_DEPLOYMENT: &str = "emb-prod";
/// 向量模型在 Gemini 上的模型名。
pub const GEMINI_EMBEDDING_MODEL: &str = "text-embedding-004";
/// Azure 目标的部署名。
const AZURE_DEPLOYMENT: &str = "gpt-4o-prod";
/// Azure 的 `api-version`。
const AZURE_API_VERSION: &str = "2024-10-21";
/// 缺密钥的上游读取的环境变量（测试中从不设置）。
const UNSET_KEY_ENV: &str = "CHATNEXUS_TEST_UNSET_KEY";
/// 第二个客户端密钥（缓存按密钥隔离的测试用）。
pub const CACHE_KEY_B: &str = "sk-chatnexus-test-cache-b";
/// `cache-slow-up` 回首字节前的延迟（毫秒）：让同时到达的相同请求都在第一个完成之前到达。
const CACHE_SLOW_FIRST_BYTE_MS: u64 = 300;
/// 响应缓存保存多久（秒）。
const CACHE_TTL_SECS: u64 = 600;
/// `cache-drip` 流出的块数。
const CACHE_DRIP_CHUNKS: usize = 20;
/// `cache-drip` 每块之间的间隔（毫秒）：客户端读到第一块就断开时，流还要一秒才结束。
const CACHE_DRIP_DELAY_MS: u64 = 50;
/// 翻译的流的保活间隔（毫秒）：比 `sluggish` 的块间隔短得多。
const KEEPALIVE_MS: u64 = 250;
/// `sluggish` 模拟上游的块间隔（毫秒）。
const SLUGGISH_DELAY_MS: u64 = 900;
/// 模型 `有上限` 的目标输出上限。
pub const CAPPED_OUTPUT: u64 = 4096;
/// OpenAI 协议上游的路径前缀。
const OPENAI_PATH: &str = "/v1";

/// 一个模拟上游的名称、协议、行为与网关为它配置的上游密钥。
struct MockSpec {
    name: &'static str,
    kind: ProviderKind,
    settings: MockSettings,
    key: &'static str,
    /// provider 的超时设置。
    timeouts: Timeouts,
    /// 是否被主动健康检查定期探测。
    probed: bool,
}

/// Gemini 模拟器视为无效的上游密钥（返回 400 API_KEY_INVALID）。
pub const INVALID_UPSTREAM_KEY: &str = "invalid-key";

/// 进程内运行的网关与模拟上游。
pub struct TestEnv {
    /// 网关（含 Prometheus 指标的监听地址）。
    pub gateway: Gateway,
    /// 按名称索引的模拟上游。
    pub mocks: Emulators,
    /// 一个没有任何进程监听的端口（连接被拒）。
    pub dead_port: u16,
}

impl TestEnv {
    /// 网关接口的完整地址。
    pub fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }

    /// 取一个模拟上游的统计。
    pub fn mock(&self, name: &str) -> &MockStats {
        self.mocks.stats(name)
    }
}

/// 全部测试共享一个环境（Pingora 的 `Server` 适合每进程一个）。
pub static ENV: Lazy<TestEnv> = Lazy::new(start_env);

/// 用测试的上游密钥与缺省超时描述一个模拟上游。
fn spec(name: &'static str, kind: ProviderKind, settings: MockSettings) -> MockSpec {
    MockSpec {
        name,
        kind,
        settings,
        key: UPSTREAM_KEY,
        timeouts: Timeouts::new(FIRST_BYTE_MS, IDLE_MS),
        probed: false,
    }
}

fn mock_specs() -> Vec<MockSpec> {
    use ProviderKind::{OpenAi, OpenAiCompatible};
    let with = |chunks, delay, fault| MockSettings {
        chunks,
        chunk_delay_ms: delay,
        fault,
        ..MockSettings::default()
    };
    let mut specs = vec![
        spec("fast", OpenAiCompatible, with(5, 0, None)),
        spec("paced", OpenAiCompatible, with(5, 20, None)),
        spec("slow", OpenAiCompatible, with(20, 100, None)),
        spec("abandon", OpenAiCompatible, with(50, 100, None)),
        spec("big", OpenAiCompatible, with(1, 0, None)),
        spec(
            "broken",
            OpenAiCompatible,
            with(5, 0, Some(Fault::Status(503))),
        ),
        spec(
            "badkey",
            OpenAiCompatible,
            with(5, 0, Some(Fault::Status(401))),
        ),
        spec("hang", OpenAiCompatible, with(5, 0, Some(Fault::Hang))),
        spec(
            "dropper",
            OpenAiCompatible,
            with(5, 0, Some(Fault::DropAfter(2))),
        ),
    ];
    specs.extend(translated_specs());
    let metered = usage_settings();
    specs.push(spec("metered", OpenAi, metered.clone()));
    specs.push(spec("metered-exact", OpenAi, metered));
    specs.push(spec("metered-slow", OpenAi, with(40, 50, None)));
    specs.push(spec(
        "sluggish",
        OpenAiCompatible,
        with(2, SLUGGISH_DELAY_MS, None),
    ));
    specs.extend(cache_specs());
    specs.extend(failover_specs());
    specs.extend(embedding_specs());
    specs
}

/// 向量测试的模拟上游：每种上游一个（各自的记录只含向量请求），外加限流的、总是 500 的与缓存用的。
fn embedding_specs() -> Vec<MockSpec> {
    use ProviderKind::{Azure, Gemini, OpenAi, OpenAiCompatible};
    let fault = |f| MockSettings {
        retry_after_secs: 7,
        fault: Some(f),
        ..MockSettings::default()
    };
    let metered = MockSettings {
        prompt_tokens: Some(EMBEDDING_PROMPT_TOKENS),
        ..MockSettings::default()
    };
    vec![
        spec("emb-oa", OpenAi, metered.clone()),
        spec("emb-az", Azure, metered.clone()),
        spec("emb-gem", Gemini, MockSettings::default()),
        spec("emb-compat", OpenAiCompatible, metered.clone()),
        spec("emb-cache", OpenAiCompatible, metered),
        spec("emb-429", OpenAiCompatible, fault(Fault::Status(429))),
        spec("emb-500", OpenAiCompatible, fault(Fault::Status(500))),
    ]
}

/// 向量模型：每种上游一个，限流的、故障转移的（500 在首选层）与缓存的。
fn embedding_models() -> Vec<Model> {
    let to = |name, target: Target| Model::embeddings(name).target(target);
    vec![
        to("向量-openai", Target::to("emb-oa").model(EMBEDDING_MODEL)),
        to(
            "向量-azure",
            Target::to("emb-az").deployment(EMBEDDING_DEPLOYMENT),
        ),
        to(
            "向量-gemini",
            Target::to("emb-gem").model(GEMINI_EMBEDDING_MODEL),
        ),
        to("向量-兼容", Target::to("emb-compat")),
        to("向量-缓存", Target::to("emb-cache")),
        to("向量-429", Target::to("emb-429")),
        Model::embeddings("向量-转移")
            .target(Target::to("emb-500"))
            .target(Target::to("emb-compat").priority(1)),
    ]
}

/// 响应缓存测试的模拟上游：正常、回首字节前慢（同时到达的相同请求要合并）、总是 503，
/// 慢慢流出（客户端中途取消）、流到一半断开，以及透传 Messages 的 Anthropic 上游与透传 Responses 的 OpenAI 上游。
fn cache_specs() -> Vec<MockSpec> {
    let quick = MockSettings {
        chunks: 3,
        ..MockSettings::default()
    };
    let slow = MockSettings {
        first_byte_delay_ms: CACHE_SLOW_FIRST_BYTE_MS,
        ..quick.clone()
    };
    let broken = MockSettings {
        fault: Some(Fault::Status(503)),
        ..quick.clone()
    };
    let drip = MockSettings {
        chunks: CACHE_DRIP_CHUNKS,
        chunk_delay_ms: CACHE_DRIP_DELAY_MS,
        ..quick.clone()
    };
    let cut = MockSettings {
        fault: Some(Fault::DropAfter(2)),
        ..quick.clone()
    };
    vec![
        spec("cache-up", ProviderKind::OpenAiCompatible, quick.clone()),
        spec("cache-slow-up", ProviderKind::OpenAiCompatible, slow),
        spec("cache-broken-up", ProviderKind::OpenAiCompatible, broken),
        spec("cache-claude", ProviderKind::Anthropic, quick.clone()),
        spec("cache-oa", ProviderKind::OpenAi, quick),
        spec("cache-drip", ProviderKind::OpenAiCompatible, drip),
        spec("cache-cut", ProviderKind::OpenAiCompatible, cut),
    ]
}

/// 报告缓存与推理用量的模拟上游行为。
fn usage_settings() -> MockSettings {
    MockSettings {
        chunks: 4,
        prompt_tokens: Some(30),
        completion_tokens: Some(12),
        cached_tokens: 10,
        reasoning_tokens: 5,
        ..MockSettings::default()
    }
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
    let openai = |name, settings| spec(name, ProviderKind::OpenAiCompatible, settings);
    let mut specs = vec![
        openai("steady", healthy.clone()),
        openai("fo-slow", delayed(3_000)),
        openai("fo-thinking", delayed(300)),
        openai("fo-drop-backup", healthy.clone()),
        openai("fo-recover-backup", healthy.clone()),
        openai("fo-fast", delayed(40)),
        openai("fo-half", delayed(80)),
    ];
    specs.extend(fault_specs());
    specs.extend(timeout_specs(&healthy));
    specs
}

/// 带故障的模拟上游；限流与 503 的 `Retry-After` 为 120 秒，测试期间一直有效。
fn fault_specs() -> Vec<MockSpec> {
    use ProviderKind::{Anthropic, Gemini, OpenAiCompatible};
    let fault = |f| MockSettings {
        chunks: 3,
        retry_after_secs: 120,
        fault: Some(f),
        ..MockSettings::default()
    };
    vec![
        spec("fo-500", OpenAiCompatible, fault(Fault::Status(500))),
        spec("fo-503", OpenAiCompatible, fault(Fault::Status(503))),
        spec("fo-529", Anthropic, fault(Fault::Status(529))),
        spec("fo-gem-500", Gemini, fault(Fault::Status(500))),
        spec("fo-429", OpenAiCompatible, fault(Fault::Status(429))),
        spec("fo-hang", OpenAiCompatible, fault(Fault::Hang)),
        spec("fo-garbage", OpenAiCompatible, fault(Fault::Garbage)),
        spec("fo-drop", OpenAiCompatible, fault(Fault::DropAfter(1))),
        spec("fo-flaky", OpenAiCompatible, fault(Fault::Status(500))),
        spec("fo-down-503", OpenAiCompatible, fault(Fault::Status(503))),
        spec("mix-500", OpenAiCompatible, fault(Fault::Status(500))),
        spec("mix-garbage", OpenAiCompatible, fault(Fault::Garbage)),
        spec("mix-429", OpenAiCompatible, fault(Fault::Status(429))),
        spec("retry-500", OpenAiCompatible, fault(Fault::Status(500))),
        spec("only-429", OpenAiCompatible, fault(Fault::Status(429))),
        spec(
            "huge-429",
            OpenAiCompatible,
            MockSettings {
                retry_after_secs: u64::MAX,
                ..fault(Fault::Status(429))
            },
        ),
    ]
}

/// 超时与主动健康检查用的模拟上游：总时长、块间隔超时各一个，以及一个被定期探测的健康上游。
fn timeout_specs(healthy: &MockSettings) -> Vec<MockSpec> {
    let paced = |delay| MockSettings {
        chunks: 10,
        chunk_delay_ms: delay,
        ..MockSettings::default()
    };
    let with_timeouts = |name, settings, timeouts| MockSpec {
        timeouts,
        ..spec(name, ProviderKind::OpenAiCompatible, settings)
    };
    vec![
        with_timeouts(
            "fo-total",
            paced(200),
            Timeouts::new(FIRST_BYTE_MS, IDLE_MS).total_ms(700),
        ),
        with_timeouts("fo-idle", paced(1_500), Timeouts::new(FIRST_BYTE_MS, 300)),
        MockSpec {
            probed: true,
            ..spec("fo-probed", ProviderKind::OpenAiCompatible, healthy.clone())
        },
    ]
}

/// 说 Anthropic、Gemini、Azure 协议的模拟上游：正常（带缓存与推理用量）、限流或过载、流中断开。
fn translated_specs() -> Vec<MockSpec> {
    use ProviderKind::{Anthropic, Azure, Gemini};
    let fault = |f| MockSettings {
        fault: Some(f),
        ..MockSettings::default()
    };
    let usage = usage_settings();
    vec![
        spec("claude", Anthropic, usage.clone()),
        spec("claude-metered", Anthropic, usage.clone()),
        spec("claude-trio", Anthropic, usage.clone()),
        spec("oa-resp", ProviderKind::OpenAi, usage.clone()),
        spec(
            "oa-resp-drop",
            ProviderKind::OpenAi,
            fault(Fault::DropAfter(2)),
        ),
        spec("claude-529", Anthropic, fault(Fault::Status(529))),
        spec("claude-drop", Anthropic, fault(Fault::DropAfter(2))),
        spec("gem", Gemini, usage.clone()),
        spec("gem-429", Gemini, fault(Fault::Status(429))),
        spec("gem-drop", Gemini, fault(Fault::DropAfter(2))),
        MockSpec {
            key: INVALID_UPSTREAM_KEY,
            ..spec("gem-badkey", Gemini, MockSettings::default())
        },
        spec("az", Azure, usage),
        spec("az-429", Azure, fault(Fault::Status(429))),
        spec("inband-claude", Anthropic, fault(Fault::ErrorAfter(1))),
        spec("inband-gem", Gemini, fault(Fault::ErrorAfter(1))),
        spec("inband-az", Azure, fault(Fault::ErrorAfter(1))),
        spec(
            "inband-openai",
            ProviderKind::OpenAiCompatible,
            fault(Fault::ErrorAfter(1)),
        ),
    ]
}

/// 一个模拟上游在配置中的 provider：OpenAI 协议的地址带 `/v1`，Azure 带 `api_version`。
fn provider_for(spec: &MockSpec, url: &str) -> Provider {
    let base = match spec.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => format!("{url}{OPENAI_PATH}"),
        _ => url.to_string(),
    };
    let mut provider = Provider::new(spec.name, spec.kind, &base)
        .api_key(spec.key)
        .timeouts(spec.timeouts);
    if spec.kind == ProviderKind::Azure {
        provider = provider.api_version(AZURE_API_VERSION);
    }
    if spec.probed {
        provider = provider.health_check(PROBE_PATH, PROBE_MS, PROBE_MS);
    }
    provider
}

/// 说 Anthropic 协议、发给 Claude 的目标。
fn claude(provider: &str) -> Target {
    Target::to(provider)
        .model(CLAUDE_MODEL)
        .max_tokens(CLAUDE_MAX_TOKENS)
}

/// 一个模拟上游对应的模型（模型名与上游同名）。
fn model_for(spec: &MockSpec) -> Model {
    let target = match spec.kind {
        ProviderKind::Anthropic => claude(spec.name),
        ProviderKind::Gemini => Target::to(spec.name).model(GEMINI_MODEL),
        ProviderKind::Azure => Target::to(spec.name).deployment(AZURE_DEPLOYMENT),
        _ => Target::to(spec.name),
    };
    Model::new(spec.name).target(target)
}

/// 故障转移测试的模型：故障目标在首选层（priority 0），备用目标在下一层，尝试顺序因此确定；
/// 同层的两两组合测试负载均衡与一千个请求零失败。`dead` 与 `probe-dead` 是没有进程监听的端口。
fn failover_models() -> Vec<Model> {
    let tiered = |name, first: Target, backup: Target| {
        Model::new(name).target(first).target(backup.priority(1))
    };
    let to_steady = |name, first| tiered(name, Target::to(first), Target::to("steady"));
    let level = |name, a, b| Model::new(name).target(Target::to(a)).target(Target::to(b));
    vec![
        to_steady("pair-refused", "dead"),
        to_steady("pair-500", "fo-500"),
        to_steady("metered-retry", "retry-500"),
        to_steady("pair-503", "fo-503"),
        tiered("pair-529", claude("fo-529"), Target::to("steady")),
        to_steady("pair-429", "fo-429"),
        to_steady("pair-hang", "fo-hang"),
        to_steady("pair-slow", "fo-slow"),
        to_steady("pair-thinking", "fo-thinking"),
        to_steady("pair-garbage", "fo-garbage"),
        tiered(
            "pair-drop",
            Target::to("fo-drop"),
            Target::to("fo-drop-backup"),
        ),
        tiered(
            "pair-retranslate",
            Target::to("fo-gem-500").model(GEMINI_MODEL),
            claude("claude"),
        ),
        tiered(
            "pair-recover",
            Target::to("fo-flaky"),
            Target::to("fo-recover-backup"),
        ),
        level("pair-2x", "fo-fast", "fo-half"),
        level("pair-down", "dead", "fo-down-503"),
        level("pair-probe", "probe-dead", "steady"),
        level("pair-mix-refused", "dead", "steady"),
        level("pair-mix-500", "mix-500", "steady"),
        level("pair-mix-garbage", "mix-garbage", "steady"),
        level("pair-mix-429", "mix-429", "steady"),
    ]
}

/// 网关的公共部分：客户端密钥、全局的故障转移设置与价目表。
///
/// 故障转移：连续 3 次失败即熔断，冷却 3 秒起（测试不必久等恢复，又远长于两个相邻请求的间隔）；
/// 延迟估计衰减 1 秒，偶发的调度抖动很快被淡化。
fn base_config(ca_file: &str) -> GatewayConfig {
    let mut config = GatewayConfig::on_loopback()
        .with_metrics()
        .ca_file(ca_file)
        .key(ClientKey::new("测试团队", CLIENT_KEY))
        .key(ClientKey::new("停用", "sk-disabled").disabled())
        .retry(3)
        .circuit_breaker(Breaker {
            consecutive_failures: Some(3),
            cooldown_ms: Some(3000),
            max_cooldown_ms: Some(6000),
            ..Breaker::default()
        })
        .latency_decay_ms(1000)
        .stream_keepalive_ms(KEEPALIVE_MS)
        .key(ClientKey::new("缓存乙", CACHE_KEY_B))
        .cache(Cache {
            backend: "local".to_string(),
            ttl_seconds: CACHE_TTL_SECS,
            models: [
                "cache-fast",
                "cache-broken",
                "cache-slow",
                "cache-claude",
                "cache-oa",
                "cache-drip",
                "cache-cut",
                "向量-缓存",
            ]
            .map(String::from)
            .to_vec(),
        });
    config = config.price(Price {
        model: EMBEDDING_MODEL.to_string(),
        input: EMBEDDING_PRICE_INPUT,
        output: 0.0,
        cached: 0.0,
    });
    for model in ["metered", "metered-exact"] {
        config = config.price(Price {
            model: model.to_string(),
            input: PRICE_INPUT,
            output: PRICE_OUTPUT,
            cached: PRICE_CACHED,
        });
    }
    config
}

/// 没有模拟上游对应的那几个上游：连不上的、被探测的连不上的、缺密钥的、HTTPS 的与主机名不符的。
fn special_providers(dead: u16, secure: u16) -> Vec<Provider> {
    let compatible = |name, url: String| Provider::new(name, ProviderKind::OpenAiCompatible, &url);
    vec![
        compatible("dead", format!("{LOOPBACK_HTTP}:{dead}")),
        compatible("probe-dead", format!("{LOOPBACK_HTTP}:{dead}"))
            .health_check(PROBE_PATH, PROBE_MS, PROBE_MS),
        Provider::new("nokey", ProviderKind::OpenAi, OPENAI_URL).api_key_env(UNSET_KEY_ENV),
        compatible("secure", format!("{SECURE_URL}:{secure}")),
        compatible("mismatch", format!("{MISMATCH_URL}:{secure}")),
    ]
}

/// 生成测试配置并启动：每个模拟上游一个 provider 与一个同名模型，外加连不上的、缺密钥的和 HTTPS 的上游。
fn start_env() -> TestEnv {
    let _ = env_logger::builder().is_test(true).try_init();
    let tls = TestTls::generate();
    let mut mocks = Emulators::default();
    let mut config = base_config(&tls.ca);
    let specs = mock_specs();
    for spec in &specs {
        let url = mocks.add(spec.name, spec.settings.clone());
        config = config.provider(provider_for(spec, &url));
    }
    let dead_port = crate::support::free_port();
    let secure = mocks.add_tls("secure", MockSettings::default(), &tls.cert, &tls.key);
    for provider in special_providers(dead_port, secure) {
        config = config.provider(provider);
    }
    for model in specs.iter().map(model_for) {
        config = config.model(model);
    }
    for name in ["dead", "nokey", "secure", "mismatch"] {
        config = config.model(Model::direct(name));
    }
    config = config.model(Model::new("改名").target(Target::to("fast").model("upstream-model")));
    config = config
        .model(Model::new("有上限").target(Target::to("fast").max_output_tokens(CAPPED_OUTPUT)));
    config = config
        .model(Model::new("cache-fast").target(Target::to("cache-up")))
        .model(Model::new("cache-broken").target(Target::to("cache-broken-up")))
        .model(Model::new("cache-slow").target(Target::to("cache-slow-up")));
    for model in failover_models().into_iter().chain(embedding_models()) {
        config = config.model(model);
    }
    let gateway = Launch::new(config).emulators(&mut mocks).start();
    TestEnv {
        gateway,
        mocks,
        dead_port,
    }
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

/// 用客户端密钥发送一个聊天请求。
pub async fn send_chat(model: &str, stream: bool) -> reqwest::Response {
    let client = reqwest::Client::new();
    authed(&client, ENV.url("/v1/chat/completions"))
        .json(&chat_body(model, stream))
        .send()
        .await
        .expect("请求失败")
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

/// 在请求上附上 JSON 请求体的内容类型与原始请求体并发送。
///
/// 参数：`request` 为已设置好地址与认证头的请求；`body` 为原样发送的请求体（可以不是合法 JSON）。
pub async fn send_raw(request: reqwest::RequestBuilder, body: String) -> reqwest::Response {
    request
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("请求失败")
}

/// 解析带事件名的 SSE 文本（Anthropic 与 Responses 事件流）：每个事件的 `event:` 名与 `data:` JSON
/// （没有事件名的事件记为空名，data 不是 JSON 时记为 null）。
pub fn sse_events(text: &str) -> Vec<(String, serde_json::Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            let value = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
            (name, value)
        })
        .collect()
}

/// 断言响应是 200 的事件流，读出全部带名字的事件（见 [`sse_events`]）。
pub async fn read_sse_events(resp: reqwest::Response) -> Vec<(String, serde_json::Value)> {
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    sse_events(&resp.text().await.expect("读取流"))
}

/// 模拟上游 `mock` 最近收到的、请求体含 `marker` 的请求。
pub fn upstream_request(mock: &str, marker: &str) -> chatnexus::mock::Recorded {
    ENV.mock(mock)
        .recent()
        .into_iter()
        .rev()
        .find(|r| String::from_utf8_lossy(&r.body).contains(marker))
        .expect("模拟上游应收到这个请求")
}

pub use crate::support::expect_error;
