//! Responses 会话存储对真实 Redis 的测试（`REDIS_URL`，缺省本机 6379）：保存、读回、按密钥隔离、过期时间。

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use chatnexus::redis_link::RedisLink;
use chatnexus::response_store::{ResponseStore, StoredResponse};

/// 没有设置 `REDIS_URL` 时使用的 Redis。
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// 命令超时。
const TIMEOUT: Duration = Duration::from_secs(2);
/// 保存的回复的过期时间。
const TTL: Duration = Duration::from_secs(600);

fn 存储(prefix: &str) -> (ResponseStore, Arc<RedisLink>) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string());
    let link = Arc::new(RedisLink::open(&url, false, TIMEOUT).expect("Redis 连接串合法"));
    (ResponseStore::new(Some(Arc::clone(&link)), prefix), link)
}

fn 回复(id: &str) -> StoredResponse {
    StoredResponse {
        input: vec![json!({ "role": "user", "content": "暗号是什么？" })],
        response: json!({ "id": id, "output": [{ "type": "message", "content": [{ "type": "output_text", "text": "青鸟" }] }] }),
    }
}

#[tokio::test]
async fn 会话_保存后同一密钥读回_别的密钥读不到() {
    let prefix = format!("chatnexus-test-store-{}:", std::process::id());
    let (store, _) = 存储(&prefix);
    let saved = 回复("resp_甲");
    store
        .save("团队甲", "resp_甲", &saved, TTL)
        .await
        .expect("保存成功");
    let loaded = store.load("团队甲", "resp_甲").await.expect("读取成功");
    assert_eq!(loaded.as_ref(), Some(&saved));
    assert_eq!(loaded.map(|s| s.output().len()), Some(1));
    assert_eq!(
        store.load("团队乙", "resp_甲").await.expect("读取成功"),
        None,
        "别的密钥读不到"
    );
    assert_eq!(
        store.load("团队甲", "resp_不存在").await.expect("读取成功"),
        None
    );
}

#[tokio::test]
async fn 会话_带过期时间_损坏的条目当作不存在() {
    let prefix = format!("chatnexus-test-store-ttl-{}:", std::process::id());
    let (store, link) = 存储(&prefix);
    store
        .save("甲", "resp_过期", &回复("resp_过期"), TTL)
        .await
        .expect("保存成功");
    let mut keys = redis::Cmd::new();
    keys.arg("KEYS").arg(format!("{prefix}resp:*"));
    let found: Vec<String> = link.query(&keys).await.expect("KEYS");
    assert_eq!(found.len(), 1, "{found:?}");
    let mut ttl = redis::Cmd::new();
    ttl.arg("TTL").arg(&found[0]);
    let seconds: i64 = link.query(&ttl).await.expect("TTL");
    assert!(seconds > 0 && seconds <= TTL.as_secs() as i64, "{seconds}");
    let mut corrupt = redis::Cmd::new();
    corrupt.arg("SET").arg(&found[0]).arg("不是 JSON");
    link.query::<()>(&corrupt).await.expect("SET");
    assert_eq!(store.load("甲", "resp_过期").await.expect("读取成功"), None);
}
