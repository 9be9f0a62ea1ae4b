//! Redis 出故障：宕机时按本地份额继续限流、Redis 回来后自动恢复；脚本缓存被清空（NOSCRIPT）后自动重新加载。

use std::time::{Duration, Instant};

use chatnexus::metrics::METRICS;

use crate::env::{
    chat, expect_refused, hash_field, key, limiter_key, single_redis, start_gateway, Ask,
    HANG_GUARD,
};
use crate::redis_server::RedisProcess;
use crate::support::config::{Limits, RateLimits, Redis};
use crate::support::gateway::Gateway;
use crate::support::unique_prefix;

/// 每个密钥的请求数上限。
const KEY_LIMIT: u64 = 40;
/// 网关实例数：Redis 不可用时每个实例在本地放行 40 ÷ 2 = 20 个。
const INSTANCES: u64 = 2;
/// Redis 健康时先发的请求数。
const BEFORE: u64 = 5;
/// Redis 宕机期间发的请求数。
const DURING: u64 = 30;
/// 等待恢复时两次请求的间隔。
const RECOVERY_POLL: Duration = Duration::from_millis(100);
/// Redis 宕机测试的命令超时（毫秒）：短，宕机期间的请求不必久等。
const OUTAGE_REDIS_TIMEOUT_MS: u64 = 300;
/// Redis 出错后再试的间隔（毫秒）。
const REDIS_RETRY_MS: u64 = 100;
/// 脚本缓存测试的全局请求数上限（远高于测试的请求数）。
const NOSCRIPT_GLOBAL_LIMIT: u64 = 100;
/// 准入脚本。
const ADMIT_LUA: &str = include_str!("../../src/limits/admit.lua");

/// 发 `count` 个请求，返回放行数；拒绝的必须是密钥层的 429。
async fn 放行数(client: &reqwest::Client, gateway: Gateway, count: u64) -> u64 {
    let mut admitted = 0;
    for _ in 0..count {
        let resp = chat(client, gateway, key("戊"), Ask::default()).await;
        if resp.status() == 200 {
            admitted += 1;
        } else {
            expect_refused(resp, "客户端密钥").await;
        }
    }
    admitted
}

/// Redis 刚回来时计数为空：一直发请求，直到有请求重新计入 Redis（本地份额已用完的请求会先得到 429）。
async fn 等到恢复(client: &reqwest::Client, gateway: Gateway, counted: impl Fn() -> i64) {
    let deadline = Instant::now() + HANG_GUARD;
    while counted() == 0 {
        assert!(Instant::now() < deadline, "Redis 回来后没有恢复分布式限流");
        chat(client, gateway, key("戊"), Ask::default()).await;
        tokio::time::sleep(RECOVERY_POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_宕机时按本地份额继续服务_恢复后自动回到分布式限流() {
    let mut server = RedisProcess::start();
    let (url, prefix) = (server.url(), unique_prefix("cnx-outage"));
    let limits = RateLimits {
        instances: Some(INSTANCES),
        redis_retry_ms: Some(REDIS_RETRY_MS),
        per_key: Some(Limits::requests(KEY_LIMIT)),
        ..RateLimits::default()
    };
    let redis = Redis::url(&url, OUTAGE_REDIS_TIMEOUT_MS).key_prefix(&prefix);
    let gateway = start_gateway(Some(redis), Some(limits));
    let client = reqwest::Client::new();
    let counted = || hash_field(&url, &limiter_key(&prefix, "k", "戊"), "r");
    assert_eq!(放行数(&client, gateway, BEFORE).await, BEFORE);
    assert_eq!(counted(), BEFORE as i64);
    let errors = METRICS.redis_errors.with_label_values(&["admit"]);
    let (fallback, failed) = (METRICS.limiter_fallback.get(), errors.get());
    server.kill();
    let admitted = 放行数(&client, gateway, DURING).await;
    assert_eq!(
        admitted,
        KEY_LIMIT / INSTANCES - BEFORE,
        "本地份额 20 减去宕机前已放行的 5 个"
    );
    assert!(
        METRICS.limiter_fallback.get() >= fallback + DURING,
        "每个请求都由本地阶段判定"
    );
    assert!(errors.get() > failed, "失败被计数");
    server.restart();
    等到恢复(&client, gateway, counted).await;
    let before = counted();
    assert_eq!(放行数(&client, gateway, 3).await, 3);
    assert_eq!(counted(), before + 3, "恢复后每个请求都计入 Redis");
}

#[tokio::test]
async fn 脚本缓存被清空后_遇到_noscript_自动重新加载() {
    let server = RedisProcess::start();
    let prefix = unique_prefix("cnx-noscript");
    let limits = RateLimits {
        global: Some(Limits::requests(NOSCRIPT_GLOBAL_LIMIT)),
        ..RateLimits::default()
    };
    let gateway = start_gateway(Some(single_redis(&server.url(), &prefix)), Some(limits));
    let client = reqwest::Client::new();
    let sha = redis::Script::new(ADMIT_LUA).get_hash().to_string();
    let mut conn = redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("连接");
    let exists = |conn: &mut redis::Connection| -> Vec<i64> {
        redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&sha)
            .query(conn)
            .expect("SCRIPT EXISTS")
    };
    assert_eq!(放行数(&client, gateway, 1).await, 1);
    assert_eq!(exists(&mut conn), vec![1], "第一次请求加载了脚本");
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query::<()>(&mut conn)
        .expect("SCRIPT FLUSH");
    assert_eq!(exists(&mut conn), vec![0]);
    assert_eq!(放行数(&client, gateway, 1).await, 1);
    assert_eq!(exists(&mut conn), vec![1], "NOSCRIPT 后重新加载");
    let counted = hash_field(&server.url(), &limiter_key(&prefix, "g", ""), "r");
    assert_eq!(
        counted, 2,
        "清空脚本前后的请求都计入了 Redis（没有降级到本地）"
    );
}
