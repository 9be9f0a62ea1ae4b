//! 模型允许列表、CORS、安全响应头、上游地址只来自配置、客户端凭据不转发。

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::env::{
    expect_error, signed_chat, ALLOWED_ORIGIN, ENV, LIMITED_KEY, PLAIN_KEY, SIGNED_KEY,
    SIGNING_SECRET, UPSTREAM_KEY,
};
use crate::support::body::chat_bytes;

const CHAT: &str = "/v1/chat/completions";

async fn 聊天(key: &str, model: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(ENV.memory.url(CHAT))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(chat_bytes(model, false))
        .send()
        .await
        .expect("请求失败")
}

#[tokio::test]
async fn 模型允许列表_之外的模型_403_permission_error() {
    assert_eq!(聊天(LIMITED_KEY, "mock").await.status(), 200);
    for model in ["other", "根本不存在的模型"] {
        let error = expect_error(聊天(LIMITED_KEY, model).await, 403).await;
        assert_eq!(error["type"], "permission_error", "{model}");
        assert_eq!(error["code"], "model_not_allowed", "{model}");
        assert_eq!(error["param"], "model");
    }
    assert_eq!(
        聊天(PLAIN_KEY, "other").await.status(),
        200,
        "不受限的密钥照常"
    );
    let error = expect_error(聊天(PLAIN_KEY, "根本不存在的模型").await, 404).await;
    assert_eq!(error["code"], "model_not_found");
}

