//! 聊天补全的正常路径：非流式、流式、首块及时到达、并发、客户端断开。

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    authed, send_chat, sse_payloads, stream_content, CLIENT_KEY, ENV, UPSTREAM_KEY,
};
use crate::support::body::chat_body;
use crate::support::header;

/// 模拟器的缺省回复。
const MOCK_REPLY: &str = "你好！我是 ChatNexus 内置的模拟上游，这条回复没有调用任何真实模型。";
/// 并发流数。
const CONCURRENT_STREAMS: usize = 200;
/// 客户端断开后，上游连接必须在这段时间内被关闭。
const DISCONNECT_DEADLINE: Duration = Duration::from_secs(1);

#[tokio::test]
async fn 非流式_返回完整的_openai_响应() {
    let resp = send_chat("fast", false).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("application/json"));
    let body: Value = resp.json().await.expect("响应必须是 JSON");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], MOCK_REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + 5)
    );
}

#[tokio::test]
async fn 流式_事件完整且以_done_结束() {
    let resp = send_chat("paced", true).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    let text = resp.text().await.expect("读取流失败");
    let payloads = sse_payloads(&text);
    assert_eq!(
        payloads.last().map(String::as_str),
        Some("[DONE]"),
        "流必须以 [DONE] 结束：{text}"
    );
    assert_eq!(stream_content(&payloads), MOCK_REPLY);
    let first: Value = serde_json::from_str(&payloads[0]).expect("首块必须是 JSON");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
}

#[tokio::test]
async fn 流式_首块在上游发完之前到达客户端() {
    let client = reqwest::Client::new();
    let slow = ENV.mock("slow");
    let completed_before = slow.streams_completed();
    let started = Instant::now();
    let mut resp = authed(&client, ENV.url("/v1/chat/completions"))
        .json(&chat_body("slow", true))
        .send()
        .await
        .expect("请求失败");
    let first = resp.chunk().await.expect("读取失败").expect("必须收到首块");
    let first_at = started.elapsed();
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: "),
        "首块必须是 SSE 事件"
    );
    assert_eq!(
        slow.streams_completed(),
        completed_before,
        "收到首块时上游还不应发完（20 块 × 100 毫秒）"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("读取失败") {
        rest.extend_from_slice(&chunk);
    }
    assert!(started.elapsed() > first_at, "其余块必须在首块之后到达");
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn 上游收到改写后的请求与正确的请求头() {
    let client = reqwest::Client::new();
    let resp = authed(&client, ENV.url("/v1/chat/completions"))
        .header("accept-encoding", "gzip")
        .json(&chat_body("改名", false))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-encoding").is_none(),
        "网关不压缩回复：客户端声明接受 gzip 时回复也原样写出"
    );
    let recorded = ENV.mock("fast").recent().into_iter().rev().find(|r| {
        serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| v["model"] == "upstream-model")
    });
    let recorded = recorded.expect("上游必须收到改写为 upstream-model 的请求");
    assert_eq!(
        recorded.path, "/v1/chat/completions",
        "base_url 已带 /v1 时不得重复"
    );
    assert_eq!(
        recorded.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert!(
        !recorded.headers.iter().any(|(_, v)| v.contains(CLIENT_KEY)),
        "客户端密钥不得转发给上游"
    );
    assert_eq!(recorded.header("accept-encoding"), Some("identity"));
    assert!(recorded
        .header("host")
        .is_some_and(|h| h.starts_with("127.0.0.1:")));
    let body: Value = serde_json::from_slice(&recorded.body).expect("上游收到的必须是 JSON");
    assert_eq!(body["messages"][0]["content"], "你好，请介绍一下你自己");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn 并发_两百个流全部完整() {
    let client = reqwest::Client::new();
    let mut tasks = Vec::with_capacity(CONCURRENT_STREAMS);
    for _ in 0..CONCURRENT_STREAMS {
        let request =
            authed(&client, ENV.url("/v1/chat/completions")).json(&chat_body("paced", true));
        tasks.push(tokio::spawn(async move {
            let text = request.send().await?.error_for_status()?.text().await?;
            Ok::<String, reqwest::Error>(text)
        }));
    }
    for task in tasks {
        let text = task
            .await
            .expect("任务不应 panic")
            .expect("每个流都必须成功");
        let payloads = sse_payloads(&text);
        assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(stream_content(&payloads), MOCK_REPLY);
    }
}

#[tokio::test]
async fn 客户端断开_一秒内关闭上游连接() {
    let abandon = ENV.mock("abandon");
    let aborted_before = abandon.streams_aborted();
    let client = reqwest::Client::new();
    let mut resp = authed(&client, ENV.url("/v1/chat/completions"))
        .json(&chat_body("abandon", true))
        .send()
        .await
        .expect("请求失败");
    resp.chunk().await.expect("读取失败").expect("必须收到首块");
    drop(resp);
    drop(client);
    let deadline = Instant::now() + DISCONNECT_DEADLINE;
    while abandon.streams_aborted() == aborted_before {
        assert!(
            Instant::now() < deadline,
            "客户端断开后 1 秒内上游连接没有被关闭"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(abandon.streams_completed(), 0, "被放弃的流不应被上游发完");
}

#[tokio::test]
async fn https_上游_按主机名连接并校验证书() {
    let secure = ENV.mock("secure");
    let before = secure.requests();
    let resp = send_chat("secure", true).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("读取流失败");
    assert_eq!(stream_content(&sse_payloads(&text)), MOCK_REPLY);
    assert_eq!(
        secure.requests(),
        before + 1,
        "请求必须经 TLS 到达 HTTPS 上游"
    );
    let recorded = secure.recent().pop().expect("必须记录到请求");
    assert!(
        recorded
            .header("host")
            .is_some_and(|h| h.starts_with("localhost:")),
        "Host 必须是主机名"
    );
}

#[tokio::test]
async fn 响应里的模型名一律是客户端请求的名字_发给上游的名字在响应头里() {
    let client = reqwest::Client::new();
    for (model, upstream) in [("改名", "upstream-model"), ("claude", "claude-sonnet-4-5")] {
        for stream in [false, true] {
            let resp = authed(&client, ENV.url("/v1/chat/completions"))
                .json(&chat_body(model, stream))
                .send()
                .await
                .expect("请求失败");
            assert_eq!(resp.status(), 200);
            assert_eq!(header(&resp, "x-chatnexus-upstream-model"), upstream);
            let text = resp.text().await.expect("读取响应");
            let bodies: Vec<String> = if stream {
                sse_payloads(&text)
                    .into_iter()
                    .filter(|p| p != "[DONE]")
                    .collect()
            } else {
                vec![text]
            };
            for body in bodies {
                let value: Value = serde_json::from_str(&body).expect("JSON");
                assert_eq!(value["model"], model, "流式 {stream}：{body}");
            }
        }
    }
}
