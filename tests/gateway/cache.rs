//! 响应缓存的端到端测试（本地后端，只缓存确定性的请求）：命中与未命中、流式与非流式共用条目、按密钥隔离、
//! `Cache-Control`、不满足条件时绕过、上游出错不存。

use serde_json::{json, Value};

use crate::common::{sse_payloads, stream_content, CACHE_KEY_B, CLIENT_KEY, ENV};
use crate::support::header;

/// 开了缓存的模型（指向专用的模拟上游，便于数它收到几次）。
const CACHED: &str = "cache-fast";
/// 开了缓存、上游总是 503 的模型。
const CACHED_BROKEN: &str = "cache-broken";
/// `cache-fast` 的模拟上游。
const UPSTREAM: &str = "cache-up";

/// 确定性的请求（temperature 0），带一个区分用例的标记。
fn 请求(marker: &str, stream: bool) -> Value {
    json!({ "model": CACHED, "stream": stream, "temperature": 0,
        "messages": [ { "role": "user", "content": marker } ] })
}

/// 用给定的密钥与额外请求头发送。
async fn 发送(key: &str, body: &Value, cache_control: Option<&str>) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut request = client
        .post(ENV.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body);
    if let Some(value) = cache_control {
        request = request.header("cache-control", value);
    }
    request.send().await.expect("请求失败")
}

/// 上游收到含 `marker` 的请求的次数。
fn 上游次数(mock: &str, marker: &str) -> usize {
    ENV.mock(mock)
        .recent()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(marker))
        .count()
}

/// 非流式回复的文本。
async fn 文本(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.expect("JSON");
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn 缓存_非流式第二次命中_上游只收到一次() {
    let marker = "缓存标记-一";
    let first = 发送(CLIENT_KEY, &请求(marker, false), None).await;
    assert_eq!(
        (first.status().as_u16(), header(&first, "x-chatnexus-cache")),
        (200, "miss")
    );
    let first_text = 文本(first).await;
    let second = 发送(CLIENT_KEY, &请求(marker, false), None).await;
    assert_eq!(
        (
            second.status().as_u16(),
            header(&second, "x-chatnexus-cache")
        ),
        (200, "hit")
    );
    assert!(
        header(&second, "age").parse::<u64>().is_ok(),
        "命中时带 age"
    );
    assert_eq!(文本(second).await, first_text);
    assert_eq!(上游次数(UPSTREAM, marker), 1, "第二次不该到上游");
}

#[tokio::test]
async fn 缓存_流式与非流式共用条目_内容相同() {
    let marker = "缓存标记-二";
    let plain = 文本(发送(CLIENT_KEY, &请求(marker, false), None).await).await;
    let resp = 发送(CLIENT_KEY, &请求(marker, true), None).await;
    assert_eq!(header(&resp, "x-chatnexus-cache"), "hit");
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    let payloads = sse_payloads(&resp.text().await.expect("读取流"));
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream_content(&payloads), plain, "回放的流与原回复内容相同");
    let marker = "缓存标记-三";
    let resp = 发送(CLIENT_KEY, &请求(marker, true), None).await;
    assert_eq!(header(&resp, "x-chatnexus-cache"), "miss");
    let streamed = stream_content(&sse_payloads(&resp.text().await.expect("读取流")));
    let again = 发送(CLIENT_KEY, &请求(marker, false), None).await;
    assert_eq!(
        header(&again, "x-chatnexus-cache"),
        "hit",
        "流式回复也存下了"
    );
    assert_eq!(文本(again).await, streamed);
    assert_eq!(上游次数(UPSTREAM, marker), 1);
}

#[tokio::test]
async fn 缓存_按密钥隔离() {
    let marker = "缓存标记-四";
    发送(CLIENT_KEY, &请求(marker, false), None)
        .await
        .text()
        .await
        .expect("读完");
    let other = 发送(CACHE_KEY_B, &请求(marker, false), None).await;
    assert_eq!(
        header(&other, "x-chatnexus-cache"),
        "miss",
        "别的密钥不能拿到这个密钥的回复"
    );
    assert_eq!(上游次数(UPSTREAM, marker), 2);
}

