//! token 的预留与结算：准入时按“输入估算 + max_tokens”预留，结束时按实际用量结算；
//! 中途取消的流退还没用完的部分。

use futures_util::StreamExt;
use once_cell::sync::Lazy;

use crate::env::{
    chat, eventually, expect_refused, key, Ask, RedisGateway, FAST_COMPLETION_TOKENS,
    FAST_PROMPT_TOKENS,
};
use crate::support::config::{Limits, RateLimits};

/// 每个密钥每分钟的 token 上限。
const KEY_TOKENS: u64 = 5_000;
/// 流式请求的 `max_tokens`：预留远大于被取消时的实际用量。
const STREAM_MAX_TOKENS: u64 = 3_000;
/// 读到这么多块就断开流。
const CHUNKS_BEFORE_CANCEL: usize = 2;
/// 被取消的流的估算用量上限（输入约几十个 token，输出约为已写出的块数）。
const CANCELLED_USAGE_CEILING: i64 = 200;

/// 本文件的测试共用一个网关：只有每个密钥的 token 上限。
static ENV: Lazy<RedisGateway> = Lazy::new(|| {
    let limits = RateLimits {
        per_key: Some(Limits::tokens_per_minute(KEY_TOKENS)),
        ..RateLimits::default()
    };
    RedisGateway::start("cnx-tokens", limits)
});

/// 某个密钥在 Redis 中的 token 总和。
fn 已用(name: &str) -> i64 {
    ENV.counted("k", name, "t")
}

#[tokio::test]
async fn 非流式_结束后按上游报告的实际用量结算() {
    let client = reqwest::Client::new();
    let resp = chat(&client, ENV.gateway, key("甲"), Ask::default()).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("读完响应");
    let exact = (FAST_PROMPT_TOKENS + FAST_COMPLETION_TOKENS) as i64;
    eventually("预留结算为实际用量", || 已用("甲") == exact).await;
}

#[tokio::test]
async fn 中途取消的流_退还没用完的预留() {
    let client = reqwest::Client::new();
    let ask = Ask {
        model: "stream",
        stream: true,
        max_tokens: STREAM_MAX_TOKENS,
        ..Ask::default()
    };
    let resp = chat(&client, ENV.gateway, key("乙"), ask).await;
    assert_eq!(resp.status(), 200);
    assert!(
        已用("乙") > STREAM_MAX_TOKENS as i64,
        "流进行中时预留全部计入"
    );
    let mut body = resp.bytes_stream();
    for _ in 0..CHUNKS_BEFORE_CANCEL {
        body.next().await.expect("至少有两块").expect("读块");
    }
    drop(body);
    eventually("取消后退还预留", || {
        已用("乙") < CANCELLED_USAGE_CEILING
    })
    .await;
    assert!(已用("乙") > 0, "已经生成的部分仍然计入");
}

#[tokio::test]
async fn 预留超过剩余额度时拒绝_超过上限本身时说明永远不会被接受() {
    let client = reqwest::Client::new();
    let big = Ask {
        max_tokens: KEY_TOKENS * 2,
        ..Ask::default()
    };
    let error = expect_refused(
        chat(&client, ENV.gateway, key("丙"), big).await,
        "客户端密钥",
    )
    .await;
    assert_eq!(error["type"], "tokens");
    assert!(error["message"]
        .as_str()
        .unwrap_or_default()
        .contains("永远不会被接受"));
    let most = Ask {
        max_tokens: KEY_TOKENS - 100,
        ..Ask::default()
    };
    let resp = chat(&client, ENV.gateway, key("丙"), most).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("读完响应");
    eventually("第一个请求已结算", || 已用("丙") < 100).await;
    let again = chat(&client, ENV.gateway, key("丙"), most).await;
    assert_eq!(again.status(), 200, "结算退还后额度够用");
}
