//! 请求体大小：8 MiB 字节不差地到达上游，超过 10 MiB 上限返回 413。

use sha2::{Digest, Sha256};

use crate::common::{authed, expect_error, ENV};

/// 大请求的目标大小。
const BIG_BODY_BYTES: usize = 8 * 1024 * 1024;
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
