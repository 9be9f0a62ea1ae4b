//! 安全评审指出的限流缺陷的回归测试：超大 `max_tokens` 不能让本地计数回绕、鉴权失败过多的 IP 在鉴权之前被拒、
//! 改了窗口的 Redis 计数从头开始、荒谬的结算量被脚本拒绝且不留下半截写入、Redis 短暂宕机不丢每日用量。

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatnexus::config::FailureMode;
use chatnexus::limits::{Check, Layer, RemoteStage, RemoteVerdict};
use chatnexus::metrics::usage_key;
use chatnexus::redis_link::RedisLink;

use crate::env::{
    chat, expect_refused, hash_field, key, single_redis, start_gateway, Ask,
    FAST_COMPLETION_TOKENS, FAST_PROMPT_TOKENS, HANG_GUARD,
};
use crate::redis_server::RedisProcess;
use crate::support::config::{AuthFailures, Limits, RateLimits};
use crate::support::gateway::Gateway;
use crate::support::{expect_error, redis_url, unique_prefix};

/// 本地 token 上限：每分钟 1000 个。
const LOCAL_TOKENS: u64 = 1_000;
/// 一个正常请求的 `max_tokens`（加上输入估算约 920 个 token）。
const NORMAL_MAX_TOKENS: u64 = 900;
/// 客户端能填的最大 `max_tokens`。
const HUGE_MAX_TOKENS: u64 = i64::MAX as u64;
/// 鉴权失败的限流：每分钟 3 次。
const AUTH_FAILURES: u64 = 3;
/// 鉴权失败限流的窗口：一分钟。
const AUTH_FAILURE_WINDOW_MS: u64 = 60_000;
/// 可信代理（测试客户端自己）。
const LOOPBACK: &str = "127.0.0.1";
/// 鉴权成功的请求数（不应计入失败）。
const GOOD_REQUESTS: usize = 5;
/// 一个无效的密钥。
const BAD_KEY: &str = "sk-limits-test-invalid";
/// 窗口改动前后的请求数上限。
const WINDOW_REQUESTS: u64 = 2;
/// 改动前的窗口：一分钟。
const MINUTE: Duration = Duration::from_secs(60);
/// 改动后的窗口：一小时。
const HOUR: Duration = Duration::from_secs(3600);
/// 一个荒谬的上游用量（结算量）。
const ABSURD_DELTA: i64 = 100_000_000_000_000_000;
/// 结算测试的 token 上限与预留。
const SETTLE_LIMIT: u64 = 1_000;
/// 结算测试每次的预留。
const SETTLE_RESERVED: u64 = 100;
/// Redis 健康时、宕机期间各发的请求数。
const BEFORE_OUTAGE: u64 = 3;
/// Redis 宕机期间发的请求数。
const DURING_OUTAGE: u64 = 4;
/// 等待用量写入时两次查询的间隔。
const POLL: Duration = Duration::from_millis(50);
/// 每发一个请求后等它的用量写入的上限（只防挂起）。
const WRITE_GUARD: Duration = Duration::from_secs(2);

/// 指向测试 Redis 的共享连接（不连接）。
fn 连接(url: &str) -> Arc<RedisLink> {
    let timeout = Duration::from_secs(2);
    Arc::new(RedisLink::open(url, false, timeout).expect("连接串合法"))
}

/// 一层的检查。
fn 检查(requests: Option<u64>, window: Duration, tokens: Option<u64>) -> Check {
    Check {
        layer: Layer::Key,
        subject: "评审".into(),
        requests,
        window,
        tokens,
        on_failure: FailureMode::Open,
    }
}

/// 分布式阶段是否放行。
async fn 放行(remote: &RemoteStage, checks: &[Check], tokens: u64) -> bool {
    let (verdict, _) = remote
        .admit(checks, tokens, None)
        .await
        .expect("Redis 可用");
    matches!(verdict, RemoteVerdict::Admitted { .. })
}