#[tokio::test]
async fn 缓存_no_cache_不查但存_no_store_既不查也不存() {
    let marker = "缓存标记-五";
    let resp = 发送(CLIENT_KEY, &请求(marker, false), Some("no-store")).await;
    assert_eq!(header(&resp, "x-chatnexus-cache"), "bypass");
    resp.text().await.expect("读完");
    let resp = 发送(CLIENT_KEY, &请求(marker, false), Some("no-cache")).await;
    assert_eq!(
        header(&resp, "x-chatnexus-cache"),
        "miss",
        "no-store 的回复没有存"
    );
    resp.text().await.expect("读完");
    let resp = 发送(CLIENT_KEY, &请求(marker, false), None).await;
    assert_eq!(
        header(&resp, "x-chatnexus-cache"),
        "hit",
        "no-cache 的回复存下了"
    );
    assert_eq!(上游次数(UPSTREAM, marker), 2);
}

#[tokio::test]
async fn 缓存_不确定的请求绕过_上游出错不存() {
    let mut body = 请求("缓存标记-六", false);
    body["temperature"] = json!(0.7);
    let resp = 发送(CLIENT_KEY, &body, None).await;
    assert_eq!(
        header(&resp, "x-chatnexus-cache"),
        "bypass",
        "deterministic 模式只缓存 temperature 0 或带 seed 的请求"
    );
    let mut broken = 请求("缓存标记-七", false);
    broken["model"] = json!(CACHED_BROKEN);
    for _ in 0..2 {
        let resp = 发送(CLIENT_KEY, &broken, None).await;
        assert_ne!(resp.status(), 200, "上游 503（之后目标被暂停）");
        assert_eq!(
            header(&resp, "x-chatnexus-cache"),
            "miss",
            "错误回复不能进缓存"
        );
    }
}

#[tokio::test]
async fn 缓存_命中也计入请求数_不消耗费用() {
    use crate::metrics::{sample, scrape, wait_for};
    let marker = "缓存标记-八";
    发送(CLIENT_KEY, &请求(marker, false), None)
        .await
        .text()
        .await
        .expect("读完");
    let hits = |t: &str| sample(t, "llm_cache_requests_total", &[("result", "hit")]);
    let before = scrape().await;
    let resp = 发送(CLIENT_KEY, &请求(marker, false), None).await;
    assert_eq!(header(&resp, "x-chatnexus-cache"), "hit");
    resp.text().await.expect("读完");
    let after = wait_for(|t| hits(t) >= hits(&before) + 1.0).await;
    assert!(hits(&after) >= hits(&before) + 1.0);
    let saved = sample(
        &after,
        "llm_cache_saved_tokens_total",
        &[("type", "output")],
    );
    assert!(saved > 0.0, "命中省下的输出 token 要计入");
}

#[tokio::test]
async fn 缓存_五十个相同的请求同时到达_上游只收到一次() {
    let marker = "缓存标记-九";
    let mut body = 请求(marker, false);
    body["model"] = json!("cache-slow");
    let sends = (0..50).map(|_| {
        let body = body.clone();
        async move {
            let resp = 发送(CLIENT_KEY, &body, None).await;
            (resp.status().as_u16(), 文本(resp).await)
        }
    });
    let replies = futures_util::future::join_all(sends).await;
    assert!(
        replies.iter().all(|(status, _)| *status == 200),
        "{replies:?}"
    );
    assert!(
        replies.iter().all(|(_, text)| *text == replies[0].1),
        "全部回复相同"
    );
    assert_eq!(
        上游次数("cache-slow-up", marker),
        1,
        "相同的请求在进程里合并，只有领头的去上游"
    );
}
