//! 上游出问题时客户端拿到正确的答复：上游限流是 429 而不是 503，荒唐的等待时间不会让请求任务崩溃。

use crate::common::{expect_stream_cut, send_chat};
use crate::support::expect_error;

/// 网关采信的上游等待时间上限（秒），与 `upstream::MAX_UPSTREAM_WAIT` 一致。
const MAX_WAIT_SECS: u64 = 3600;

/// 响应的 `Retry-After` 秒数。
fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("缺少或无法解析 Retry-After：{:?}", resp.headers()))
}

#[tokio::test]
async fn 唯一目标被上游限流_之后的请求得到_429_而不是_503() {
    let first = send_chat("only-429", false).await;
    let first_wait = retry_after(&first);
    expect_error(first, 429).await;
    for stream in [false, true] {
        let held = send_chat("only-429", stream).await;
        let wait = retry_after(&held);
        let error = expect_error(held, 429).await;
        assert_eq!(
            error["code"], "rate_limit_exceeded",
            "等待期内仍是限流：{error}"
        );
        assert!(
            (1..=first_wait).contains(&wait),
            "Retry-After 取剩余等待（向上取整）：{wait} / {first_wait}"
        );
        assert!(
            !error["message"]
                .as_str()
                .unwrap_or_default()
                .contains("only-429/"),
            "消息不带目标名：{error}"
        );
    }
}

#[tokio::test]
async fn 上游给出荒唐的_retry_after_截到一小时_请求任务不崩溃() {
    // 第一次是上游自己的 429（转告），第二次在网关记下的等待期内由网关直接答复
    for attempt in 0..2 {
        let resp = send_chat("huge-429", false).await;
        let wait = retry_after(&resp);
        assert!(
            (1..=MAX_WAIT_SECS).contains(&wait),
            "第 {attempt} 次：Retry-After 应截到一小时以内：{wait}"
        );
        let error = expect_error(resp, 429).await;
        if attempt > 0 {
            assert_eq!(error["code"], "rate_limit_exceeded", "等待期内：{error}");
        }
    }
}

#[tokio::test]
async fn 上游在流中报错后断开_每种上游都只给客户端一个错误事件() {
    for model in ["inband-openai", "inband-az", "inband-claude", "inband-gem"] {
        let error = expect_stream_cut(model).await;
        for later in ["upstream_stream_truncated", "upstream_read_failed"] {
            assert_ne!(
                error["code"], later,
                "{model}：唯一的错误事件应是上游报告的错误：{error}"
            );
        }
    }
}
