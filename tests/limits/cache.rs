//! 响应缓存的 Redis 后端：两个网关实例共用一份缓存；Redis 宕机时请求照常成功、缓存记为绕过；
//! 命中只计请求数、不占 token 额度。

use serde_json::{json, Value};

use crate::env::{
    connect, count_keys, eventually, key, single_redis, start_cached_gateway, RedisGateway,
    CACHE_SLOW_MODEL, FAST_COMPLETION_TOKENS, FAST_PROMPT_TOKENS, MOCKS,
};
use crate::redis_server::RedisProcess;
use crate::support::config::{Limits, RateLimits};
use crate::support::gateway::Gateway;
use crate::support::{header, redis_url, unique_prefix};

/// 网关在 Redis 里的缓存键段（键为 `<前缀>cache:<摘要>`，见 docs/cache.md）。
const CACHE_SEGMENT: &str = "cache:";
/// 缓存测试用的客户端密钥名（两个实例上同名，缓存按它隔离）。
pub(crate) const KEY_NAME: &str = "乙";
/// 命中不占额度的测试里每个密钥的请求数与 token 上限（都足够大，测试只看计数）。
const KEY_REQUESTS: u64 = 100;
/// 同上：每分钟的 token 上限。
const KEY_TOKENS: u64 = 100_000;

/// 每个密钥的请求数与 token 上限（都足够大，测试只看计数与缓存结果）。
pub(crate) fn 密钥额度() -> RateLimits {
    RateLimits {
        per_key: Some(Limits {
            requests: Some(KEY_REQUESTS),
            tokens_per_minute: Some(KEY_TOKENS),
            ..Limits::default()
        }),
        ..RateLimits::default()
    }
}

/// 模型 `fast` 一次回复的实际用量（输入加输出 token）。
pub(crate) fn 实际用量() -> i64 {
    (FAST_PROMPT_TOKENS + FAST_COMPLETION_TOKENS) as i64
}

/// 启动一个带 [`密钥额度`]、缓存放在共享 Redis 里的网关（`name` 用于键前缀）。
fn 带额度的网关(name: &str) -> RedisGateway {
    let prefix = unique_prefix(name);
    RedisGateway {
        gateway: start_cached_gateway(single_redis(&redis_url(), &prefix), Some(密钥额度())),
        prefix,
    }
}

/// 启动 [`带额度的网关`]，发一次未命中的请求（存下条目），并等它的 token 结算为实际用量。
async fn 未命中一次(name: &str, marker: &str) -> RedisGateway {
    let env = 带额度的网关(name);
    assert_eq!(发送(env.gateway, marker).await, (200, "miss".to_string()));
    eventually("未命中的请求结算为实际用量", || {
        env.counted("k", KEY_NAME, "t") == 实际用量()
    })
    .await;
    env
}

/// 确定性的请求（temperature 0），带区分用例的标记。
fn 请求(model: &str, marker: &str) -> Value {
    json!({ "model": model, "temperature": 0, "messages": [ { "role": "user", "content": marker } ] })
}

/// 用模型 `fast` 发给某个网关实例，返回状态码与缓存结果头。
pub(crate) async fn 发送(gateway: Gateway, marker: &str) -> (u16, String) {
    发送给(gateway, "fast", marker).await
}

/// 用给定的模型发给某个网关实例，返回状态码与缓存结果头。
async fn 发送给(gateway: Gateway, model: &str, marker: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key(KEY_NAME))
        .json(&请求(model, marker))
        .send()
        .await
        .expect("请求必须送达网关");
    let cache = header(&resp, "x-chatnexus-cache").to_string();
    let status = resp.status().as_u16();
    resp.text().await.expect("读完回复");
    (status, cache)
}

