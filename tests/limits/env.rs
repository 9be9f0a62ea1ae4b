//! 限流测试的环境：一组模拟上游（整个测试进程共用）与按需启动的网关实例。

use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use chatnexus::mock::{Fault, MockSettings};

use crate::support::body::chat_body;
use crate::support::config::{
    Breaker, Cache, ClientKey, GatewayConfig, Limits, Model, Price, Provider, ProviderKind,
    RateLimits, Redis, Target, Timeouts,
};
use crate::support::gateway::{Emulators, Gateway, Launch};
use crate::support::header;

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
/// 可缓存的慢上游 `cache-slow` 的首字节延迟（毫秒）：同时到达的相同请求在领头的请求结束之前全部到达。
const CACHE_SLOW_FIRST_BYTE_MS: u64 = 500;
/// 可缓存的慢模型（直连同名的模拟上游）。
pub const CACHE_SLOW_MODEL: &str = "cache-slow";
/// 共享 Redis 的命令超时（毫秒）。
const REDIS_TIMEOUT_MS: u64 = 2000;
/// OpenAI 协议上游的路径前缀。
const OPENAI_PATH: &str = "/v1";
/// 名为 `甲` 的密钥每分钟的请求数覆盖。
const FIRST_KEY_REQUESTS: u64 = 3;
/// 模型 `cheap` 每分钟的请求数覆盖。
const CHEAP_MODEL_REQUESTS: u64 = 2;

/// 响应缓存的 Redis 后端名。
const CACHE_BACKEND_REDIS: &str = "redis";
/// 响应缓存保存多久（秒）。
const CACHE_TTL_SECS: u64 = 600;

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

