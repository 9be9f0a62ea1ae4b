//! 外部安全评审发现的问题的回归测试：公开 `/health` 不泄露内部信息、上游错误不转告内部地址与上游原文、
//! 重复的顶层键与带换行的模型名被拒绝、先发完请求体再读响应的客户端能读到 413。
//!
//! 用自己的一个小网关（与 `common` 的共享环境分开），上游是只回固定响应的原始 TCP 服务。

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use once_cell::sync::Lazy;
use serde_json::Value;

use chatnexus::config;
use chatnexus::security::KeyHash;

/// 本文件网关的客户端密钥。
const KEY: &str = "sk-chatnexus-hardening-test";
/// 上游 401 的原文：OpenAI 的真实消息带密钥末四位。
const AUTH_FAILURE: &str = "Incorrect API key provided: sk-proj-****WXYZ. You can find your API key at https://platform.openai.com/account/api-keys.";
/// 上游 400 的原文（客户端之过，必须照样转告）。
const CONTEXT_TOO_LONG: &str = "This model's maximum context length is 128000 tokens.";
/// 上游 500 的原文（带内部地址，不能转告）。
const INTERNAL_FAILURE: &str = "backend 10.1.2.3:7000 exploded";
/// 请求体上限（与配置一致，即缺省的 10 MiB）。
const MAX_BODY: usize = 10 * 1024 * 1024;
/// 先发后读的客户端发出的请求体：11 MiB，远大于回环连接的套接字缓冲，客户端写不完就会被断开。
const OVERSIZED_BODY: usize = 11 * 1024 * 1024;
/// 原始 TCP 读写的超时（只防挂起）。
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// 本文件的网关：地址、指标端口地址、连不上的上游端口。
struct Hardened {
    gateway: SocketAddr,
    metrics: SocketAddr,
    dead: [u16; 2],
}

static ENV: Lazy<Hardened> = Lazy::new(start);

/// 启动三个固定响应的上游和网关。
fn start() -> Hardened {
    let ports = crate::support::free_ports(4);
    let (gateway, metrics, dead) = (ports[0], ports[1], [ports[2], ports[3]]);
    let auth = fixed_upstream(401, "invalid_api_key", AUTH_FAILURE);
    let long = fixed_upstream(400, "context_length_exceeded", CONTEXT_TOO_LONG);
    let broken = fixed_upstream(500, "server_error", INTERNAL_FAILURE);
    let hash = KeyHash::of(KEY).to_hex();
    let [dead_a, dead_b] = dead;
    let yaml = format!(
        r#"
server: {{ listen: "127.0.0.1:{gateway}", threads: 1, max_body_bytes: {MAX_BODY}, metrics_listen: "127.0.0.1:{metrics}" }}
auth: {{ keys: [ {{ name: 加固, sha256: "{hash}" }} ] }}
retry: {{ max_attempts: 2 }}
providers:
  - name: auth-fail
    kind: openai
    api_key: sk-proj-secretWXYZ
    base_url: "http://127.0.0.1:{auth}"
  - name: too-long
    kind: openai_compatible
    base_url: "http://127.0.0.1:{long}"
  - name: broken
    kind: openai_compatible
    base_url: "http://127.0.0.1:{broken}"
  - name: internal-a
    kind: openai_compatible
    base_url: "http://127.0.0.1:{dead_a}"
  - name: internal-b
    kind: openai_compatible
    base_url: "http://127.0.0.1:{dead_b}"
models:
  - {{ name: auth-fail, targets: [ {{ provider: auth-fail, model: gpt-4o-mini }} ] }}
  - {{ name: too-long, targets: [ {{ provider: too-long }} ] }}
  - {{ name: broken, targets: [ {{ provider: broken }} ] }}
  - {{ name: unreachable, targets: [ {{ provider: internal-a, model: secret-deploy }}, {{ provider: internal-b, model: secret-deploy }} ] }}
"#
    );
    let cfg = config::build(config::parse(&yaml).expect("测试配置必须能解析"), |_| None)
        .expect("测试配置必须通过校验");
    crate::support::spawn(chatnexus::server::build(cfg, None, None));
    crate::support::wait_ports([gateway, metrics]);
    Hardened {
        gateway: ([127, 0, 0, 1], gateway).into(),
        metrics: ([127, 0, 0, 1], metrics).into(),
        dead,
    }
}

/// 在回环地址上起一个对每个请求都回同一个 OpenAI 错误信封的上游，返回端口。
fn fixed_upstream(status: u16, code: &str, message: &str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("绑定回环端口");
    let port = listener.local_addr().expect("本地地址").port();
    let body = serde_json::json!({ "error": { "message": message, "type": "error", "param": null, "code": code } }).to_string();
    let response = format!(
        "HTTP/1.1 {status} 错误\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            answer(stream, response.as_bytes());
        }
    });
    port
}

