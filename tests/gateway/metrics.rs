//! 可观测性：抓取 /metrics 断言精确的计数、token 与费用；用量块只在客户端要求时出现；
//! 被取消的流按已发出的内容估算并标记；请求 id 贯穿客户端、网关与上游。

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{
    authed, send_chat, sse_payloads, ENV, PRICE_CACHED, PRICE_INPUT, PRICE_OUTPUT,
};
use crate::support::body::chat_body;

/// 等待请求被记入指标的最长时间（日志钩子在响应写完之后才运行）。
const RECORD_WAIT: Duration = Duration::from_secs(5);
/// `metered` 模拟器报告的用量：输入、输出、缓存命中、推理。
const USAGE: (f64, f64, f64, f64) = (30.0, 12.0, 10.0, 5.0);

/// 抓取 /metrics 文本。
pub(crate) async fn scrape() -> String {
    reqwest::get(ENV.gateway.metrics_url())
        .await
        .expect("抓取指标失败")
        .text()
        .await
        .expect("读取指标失败")
}

/// 取一个带给定标签的样本值（标签按任意顺序匹配）；没有该样本时为 0。
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with("{"))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// 轮询指标直到条件成立（仅防止挂起，不是性能断言），返回条件成立之后再抓的一份。
///
/// 一次抓取按指标名的顺序逐个收集，并不是同一瞬间的快照：`llm_cost_usd_total` 排在 `llm_requests_total` 之前，
/// 抓取途中结束的请求可能只出现在后者里。网关最后才计请求数，所以看到计数之后重新抓的一份一定包含这个请求的全部指标。
pub(crate) async fn wait_for(check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let text = scrape().await;
        if check(&text) {
            return scrape().await;
        }
        if Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 某模型某类 token 的累计数。
pub(crate) fn tokens(text: &str, model: &str, kind: &str) -> f64 {
    sample(
        text,
        "llm_tokens_processed_total",
        &[("model", model), ("type", kind)],
    )
}

/// 向 `metered-exact` 发四个成功请求：两个非流式、一个不要用量的流、一个要用量的流。
async fn 发四个计量请求() {
    for stream in [false, false, true] {
        send_chat("metered-exact", stream)
            .await
            .text()
            .await
            .expect("读取响应");
    }
    let mut asked = chat_body("metered-exact", true);
    asked["stream_options"] = json!({ "include_usage": true });
    let client = reqwest::Client::new();
    let resp = authed(&client, ENV.url("/v1/chat/completions"))
        .json(&asked)
        .send()
        .await;
    resp.expect("请求失败").text().await.expect("读取流");
}

#[tokio::test]
async fn 指标_非流式与流式的请求数_token_与费用精确() {
    let model = "metered-exact";
    let requests = |t: &str| {
        sample(
            t,
            "llm_requests_total",
            &[("model", model), ("status", "200")],
        )
    };
    let before = scrape().await;
    发四个计量请求().await;
    let after = wait_for(|t| requests(t) >= requests(&before) + 4.0).await;
    assert_eq!(requests(&after) - requests(&before), 4.0, "四个成功请求");
    let (input, output, cached, reasoning) = USAGE;
    for (kind, per_request) in [
        ("input", input),
        ("output", output),
        ("cached", cached),
        ("reasoning", reasoning),
    ] {
        let delta = tokens(&after, model, kind) - tokens(&before, model, kind);
        assert_eq!(delta, 4.0 * per_request, "token 类型 {kind}");
    }
    let cost = |t: &str| sample(t, "llm_cost_usd_total", &[("model", model)]);
    let per_request =
        ((input - cached) * PRICE_INPUT + cached * PRICE_CACHED + output * PRICE_OUTPUT) / 1e6;
    let delta = cost(&after) - cost(&before);
    assert!(
        (delta - 4.0 * per_request).abs() < 1e-9,
        "费用精确到 1e-9 美元：{delta}"
    );
}

#[tokio::test]
async fn 用量块_没要求时隐藏_要求时恰好一个() {
    let hidden = send_chat("metered", true)
        .await
        .text()
        .await
        .expect("读取流");
    assert!(
        !hidden.contains("\"usage\":{"),
        "客户端没要求时不能出现用量块：{hidden}"
    );
    let recorded = ENV
        .mock("metered")
        .recent()
        .into_iter()
        .rev()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .find(|body| body["stream"] == true);
    let upstream = recorded.expect("上游必须收到流式请求");
    assert_eq!(
        upstream["stream_options"]["include_usage"], true,
        "网关总是向 OpenAI 要用量"
    );
    let mut body = chat_body("metered", true);
    body["stream_options"] = json!({ "include_usage": true });
    let client = reqwest::Client::new();
    let text = authed(&client, ENV.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("请求失败")
        .text()
        .await
        .expect("读取流");
    let usage_chunks: Vec<String> = sse_payloads(&text)
        .into_iter()
        .filter(|p| p.contains("\"usage\":{"))
        .collect();
    assert_eq!(usage_chunks.len(), 1, "要求时恰好一个用量块：{text}");
}

#[tokio::test]
async fn 取消的流_按已发出内容估算并标记() {
    let estimated = |t: &str| sample(t, "llm_usage_estimated_total", &[("model", "metered-slow")]);
    let before = scrape().await;
    let body = chat_body("metered-slow", true);
    let client = reqwest::Client::new();
    let mut resp = authed(&client, ENV.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("请求失败");
    resp.chunk().await.expect("读取失败").expect("必须收到首块");
    drop(resp);
    drop(client);
    let input = |t: &str| tokens(t, "metered-slow", "input");
    let closed = |t: &str| {
        let labels = [
            ("model", "metered-slow"),
            ("status", "499"),
            ("error_code", "client_closed"),
        ];
        sample(t, "llm_requests_total", &labels)
    };
    // 一次抓取按指标名依次读取各族，可能恰好夹在一次记录的中间：等三族都更新了再断言
    let after = wait_for(|t| {
        estimated(t) > estimated(&before)
            && input(t) > input(&before)
            && closed(t) > closed(&before)
    })
    .await;
    assert_eq!(
        estimated(&after) - estimated(&before),
        1.0,
        "被取消的流记为估算"
    );
    let request_bytes = serde_json::to_vec(&body).expect("可序列化").len() as f64;
    assert_eq!(
        input(&after) - input(&before),
        (request_bytes / 4.0).floor(),
        "输入按请求字节数估算"
    );
    assert!(
        tokens(&after, "metered-slow", "output") > tokens(&before, "metered-slow", "output"),
        "已发出的内容计入输出"
    );
    assert!(closed(&after) >= 1.0, "客户端断开记为 499");
}

#[tokio::test]
async fn 请求id_沿用客户端的并传给上游_没有时生成() {
    let client = reqwest::Client::new();
    let resp = authed(&client, ENV.url("/v1/chat/completions"))
        .header(
            "x-request-id",
            "req-测试-1".replace('测', "ce").replace('试', "shi"),
        )
        .json(&chat_body("metered", false))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-ceshi-1")
    );
    resp.text().await.expect("读取响应");
    let seen = ENV
        .mock("metered")
        .recent()
        .iter()
        .any(|r| r.header("x-request-id") == Some("req-ceshi-1"));
    assert!(seen, "上游必须收到同一个请求 id");
    let generated = send_chat("metered", false).await;
    let id = generated
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        id.starts_with("req_") && id.len() > 8,
        "没有时网关生成请求 id：{id}"
    );
}

#[tokio::test]
async fn 故障转移_重试次数与上游状态进入指标() {
    let retries = |t: &str| sample(t, "llm_retries_total", &[("model", "metered-retry")]);
    let before = scrape().await;
    let resp = send_chat("metered-retry", false).await;
    assert_eq!(resp.status(), 200, "首选目标 500 后应换到备用目标");
    resp.text().await.expect("读取响应");
    let after = wait_for(|t| retries(t) > retries(&before)).await;
    assert_eq!(retries(&after) - retries(&before), 1.0, "一次重试");
    let healthy =
        |provider: &str| sample(&after, "llm_upstream_healthy", &[("provider", provider)]);
    assert_eq!(healthy("retry-500"), 1.0, "一次失败还不足以熔断");
    assert_eq!(healthy("steady").min(1.0), 1.0, "成功的目标记为可用");
    let latency = sample(
        &after,
        "llm_upstream_latency_seconds",
        &[("provider", "steady")],
    );
    assert!(latency > 0.0, "成功的尝试留下延迟估计");
}
