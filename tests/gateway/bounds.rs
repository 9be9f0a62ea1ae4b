//! 客户端与上游都不能让网关无限占用资源：不读的客户端被写超时放弃，超大的上游流被截断。

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use chatnexus::mock::MockSettings;

use crate::support::body::chat_body;
use crate::support::config::{ClientKey, GatewayConfig, Model, Provider, ProviderKind};
use crate::support::gateway::{Emulators, Gateway, Launch};

/// 这组测试的客户端密钥。
const KEY: &str = "sk-chatnexus-bounds";
/// 写客户端的超时（毫秒）：很短，测试不必久等。
const WRITE_TIMEOUT_MS: u64 = 300;
/// 单个上游事件的上限（字节）。
const EVENT_CAP: usize = 64 * 1024;
/// 整个上游流的上限（字节）。
const STREAM_CAP: u64 = 256 * 1024;
/// 不读的客户端面前的流总量：远超回环套接字的缓冲区（接收缓冲区可自动增长到 32 MB）。
const TORRENT_BYTES: usize = 96 * 1024 * 1024;
/// 洪流的块数：每块约 48 KB，在单个事件的上限以内。
const TORRENT_CHUNKS: usize = 2048;
/// `big-event` 的回复（分两块，每个事件约 150 KB，超过单个事件的上限）。
const BIG_EVENT_REPLY: usize = 300 * 1024;
/// `long-stream` 的回复（每个事件约 5 KB，总量超过整个流的上限）。
const LONG_STREAM_REPLY: usize = 500 * 1024;
/// `long-stream` 的块数。
const LONG_STREAM_CHUNKS: usize = 100;
/// 轮询指标的间隔。
const POLL: Duration = Duration::from_millis(50);
/// 等待的上限（只防挂起，不是性能断言）。
const HANG_GUARD: Duration = Duration::from_secs(15);

/// 启动一个网关，每个模拟上游一个同名模型；`base` 为上游的并发上限（没有则不限）。
fn start(
    upstreams: Vec<(&str, MockSettings, Option<u32>)>,
    tune: impl FnOnce(GatewayConfig) -> GatewayConfig,
) -> Gateway {
    let mut mocks = Emulators::default();
    let mut config =
        tune(GatewayConfig::on_loopback().with_metrics()).key(ClientKey::new("边界", KEY));
    for (name, settings, base) in upstreams {
        let url = mocks.add(name, settings);
        let base_url = format!("{url}/v1");
        let mut provider =
            Provider::new(name, ProviderKind::OpenAiCompatible, &base_url).api_key("sk-upstream");
        if let Some(base) = base {
            provider = provider.concurrency(base, base);
        }
        config = config.provider(provider).model(Model::direct(name));
    }
    Launch::new(config).emulators(&mut mocks).start()
}

/// 回复总共 `bytes` 字节、分成 `chunks` 块的模拟上游。
fn sized(chunks: usize, bytes: usize) -> MockSettings {
    MockSettings {
        chunks,
        reply: "大".repeat(bytes / 3),
        ..MockSettings::default()
    }
}

/// 读一个计数器：`label` 给出时只取带这个标签（如 `what="event"`）的样本之和。
async fn counter(gateway: &Gateway, name: &str, label: Option<&str>) -> f64 {
    let text = reqwest::get(gateway.metrics_url())
        .await
        .expect("抓取指标")
        .text()
        .await
        .expect("读取指标");
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter(|line| label.is_none_or(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// 轮询直到计数器达到 `at_least`。
async fn wait_counter(gateway: &Gateway, name: &str, label: Option<&str>, at_least: f64) {
    let deadline = Instant::now() + HANG_GUARD;
    while counter(gateway, name, label).await < at_least {
        assert!(Instant::now() < deadline, "等待指标 {name} 超时");
        tokio::time::sleep(POLL).await;
    }
}

/// 发一个流式请求后再也不读：返回连接（保持打开，直到测试结束）。
fn stalled_stream(gateway: &Gateway, model: &str) -> TcpStream {
    let body = chat_body(model, true).to_string();
    let mut stream = TcpStream::connect(gateway.addr).expect("连接网关");
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        gateway.addr,
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("发送请求");
    stream
}

/// 用 reqwest 发一个流式请求，读完全部内容。
async fn stream_text(gateway: &Gateway, model: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body(model, true))
        .send()
        .await
        .expect("请求送达网关");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("读完响应"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 客户端不读_写超时后放弃_并发名额随之释放() {
    // 一个每块都不小、总量远超套接字缓冲区的流：客户端不读时写必然阻塞；目标的并发上限是 1
    let torrent = sized(TORRENT_CHUNKS, TORRENT_BYTES);
    let gateway = start(vec![("torrent", torrent, Some(1))], |c| {
        c.client_write_timeout_ms(WRITE_TIMEOUT_MS)
    });
    let _stalled = stalled_stream(&gateway, "torrent");
    wait_counter(&gateway, "llm_client_write_timeouts_total", None, 1.0).await;
    // 停滞的流还占着名额的话，这个请求只能得到 503
    let resp = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("torrent", true))
        .send()
        .await
        .expect("请求送达网关");
    assert_eq!(resp.status(), 200, "写超时后上游连接与并发名额已释放");
    let stalled = counter(&gateway, "llm_client_write_timeouts_total", None).await;
    assert!(stalled >= 1.0, "写超时计入指标");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 上游的单个事件或整个流超过上限_以一个错误结束_并计入指标() {
    let upstreams = vec![
        ("big-event", sized(2, BIG_EVENT_REPLY), None),
        (
            "long-stream",
            sized(LONG_STREAM_CHUNKS, LONG_STREAM_REPLY),
            None,
        ),
    ];
    let gateway = start(upstreams, |c| c.stream_caps(EVENT_CAP, STREAM_CAP));
    for (model, what) in [("big-event", "event"), ("long-stream", "stream")] {
        let (status, text) = stream_text(&gateway, model).await;
        assert!(
            text.contains("upstream_response_too_large"),
            "{model}：应以超限错误结束（状态 {status}）：{}",
            &text[text.len().saturating_sub(300)..]
        );
        assert!(!text.contains("[DONE]"), "{model}：被截断的流不能发 [DONE]");
        let label = format!("what=\"{what}\"");
        wait_counter(&gateway, "llm_stream_oversize_total", Some(&label), 1.0).await;
    }
}
