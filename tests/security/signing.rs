//! 请求签名与防重放：经真实 HTTP 访问进程内网关；进程内存储与真实 Redis 各测一遍。

use serde_json::Value;

use crate::env::{
    expect_error, signed_chat, ENV, PLAIN_KEY, SIGNED_KEY, SIGNING_SECRET, SOFT_KEY, SOFT_SECRET,
};
use crate::support::body::chat_bytes;
use crate::support::gateway::Gateway;
use crate::support::now;
use crate::support::signing::{fresh_nonce, sign_request, signed_post};

/// 同一 nonce 的并发请求数。
const CONCURRENT_REPLAYS: usize = 50;
const CHAT: &str = "/v1/chat/completions";

async fn 签名成功(gateway: Gateway) {
    let client = reqwest::Client::new();
    let resp = signed_chat(&client, gateway, "mock")
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["object"], "chat.completion");

    let stream_body = chat_bytes("mock", true);
    let signed = sign_request(
        SIGNING_SECRET,
        "POST",
        CHAT,
        now(),
        &fresh_nonce(),
        &stream_body,
    );
    let resp = signed_post(&client, gateway, CHAT, SIGNED_KEY, stream_body, &signed)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("读流");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

/// Redis 连接串的协议前缀（不得出现在给客户端的错误信息里）。
const REDIS_SCHEME: &str = "redis://";

#[tokio::test]
async fn 签名正确_进程内存储_通过() {
    签名成功(ENV.memory).await;
}

#[tokio::test]
async fn 签名正确_redis_存储_通过() {
    签名成功(ENV.redis).await;
}

async fn 重放被拒(gateway: Gateway) {
    let client = reqwest::Client::new();
    let body = chat_bytes("mock", false);
    let signed = sign_request(SIGNING_SECRET, "POST", CHAT, now(), &fresh_nonce(), &body);
    let first = signed_post(&client, gateway, CHAT, SIGNED_KEY, body.clone(), &signed)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(first.status(), 200);
    let again = signed_post(&client, gateway, CHAT, SIGNED_KEY, body, &signed)
        .send()
        .await
        .expect("请求失败");
    let error = expect_error(again, 401).await;
    assert_eq!(error["code"], "replayed_request");
    assert!(
        error["message"].as_str().unwrap_or("").contains("重放请求"),
        "{error}"
    );
}

#[tokio::test]
async fn 重放_进程内存储_第二次_401() {
    重放被拒(ENV.memory).await;
}

#[tokio::test]
async fn 重放_redis_存储_第二次_401() {
    重放被拒(ENV.redis).await;
}