/// 模拟上游 `mock` 收到含 `marker` 的请求的次数。
fn 上游收到(marker: &str, mock: &str) -> usize {
    MOCKS
        .stats(mock)
        .recent()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(marker))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 缓存_两个实例共用_redis_里的条目() {
    let prefix = unique_prefix("cnx-cache");
    let redis = single_redis(&redis_url(), &prefix);
    let (a, b) = (
        start_cached_gateway(redis.clone(), None),
        start_cached_gateway(redis, None),
    );
    let marker = "共享缓存标记";
    assert_eq!(发送(a, marker).await, (200, "miss".to_string()));
    // 条目在回复写完之后才存进 Redis：等它落地，再让另一个实例来查
    eventually("未命中的回复存进 Redis", || {
        count_keys(&redis_url(), &format!("{prefix}{CACHE_SEGMENT}*")) == 1
    })
    .await;
    assert_eq!(
        发送(b, marker).await,
        (200, "hit".to_string()),
        "另一个实例命中同一份缓存"
    );
    assert_eq!(上游收到(marker, "fast"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 缓存_redis_宕机时照常成功并记为绕过() {
    宕机时绕过(None, "宕机缓存标记").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 缓存_查找并进限流准入时_redis_宕机照常成功并记为绕过() {
    let limits = 密钥额度();
    宕机时绕过(Some(limits), "准入宕机缓存标记").await;
}

/// 未命中、命中之后停掉 Redis：请求照常成功、缓存记为绕过、照常去上游。
async fn 宕机时绕过(limits: Option<RateLimits>, marker: &str) {
    let mut server = RedisProcess::start();
    let gateway = start_cached_gateway(
        single_redis(&server.url(), &unique_prefix("cnx-cache-down")),
        limits,
    );
    assert_eq!(发送(gateway, marker).await, (200, "miss".to_string()));
    assert_eq!(发送(gateway, marker).await, (200, "hit".to_string()));
    server.kill();
    assert_eq!(
        发送(gateway, marker).await,
        (200, "bypass".to_string()),
        "缓存不可用不能让请求失败"
    );
    assert_eq!(上游收到(marker, "fast"), 2, "绕过时照常去上游");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 缓存_命中只计请求数_不占_token_额度() {
    let marker = "额度缓存标记";
    let env = 未命中一次("cnx-cache-tokens", marker).await;
    let exact = 实际用量();
    for _ in 0..3 {
        assert_eq!(发送(env.gateway, marker).await, (200, "hit".to_string()));
    }
    eventually("三次命中都计入请求数", || {
        env.counted("k", KEY_NAME, "r") == 4
    })
    .await;
    assert_eq!(
        env.counted("k", KEY_NAME, "t"),
        exact,
        "命中不预留也不消耗 token"
    );
}

/// 前缀下唯一的一条缓存条目的键（不是恰好一条时失败）。
fn 唯一的条目(prefix: &str) -> String {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}{CACHE_SEGMENT}*"))
        .query(&mut connect(&redis_url()))
        .expect("KEYS");
    match &keys[..] {
        [entry] => entry.clone(),
        _ => panic!("应当恰好存了一条：{keys:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 缓存_redis_条目损坏时当作未命中_重新存下_token_照常结算() {
    let marker = "损坏缓存标记";
    let env = 未命中一次("cnx-cache-corrupt", marker).await;
    let exact = 实际用量();
    let entry = &唯一的条目(&env.prefix);
    let _: () = redis::cmd("SET")
        .arg(entry)
        .arg("损坏的条目")
        .query(&mut connect(&redis_url()))
        .expect("SET");
    assert_eq!(
        发送(env.gateway, marker).await,
        (200, "miss".to_string()),
        "损坏的条目当作未命中"
    );
    eventually("第二次也按实际用量结算", || {
        env.counted("k", KEY_NAME, "t") == 2 * exact
    })
    .await;
    eventually("重新存下完整的回复", || {
        let value: Option<String> = redis::cmd("GET")
            .arg(entry)
            .query(&mut connect(&redis_url()))
            .unwrap_or_default();
        value.is_some_and(|v| v.starts_with("cnx1 "))
    })
    .await;
    assert_eq!(上游收到(marker, "fast"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 缓存_redis_五十个相同的请求同时到达_上游一次_跟随者的_token_预留全部退还() {
    let env = 带额度的网关("cnx-cache-flight");
    let marker = "并发缓存标记";
    let sends = (0..50).map(|_| 发送给(env.gateway, CACHE_SLOW_MODEL, marker));
    let replies = futures_util::future::join_all(sends).await;
    assert!(
        replies.iter().all(|(status, _)| *status == 200),
        "{replies:?}"
    );
    let misses = replies.iter().filter(|(_, cache)| cache == "miss").count();
    assert_eq!(misses, 1, "只有领头的未命中：{replies:?}");
    assert_eq!(
        上游收到(marker, CACHE_SLOW_MODEL),
        1,
        "相同的请求在进程里合并"
    );
    // 每个请求准入时都预留了 token；等到领头的结果而命中的，结束时按零结算
    let exact = 实际用量();
    eventually("只剩领头的实际用量", || {
        env.counted("k", KEY_NAME, "t") == exact
    })
    .await;
    assert_eq!(
        env.counted("k", KEY_NAME, "r"),
        50,
        "五十个请求都计入请求数"
    );
}
