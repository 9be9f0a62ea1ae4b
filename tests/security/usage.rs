//! 按客户端密钥累计用量：请求经配置了 Redis 的网关结束后，Redis 中该密钥当天的哈希精确增加。

use std::time::{Duration, Instant};

use chatnexus::metrics::usage_key;

use crate::env::{ENV, USAGE_KEY};
use crate::support::body::chat_bytes;

/// 等待日志钩子写完 Redis 的最长时间（只防挂起）。
const WRITE_WAIT: Duration = Duration::from_secs(5);
/// 模拟器（3 块）报告的输出 token 数。
const MOCK_COMPLETION_TOKENS: i64 = 3;
/// 模拟器估算输入 token 时每个 token 对应的字节数。
const BYTES_PER_TOKEN: i64 = 4;

fn 读哈希(key: &str) -> std::collections::HashMap<String, String> {
    let client = redis::Client::open(ENV.redis_url.as_str()).expect("Redis 连接串");
    let mut conn = client.get_connection().expect("连接 Redis");
    redis::cmd("HGETALL")
        .arg(key)
        .query(&mut conn)
        .expect("读取哈希")
}

#[tokio::test]
async fn 用量_按密钥与日期累计到_redis() {
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let key = usage_key(&ENV.redis_prefix, "usage", &day);
    let body = chat_bytes("mock", false);
    let resp = reqwest::Client::new()
        .post(ENV.redis.url("/v1/chat/completions"))
        .bearer_auth(USAGE_KEY)
        .body(body.clone())
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("读取响应");
    let deadline = Instant::now() + WRITE_WAIT;
    let mut hash = 读哈希(&key);
    while hash.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        hash = 读哈希(&key);
    }
    let field = |name: &str| {
        hash.get(name)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(field("requests"), 1.0, "{hash:?}");
    assert_eq!(field("output"), MOCK_COMPLETION_TOKENS as f64);
    assert_eq!(
        field("input"),
        (body.len() as i64 / BYTES_PER_TOKEN) as f64,
        "输入按模拟器的估算"
    );
    assert_eq!(field("cost_usd"), 0.0, "没有价目表时费用为 0");
}