/// 五十个完全相同的签名请求同时发出，恰好一个通过，其余都是重放。
async fn 并发重放只放行一个(gateway: Gateway) {
    let client = reqwest::Client::new();
    let body = chat_bytes("mock", false);
    let signed = sign_request(SIGNING_SECRET, "POST", CHAT, now(), &fresh_nonce(), &body);
    let before = ENV.mock().requests();
    let tasks: Vec<_> = (0..CONCURRENT_REPLAYS)
        .map(|_| {
            let request = signed_post(&client, gateway, CHAT, SIGNED_KEY, body.clone(), &signed);
            tokio::spawn(async move {
                let resp = request.send().await.expect("请求失败");
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.expect("JSON");
                (status, body)
            })
        })
        .collect();
    let mut accepted = 0;
    let mut replayed = 0;
    for task in tasks {
        let (status, body) = task.await.expect("任务不应 panic");
        match status {
            200 => accepted += 1,
            401 if body["error"]["code"] == "replayed_request" => replayed += 1,
            other => panic!("意外的应答 {other}：{body}"),
        }
    }
    assert_eq!(accepted, 1, "同一个 nonce 只能有一个请求通过");
    assert_eq!(replayed, CONCURRENT_REPLAYS - 1);
    assert!(ENV.mock().requests() > before, "通过的那个请求到达了上游");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn 并发五十个同_nonce_进程内存储_恰好一个通过() {
    并发重放只放行一个(ENV.memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn 并发五十个同_nonce_redis_存储_恰好一个通过() {
    并发重放只放行一个(ENV.redis).await;
}

#[tokio::test]
async fn redis_中的_nonce_键带前缀与密钥名且设置了过期时间() {
    let client = reqwest::Client::new();
    let body = chat_bytes("mock", false);
    let nonce = fresh_nonce();
    let signed = sign_request(SIGNING_SECRET, "POST", CHAT, now(), &nonce, &body);
    let resp = signed_post(&client, ENV.redis, CHAT, SIGNED_KEY, body, &signed)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200);
    let redis = redis::Client::open(ENV.redis_url.as_str()).expect("REDIS_URL 合法");
    let mut conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("测试需要可用的 Redis（bash tests/run.sh 会自动启动）");
    let key = format!("{}nonce:signed:{nonce}", ENV.redis_prefix);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!(
        pttl > 590_000 && pttl <= 600_000,
        "键 {key} 的过期时间应为两倍时间窗口（600 秒），实际 {pttl} 毫秒"
    );
}

#[tokio::test]
async fn 缺少签名_要求签名的密钥_401() {
    let client = reqwest::Client::new();
    let resp = client
        .post(ENV.memory.url(CHAT))
        .bearer_auth(SIGNED_KEY)
        .header("content-type", "application/json")
        .body(chat_bytes("mock", false))
        .send()
        .await
        .expect("请求失败");
    let error = expect_error(resp, 401).await;
    assert_eq!(error["code"], "signature_required");
    let partial = client
        .post(ENV.memory.url(CHAT))
        .bearer_auth(SIGNED_KEY)
        .header("x-chatnexus-nonce", fresh_nonce())
        .body(chat_bytes("mock", false))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(
        expect_error(partial, 401).await["code"],
        "signature_required"
    );
}

/// 用给定时间戳发一个签名请求（签名本身正确）。
async fn 按时间戳签名发送(client: &reqwest::Client, timestamp: u64) -> reqwest::Response {
    let body = chat_bytes("mock", false);
    let signed = sign_request(
        SIGNING_SECRET,
        "POST",
        CHAT,
        timestamp,
        &fresh_nonce(),
        &body,
    );
    signed_post(client, ENV.memory, CHAT, SIGNED_KEY, body, &signed)
        .send()
        .await
        .expect("请求失败")
}

#[tokio::test]
async fn 时间戳超出正负三百秒_401() {
    let client = reqwest::Client::new();
    for timestamp in [now() - 301, now() + 400, 0] {
        let error = expect_error(按时间戳签名发送(&client, timestamp).await, 401).await;
        assert_eq!(error["code"], "signature_expired", "时间戳 {timestamp}");
    }
    // 窗口内（稍早、稍晚）都通过
    for timestamp in [now() - 250, now() + 250] {
        let resp = 按时间戳签名发送(&client, timestamp).await;
        assert_eq!(resp.status(), 200, "时间戳 {timestamp}");
    }
}

#[tokio::test]
async fn 签名错误_401_且不消耗_nonce() {
    let client = reqwest::Client::new();
    let body = chat_bytes("mock", false);
    let nonce = fresh_nonce();
    let ts = now();
    // 用错误的密钥签名
    let wrong = sign_request(
        "cnxs-wrong-secret-0000000000000000000000",
        "POST",
        CHAT,
        ts,
        &nonce,
        &body,
    );
    let resp = signed_post(&client, ENV.redis, CHAT, SIGNED_KEY, body.clone(), &wrong)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(expect_error(resp, 401).await["code"], "invalid_signature");
    // 签名后篡改请求体
    let good = sign_request(SIGNING_SECRET, "POST", CHAT, ts, &nonce, &body);
    let tampered = chat_bytes("other", false);
    let resp = signed_post(&client, ENV.redis, CHAT, SIGNED_KEY, tampered, &good)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(expect_error(resp, 401).await["code"], "invalid_signature");
    // 签名时没带查询串，发送时带了
    let resp = signed_post(
        &client,
        ENV.redis,
        "/v1/chat/completions?x=1",
        SIGNED_KEY,
        body.clone(),
        &good,
    )
    .send()
    .await
    .expect("请求失败");
    assert_eq!(expect_error(resp, 401).await["code"], "invalid_signature");
    // 签名不对的请求没有占用 nonce：同一个 nonce 的正确请求仍然通过
    let resp = signed_post(&client, ENV.redis, CHAT, SIGNED_KEY, body, &good)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200, "签名不对的请求不得消耗 nonce");
}

#[tokio::test]
async fn 签名覆盖查询串_带查询串签名也能通过() {
    let client = reqwest::Client::new();
    let body = chat_bytes("mock", false);
    let path = "/v1/chat/completions?trace=abc&x=1";
    let signed = sign_request(SIGNING_SECRET, "POST", path, now(), &fresh_nonce(), &body);
    let resp = signed_post(&client, ENV.memory, path, SIGNED_KEY, body, &signed)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn 签名头格式错误或重复_401() {
    let client = reqwest::Client::new();
    let body = chat_bytes("mock", false);
    let good = sign_request(SIGNING_SECRET, "POST", CHAT, now(), &fresh_nonce(), &body);
    let cases = [
        ("x-chatnexus-nonce", "short"),
        ("x-chatnexus-nonce", "has/slash/0123456789"),
        ("x-chatnexus-timestamp", "not-a-number"),
        ("x-chatnexus-timestamp", "-1"),
        ("x-chatnexus-signature", "zz"),
    ];
    for (name, value) in cases {
        let mut signed = good.clone();
        match name {
            "x-chatnexus-nonce" => signed.nonce = value.to_string(),
            "x-chatnexus-timestamp" => signed.timestamp = value.to_string(),
            _ => signed.signature = value.to_string(),
        }
        let resp = signed_post(&client, ENV.memory, CHAT, SIGNED_KEY, body.clone(), &signed)
            .send()
            .await
            .expect("请求失败");
        let error = expect_error(resp, 401).await;
        assert_eq!(error["code"], "invalid_signature", "{name}: {value}");
    }
    // 重复的签名头有歧义（网关与前置代理可能各取一个），一律拒绝
    let resp = signed_post(&client, ENV.memory, CHAT, SIGNED_KEY, body, &good)
        .header("x-chatnexus-nonce", fresh_nonce())
        .send()
        .await
        .expect("请求失败");
    let error = expect_error(resp, 401).await;
    assert_eq!(error["code"], "invalid_signature");
    assert!(error["message"]
        .as_str()
        .unwrap_or("")
        .contains("只能出现一次"));
}

#[tokio::test]
async fn 模型列表_签名的_get_也校验并防重放() {
    let client = reqwest::Client::new();
    let signed = sign_request(
        SIGNING_SECRET,
        "GET",
        "/v1/models",
        now(),
        &fresh_nonce(),
        b"",
    );
    let send = || {
        client
            .get(ENV.memory.url("/v1/models"))
            .bearer_auth(SIGNED_KEY)
            .header("x-chatnexus-timestamp", &signed.timestamp)
            .header("x-chatnexus-nonce", &signed.nonce)
            .header("x-chatnexus-signature", &signed.signature)
            .send()
    };
    let first = send().await.expect("请求失败");
    assert_eq!(first.status(), 200);
    let again = send().await.expect("请求失败");
    assert_eq!(expect_error(again, 401).await["code"], "replayed_request");
    let unsigned = client
        .get(ENV.memory.url("/v1/models"))
        .bearer_auth(SIGNED_KEY)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(
        expect_error(unsigned, 401).await["code"],
        "signature_required"
    );
}

#[tokio::test]
async fn 不强制签名的密钥_不签可以_签了就必须正确() {
    let client = reqwest::Client::new();
    let body = chat_bytes("mock", false);
    let resp = client
        .post(ENV.memory.url(CHAT))
        .bearer_auth(SOFT_KEY)
        .body(body.clone())
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200, "未签名的请求放行（灰度阶段）");
    let good = sign_request(SOFT_SECRET, "POST", CHAT, now(), &fresh_nonce(), &body);
    let resp = signed_post(&client, ENV.memory, CHAT, SOFT_KEY, body.clone(), &good)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200);
    let replay = signed_post(&client, ENV.memory, CHAT, SOFT_KEY, body.clone(), &good)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(expect_error(replay, 401).await["code"], "replayed_request");
    let wrong = sign_request(SIGNING_SECRET, "POST", CHAT, now(), &fresh_nonce(), &body);
    let resp = signed_post(&client, ENV.memory, CHAT, SOFT_KEY, body, &wrong)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(expect_error(resp, 401).await["code"], "invalid_signature");
}

