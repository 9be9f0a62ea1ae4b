//! 精确性：三个网关实例共享一个 Redis（或三主节点的 Redis 集群），两千个并发请求对上限五百。

use crate::env::{chat, cluster_redis, key, limiter_key, single_redis, start_gateways, Ask};
use crate::redis_server::Cluster;
use crate::support::config::{Limits, RateLimits};
use crate::support::gateway::Gateway;
use crate::support::{redis_url, unique_prefix};

/// 全局请求数上限。
const LIMIT: usize = 500;
/// 并发请求数。
const REQUESTS: usize = 2_000;
/// 网关实例数。
const INSTANCES: usize = 3;
/// 精确性的下限：分布式计数精确时应恰好放行 500 个，留一点余量给不可预见的请求失败。
const MIN_ADMITTED: usize = 495;
/// 请求数窗口：十分钟，测试期间不会有计数过期。
const WINDOW_MS: u64 = 600_000;

/// `rate_limits` 段：只有全局层。
fn limits() -> RateLimits {
    RateLimits {
        instances: Some(INSTANCES as u64),
        global: Some(Limits {
            window_ms: Some(WINDOW_MS),
            ..Limits::requests(LIMIT as u64)
        }),
        ..RateLimits::default()
    }
}

/// 把两千个请求同时轮流发给各实例，返回（放行数, 拒绝数）。
async fn 并发压测(gateways: &[Gateway]) -> (usize, usize) {
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let client = client.clone();
            let gateway = gateways[i % gateways.len()];
            tokio::spawn(async move {
                chat(&client, gateway, key("乙"), Ask::default())
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut admitted = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("请求任务不应 panic") {
            200 => admitted += 1,
            429 => refused += 1,
            other => panic!("只应出现 200 或 429，实际 {other}"),
        }
    }
    (admitted, refused)
}

/// 断言放行数在 [495, 500] 内且与 Redis 中的全局计数一致。
fn 断言精确(admitted: usize, refused: usize, counted: i64) {
    assert_eq!(admitted + refused, REQUESTS, "每个请求都有答复");
    assert!(
        (MIN_ADMITTED..=LIMIT).contains(&admitted),
        "三个实例合计放行 {admitted} 个，应在 {MIN_ADMITTED} 到 {LIMIT} 之间"
    );
    assert_eq!(counted, admitted as i64, "Redis 中的全局计数必须等于放行数");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn 三个实例共享单机_redis_两千并发对上限五百_放行不多不少() {
    let url = redis_url();
    let prefix = unique_prefix("cnx-exact");
    let gateways = start_gateways(INSTANCES, single_redis(&url, &prefix), limits());
    let (admitted, refused) = 并发压测(&gateways).await;
    let counted = crate::env::hash_field(&url, &limiter_key(&prefix, "g", ""), "r");
    断言精确(admitted, refused, counted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn 三个实例共享三主节点集群_两千并发对上限五百_放行不多不少() {
    let cluster = Cluster::get();
    let prefix = unique_prefix("cnx-exact-cluster");
    let redis = cluster_redis(&cluster.urls, &prefix);
    let gateways = start_gateways(INSTANCES, redis, limits());
    let (admitted, refused) = 并发压测(&gateways).await;
    let client = redis::cluster::ClusterClient::new(cluster.nodes()).expect("集群节点合法");
    let mut conn = client.get_connection().expect("连接集群");
    let counted: Option<i64> = redis::cmd("HGET")
        .arg(limiter_key(&prefix, "g", ""))
        .arg("r")
        .query(&mut conn)
        .expect("HGET");
    断言精确(admitted, refused, counted.unwrap_or(0));
}
