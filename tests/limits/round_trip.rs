//! 一次分布式判定只有一次往返：网关与 Redis 之间放一个数命令的 TCP 代理，判定期间只能经过一条 EVALSHA。

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use chatnexus::config::{Model, ModelKind, RateLimitSettings, RedisTarget};
use chatnexus::limits::{checks, RemoteStage, Subjects};
use chatnexus::redis_link::RedisLink;
use chatnexus::security::Secret;

use crate::redis_server::RedisProcess;

/// 本机回环地址上的 Redis 连接串前缀。
const REDIS_LOOPBACK: &str = "redis://127.0.0.1";
/// 代理读缓冲的大小。
const BUFFER: usize = 16 * 1024;

/// 连到给定 Redis 的共享连接。
fn 连接(url: &str) -> Arc<RedisLink> {
    let target = RedisTarget {
        url: Secret::new(url.to_string()),
        key_prefix: String::new(),
        timeout: Duration::from_secs(2),
        cluster: false,
    };
    Arc::new(target.link().expect("连接串合法"))
}

/// 一个全局层加一个 IP 层的检查。
fn 两层检查() -> Vec<chatnexus::limits::Check> {
    let settings: RateLimitSettings = serde_yaml::from_str(
        "{ global: { requests: 100, tokens_per_minute: 100000 }, per_ip: { requests: 10 } }",
    )
    .expect("可解析");
    let model = Model {
        name: "演示".into(),
        kind: ModelKind::Chat,
        targets: vec![],
        limits: None,
    };
    let subjects = Subjects {
        client: None,
        ip: Some("192.0.2.1".parse().expect("地址")),
        model: &model,
    };
    checks(&settings, &subjects)
}

/// 客户端发出的命令名（按顺序）。
type Commands = Arc<Mutex<Vec<String>>>;

/// 转发到 Redis、并记下客户端发出的每条完整命令（RESP 数组）的命令名的 TCP 代理。
struct CountingProxy {
    port: u16,
    commands: Commands,
}

impl CountingProxy {
    /// 取出并清空已记下的命令名。
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.commands.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl CountingProxy {
    /// 在空闲端口上启动，把每个连接转发到本机的 `upstream` 端口。
    async fn start(upstream: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("代理监听");
        let port = listener.local_addr().expect("代理地址").port();
        let commands = Commands::default();
        let counter = Arc::clone(&commands);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let outbound = TcpStream::connect(("127.0.0.1", upstream))
                    .await
                    .expect("连接 Redis");
                let (client_read, client_write) = inbound.into_split();
                let (server_read, server_write) = outbound.into_split();
                tokio::spawn(pipe(server_read, client_write));
                tokio::spawn(count(client_read, server_write, Arc::clone(&counter)));
            }
        });
        CountingProxy { port, commands }
    }
}

/// 原样转发一个方向的字节。
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let mut buf = vec![0; BUFFER];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// 转发客户端发往 Redis 的字节，同时数出其中完整的命令。
async fn count(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, commands: Commands) {
    let mut buf = vec![0; BUFFER];
    let mut pending: Vec<u8> = Vec::new();
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some((used, name)) = parse_command(&pending) {
            commands
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(name);
            pending.drain(..used);
        }
    }
}

/// 缓冲区开头一条完整命令（`*n` 后跟 n 个 `$len` 块）的字节数与命令名（大写）；还不完整时为 `None`。
fn parse_command(buf: &[u8]) -> Option<(usize, String)> {
    let (count, mut at) = line_number(buf, 0, b'*')?;
    let mut name = String::new();
    for i in 0..count {
        let (len, start) = line_number(buf, at, b'$')?;
        at = start + len + 2;
        let data = buf.get(start..start + len)?;
        if i == 0 {
            name = String::from_utf8_lossy(data).to_uppercase();
        }
    }
    (buf.len() >= at).then_some((at, name))
}

/// 从 `at` 起读一行 `<前缀><数字>\r\n`，返回数字与下一行的起点。
fn line_number(buf: &[u8], at: usize, prefix: u8) -> Option<(usize, usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    let line = rest.get(..end)?.strip_prefix(&[prefix])?;
    let number = std::str::from_utf8(line).ok()?.parse().ok()?;
    Some((number, at + end + 2))
}

#[tokio::test]
async fn 一次分布式判定只有一次往返_只发一条命令() {
    let server = RedisProcess::start();
    let proxy = CountingProxy::start(server.port).await;
    let stage = RemoteStage::new(连接(&format!("{REDIS_LOOPBACK}:{}", proxy.port)), "往返:");
    let checks = 两层检查();
    stage
        .admit(&checks, 10)
        .await
        .expect("预热：建立连接并加载脚本");
    let warmup = proxy.take();
    assert!(
        warmup.contains(&"SCRIPT".to_string()),
        "第一次遇到 NOSCRIPT 时加载脚本：{warmup:?}"
    );
    stage.admit(&checks, 10).await.expect("判定");
    assert_eq!(proxy.take(), vec!["EVALSHA"], "一次判定恰好一条命令");
}
