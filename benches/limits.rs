//! 限流判定的基准：本地阶段（纳秒级，没有 I/O）与分布式阶段（一次 EVALSHA 往返，微秒级）。
//! 只测量，不断言。分布式阶段需要 `REDIS_URL`（缺省 redis://127.0.0.1:6379）上有 Redis。
//!
//! 运行：cargo bench --bench limits

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use chatnexus::config::{Model, ModelKind, RateLimitSettings, RedisTarget};
use chatnexus::limits::{checks, Check, Limiter, LocalStage, RemoteStage, Subjects};
use chatnexus::security::{Client, KeyHash, Secret};

/// 三层（全局、密钥、IP）各有请求数与 token 上限；上限足够大，基准期间一直放行。
const SETTINGS: &str = "{ global: { requests: 1000000000, tokens_per_minute: 1000000000000 }, per_key: { requests: 1000000000, tokens_per_minute: 1000000000000 }, per_ip: { requests: 1000000000 } }";
/// 每次判定预留的 token 数。
const TOKENS: u64 = 1_100;
/// 没有设置 REDIS_URL 时使用的本机 Redis。
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// 基准用的 Redis 键前缀。
const PREFIX: &str = "chatnexus-bench:";
/// Redis 操作超时。
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// 基准用的客户端 IP。
const CLIENT_IP: &str = "192.0.2.10";

/// 基准的限流设置、客户端与模型。
struct Fixture {
    settings: RateLimitSettings,
    client: Client,
    model: Model,
    ip: IpAddr,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            settings: serde_yaml::from_str(SETTINGS)
                .unwrap_or_else(|e| panic!("基准配置无效：{e}")),
            client: Client::new("基准", KeyHash::of("sk-bench")),
            model: Model {
                name: "演示".into(),
                kind: ModelKind::Chat,
                targets: vec![],
                limits: None,
            },
            ip: CLIENT_IP
                .parse()
                .unwrap_or_else(|e| panic!("基准地址无效：{e}")),
        }
    }

    fn subjects(&self) -> Subjects<'_> {
        Subjects {
            client: Some(&self.client),
            ip: Some(self.ip),
            model: &self.model,
        }
    }

    fn checks(&self) -> Vec<Check> {
        checks(&self.settings, &self.subjects())
    }
}

/// 本地阶段：只有计数（三层、五个计数器），以及包含列出检查、生成响应头的完整本地判定。
fn bench_local(c: &mut Criterion) {
    let fixture = Fixture::new();
    let checks = fixture.checks();
    let local = LocalStage::default();
    c.bench_function("local_stage_admit", |b| {
        b.iter(|| local.admit(black_box(&checks), TOKENS, 1))
    });
    let runtime = runtime();
    let limiter = Limiter::new(None, "");
    let subjects = fixture.subjects();
    c.bench_function("limiter_admit_local_only", |b| {
        b.iter(|| runtime.block_on(limiter.admit(&fixture.settings, black_box(&subjects), TOKENS)))
    });
}

/// 分布式阶段：一次 EVALSHA（三层的检查与计数）。
fn bench_remote(c: &mut Criterion) {
    let fixture = Fixture::new();
    let checks = fixture.checks();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string());
    let target = RedisTarget {
        url: Secret::new(url),
        key_prefix: PREFIX.to_string(),
        timeout: REDIS_TIMEOUT,
        cluster: false,
    };
    let link = target
        .link()
        .unwrap_or_else(|e| panic!("Redis 连接串无效：{e}"));
    let stage = RemoteStage::new(Arc::new(link), PREFIX);
    let runtime = runtime();
    runtime
        .block_on(stage.admit(&checks, TOKENS, None))
        .unwrap_or_else(|e| panic!("需要可用的 Redis（REDIS_URL）：{e}"));
    c.bench_function("remote_stage_admit_evalsha", |b| {
        b.iter(|| runtime.block_on(stage.admit(black_box(&checks), TOKENS, None)))
    });
}

/// 单线程的 tokio 运行时（基准在它上面驱动异步判定）。
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("无法创建 tokio 运行时：{e}"))
}

criterion_group!(benches, bench_local, bench_remote);
criterion_main!(benches);
