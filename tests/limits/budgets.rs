//! 美元预算：用完返回 429 `insufficient_quota`、已扣的金额从不超过上限、结算后等于实际花费（三个实例并发），
//! 带预算的密钥不能用没有价格的模型。金额都按整数纳美元核对。

use chrono::Utc;
use serde_json::json;

use crate::admin::{新建, 聊天状态};
use crate::env::{
    chat, single_redis, start_admin_gateway, Ask, FAST_COMPLETION_TOKENS, FAST_PRICE_PER_MILLION,
    FAST_PROMPT_TOKENS, HANG_GUARD,
};
use crate::support::gateway::Gateway;
use crate::support::{expect_error, redis_url, unique_prefix};

/// 一美元的纳美元数。
const NANOS_PER_USD: f64 = 1e9;
/// 每个实例并发发出的请求数。
const PER_INSTANCE: usize = 15;

/// 模型 `fast` 一个请求的实际花费（纳美元）：上游报告的用量 × 单价。
fn 每个请求的花费() -> i64 {
    let tokens = (FAST_PROMPT_TOKENS + FAST_COMPLETION_TOKENS) as f64;
    (tokens * FAST_PRICE_PER_MILLION / 1e6 * NANOS_PER_USD).round() as i64
}

/// 密钥 `name` 今天已扣的金额（纳美元）。
fn 今日已扣(prefix: &str, name: &str) -> i64 {
    let key = format!(
        "{{{prefix}budget:{name}}}:d:{}",
        Utc::now().format("%Y%m%d")
    );
    let client = redis::Client::open(redis_url()).expect("Redis 地址合法");
    let mut conn = client.get_connection().expect("连接 Redis");
    let value: Option<i64> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
    value.unwrap_or(0)
}

/// 等到今天已扣的金额等于 `expected`（结算在请求结束后的日志阶段完成）。
async fn 直到已扣(prefix: &str, name: &str, expected: i64) {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while 今日已扣(prefix, name) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "结算没有完成：已扣 {}，应为 {expected}",
            今日已扣(prefix, name)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// 共享同一个键前缀的 `count` 个开着管理接口的网关，以及这个前缀。
fn 实例(name: &str, count: usize) -> (Vec<Gateway>, String) {
    let prefix = unique_prefix(name);
    let redis = single_redis(&redis_url(), &prefix);
    (
        (0..count)
            .map(|_| start_admin_gateway(redis.clone()))
            .collect(),
        prefix,
    )
}

/// 在实例上新建一个带每日预算的虚拟密钥，等它在所有实例上可用（第一个请求的花费已结算）。
async fn 带预算的密钥(
    gateways: &[Gateway],
    prefix: &str,
    name: &str,
    daily_usd: f64,
) -> String {
    let secret = 新建(
        gateways[0],
        json!({ "name": name, "budgets": { "daily_usd": daily_usd } }),
    )
    .await;
    for (i, gateway) in gateways.iter().enumerate() {
        crate::admin::直到("新密钥在每个实例上可用", 200, || {
            聊天状态(*gateway, &secret)
        })
        .await;
        直到已扣(prefix, name, 每个请求的花费() * (i as i64 + 1)).await;
    }
    secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 预算_用完返回_429_点名每日预算_已扣等于实际花费() {
    let (gateways, prefix) = 实例("cnx-budget-one", 1);
    let secret = 带预算的密钥(&gateways, &prefix, "预算甲", 0.5).await;
    let client = reqwest::Client::new();
    let mut admitted = 1;
    let refused = loop {
        let resp = chat(&client, gateways[0], &secret, Ask::default()).await;
        if resp.status() != 200 {
            break resp;
        }
        resp.text().await.expect("读完回复");
        admitted += 1;
        assert!(admitted < 100, "预算一直没有用完");
    };
    let error = expect_error(refused, 429).await;
    assert_eq!(error["code"], "insufficient_quota");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("每日预算") && message.contains("重置"),
        "{message}"
    );
    直到已扣(&prefix, "预算甲", 每个请求的花费() * admitted).await;
    assert!(
        今日已扣(&prefix, "预算甲") <= (0.5 * NANOS_PER_USD) as i64,
        "已扣不超过上限"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 预算_三个实例并发_已扣从不超过上限_结算后等于实际花费() {
    let (gateways, prefix) = 实例("cnx-budget-three", 3);
    let secret = 带预算的密钥(&gateways, &prefix, "预算乙", 1.0).await;
    let sends = gateways
        .iter()
        .flat_map(|g| std::iter::repeat_n(*g, PER_INSTANCE))
        .map(|g| {
            let secret = secret.clone();
            async move { 聊天状态(g, &secret).await }
        });
    let statuses = futures_util::future::join_all(sends).await;
    let ok = statuses.iter().filter(|s| **s == 200).count() as i64;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        ok < (3 * PER_INSTANCE) as i64,
        "预算应当在并发请求中用完：{statuses:?}"
    );
    直到已扣(&prefix, "预算乙", 每个请求的花费() * (ok + 3)).await;
    assert!(
        今日已扣(&prefix, "预算乙") <= NANOS_PER_USD as i64,
        "任何时刻已扣都不超过上限"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 预算_带预算的密钥不能用没有价格的模型() {
    let (gateways, _) = 实例("cnx-budget-unpriced", 1);
    let secret = 新建(
        gateways[0],
        json!({ "name": "预算丙", "budgets": { "monthly_usd": 5 } }),
    )
    .await;
    let ask = Ask {
        model: "stream",
        ..Ask::default()
    };
    let deadline = std::time::Instant::now() + HANG_GUARD;
    let resp = loop {
        let resp = chat(&reqwest::Client::new(), gateways[0], &secret, ask).await;
        if resp.status() != 401 {
            break resp;
        }
        assert!(std::time::Instant::now() < deadline, "新密钥一直不可用");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(expect_error(resp, 403).await["code"], "model_not_priced");
}