#[tokio::test]
async fn 超大_max_tokens_在计数之前被拒_不能让本地计数回绕而放过后续请求() {
    let limits = RateLimits {
        per_key: Some(Limits::tokens_per_minute(LOCAL_TOKENS)),
        ..RateLimits::default()
    };
    let gateway = start_gateway(None, Some(limits));
    let client = reqwest::Client::new();
    let normal = Ask {
        max_tokens: NORMAL_MAX_TOKENS,
        ..Ask::default()
    };
    let resp = chat(&client, gateway, key("乙"), normal).await;
    assert_eq!(resp.status(), 200, "第一个约 920 个 token 的请求放行");
    resp.text().await.expect("读完响应");
    let huge = Ask {
        max_tokens: HUGE_MAX_TOKENS,
        stream: true,
        ..Ask::default()
    };
    // 计数器里已有上一个请求的量：修复前再加上 isize::MAX 会回绕成负数、读作 0 而放行
    let resp = chat(&client, gateway, key("乙"), huge).await;
    let error = expect_refused(resp, "客户端密钥").await;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("永远不会被接受"),
        "消息说明请求本身超过上限：{message}"
    );
    let resp = chat(&client, gateway, key("乙"), normal).await;
    assert_eq!(resp.status(), 200, "被拒的超大请求没有占用额度");
    resp.text().await.expect("读完响应");
}

/// 从 IP `ip`（经可信代理转发）用密钥 `key` 发一个请求，返回状态码与响应。
async fn 来自(
    client: &reqwest::Client,
    gateway: Gateway,
    ip: &str,
    key: &str,
) -> reqwest::Response {
    let ask = Ask {
        forwarded: Some(ip),
        ..Ask::default()
    };
    chat(client, gateway, key, ask).await
}

#[tokio::test]
async fn 鉴权失败过多的_ip_在鉴权之前被_429_成功的鉴权不计数() {
    let limits = RateLimits {
        trusted_proxies: vec![LOOPBACK.to_string()],
        auth_failures: Some(AuthFailures {
            limit: AUTH_FAILURES,
            window_ms: AUTH_FAILURE_WINDOW_MS,
        }),
        ..RateLimits::default()
    };
    let gateway = start_gateway(None, Some(limits));
    let client = reqwest::Client::new();
    let (attacker, user) = ("198.51.100.1", "198.51.100.2");
    for _ in 0..AUTH_FAILURES {
        expect_error(来自(&client, gateway, attacker, BAD_KEY).await, 401).await;
    }
    let resp = 来自(&client, gateway, attacker, BAD_KEY).await;
    let error = expect_refused(resp, "鉴权失败").await;
    assert_eq!(error["type"], "requests");
    let resp = 来自(&client, gateway, attacker, key("乙")).await;
    expect_refused(resp, "鉴权失败").await;
    for _ in 0..GOOD_REQUESTS {
        let resp = 来自(&client, gateway, user, key("乙")).await;
        assert_eq!(resp.status(), 200, "其他 IP 不受影响");
        resp.text().await.expect("读完响应");
    }
    for _ in 0..AUTH_FAILURES {
        let resp = 来自(&client, gateway, user, BAD_KEY).await;
        expect_error(resp, 401).await;
    }
    expect_refused(来自(&client, gateway, user, BAD_KEY).await, "鉴权失败").await;
}

#[tokio::test]
async fn 改了请求数窗口_redis_中的计数从头开始() {
    let remote = RemoteStage::new(连接(&redis_url()), &unique_prefix("cnx-rewidth"));
    let minute = [检查(Some(WINDOW_REQUESTS), MINUTE, None)];
    for _ in 0..WINDOW_REQUESTS {
        assert!(放行(&remote, &minute, 0).await);
    }
    assert!(!放行(&remote, &minute, 0).await, "一分钟窗口已满");
    let hour = [检查(Some(WINDOW_REQUESTS), HOUR, None)];
    for _ in 0..WINDOW_REQUESTS {
        assert!(
            放行(&remote, &hour, 0).await,
            "窗口改成一小时后，按旧桶宽记下的计数不能留在新窗口里"
        );
    }
    match remote.admit(&hour, 0, None).await.expect("Redis 可用").0 {
        RemoteVerdict::Refused(r) => assert!(
            r.retry_after.is_some_and(|w| w <= HOUR + HOUR / 10),
            "重试时间按新窗口计算：{:?}",
            r.retry_after
        ),
        other => panic!("一小时窗口已满：{other:?}"),
    }
}

