//! 请求体大小：8 MiB 字节不差地到达上游，超过 10 MiB 上限返回 413。

use sha2::{Digest, Sha256};

use crate::common::{authed, expect_error, ENV};
use crate::support::body::chat_body;

/// 大请求的目标大小。
const BIG_BODY_BYTES: usize = 8 * 1024 * 1024;
/// 等待 100 Continue 的最长时间（curl 缺省只等 1 秒就自行上传）。
const INTERIM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// 超过上限的请求大小。
const OVERSIZE_BODY_BYTES: usize = 11 * 1024 * 1024;

/// 构造一个约 `size` 字节、内容为中文的聊天请求体。
fn 请求体(size: usize) -> Vec<u8> {
    let text = "长对话与图片让请求轻易超过六十四千字节。".repeat(size / 57 + 1);
    let body =
        serde_json::json!({ "model": "big", "messages": [ { "role": "user", "content": text } ] });
    serde_json::to_vec(&body).expect("可序列化")
}

#[tokio::test]
async fn 八兆请求体_字节不差地到达上游() {
    let body = 请求体(BIG_BODY_BYTES);
    assert!(body.len() >= BIG_BODY_BYTES);
    let digest = Sha256::digest(&body);
    let client = reqwest::Client::new();
    let resp = authed(&client, ENV.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200);
    let recorded = ENV
        .mock("big")
        .recent()
        .into_iter()
        .rev()
        .find(|r| r.body.len() == body.len());
    let recorded = recorded.expect("上游必须收到同样长度的请求体");
    assert_eq!(
        Sha256::digest(&recorded.body),
        digest,
        "上游收到的请求体与发送的不一致"
    );
}

#[tokio::test]
async fn 超过上限的请求体_返回_413() {
    let client = reqwest::Client::new();
    let resp = authed(&client, ENV.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(请求体(OVERSIZE_BODY_BYTES))
        .send()
        .await
        .expect("请求失败");
    let e = expect_error(resp, 413).await;
    assert_eq!(e["code"], "request_too_large");
}

#[tokio::test]
async fn 分块上传超过上限_同样返回_413() {
    let body = 请求体(OVERSIZE_BODY_BYTES);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let stream = futures_util::stream::iter(chunks);
    let client = reqwest::Client::new();
    let resp = authed(&client, ENV.url("/v1/chat/completions"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("请求失败");
    expect_error(resp, 413).await;
}

#[tokio::test]
async fn 期待_100_continue_的客户端先收到_100_再上传() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let body = serde_json::to_vec(&chat_body("fast", false)).expect("可序列化");
    let mut stream = tokio::net::TcpStream::connect(ENV.gateway.addr)
        .await
        .expect("连接网关");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        crate::common::CLIENT_KEY,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("写请求头");
    let mut interim = [0u8; 64];
    let n = tokio::time::timeout(INTERIM_WAIT, stream.read(&mut interim))
        .await
        .expect("网关没有发出 100 Continue")
        .expect("读 100 响应");
    assert!(
        String::from_utf8_lossy(&interim[..n]).starts_with("HTTP/1.1 100"),
        "上传请求体前必须先收到 100 Continue"
    );
    stream.write_all(&body).await.expect("写请求体");
    let mut reply = vec![0u8; 4096];
    let n = stream.read(&mut reply).await.expect("读最终响应");
    assert!(
        String::from_utf8_lossy(&reply[..n]).starts_with("HTTP/1.1 200"),
        "最终响应必须是 200"
    );
}