#[tokio::test]
async fn 不同密钥的_nonce_互不影响() {
    let client = reqwest::Client::new();
    let body = chat_bytes("mock", false);
    let nonce = fresh_nonce();
    let a = sign_request(SIGNING_SECRET, "POST", CHAT, now(), &nonce, &body);
    let b = sign_request(SOFT_SECRET, "POST", CHAT, now(), &nonce, &body);
    for (key, signed) in [(SIGNED_KEY, &a), (SOFT_KEY, &b)] {
        let resp = signed_post(&client, ENV.redis, CHAT, key, body.clone(), signed)
            .send()
            .await
            .expect("请求失败");
        assert_eq!(resp.status(), 200, "{key}");
    }
}

#[tokio::test]
async fn redis_不可达_签名请求_503_故障关闭_未签名请求不受影响() {
    let client = reqwest::Client::new();
    let resp = signed_chat(&client, ENV.redis_down, "mock")
        .send()
        .await
        .expect("请求失败");
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let error = expect_error(resp, 503).await;
    assert_eq!(error["code"], "nonce_store_unavailable");
    let message = error["message"].as_str().unwrap_or("");
    assert!(message.contains("防重放存储"), "{message}");
    assert!(
        !message.contains(REDIS_SCHEME),
        "不得向客户端暴露连接串：{message}"
    );
    // 再来一次，仍然 503（不会因为第一次失败而退回进程内存储）
    let again = signed_chat(&client, ENV.redis_down, "mock")
        .send()
        .await
        .expect("请求失败");
    assert_eq!(again.status(), 503);
}

#[tokio::test]
async fn redis_不可达_签名错误先被拒_未签名请求不受影响() {
    let client = reqwest::Client::new();
    // 签名不对的请求在查 Redis 之前就被拒（401 而不是 503）
    let body = chat_bytes("mock", false);
    let bad = sign_request(
        "cnxs-wrong-secret-0000000000000000000000",
        "POST",
        CHAT,
        now(),
        &fresh_nonce(),
        &body,
    );
    let resp = signed_post(
        &client,
        ENV.redis_down,
        CHAT,
        SIGNED_KEY,
        body.clone(),
        &bad,
    )
    .send()
    .await
    .expect("请求失败");
    assert_eq!(resp.status(), 401);
    // 不签名的密钥不依赖防重放存储
    let resp = client
        .post(ENV.redis_down.url(CHAT))
        .bearer_auth(PLAIN_KEY)
        .body(body)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200);
}