#[tokio::test]
async fn 结算荒谬的用量_脚本拒绝且不留下半截写入() {
    let url = redis_url();
    let remote = RemoteStage::new(连接(&url), &unique_prefix("cnx-settle"));
    let checks = [检查(None, MINUTE, Some(SETTLE_LIMIT))];
    let bucket = match remote
        .admit(&checks, SETTLE_RESERVED, None)
        .await
        .expect("Redis 可用")
        .0
    {
        RemoteVerdict::Admitted { bucket, .. } => bucket,
        other => panic!("第一次预留应放行：{other:?}"),
    };
    let ticket = remote.ticket(&checks, bucket).expect("有 token 上限的层");
    let rejected = remote.settle(&ticket, ABSURD_DELTA).await;
    assert!(rejected.is_err(), "越界的结算量必须被脚本拒绝");
    let key = remote.key(&checks[0]);
    assert_eq!(
        hash_field(&url, &key, "t"),
        SETTLE_RESERVED as i64,
        "没有半截写入"
    );
    assert_eq!(
        hash_field(&url, &key, &format!("t{bucket}")),
        SETTLE_RESERVED as i64
    );
    assert!(
        放行(&remote, &checks, SETTLE_RESERVED).await,
        "之后的准入照常工作"
    );
    assert_eq!(hash_field(&url, &key, "t"), 2 * SETTLE_RESERVED as i64);
}

/// 读某个密钥当天用量哈希的一个字段（没有时为 0）。
fn 当天用量(url: &str, prefix: &str, field: &str) -> i64 {
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    hash_field(url, &usage_key(prefix, "丙", &day), field)
}

/// 发一个请求并读完响应。
async fn 发一个(client: &reqwest::Client, gateway: Gateway) {
    let resp = chat(client, gateway, key("丙"), Ask::default()).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("读完响应");
}

/// 等到当天的请求数达到 `expected`；`WRITE_GUARD` 内没达到返回假。
async fn 等到请求数(url: &str, prefix: &str, expected: i64) -> bool {
    let deadline = Instant::now() + WRITE_GUARD;
    while Instant::now() < deadline {
        if 当天用量(url, prefix, "requests") == expected {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_短暂宕机_恢复后每个密钥的每日用量等于总数() {
    let mut server = RedisProcess::start();
    let (url, prefix) = (server.url(), unique_prefix("cnx-usage"));
    let gateway = start_gateway(Some(single_redis(&url, &prefix)), None);
    let client = reqwest::Client::new();
    for _ in 0..BEFORE_OUTAGE {
        发一个(&client, gateway).await;
    }
    assert!(等到请求数(&url, &prefix, BEFORE_OUTAGE as i64).await);
    // 测试用的 redis-server 不落盘：宕机前手动存一次快照，重启后宕机前的累计还在
    let mut conn = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("连接测试 Redis");
    redis::cmd("SAVE").query::<()>(&mut conn).expect("SAVE");
    server.kill();
    for _ in 0..DURING_OUTAGE {
        发一个(&client, gateway).await;
    }
    server.restart();
    // Redis 回来后的第一次写入可能还赶上重连：一直发，直到累计追上已发出的总数
    let mut sent = BEFORE_OUTAGE + DURING_OUTAGE;
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        assert!(Instant::now() < deadline, "宕机期间的用量没有补写");
        发一个(&client, gateway).await;
        sent += 1;
        if 等到请求数(&url, &prefix, sent as i64).await {
            break;
        }
    }
    let sent = sent as i64;
    assert_eq!(
        当天用量(&url, &prefix, "input"),
        sent * FAST_PROMPT_TOKENS as i64
    );
    assert_eq!(
        当天用量(&url, &prefix, "output"),
        sent * FAST_COMPLETION_TOKENS as i64
    );
}
