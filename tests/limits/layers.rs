//! 各层互不牵连：被一层拒绝的请求不消耗其他层的额度；每层的拒绝点名该层；放行的响应带最紧一层的额度头。

use once_cell::sync::Lazy;

use crate::env::{chat, expect_refused, key, limiter_key, pttl, Ask, RedisGateway};
use crate::support::config::{Limits, RateLimits};
use crate::support::{header, redis_url};

/// 全局层的请求数上限。
const GLOBAL_LIMIT: u64 = 1_000;
/// 每个 IP 的请求数上限。
const IP_LIMIT: u64 = 5;
/// 每个密钥的请求数上限（远高于本文件各测试的请求数）。
const KEY_REQUESTS: u64 = 1_000;
/// 每个密钥的 token 上限（每分钟）。
const KEY_TOKENS: u64 = 100_000;
/// 缺省的请求数窗口与 token 窗口（毫秒）：都是一分钟。
const WINDOW_MS: i64 = 60_000;
/// 窗口分成 20 个桶，每个桶宽（毫秒）。
const BUCKET_MS: i64 = WINDOW_MS / 20;
/// 唯一信任其 `X-Forwarded-For` 的代理：测试客户端自己。
const TRUSTED_PROXY: &str = "127.0.0.1";

/// 本文件的测试共用一个网关：全局、密钥（甲覆盖为 3）、IP（信任 127.0.0.1 转发的 `X-Forwarded-For`）、
/// 模型（cheap 覆盖为 2）四层。
static ENV: Lazy<RedisGateway> = Lazy::new(|| {
    let limits = RateLimits {
        trusted_proxies: vec![TRUSTED_PROXY.to_string()],
        global: Some(Limits::requests(GLOBAL_LIMIT)),
        per_key: Some(Limits {
            tokens_per_minute: Some(KEY_TOKENS),
            ..Limits::requests(KEY_REQUESTS)
        }),
        per_ip: Some(Limits::requests(IP_LIMIT)),
        ..RateLimits::default()
    };
    RedisGateway::start("cnx-layers", limits)
});

fn 计数(segment: &str, subject: &str) -> i64 {
    ENV.counted(segment, subject, "r")
}

#[tokio::test]
async fn 密钥层拒绝时_全局与_ip_层不被消耗() {
    let client = reqwest::Client::new();
    let ask = Ask {
        forwarded: Some("198.51.100.1"),
        ..Ask::default()
    };
    for _ in 0..3 {
        let resp = chat(&client, ENV.gateway, key("甲"), ask).await;
        assert_eq!(resp.status(), 200);
    }
    for _ in 0..2 {
        let resp = chat(&client, ENV.gateway, key("甲"), ask).await;
        let error = expect_refused(resp, "客户端密钥").await;
        assert_eq!(error["type"], "requests");
    }
    assert_eq!(计数("k", "甲"), 3);
    assert_eq!(
        计数("ip", "198.51.100.1"),
        3,
        "被密钥层拒绝的请求不占 IP 层额度"
    );
    assert!(计数("g", "") >= 3);
}

#[tokio::test]
async fn ip_层按转发头区分客户端_拒绝不占密钥层额度() {
    let client = reqwest::Client::new();
    let from = |ip| Ask {
        forwarded: Some(ip),
        ..Ask::default()
    };
    for _ in 0..IP_LIMIT {
        let resp = chat(&client, ENV.gateway, key("乙"), from("203.0.113.7")).await;
        assert_eq!(resp.status(), 200);
    }
    let resp = chat(&client, ENV.gateway, key("乙"), from("203.0.113.7")).await;
    expect_refused(resp, "客户端 IP").await;
    let other = chat(&client, ENV.gateway, key("乙"), from("203.0.113.8")).await;
    assert_eq!(other.status(), 200, "另一个 IP 不受影响");
    assert_eq!(
        计数("k", "乙"),
        IP_LIMIT as i64 + 1,
        "被 IP 层拒绝的请求不占密钥层额度"
    );
    assert_eq!(计数("ip", "203.0.113.7"), IP_LIMIT as i64);
}

#[tokio::test]
async fn 模型层_按模型覆盖限流() {
    let client = reqwest::Client::new();
    let cheap = Ask {
        model: "cheap",
        forwarded: Some("192.0.2.50"),
        ..Ask::default()
    };
    for _ in 0..2 {
        assert_eq!(
            chat(&client, ENV.gateway, key("丙"), cheap).await.status(),
            200
        );
    }
    expect_refused(chat(&client, ENV.gateway, key("丙"), cheap).await, "模型").await;
    let fast = Ask {
        forwarded: Some("192.0.2.50"),
        ..Ask::default()
    };
    assert_eq!(
        chat(&client, ENV.gateway, key("丙"), fast).await.status(),
        200,
        "其他模型不受影响"
    );
}

#[tokio::test]
async fn 放行的响应_json_与_sse_都带最紧一层的额度头() {
    let client = reqwest::Client::new();
    let ask = Ask {
        forwarded: Some("192.0.2.77"),
        ..Ask::default()
    };
    let resp = chat(&client, ENV.gateway, key("丁"), ask).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-ratelimit-limit-requests"),
        IP_LIMIT.to_string(),
        "IP 层最紧"
    );
    assert_eq!(
        header(&resp, "x-ratelimit-remaining-requests"),
        (IP_LIMIT - 1).to_string()
    );
    assert!(
        header(&resp, "x-ratelimit-reset-requests").ends_with('s'),
        "形如 1m0s"
    );
    assert_eq!(
        header(&resp, "x-ratelimit-limit-tokens"),
        KEY_TOKENS.to_string()
    );
    let remaining: u64 = header(&resp, "x-ratelimit-remaining-tokens")
        .parse()
        .expect("剩余 token 是整数");
    assert!(remaining < KEY_TOKENS, "预留已计入：{remaining}");
    let stream = Ask {
        stream: true,
        ..ask
    };
    let resp = chat(&client, ENV.gateway, key("丁"), stream).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    assert_eq!(
        header(&resp, "x-ratelimit-remaining-requests"),
        (IP_LIMIT - 2).to_string()
    );
    assert!(!header(&resp, "x-ratelimit-reset-tokens").is_empty());
    resp.text().await.expect("流正常结束");
}

#[tokio::test]
async fn 计数的键会过期_过期时间盖住整个窗口() {
    let client = reqwest::Client::new();
    let ip = "192.0.2.91";
    let ask = Ask {
        forwarded: Some(ip),
        ..Ask::default()
    };
    assert_eq!(
        chat(&client, ENV.gateway, key("丁"), ask).await.status(),
        200
    );
    for (segment, subject) in [("ip", ip), ("k", "丁"), ("g", "")] {
        let ttl = pttl(&redis_url(), &limiter_key(&ENV.prefix, segment, subject));
        // 过期时间设在当前桶移出窗口再加一个桶之后：比窗口长，但不超过窗口加两个桶
        assert!(
            ttl > WINDOW_MS && ttl <= WINDOW_MS + 2 * BUCKET_MS,
            "{segment} 层的键还剩 {ttl} 毫秒，应在一个窗口与窗口加两个桶之间"
        );
    }
}
