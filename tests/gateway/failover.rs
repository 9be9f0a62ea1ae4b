//! 上游选择与故障转移：每种上游故障都换到备用目标、限流按 Retry-After 暂停、流中断开不重试、
//! 按协议重新翻译、一千个请求零失败、更快的目标分到多数流量、熔断后恢复、全部故障时快速失败、
//! 主动健康检查，以及各种超时的说明。全部经 127.0.0.1 的真实 HTTP。

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use crate::common::{
    authed, expect_error, expect_stream_cut, json_of, send_chat, sse_payloads, stream_content, ENV,
};
use crate::support::body::chat_body_saying;
use chatnexus::mock::{MockStats, Recorded};

/// 模拟器的缺省回复（备用目标回复的内容）。
const MOCK_REPLY: &str = "你好！我是 ChatNexus 内置的模拟上游，这条回复没有调用任何真实模型。";
/// 防止测试挂死的宽松上限（不是性能断言）。
const HANG_GUARD: Duration = Duration::from_secs(30);
/// 轮询状态变化的间隔。
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// 轮询的最多次数（配合间隔约 20 秒，只防挂死）。
const MAX_POLLS: usize = 200;
/// 一千个请求的测试中同时在途的请求数。
const CONCURRENCY: usize = 20;
/// 测试配置中连续多少次失败就熔断。
const BREAKER_THRESHOLD: usize = 3;

/// 带唯一标记的聊天请求体：测试凭标记在模拟器的记录里找到自己的请求。
fn marked_body(model: &str, stream: bool, marker: &str) -> Value {
    chat_body_saying(model, stream, &format!("故障转移测试：{marker}"))
}

/// 发送带标记的请求（带防挂死上限）。
async fn send_marked(model: &str, stream: bool, marker: &str) -> reqwest::Response {
    let client = reqwest::Client::new();
    let request =
        authed(&client, ENV.url("/v1/chat/completions")).json(&marked_body(model, stream, marker));
    tokio::time::timeout(HANG_GUARD, request.send())
        .await
        .expect("网关必须在防挂死上限内应答")
        .expect("请求失败")
}

/// 模拟器记录中带该标记的请求。
fn recorded_with(mock: &MockStats, marker: &str) -> Option<Recorded> {
    mock.recent()
        .into_iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains(marker))
}

/// 断言响应成功且内容完整（流式时以 `[DONE]` 结束）。
async fn expect_success(resp: reqwest::Response, stream: bool) {
    assert_eq!(resp.status(), 200, "备用目标应当接手");
    if stream {
        let text = resp.text().await.expect("读取流失败");
        let payloads = sse_payloads(&text);
        assert_eq!(
            payloads.last().map(String::as_str),
            Some("[DONE]"),
            "{text}"
        );
        assert_eq!(
            stream_content(&payloads),
            MOCK_REPLY,
            "只能有一份回复：{text}"
        );
    } else {
        let body: Value = resp.json().await.expect("响应必须是 JSON");
        assert_eq!(body["choices"][0]["message"]["content"], MOCK_REPLY);
    }
}

/// 指标端口上健康详情的地址。
fn health_details() -> String {
    format!(
        "http://{}/health/details",
        ENV.gateway.metrics.expect("测试网关导出指标")
    )
}

/// 健康详情中键为 `key` 的目标行。
async fn target_row(key: &str) -> Value {
    let body = json_of(reqwest::Client::new().get(health_details())).await;
    let rows = body["targets"].as_array().cloned().unwrap_or_default();
    rows.into_iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("健康详情中没有目标 {key}：{body}"))
}

