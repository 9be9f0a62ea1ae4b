//! 多个集成测试二进制共用的测试脚手架：取空闲端口、等待端口就绪、在后台线程运行 Pingora `Server`，
//! 以及类型化的网关配置（[`config`]）、进程内启动网关与模拟上游（[`gateway`]）、请求体（[`body`]）、
//! 请求签名（[`signing`]）。
//!
//! 每个测试二进制用 `#[path = "../support/mod.rs"]` 引入；不是每个二进制都用到全部函数。
#![allow(dead_code)]

pub mod body;
pub mod config;
pub mod gateway;
pub mod signing;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};

/// 等待端口就绪的最长时间（只防挂起，不是性能断言）。
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// 轮询端口的间隔。
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// 没有设置 REDIS_URL 时使用的本机 Redis。
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// 测试使用的 Redis 地址（`REDIS_URL`，tests/run.sh 保证它可用）。
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_string())
}

/// 每个测试进程（与调用点）不同的 Redis 键前缀，多个测试共用一个 Redis 也互不干扰。
pub fn unique_prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{name}-{}-{nanos}:", std::process::id())
}

/// 本进程已经分出去的端口：同一个端口绝不分给两个服务。
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// 取一个本进程还没分出去的空闲端口。
///
/// 绑定后立即释放的端口可能被系统再分给下一次绑定，而 Pingora 的监听开启了端口复用，
/// 两个服务绑到同一端口时连接会被随机分给其中一个；所以记下分出去的端口，重复的换一个。
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("必须能在回环地址上找到空闲端口");
        let port = listener.local_addr().expect("监听器必须有本地地址").port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// 取 `count` 个互不相同、本进程还没分出去的空闲端口。
pub fn free_ports(count: usize) -> Vec<u16> {
    (0..count).map(|_| free_port()).collect()
}

/// 当前 Unix 秒。
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// 等到 `addr` 开始接受连接。
pub fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr} 在 {READY_TIMEOUT:?} 内没有开始监听"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// 等到回环地址上的这些端口都开始接受连接。
pub fn wait_ports(ports: impl IntoIterator<Item = u16>) {
    for port in ports {
        wait_ready(([127, 0, 0, 1], port).into());
    }
}

/// 永不触发的关停信号：测试进程结束时服务随之结束。
struct NeverShutdown;

#[async_trait]
impl ShutdownSignalWatch for NeverShutdown {
    async fn recv(&self) -> ShutdownSignal {
        std::future::pending().await
    }
}

/// 在后台线程运行 `server`，直到测试进程结束。
pub fn spawn(server: Server) {
    std::thread::spawn(move || {
        server.run(RunArgs {
            shutdown_signal: Box::new(NeverShutdown),
        })
    });
}

/// 响应头的文本值（没有时为空串）。
pub fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// 断言响应是给定状态码的 OpenAI 错误信封（`message`、`type`、`param`、`code` 齐全），返回 `error` 对象。
pub async fn expect_error(resp: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "状态码不符");
    let body: serde_json::Value = resp.json().await.expect("错误响应必须是 JSON");
    let error = body["error"].clone();
    assert!(error["message"].is_string(), "缺少 error.message：{body}");
    assert!(error["type"].is_string(), "缺少 error.type：{body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "缺少 param/code：{body}"
    );
    error
}