/// 读完一个请求（请求头与 Content-Length 指定的请求体），写出固定响应后关闭。
fn answer(stream: TcpStream, response: &[u8]) {
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        line.clear();
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_ok() {
        let _ = reader.get_mut().write_all(response);
    }
}

/// 发一个聊天请求，返回状态码与 `error` 对象（成功时为 `null`）。
async fn chat(body: String) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", ENV.gateway))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("请求失败");
    let status = resp.status().as_u16();
    let value: Value = resp.json().await.expect("响应必须是 JSON");
    (status, value["error"].clone())
}

/// 请求给定模型的非流式回答。
async fn ask(model: &str) -> (u16, Value) {
    let body = serde_json::json!({ "model": model, "messages": [ { "role": "user", "content": "你好" } ] });
    chat(body.to_string()).await
}

#[tokio::test]
async fn 公开健康检查只给整体状态_详情只在指标端口() {
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("http://{}/health", ENV.gateway))
        .send()
        .await
        .expect("请求 /health");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(status, 200, "公开 /health 总是 200：{body}");
    assert!(
        body == serde_json::json!({ "status": "ok" })
            || body == serde_json::json!({ "status": "degraded" }),
        "公开 /health 只能给出状态：{body}"
    );
    let details: Value = client
        .get(format!("http://{}/health/details", ENV.metrics))
        .send()
        .await
        .expect("请求健康详情")
        .json()
        .await
        .expect("JSON");
    let keys: Vec<&str> = details["targets"]
        .as_array()
        .expect("详情列出目标")
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert!(keys.contains(&"internal-a/secret-deploy"), "{details}");
    let metrics = client
        .get(format!("http://{}/metrics", ENV.metrics))
        .send()
        .await
        .expect("请求指标")
        .text()
        .await
        .expect("文本");
    assert!(metrics.contains("llm_"), "指标端口仍然导出指标");
}

#[tokio::test]
async fn 上游认证失败_不转告上游原文与密钥末四位() {
    let (status, error) = ask("auth-fail").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (502, Some("upstream_auth_failed"))
    );
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("WXYZ") && !message.contains("Incorrect"),
        "{message}"
    );
    assert!(message.contains("openai"), "应说明是哪类上游：{message}");
}

#[tokio::test]
async fn 上游服务错误_不转告上游原文() {
    let (status, error) = ask("broken").await;
    assert_eq!(status, 500);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("10.1.2.3") && !message.contains("exploded"),
        "{message}"
    );
}

#[tokio::test]
async fn 上游的客户端之过错误_原文照样转告() {
    let (status, error) = ask("too-long").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("context_length_exceeded"))
    );
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(CONTEXT_TOO_LONG), "{message}");
}

#[tokio::test]
async fn 连不上的上游_错误不含内部地址与目标键() {
    let (status, error) = ask("unreachable").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (502, Some("upstream_unreachable"))
    );
    let message = error["message"].as_str().unwrap_or_default();
    for secret in [
        "127.0.0.1".to_string(),
        ENV.dead[0].to_string(),
        ENV.dead[1].to_string(),
        "secret-deploy".to_string(),
        "internal-".to_string(),
    ] {
        assert!(!message.contains(&secret), "不能出现 {secret}：{message}");
    }
    assert!(
        message.contains("openai_compatible"),
        "应说明是哪类上游：{message}"
    );
}

#[tokio::test]
async fn 重复的顶层键_拒绝并点名() {
    let body =
        r#"{"model":"too-long","messages":[{"role":"user","content":"x"}],"model":"broken"}"#;
    let (status, error) = chat(body.to_string()).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("duplicate_key"))
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`model`"),
        "{error}"
    );
}

#[tokio::test]
async fn 模型名含换行_拒绝_不能伪造访问日志() {
    let model = "too-long\n访问 请求ID=伪造 POST /v1/chat/completions 状态=200";
    let (status, error) = ask(model).await;
    assert_eq!(
        (status, error["code"].as_str(), error["param"].as_str()),
        (400, Some("invalid_value"), Some("model"))
    );
}

/// 像 Python urllib 那样：先把请求头与整个请求体发完（`Connection: close`），再读响应；返回响应的首行。
fn send_everything_then_read(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("连接网关");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("写超时");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("读超时");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {OVERSIZED_BODY}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("写请求头");
    stream
        .write_all(&vec![b' '; OVERSIZED_BODY])
        .expect("网关必须读掉请求体，不能在客户端发完之前断开");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .expect("必须能读到网关的响应");
    status_line
}

#[tokio::test]
async fn 先发完请求体再读响应的客户端_读到_413() {
    let addr = ENV.gateway;
    let status_line = tokio::task::spawn_blocking(move || send_everything_then_read(addr))
        .await
        .expect("客户端线程");
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line:?}");
}