/// 健康详情中名为 `name` 的上游的主动探测状态。
async fn probe_status(name: &str) -> Value {
    let body = json_of(reqwest::Client::new().get(health_details())).await;
    let providers = body["providers"].as_array().cloned().unwrap_or_default();
    providers
        .into_iter()
        .find(|p| p["name"] == name)
        .map(|p| p["probe"]["status"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn 连接被拒_换到备用目标() {
    expect_success(send_marked("pair-refused", false, "拒绝连接").await, false).await;
    let row = target_row("dead/pair-refused").await;
    assert_eq!(
        row["consecutive_failures"], 1,
        "被拒的连接计入被动健康检测：{row}"
    );
}

#[tokio::test]
async fn 上游_500_503_529_换到备用目标_流式与非流式都成功() {
    for (model, mock) in [("pair-500", "fo-500"), ("pair-529", "fo-529")] {
        for stream in [false, true] {
            let marker = format!("{model}-{stream}");
            expect_success(send_marked(model, stream, &marker).await, stream).await;
            assert!(
                recorded_with(ENV.mock(mock), &marker).is_some(),
                "{model} 的请求必须先到达故障目标 {mock}"
            );
        }
    }
}

#[tokio::test]
async fn 上游_503_带_retry_after_换目标_等待期内不再尝试它() {
    expect_success(send_marked("pair-503", false, "503-第一次").await, false).await;
    assert!(recorded_with(ENV.mock("fo-503"), "503-第一次").is_some());
    let row = target_row("fo-503/pair-503").await;
    assert_eq!(
        row["state"], "rate_limited",
        "503 的 Retry-After 也要遵守：{row}"
    );
    expect_success(send_marked("pair-503", true, "503-第二次").await, true).await;
    assert!(
        recorded_with(ENV.mock("fo-503"), "503-第二次").is_none(),
        "Retry-After 的 120 秒内不能再把请求发给它"
    );
}

#[tokio::test]
async fn 限流_429_按_retry_after_暂停该目标_且不计入熔断() {
    expect_success(send_marked("pair-429", false, "限流-第一次").await, false).await;
    assert!(recorded_with(ENV.mock("fo-429"), "限流-第一次").is_some());
    let row = target_row("fo-429/pair-429").await;
    assert_eq!(row["state"], "rate_limited", "{row}");
    assert!(
        row["remaining_ms"].as_u64().unwrap_or(0) > 60_000,
        "应暂停约 120 秒：{row}"
    );
    assert_eq!(row["consecutive_failures"], 0, "限流不是故障：{row}");
    expect_success(send_marked("pair-429", true, "限流-第二次").await, true).await;
    assert!(recorded_with(ENV.mock("fo-429"), "限流-第二次").is_none());
}

#[tokio::test]
async fn 挂起不回响应头_首字节超时后换目标() {
    expect_success(send_marked("pair-hang", true, "挂起").await, true).await;
    assert!(recorded_with(ENV.mock("fo-hang"), "挂起").is_some());
}

#[tokio::test]
async fn 首字节太慢_超时后换目标_在超时之内则照常等它() {
    expect_success(send_marked("pair-slow", false, "太慢").await, false).await;
    assert!(recorded_with(ENV.mock("fo-slow"), "太慢").is_some());
    let thinking = ENV.mock("fo-thinking");
    expect_success(send_marked("pair-thinking", true, "思考").await, true).await;
    assert!(recorded_with(thinking, "思考").is_some());
    assert_eq!(
        thinking.streams_completed(),
        1,
        "300 毫秒的首字节在超时之内，由它完成"
    );
}

#[tokio::test]
async fn 乱码回复_换到备用目标() {
    for stream in [false, true] {
        let marker = format!("乱码-{stream}");
        expect_success(send_marked("pair-garbage", stream, &marker).await, stream).await;
        assert!(recorded_with(ENV.mock("fo-garbage"), &marker).is_some());
    }
}

#[tokio::test]
async fn 流中途断开_不重试_客户端收到一个错误事件() {
    let error = expect_stream_cut("pair-drop").await;
    assert_eq!(error["code"], "upstream_read_failed");
    assert_eq!(ENV.mock("fo-drop").requests(), 1);
    assert_eq!(
        ENV.mock("fo-drop-backup").requests(),
        0,
        "首字节已到客户端，绝不能再换目标"
    );
}

#[tokio::test]
async fn 换目标时按新目标的协议重新翻译请求() {
    expect_success(
        send_marked("pair-retranslate", false, "重新翻译").await,
        false,
    )
    .await;
    let gemini = recorded_with(ENV.mock("fo-gem-500"), "重新翻译").expect("先到 Gemini 目标");
    assert!(gemini.path.contains(":generateContent"), "{}", gemini.path);
    let sent: Value = serde_json::from_slice(&gemini.body).expect("JSON");
    assert!(sent.get("contents").is_some(), "Gemini 格式：{sent}");
    let claude = recorded_with(ENV.mock("claude"), "重新翻译").expect("再到 Anthropic 目标");
    assert!(claude.path.ends_with("/v1/messages"), "{}", claude.path);
    let sent: Value = serde_json::from_slice(&claude.body).expect("JSON");
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(
        sent["max_tokens"], 1024,
        "按 Anthropic 目标的配置补上 max_tokens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn 一个目标故障_一千个请求全部成功() {
    const MODELS: [&str; 4] = [
        "pair-mix-refused",
        "pair-mix-500",
        "pair-mix-garbage",
        "pair-mix-429",
    ];
    const TOTAL: usize = 1000;
    const STREAM_EVERY: usize = 4;
    let client = reqwest::Client::new();
    let failures: Vec<String> = stream::iter(0..TOTAL)
        .map(|i| {
            let (model, stream) = (MODELS[i % MODELS.len()], i % STREAM_EVERY == 0);
            let request = authed(&client, ENV.url("/v1/chat/completions")).json(&marked_body(
                model,
                stream,
                &format!("千次-{i}"),
            ));
            async move {
                let outcome = async {
                    let resp = request.send().await.map_err(|e| e.to_string())?;
                    let status = resp.status();
                    let text = resp.text().await.map_err(|e| e.to_string())?;
                    let complete = !stream || text.ends_with("data: [DONE]\n\n");
                    match status == 200 && complete {
                        true => Ok(()),
                        false => Err(format!("{status} {text}")),
                    }
                };
                tokio::time::timeout(HANG_GUARD, outcome)
                    .await
                    .unwrap_or_else(|_| Err("超过防挂死上限".to_string()))
                    .err()
                    .map(|e| format!("{model} 第 {i} 个：{e}"))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} 个请求失败，前几个：{:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn 两倍快的目标_分到多数流量_慢的也不被饿死() {
    const TOTAL: usize = 200;
    const PARALLEL: usize = 4;
    let client = reqwest::Client::new();
    stream::iter(0..TOTAL)
        .map(|i| {
            let request = authed(&client, ENV.url("/v1/chat/completions")).json(&marked_body(
                "pair-2x",
                false,
                &format!("快慢-{i}"),
            ));
            async move {
                let resp = request.send().await.expect("请求失败");
                assert_eq!(resp.status(), 200);
            }
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<()>>()
        .await;
    let (fast, half) = (
        ENV.mock("fo-fast").requests(),
        ENV.mock("fo-half").requests(),
    );
    assert_eq!(fast + half, TOTAL as u64);
    assert!(
        fast > half,
        "首字节快一倍的目标应分到多数：快 {fast}，慢 {half}"
    );
    assert!(
        half > 0,
        "二选一不能把慢的目标完全饿死：快 {fast}，慢 {half}"
    );
}

#[tokio::test]
async fn 熔断的目标_上游恢复后重新投入使用() {
    let (flaky, backup) = (ENV.mock("fo-flaky"), ENV.mock("fo-recover-backup"));
    for i in 0..BREAKER_THRESHOLD {
        expect_success(
            send_marked("pair-recover", false, &format!("熔断-{i}")).await,
            false,
        )
        .await;
    }
    assert_eq!(flaky.requests(), BREAKER_THRESHOLD as u64);
    let row = target_row("fo-flaky/pair-recover").await;
    assert_eq!(row["state"], "ejected", "连续 3 次失败应被熔断：{row}");
    expect_success(send_marked("pair-recover", false, "熔断期间").await, false).await;
    assert!(
        recorded_with(flaky, "熔断期间").is_none(),
        "熔断期间不再尝试它"
    );
    flaky.suspend_fault(true);
    let mut polls = 0;
    while target_row("fo-flaky/pair-recover").await["state"] != "healthy" {
        polls += 1;
        assert!(polls < MAX_POLLS, "上游恢复后目标必须重新投入使用");
        tokio::time::sleep(POLL_INTERVAL).await;
        expect_success(send_marked("pair-recover", false, "恢复中").await, false).await;
    }
    let before = (flaky.requests(), backup.requests());
    for i in 0..5 {
        expect_success(
            send_marked("pair-recover", false, &format!("恢复后-{i}")).await,
            false,
        )
        .await;
    }
    assert_eq!(flaky.requests() - before.0, 5, "首选层恢复后流量回到它");
    assert_eq!(backup.requests(), before.1, "备用层不再收到流量");
}

#[tokio::test]
async fn 全部目标故障_快速返回_502_或_503_而不是挂住() {
    let mut saw_no_upstream = false;
    for _ in 0..MAX_POLLS {
        let resp = send_marked("pair-down", false, "全部故障").await;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").is_some();
        assert!(
            status == 502 || status == 503,
            "只能是 502 或 503：{status}"
        );
        let error = expect_error(resp, status).await;
        if error["code"] == "no_available_upstream" {
            assert!(retry_after, "全部被摘除时应告诉客户端多久后重试");
            let message = error["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("熔断") || message.contains("等待"),
                "{message}"
            );
            saw_no_upstream = true;
            break;
        }
    }
    assert!(saw_no_upstream, "连续失败后目标应被摘除，网关直接返回 503");
}

#[tokio::test]
async fn 主动健康检查_探测失败的上游不参与选择() {
    let mut polls = 0;
    while probe_status("probe-dead").await != "down" || probe_status("fo-probed").await != "up" {
        polls += 1;
        assert!(polls < MAX_POLLS, "探测服务必须按 200 毫秒的间隔探测");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    assert_eq!(
        target_row("probe-dead/pair-probe").await["state"],
        "probe_failed"
    );
    for i in 0..5 {
        expect_success(
            send_marked("pair-probe", i % 2 == 0, &format!("探测-{i}")).await,
            i % 2 == 0,
        )
        .await;
    }
    let row = target_row("probe-dead/pair-probe").await;
    assert_eq!(
        row["consecutive_failures"], 0,
        "探测失败的目标根本不会被尝试：{row}"
    );
}

#[tokio::test]
async fn 超时_首字节_总时长_块间隔各自说明是哪一个() {
    let error = expect_error(send_chat("fo-slow", false).await, 504).await;
    let message = error["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.contains("首字节超时 timeouts.first_byte_ms"),
        "{message}"
    );
    let error = expect_stream_cut("fo-total").await;
    assert_eq!(error["code"], "upstream_timeout");
    let message = error["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("总超时 timeouts.total_ms"), "{message}");
    let error = expect_stream_cut("fo-idle").await;
    let message = error["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("块间隔超时 timeouts.idle_ms"), "{message}");
}
