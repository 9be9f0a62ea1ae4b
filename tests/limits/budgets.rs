//! 美元预算：用完返回 429 `insufficient_quota`、已扣的金额从不超过上限、结算后等于实际花费（三个实例并发），
//! 带预算的密钥不能用没有价格的模型。金额都按整数纳美元核对。

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use chatnexus::budgets::BudgetStore;
use chatnexus::config::RedisTarget;
use chatnexus::security::{Budgets, Client, KeyHash, Secret};

use crate::admin::{新建, 管理, 管理_json, 聊天状态};
use crate::env::{
    chat, integer_at, single_redis, start_admin_gateway, Ask, FAST_COMPLETION_TOKENS,
    FAST_PRICE_PER_MILLION, FAST_PROMPT_TOKENS, HANG_GUARD,
};
use crate::support::gateway::Gateway;
use crate::support::{expect_error, redis_url, unique_prefix};

/// 一美元的纳美元数。
const NANOS_PER_USD: f64 = 1e9;
/// 模拟上游 `stream` 一个流的内容块数。
const STREAM_CHUNKS: usize = 50;
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
        "{{{prefix}budget}}:k:{name}:d:{}",
        Utc::now().format("%Y%m%d")
    );
    integer_at(&redis_url(), &key)
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
    // 模型 `lone` 的上游模型没有价格
    let ask = Ask {
        model: "lone",
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

/// 团队今天已扣的金额（纳美元）。
fn 团队今日已扣(prefix: &str, team: &str) -> i64 {
    let key = format!(
        "{{{prefix}budget}}:t:{team}:d:{}",
        Utc::now().format("%Y%m%d")
    );
    integer_at(&redis_url(), &key)
}

/// 等到团队今天已扣的金额等于 `expected`。
async fn 直到团队已扣(prefix: &str, team: &str, expected: i64) {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while 团队今日已扣(prefix, team) != expected {
        assert!(std::time::Instant::now() < deadline, "团队的结算没有完成");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// 管理接口的用量报表里团队今天的花费等于预算结算的金额（用量在结算之后的同一个日志阶段里累计，等它写进去）。
async fn 报表里的团队花费等于结算(gateway: Gateway, prefix: &str, team: &str) {
    let settled = 团队今日已扣(prefix, team) as f64 / NANOS_PER_USD;
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        let usage = 管理_json(gateway, reqwest::Method::GET, "/admin/usage", None, 200).await;
        assert_eq!(usage["teams"][0]["name"], team);
        let reported = usage["teams"][0]["cost_usd"].as_f64().expect("花费是数字");
        if (reported - settled).abs() < 1e-9 {
            let by_model = usage["teams"][0]["models"]["fast"]["cost_usd"].as_f64();
            assert!(
                by_model.is_some_and(|cost| (cost - settled).abs() < 1e-9),
                "只用了 fast：按模型的分项等于总数：{usage}"
            );
            let last = usage["teams"][0]["last_used_unix"].as_u64().unwrap_or(0);
            assert!(
                last + 60 > Utc::now().timestamp() as u64,
                "最后使用在刚才：{usage}"
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "报表的花费 {reported} 应等于结算的 {settled}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 团队_预算由全体成员共用_模型取交集() {
    let (gateways, prefix) = 实例("cnx-budget-team", 1);
    let team = json!({ "name": "数据组", "models": ["fast"], "budgets": { "daily_usd": 0.4 } });
    管理_json(
        gateways[0],
        reqwest::Method::POST,
        "/admin/teams",
        Some(team),
        201,
    )
    .await;
    let one = 新建(gateways[0], json!({ "name": "组员一", "team": "数据组" })).await;
    let two = 新建(
        gateways[0],
        json!({ "name": "组员二", "team": "数据组", "models": ["fast", "stream"] }),
    )
    .await;
    crate::admin::直到("组员一可用", 200, || 聊天状态(gateways[0], &one)).await;
    let stream = Ask {
        model: "stream",
        ..Ask::default()
    };
    let denied = chat(&reqwest::Client::new(), gateways[0], &two, stream).await;
    assert_eq!(
        expect_error(denied, 403).await["code"],
        "model_not_allowed",
        "团队不许的模型"
    );
    let mut admitted = 1;
    let refused = loop {
        let secret = if admitted % 2 == 0 { &one } else { &two };
        let resp = chat(&reqwest::Client::new(), gateways[0], secret, Ask::default()).await;
        if resp.status() != 200 {
            break resp;
        }
        resp.text().await.expect("读完回复");
        admitted += 1;
        assert!(admitted < 100, "团队预算一直没有用完");
    };
    let error = expect_error(refused, 429).await;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("团队 `数据组` 的每日预算"), "{message}");
    直到团队已扣(&prefix, "数据组", 每个请求的花费() * admitted).await;
    报表里的团队花费等于结算(gateways[0], &prefix, "数据组").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 团队_不存在的团队与还有成员的团队_都是清楚的错误() {
    use reqwest::Method;
    let (gateways, _) = 实例("cnx-budget-team-errors", 1);
    let admin = gateways[0];
    let send = |method, path: &'static str, body| 管理(admin, method, path, Some(body));
    let orphan = send(
        Method::POST,
        "/admin/keys",
        json!({ "name": "无组", "team": "没有" }),
    );
    assert_eq!(
        expect_error(orphan.await, 404).await["code"],
        "team_not_found"
    );
    let team = json!({ "name": "运营组" });
    assert_eq!(
        send(Method::POST, "/admin/teams", team.clone())
            .await
            .status(),
        201
    );
    let again = send(Method::POST, "/admin/teams", team).await;
    assert_eq!(expect_error(again, 409).await["code"], "team_exists");
    新建(admin, json!({ "name": "运营一", "team": "运营组" })).await;
    let path = "/admin/teams/%E8%BF%90%E8%90%A5%E7%BB%84";
    let busy = 管理(admin, Method::DELETE, path, None).await;
    assert_eq!(expect_error(busy, 409).await["code"], "team_in_use");
    let wrong = send(Method::PATCH, path, json!({ "disabled": true })).await;
    expect_error(wrong, 400).await;
    let key = "/admin/keys/%E8%BF%90%E8%90%A5%E4%B8%80";
    assert_eq!(
        send(Method::PATCH, key, json!({ "team": null }))
            .await
            .status(),
        200
    );
    管理_json(admin, Method::DELETE, path, None, 200).await;
    let list = 管理_json(admin, Method::GET, "/admin/teams", None, 200).await;
    assert_eq!(list["data"], json!([]), "移出成员后可以删除");
}

/// 连到测试用 Redis 的预算存储（键前缀各测试独有）。
fn 预算存储(prefix: &str) -> BudgetStore {
    let target = RedisTarget {
        url: Secret::new(redis_url()),
        key_prefix: prefix.to_string(),
        timeout: std::time::Duration::from_secs(2),
        cluster: false,
    };
    let link = target.link().expect("连接串合法");
    BudgetStore::new(Some(Arc::new(link)), prefix)
}

/// UTC 时刻。
fn 时刻(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339 时刻")
        .with_timezone(&Utc)
}

#[tokio::test]
async fn 跨月_上月用完的月预算在新月重新可用_日预算跨日重置() {
    let store = 预算存储(&unique_prefix("cnx-budget-month"));
    let mut client = Client::new("跨月", KeyHash::of("sk-跨月"));
    client.budgets = Some(Budgets {
        daily_usd: Some(5.0),
        monthly_usd: Some(1.0),
        cut_streams: false,
    });
    let december = 时刻("2026-12-31T23:59:50Z");
    let first = store.reserve_at(&client, 0.6, december).await;
    let ticket = first.expect("第一次在预算内").expect("有预算就有预留");
    store.settle(ticket, Some(0.6)).await;
    let refused = store
        .reserve_at(&client, 0.6, december)
        .await
        .expect_err("本月只剩 0.4 美元");
    assert_eq!(refused.status, 429);
    assert!(
        refused.message.contains("每月预算") && refused.message.contains("2027-01-01 00:00 UTC"),
        "消息点名每月预算与重置时刻：{}",
        refused.message
    );
    let january = 时刻("2027-01-01T00:00:05Z");
    let fresh = store.reserve_at(&client, 0.6, january).await;
    assert!(fresh.expect("新的一个月").is_some(), "新月的计数从零开始");
    let mut daily = Client::new("跨日", KeyHash::of("sk-跨日"));
    daily.budgets = Some(Budgets {
        daily_usd: Some(1.0),
        monthly_usd: None,
        cut_streams: false,
    });
    let late = 时刻("2027-03-10T23:59:59Z");
    store.reserve_at(&daily, 0.9, late).await.expect("在预算内");
    store
        .reserve_at(&daily, 0.9, late)
        .await
        .expect_err("当天用完");
    let next_day = 时刻("2027-03-11T00:00:00Z");
    store
        .reserve_at(&daily, 0.9, next_day)
        .await
        .expect("第二天重新可用");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 越线切流_流在预算用完前被切断_写一个_insufficient_quota_的流中错误() {
    let (gateways, prefix) = 实例("cnx-budget-cut", 1);
    // 每个输出 token 千分之一美元：预留 2 个 token 的输出后余量 0.008 美元，最多再输出 8 个
    let body = json!({ "name": "切流", "budgets": { "daily_usd": 0.01, "cut_streams": true } });
    let secret = 新建(gateways[0], body).await;
    let client = reqwest::Client::new();
    // 用模型列表等到新密钥生效：它不花钱，聊天请求会先用掉这点预算
    let models = gateways[0].url("/v1/models");
    crate::admin::直到("新密钥可用", 200, || async {
        let resp = client.get(&models).bearer_auth(&secret).send().await;
        resp.map_or(0, |r| r.status().as_u16())
    })
    .await;
    let ask = Ask {
        model: "stream",
        stream: true,
        max_tokens: 2,
        ..Ask::default()
    };
    let resp = chat(&client, gateways[0], &secret, ask).await;
    assert_eq!(resp.status(), 200, "准入时预算够用");
    let text = tokio::time::timeout(HANG_GUARD, resp.text())
        .await
        .expect("流应被切断而不是挂起")
        .expect("读完流");
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    let last = events.last().copied().unwrap_or_default();
    assert!(
        last.contains("insufficient_quota"),
        "最后是预算的流中错误：{last}"
    );
    assert!(
        events.len() < STREAM_CHUNKS,
        "流在 {STREAM_CHUNKS} 块之前被切断，实际 {} 个事件",
        events.len()
    );
    assert!(!text.contains("[DONE]"), "被切断的流没有正常结束标记");
    let limit = (0.01 * NANOS_PER_USD) as i64;
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while 今日已扣(&prefix, "切流") == 0 {
        assert!(std::time::Instant::now() < deadline, "没有扣预算");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let spent = 今日已扣(&prefix, "切流");
    assert!(spent <= limit, "结算后已扣 {spent} 不超过上限 {limit}");
}
