//! 错误路径：每种错误都是准确的状态码加 OpenAI 错误信封；本地接口 `/health` 与 `/v1/models`。

use crate::common::{authed, expect_error, expect_stream_cut, json_of, send_chat, CLIENT_KEY, ENV};
use crate::support::body::chat_body;

async fn 发送原文(body: &'static str) -> reqwest::Response {
    let client = reqwest::Client::new();
    authed(&client, ENV.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("请求失败")
}

#[tokio::test]
async fn 鉴权_缺少错误或停用的密钥_返回_401() {
    let client = reqwest::Client::new();
    let cases = [
        None,
        Some("Bearer sk-wrong".to_string()),
        Some("Bearer sk-disabled".to_string()),
        Some(format!("Basic {CLIENT_KEY}")),
        Some("Bearer ".to_string()),
    ];
    for authorization in cases {
        let mut request = client.post(ENV.url("/v1/chat/completions"));
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let resp = request
            .json(&chat_body("fast", false))
            .send()
            .await
            .expect("请求失败");
        let error = expect_error(resp, 401).await;
        assert_eq!(
            error["code"], "invalid_api_key",
            "Authorization={authorization:?}"
        );
    }
}

#[tokio::test]
async fn 请求体_非法_json_与缺少字段_返回_400() {
    let e = expect_error(发送原文("{不是 JSON").await, 400).await;
    assert_eq!(e["code"], "invalid_json");
    let e = expect_error(
        发送原文(r#"{"messages":[{"role":"user","content":"x"}]}"#).await,
        400,
    )
    .await;
    assert_eq!(e["param"], "model");
    let e = expect_error(发送原文(r#"{"model":"fast"}"#).await, 400).await;
    assert_eq!(e["param"], "messages");
    let e = expect_error(发送原文(r#"{"model":"fast","messages":"你好"}"#).await, 400).await;
    assert_eq!(e["code"], "invalid_type");
    let e = expect_error(
        发送原文(r#"{"model":"fast","messages":[{"role":"user"}],"stream":"是"}"#).await,
        400,
    )
    .await;
    assert_eq!(e["param"], "stream");
}

#[tokio::test]
async fn 未知模型_返回_404_model_not_found() {
    let e = expect_error(send_chat("不存在的模型", false).await, 404).await;
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["param"], "model");
}

#[tokio::test]
async fn 未知路径_404_方法不对_405() {
    let client = reqwest::Client::new();
    let resp = client
        .post(ENV.url("/v1/audio/speech"))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(expect_error(resp, 404).await["code"], "unknown_url");
    let resp = client
        .get(ENV.url("/v1/chat/completions"))
        .send()
        .await
        .expect("请求失败");
    assert_eq!(expect_error(resp, 405).await["code"], "method_not_allowed");
}

#[tokio::test]
async fn 上游连接被拒_返回_502() {
    assert_ne!(ENV.dead_port, 0);
    let e = expect_error(send_chat("dead", false).await, 502).await;
    assert_eq!(e["code"], "upstream_unreachable");
}

#[tokio::test]
async fn https_上游证书与主机名不符_拒绝连接返回_502() {
    let e = expect_error(send_chat("mismatch", false).await, 502).await;
    assert_eq!(e["code"], "upstream_unreachable");
    assert_eq!(
        ENV.mock("secure")
            .recent()
            .iter()
            .filter(|r| r.header("host").is_some_and(|h| h.starts_with("127.0.0.1")))
            .count(),
        0,
        "证书校验失败时请求不得到达上游"
    );
}

#[tokio::test]
async fn 上游不应答_首字节超时返回_504() {
    let e = expect_error(send_chat("hang", true).await, 504).await;
    assert_eq!(e["code"], "upstream_timeout");
}

#[tokio::test]
async fn 上游_503_保留状态码() {
    let e = expect_error(send_chat("broken", true).await, 503).await;
    assert_eq!(e["type"], "server_error");
}

#[tokio::test]
async fn 上游拒绝网关密钥_返回_502_而不是_401() {
    let e = expect_error(send_chat("badkey", false).await, 502).await;
    assert_eq!(e["code"], "upstream_auth_failed");
}

#[tokio::test]
async fn 上游缺少密钥被停用_返回_503() {
    let e = expect_error(send_chat("nokey", false).await, 503).await;
    assert_eq!(e["code"], "no_available_upstream");
}

#[tokio::test]
async fn 流中途断开_客户端收到一个错误事件且没有_done() {
    let error = expect_stream_cut("dropper").await;
    assert_eq!(error["code"], "upstream_read_failed");
}

#[tokio::test]
async fn 健康检查_公开端口只给状态_指标端口列出上游状态() {
    let client = reqwest::Client::new();
    for path in ["/health", "/v1/health"] {
        let resp = client.get(ENV.url(path)).send().await.expect("请求失败");
        assert_eq!(resp.status().as_u16(), 200, "进程在服务：降级也是 200");
        let body: serde_json::Value = resp.json().await.expect("JSON");
        assert_eq!(body, serde_json::json!({ "status": "degraded" }));
    }
    let details = format!(
        "http://{}/health/details",
        ENV.gateway.metrics.expect("测试网关导出指标")
    );
    let body = json_of(client.get(details)).await;
    assert_eq!(body["status"], "degraded", "nokey 模型没有可用上游");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_u64());
    let nokey = body["providers"]
        .as_array()
        .expect("数组")
        .iter()
        .find(|p| p["name"] == "nokey")
        .cloned();
    assert_eq!(nokey.expect("必须列出 nokey")["state"], "disabled");
}

#[tokio::test]
async fn 模型列表_需要鉴权并按配置列出() {
    let client = reqwest::Client::new();
    let resp = client
        .get(ENV.url("/v1/models"))
        .send()
        .await
        .expect("请求失败");
    expect_error(resp, 401).await;
    let body = json_of(client.get(ENV.url("/v1/models")).bearer_auth(CLIENT_KEY)).await;
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .expect("数组")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids.first(), Some(&"fast"));
    assert!(ids.contains(&"改名"));
}

#[tokio::test]
async fn 鉴权_x_api_key_头与_bearer_等价() {
    let client = reqwest::Client::new();
    let with_key = |key: &str, path: &str| {
        client
            .post(ENV.url(path))
            .header("x-api-key", key)
            .json(&chat_body("fast", false))
    };
    let resp = with_key(CLIENT_KEY, "/v1/chat/completions")
        .send()
        .await
        .expect("请求失败");
    assert_eq!(resp.status(), 200, "只带 x-api-key 的请求通过鉴权");
    let resp = with_key("sk-wrong", "/v1/chat/completions")
        .send()
        .await
        .expect("请求失败");
    let error = expect_error(resp, 401).await;
    assert_eq!(error["code"], "invalid_api_key");
    let models = client
        .get(ENV.url("/v1/models"))
        .header("x-api-key", CLIENT_KEY)
        .send()
        .await
        .expect("请求失败");
    assert_eq!(models.status(), 200, "模型发现只带 x-api-key");
}