async fn 模型列表(key: &str) -> Vec<String> {
    let body: Value = reqwest::Client::new()
        .get(ENV.memory.url("/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .expect("请求失败")
        .json()
        .await
        .expect("JSON");
    body["data"]
        .as_array()
        .expect("data 是数组")
        .iter()
        .map(|m| m["id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn 模型列表_只显示该密钥允许的模型() {
    assert_eq!(模型列表(LIMITED_KEY).await, vec!["mock"]);
    assert_eq!(模型列表(PLAIN_KEY).await, vec!["mock", "other"]);
}

fn 断言安全头(resp: &reqwest::Response, what: &str) {
    let h = resp.headers();
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("cache-control"), "no-store", "{what}");
    assert!(
        get("content-security-policy").contains("default-src 'none'"),
        "{what}"
    );
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    for name in ["x-content-type-options", "cache-control", "x-request-id"] {
        assert!(
            h.get_all(name).iter().count() <= 1,
            "{what}：{name} 不应重复出现"
        );
    }
}

#[tokio::test]
async fn 安全头_成功_流式_错误_本地接口都有() {
    let client = reqwest::Client::new();
    断言安全头(&聊天(PLAIN_KEY, "mock").await, "非流式 200");
    let stream = client
        .post(ENV.memory.url(CHAT))
        .bearer_auth(PLAIN_KEY)
        .body(chat_bytes("mock", true))
        .send()
        .await
        .expect("请求失败");
    断言安全头(&stream, "SSE");
    let _ = stream.text().await;
    let unauthorized = client
        .post(ENV.memory.url(CHAT))
        .body(chat_bytes("mock", false))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(unauthorized.status(), 401);
    断言安全头(&unauthorized, "401");
    let missing = client
        .get(ENV.redis.url("/nope"))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(missing.status(), 404);
    断言安全头(&missing, "404");
    let health = client
        .get(ENV.redis.url("/health"))
        .send()
        .await
        .expect("请求失败");
    断言安全头(&health, "/health");
    let unavailable = signed_chat(&client, ENV.redis_down, "mock")
        .send()
        .await
        .expect("请求失败");
    assert_eq!(unavailable.status(), 503);
    断言安全头(&unavailable, "503");
}

fn 头(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test]
async fn cors_允许的来源_预检_204_并带允许头() {
    let resp = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, ENV.memory.url(CHAT))
        .header("origin", ALLOWED_ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, x-chatnexus-signature, x-stainless-os",
        )
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 204);
    assert_eq!(
        头(&resp, "access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
    assert_eq!(
        头(&resp, "access-control-allow-methods").as_deref(),
        Some("GET, POST")
    );
    assert_eq!(
        头(&resp, "access-control-allow-headers").as_deref(),
        Some("authorization, content-type, x-chatnexus-signature, x-stainless-os")
    );
    assert_eq!(头(&resp, "access-control-max-age").as_deref(), Some("120"));
    assert_eq!(头(&resp, "vary").as_deref(), Some("Origin"));
    assert!(
        头(&resp, "access-control-allow-credentials").is_none(),
        "网关不用 Cookie，不允许携带凭据"
    );
}

#[tokio::test]
async fn cors_不允许的来源_预检_403_且没有允许头() {
    let resp = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, ENV.memory.url(CHAT))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("请求失败");
    assert!(头(&resp, "access-control-allow-origin").is_none());
    let error = expect_error(resp, 403).await;
    assert_eq!(error["code"], "cors_origin_not_allowed");
}

#[tokio::test]
async fn cors_实际请求_只给允许的来源加允许头() {
    let client = reqwest::Client::new();
    let send = |origin: &'static str| {
        client
            .post(ENV.memory.url(CHAT))
            .bearer_auth(PLAIN_KEY)
            .header("origin", origin)
            .body(chat_bytes("mock", false))
            .send()
    };
    let allowed = send(ALLOWED_ORIGIN).await.expect("请求失败");
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        头(&allowed, "access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
    let exposed = 头(&allowed, "access-control-expose-headers").unwrap_or_default();
    assert!(
        exposed.starts_with("retry-after") && exposed.contains("x-ratelimit-remaining-requests"),
        "限流的等待时间与额度头对浏览器公开：{exposed}"
    );
    let denied = send("https://evil.example.com").await.expect("请求失败");
    assert!(头(&denied, "access-control-allow-origin").is_none());
    assert_eq!(头(&denied, "vary").as_deref(), Some("Origin"));
    // 错误响应也要带，浏览器里的前端才能读到错误信息
    let error = client
        .post(ENV.memory.url(CHAT))
        .header("origin", ALLOWED_ORIGIN)
        .body(chat_bytes("mock", false))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(error.status(), 401);
    assert_eq!(
        头(&error, "access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
}

#[tokio::test]
async fn cors_缺省关闭_预检得到_405_且没有任何_cors_头() {
    let resp = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, ENV.redis.url(CHAT))
        .header("origin", ALLOWED_ORIGIN)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 405);
    assert!(头(&resp, "access-control-allow-origin").is_none());
    assert!(头(&resp, "vary").is_none());
    let actual = reqwest::Client::new()
        .post(ENV.redis.url(CHAT))
        .bearer_auth(PLAIN_KEY)
        .header("origin", ALLOWED_ORIGIN)
        .body(chat_bytes("mock", false))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(actual.status(), 200);
    assert!(头(&actual, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn 上游_收到解密后的上游密钥_收不到客户端凭据与签名头() {
    let client = reqwest::Client::new();
    let resp = signed_chat(&client, ENV.memory, "other")
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200);
    let recorded = ENV
        .mock()
        .recent()
        .into_iter()
        .rev()
        .find(|r| {
            serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| v["model"] == "other-upstream")
        })
        .expect("上游必须收到请求");
    assert_eq!(
        recorded.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str()),
        "上游密钥由 api_key_enc 解密而来"
    );
    for (name, value) in &recorded.headers {
        assert!(
            !value.contains(SIGNED_KEY),
            "客户端密钥出现在上游请求头 {name}"
        );
        assert!(
            !value.contains(SIGNING_SECRET),
            "签名密钥出现在上游请求头 {name}"
        );
        assert!(
            !name.starts_with("x-chatnexus-"),
            "签名头 {name} 不得转发给上游"
        );
        assert_ne!(name, "origin", "客户端的 Origin 不得转发给上游");
    }
}

/// 用原始 TCP 发一个请求行为绝对形式、Host 指向别处的请求。
fn 原始请求(request: &str) -> String {
    let mut stream = TcpStream::connect(ENV.memory.addr).expect("连接网关");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("设置超时");
    stream.write_all(request.as_bytes()).expect("写请求");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn 上游地址只来自配置_客户端的_host_与绝对_url_不起作用() {
    let body = String::from_utf8(chat_bytes("other", false)).expect("UTF-8");
    let before = ENV.mock().requests();
    let request = format!(
        "POST http://evil.invalid:9/v1/chat/completions HTTP/1.1\r\nHost: evil.invalid:9\r\nAuthorization: Bearer {PLAIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = tokio::task::spawn_blocking(move || 原始请求(&request))
        .await
        .expect("任务不应 panic");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(ENV.mock().requests() > before, "请求必须到达配置里的上游");
    let recorded = ENV.mock().recent().pop().expect("上游收到请求");
    assert_eq!(
        recorded.header("host"),
        Some(format!("127.0.0.1:{}", ENV.mock_port()).as_str()),
        "Host 来自配置的 base_url，而不是客户端"
    );
}