/// 整个测试进程共用的模拟上游（单独运行，各网关实例共用）。
pub static MOCKS: Lazy<Emulators> = Lazy::new(start_mocks);

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
    let cache_slow = MockSettings {
        first_byte_delay_ms: CACHE_SLOW_FIRST_BYTE_MS,
        ..fast.clone()
    };
    vec![
        ("fast", fast.clone()),
        (CACHE_SLOW_MODEL, cache_slow),
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

fn start_mocks() -> Emulators {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut mocks = Emulators::default();
    for (name, settings) in mock_specs() {
        mocks.add(name, settings);
    }
    mocks.run_alone();
    mocks
}

/// 一个模拟上游对应的 provider：首字节 10 秒、块间隔 5 秒超时。
fn provider(name: &str) -> Provider {
    let url = format!("{}{OPENAI_PATH}", MOCKS.url(name));
    Provider::new(name, ProviderKind::OpenAiCompatible, &url).timeouts(Timeouts::new(10_000, 5_000))
}

/// 网关配置：客户端密钥、上游与模型固定；熔断实际上关闭，自适应并发每 200 毫秒评估一次。
fn gateway_config() -> GatewayConfig {
    let mut config = GatewayConfig::on_loopback();
    for (name, plaintext) in KEYS {
        let key = ClientKey::new(name, plaintext);
        config = config.key(match *name {
            "甲" => key.limits(Limits::requests(FIRST_KEY_REQUESTS)),
            _ => key,
        });
    }
    config
        .circuit_breaker(Breaker {
            consecutive_failures: Some(1000),
            failure_ratio: Some(1.0),
            min_requests: Some(1000),
            ..Breaker::default()
        })
        .adaptive_limits(200, 5)
        .provider(provider("fast"))
        .provider(provider("backup"))
        .provider(provider("stream"))
        .provider(provider("slow-a").concurrency(2, 1))
        .provider(provider("slow-b").concurrency(1, 1))
        .provider(provider("fails").concurrency(8, 1))
        .provider(provider(CACHE_SLOW_MODEL))
        .model(Model::direct("fast"))
        .model(Model::direct(CACHE_SLOW_MODEL))
        .model(
            Model::new("cheap")
                .target(Target::to("fast"))
                .limits(Limits::requests(CHEAP_MODEL_REQUESTS)),
        )
        .model(Model::direct("stream"))
        .model(
            Model::new("shed")
                .target(Target::to("slow-a"))
                .target(Target::to("backup").priority(1)),
        )
        .model(Model::new("lone").target(Target::to("slow-b")))
        .model(Model::direct("fails"))
}

/// 启动一个网关实例：`redis` 与 `limits` 为追加的 `redis`、`rate_limits` 段（没有则不写）。
pub fn start_gateway(redis: Option<Redis>, limits: Option<RateLimits>) -> Gateway {
    let mut config = gateway_config();
    if let Some(redis) = redis {
        config = config.redis(redis);
    }
    if let Some(limits) = limits {
        config = config.rate_limits(limits);
    }
    Launch::new(config).start()
}

/// 一个使用共享 Redis（`REDIS_URL`）的网关及其 Redis 键前缀。
pub struct RedisGateway {
    /// 网关。
    pub gateway: Gateway,
    /// 该网关使用的 Redis 键前缀（每个测试文件不同）。
    pub prefix: String,
}

impl RedisGateway {
    /// 启动一个使用共享 Redis 的网关：`name` 用于键前缀，`limits` 为 `rate_limits` 段。
    pub fn start(name: &str, limits: RateLimits) -> Self {
        let prefix = crate::support::unique_prefix(name);
        let redis = single_redis(&crate::support::redis_url(), &prefix);
        RedisGateway {
            gateway: start_gateway(Some(redis), Some(limits)),
            prefix,
        }
    }

    /// 该网关某一层某个主体在 Redis 中的计数（`field` 为 `r` 请求数或 `t` token 数）。
    pub fn counted(&self, segment: &str, subject: &str, field: &str) -> i64 {
        let key = limiter_key(&self.prefix, segment, subject);
        hash_field(&crate::support::redis_url(), &key, field)
    }
}

/// 启动一个把响应缓存放在 Redis 里的网关（只缓存模型 `fast` 与 `cache-slow`），`limits` 为可选的 `rate_limits` 段。
pub fn start_cached_gateway(redis: Redis, limits: Option<RateLimits>) -> Gateway {
    let cache = Cache {
        backend: CACHE_BACKEND_REDIS.to_string(),
        ttl_seconds: CACHE_TTL_SECS,
        models: vec!["fast".to_string(), CACHE_SLOW_MODEL.to_string()],
    };
    let mut config = gateway_config().redis(redis).cache(cache);
    if let Some(limits) = limits {
        config = config.rate_limits(limits);
    }
    Launch::new(config).start()
}

/// 管理接口测试用的管理令牌（配置里只有它的摘要）。
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// 预算测试里模型 `fast` 的输入与输出单价（美元每百万 token）：每个 token 千分之一美元，金额好算。
pub const FAST_PRICE_PER_MILLION: f64 = 1000.0;

/// 启动一个开着管理接口（令牌为 [`ADMIN_TOKEN`]）、虚拟密钥存在 `redis` 里的网关；模型 `fast` 与 `stream` 有价格。
pub fn start_admin_gateway(redis: Redis) -> Gateway {
    let price = Price {
        model: "fast".to_string(),
        input: FAST_PRICE_PER_MILLION,
        output: FAST_PRICE_PER_MILLION,
        cached: FAST_PRICE_PER_MILLION,
    };
    // 模型 `stream`（50 块、每块 100 毫秒）只有输出价格：切断越线的流的测试按输出算余量
    let stream = Price {
        model: "stream".to_string(),
        input: 0.0,
        output: FAST_PRICE_PER_MILLION,
        cached: 0.0,
    };
    let config = gateway_config()
        .redis(redis)
        .with_admin(ADMIN_TOKEN)
        .price(price)
        .price(stream);
    Launch::new(config).start()
}

/// 启动共享同一个 Redis 的 `count` 个网关实例。
pub fn start_gateways(count: usize, redis: Redis, limits: RateLimits) -> Vec<Gateway> {
    (0..count)
        .map(|_| start_gateway(Some(redis.clone()), Some(limits.clone())))
        .collect()
}

/// `redis` 段：单机，键前缀为 `prefix`。
pub fn single_redis(url: &str, prefix: &str) -> Redis {
    Redis::url(url, REDIS_TIMEOUT_MS).key_prefix(prefix)
}

/// `redis` 段：三主节点集群（`urls` 为逗号分隔的节点），键前缀为 `prefix`。
pub fn cluster_redis(urls: &str, prefix: &str) -> Redis {
    single_redis(urls, prefix).cluster()
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
    gateway: Gateway,
    key: &str,
    ask: Ask<'_>,
) -> reqwest::Response {
    let mut body = chat_body(ask.model, ask.stream);
    body["max_tokens"] = ask.max_tokens.into();
    let mut request = client
        .post(gateway.url(CHAT_PATH))
        .bearer_auth(key)
        .json(&body);
    if let Some(forwarded) = ask.forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.expect("请求必须送达网关")
}

/// 限流键：`{<前缀>rl}:<层>:<主体>`（与 docs/rate-limiting.md 描述的格式一致）。
pub fn limiter_key(prefix: &str, segment: &str, subject: &str) -> String {
    format!("{{{prefix}rl}}:{segment}:{subject}")
}

/// 连到单机 Redis `url`（测试直接读写网关写下的键）。
pub fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|client| client.get_connection())
        .expect("连接 Redis")
}

/// 读 Redis 字符串键里的整数（没有时为 0）；`url` 为单机地址。
pub fn integer_at(url: &str, key: &str) -> i64 {
    let value: Option<i64> = redis::cmd("GET")
        .arg(key)
        .query(&mut connect(url))
        .expect("GET");
    value.unwrap_or(0)
}

/// 读 Redis 哈希的一个整数字段（没有时为 0）；`url` 为单机地址。
pub fn hash_field(url: &str, key: &str, field: &str) -> i64 {
    let mut conn = connect(url);
    let value: Option<i64> = redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query(&mut conn)
        .expect("HGET");
    value.unwrap_or(0)
}

/// Redis 键还剩的毫秒数（`PTTL`：没有过期时间时为 -1，键不存在时为 -2）；`url` 为单机地址。
pub fn pttl(url: &str, key: &str) -> i64 {
    let mut conn = connect(url);
    redis::cmd("PTTL").arg(key).query(&mut conn).expect("PTTL")
}

/// 数 Redis 里匹配 `pattern` 的键（测试用唯一前缀，`KEYS` 只扫这一个测试的键）；`url` 为单机地址。
pub fn count_keys(url: &str, pattern: &str) -> usize {
    let mut conn = connect(url);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query(&mut conn)
        .expect("KEYS");
    keys.len()
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
