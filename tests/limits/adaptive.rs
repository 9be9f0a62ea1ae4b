//! 上游的自适应并发上限：并发已满的目标把流量让给模型的其他目标，全部目标都满了网关才拒绝；
//! 上游持续出错时上限按 AIMD 下降，并体现在指标（与指标端口的健康详情）中。

use std::time::Instant;

use once_cell::sync::Lazy;

use chatnexus::metrics::METRICS;

use crate::env::{chat, key, start_gateway, Ask, HANG_GUARD, MOCKS};
use crate::support::gateway::Gateway;
use crate::support::header;

/// 本文件的测试共用一个不限流的网关（只看上游的并发上限）。
static GATEWAY: Lazy<Gateway> = Lazy::new(|| start_gateway(None, None));

/// 同时向模型发 `count` 个请求，返回各自的状态码与响应。
async fn 同时请求(model: &'static str, count: usize) -> Vec<reqwest::Response> {
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let client = client.clone();
            let ask = Ask {
                model,
                ..Ask::default()
            };
            tokio::spawn(async move { chat(&client, *GATEWAY, key("乙"), ask).await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("请求任务不应 panic"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 并发已满的目标把流量让给模型的其他目标() {
    let (slow, backup) = (MOCKS.stats("slow-a"), MOCKS.stats("backup"));
    let (slow_before, backup_before) = (slow.requests(), backup.requests());
    let responses = 同时请求("shed", 6).await;
    assert!(
        responses.iter().all(|r| r.status() == 200),
        "全部由某个目标应答"
    );
    assert_eq!(
        slow.requests() - slow_before,
        2,
        "首选目标只接并发上限 2 个"
    );
    assert_eq!(backup.requests() - backup_before, 4, "其余转给备用目标");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 全部目标的并发都满了才拒绝_503_并计入上游层() {
    let refusals = METRICS.limiter_refusals.with_label_values(&["upstream"]);
    let before = refusals.get();
    let responses = 同时请求("lone", 3).await;
    let mut ok = 0;
    for resp in responses {
        if resp.status() == 200 {
            ok += 1;
            continue;
        }
        assert_eq!(header(&resp, "retry-after"), "1");
        let error = crate::support::expect_error(resp, 503).await;
        assert_eq!(error["code"], "no_available_upstream");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains("并发上限"), "说明原因：{message}");
    }
    assert_eq!(ok, 1, "并发上限为 1");
    assert!(refusals.get() >= before + 2);
}

/// 目标 `fails/fails` 当前的自适应并发上限（指标 `llm_adaptive_limit`；详细的健康状态只在指标端口上）。
fn 当前上限() -> i64 {
    METRICS
        .adaptive_limit
        .with_label_values(&["fails/fails"])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 上游持续出错时自适应上限下降_指标随之更新() {
    let client = reqwest::Client::new();
    let fails = Ask {
        model: "fails",
        ..Ask::default()
    };
    let deadline = Instant::now() + HANG_GUARD;
    // 每个评估间隔（200 毫秒）内样本够 5 个就调整：持续发出错的请求，直到上限从基准 8 降下来
    while 当前上限() == 0 || 当前上限() >= 8 {
        assert!(Instant::now() < deadline, "上限一直没有下降");
        let resp = chat(&client, *GATEWAY, key("乙"), fails).await;
        assert_eq!(resp.status(), 500, "上游的 500 原样返回");
    }
    let limit = 当前上限();
    assert!((1..8).contains(&limit), "在下限与基准之间：{limit}");
}
