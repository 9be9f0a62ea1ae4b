//! 一次分布式判定只有一次往返：网关与 Redis 之间放一个数命令的 TCP 代理，判定期间只能经过一条 EVALSHA；
//! 响应缓存也在这个 Redis 里时，准入脚本顺带读缓存条目，命中也只有这一条命令。

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use chatnexus::config::{Model, ModelKind, RateLimitSettings, RedisTarget};
use chatnexus::limits::{checks, Kind, Quota, RemoteStage, RemoteVerdict, Subjects};
use chatnexus::redis_link::RedisLink;
use chatnexus::security::Secret;

use crate::cache::{发送, 实际用量, 密钥额度, KEY_NAME};
use crate::env::{
    connect, count_keys, eventually, hash_field, limiter_key, single_redis, start_cached_gateway,
};
use crate::redis_server::RedisProcess;

/// 本机回环地址上的 Redis 连接串前缀。
const REDIS_LOOPBACK: &str = "redis://127.0.0.1";
/// 代理读缓冲的大小。
const BUFFER: usize = 16 * 1024;
/// 两层检查里全局层的每分钟 token 上限。
const GLOBAL_TOKENS: u64 = 100_000;
/// 探查测试里每个请求预留的 token 数。
const PROBE_TOKENS: u64 = 100;

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
    两层检查_按(IP_REQUESTS, "192.0.2.1")
}

/// 一个全局层加一个 IP 层的检查：IP 层的请求数上限与客户端 IP 由参数给出。
fn 两层检查_按(ip_requests: u64, ip: &str) -> Vec<chatnexus::limits::Check> {
    let settings: RateLimitSettings = serde_yaml::from_str(&format!(
        "{{ global: {{ requests: 100, tokens_per_minute: {GLOBAL_TOKENS} }}, per_ip: {{ requests: {ip_requests} }} }}"
    ))
    .expect("可解析");
    let model = Model {
        name: "演示".into(),
        kind: ModelKind::Chat,
        targets: vec![],
        limits: None,
    };
    let subjects = Subjects {
        client: None,
        ip: Some(ip.parse().expect("地址")),
        model: &model,
    };
    checks(&settings, &subjects)
}

/// 客户端发出的命令（按顺序）：命令名（大写）与第一个参数（通常是键；没有时为空串）。
type Commands = Arc<Mutex<Vec<(String, String)>>>;

/// 转发到 Redis、并记下客户端发出的每条完整命令（RESP 数组）的命令名的 TCP 代理。
struct CountingProxy {
    port: u16,
    commands: Commands,
}

impl CountingProxy {
    /// 取出并清空已记下的命令名。
    fn take(&self) -> Vec<String> {
        self.take_with_keys()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// 取出并清空已记下的命令（命令名与第一个参数）。
    fn take_with_keys(&self) -> Vec<(String, String)> {
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

/// 缓冲区开头一条完整命令（`*n` 后跟 n 个 `$len` 块）的字节数、命令名（大写）与第一个参数；还不完整时为 `None`。
fn parse_command(buf: &[u8]) -> Option<(usize, (String, String))> {
    let (count, mut at) = line_number(buf, 0, b'*')?;
    let (mut name, mut first) = (String::new(), String::new());
    for i in 0..count {
        let (len, start) = line_number(buf, at, b'$')?;
        at = start + len + 2;
        let data = buf.get(start..start + len)?;
        if i == 0 {
            name = String::from_utf8_lossy(data).to_uppercase();
        } else if i == 1 {
            first = String::from_utf8_lossy(data).into_owned();
        }
    }
    (buf.len() >= at).then_some((at, (name, first)))
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
        .admit(&checks, 10, None)
        .await
        .expect("预热：建立连接并加载脚本");
    let warmup = proxy.take();
    assert!(
        warmup.contains(&"SCRIPT".to_string()),
        "第一次遇到 NOSCRIPT 时加载脚本：{warmup:?}"
    );
    stage.admit(&checks, 10, None).await.expect("判定");
    assert_eq!(proxy.take(), vec!["EVALSHA"], "一次判定恰好一条命令");
}

/// 并发合批测试里同时等待的准入数（超过 IP 层每个窗口 10 次的上限）。
const CONCURRENT_ADMITS: usize = 15;
/// 两层检查里 IP 层的请求数上限。
const IP_REQUESTS: u64 = 10;
/// 合批测试里每个请求预留的 token 数。
const BATCH_TOKENS: u64 = 10;

/// 放行时这种计数最紧的一层还剩的额度；被拒绝或没有这种上限时为空。
fn 剩余(verdict: &RemoteVerdict, kind: Kind) -> Option<u64> {
    let RemoteVerdict::Admitted { quotas, .. } = verdict else {
        return None;
    };
    quotas
        .iter()
        .find(|q: &&Quota| q.kind == kind)
        .map(|q| q.remaining)
}

#[tokio::test]
async fn 同时等待的准入合成一批_只发一条命令_按顺序判定_不多放() {
    let server = RedisProcess::start();
    let proxy = CountingProxy::start(server.port).await;
    let stage = RemoteStage::new(连接(&format!("{REDIS_LOOPBACK}:{}", proxy.port)), "合批:");
    let checks = 两层检查();
    stage
        .admit(&checks, BATCH_TOKENS, None)
        .await
        .expect("预热：建立连接并加载脚本");
    proxy.take();
    // 单线程运行时：join_all 第一次轮询时全部准入都已排进队列，后台任务随后一次取走
    let admits = (0..CONCURRENT_ADMITS).map(|_| stage.admit(&checks, BATCH_TOKENS, None));
    let verdicts = futures_util::future::join_all(admits).await;
    assert_eq!(proxy.take(), vec!["EVALSHA"], "同时等待的准入只发一条命令");
    let remaining: Vec<Option<u64>> = verdicts
        .iter()
        .map(|v| 剩余(&v.as_ref().expect("判定").0, Kind::Requests))
        .collect();
    let admitted = usize::try_from(IP_REQUESTS - 1).expect("很小");
    let expected: Vec<Option<u64>> = (0..IP_REQUESTS - 1)
        .rev()
        .map(Some)
        .chain(std::iter::repeat_n(None, CONCURRENT_ADMITS - admitted))
        .collect();
    assert_eq!(remaining, expected, "批内按顺序判定，IP 层用完后一律拒绝");
    let RemoteVerdict::Refused(refusal) =
        &verdicts[CONCURRENT_ADMITS - 1].as_ref().expect("判定").0
    else {
        panic!("最后一个应当被拒绝");
    };
    assert_eq!((refusal.kind, refusal.limit), (Kind::Requests, IP_REQUESTS));
    assert!(
        refusal.retry_after.is_some_and(|d| d > Duration::ZERO),
        "给出重试时间"
    );
    let url = server.url();
    let global = limiter_key("合批:", "g", "");
    assert_eq!(
        hash_field(&url, &global, "r"),
        i64::try_from(IP_REQUESTS).expect("很小")
    );
    assert_eq!(
        hash_field(&url, &global, "t"),
        i64::try_from(IP_REQUESTS * BATCH_TOKENS).expect("很小"),
        "被拒绝的请求不消耗其他层的额度"
    );
}

/// 混合批测试里上限小的那个 IP 层每个窗口的请求数。
const SMALL_IP_REQUESTS: u64 = 2;
/// 混合批测试里每种检查同时等待的准入数。
const EACH_KIND: usize = 3;

#[tokio::test]
async fn 一批里不同主体与不同上限的准入各按自己的层判定_共用的全局层只计一份() {
    let server = RedisProcess::start();
    let stage = RemoteStage::new(连接(&server.url()), "混合:");
    let wide = 两层检查_按(IP_REQUESTS, "192.0.2.1");
    let narrow = 两层检查_按(SMALL_IP_REQUESTS, "192.0.2.2");
    stage.admit(&wide, 0, None).await.expect("预热");
    // 交替排队：同一批里两种 IP 层的键与两组上限交错出现
    let admits = (0..EACH_KIND * 2).map(|i| {
        let checks = if i % 2 == 0 { &wide } else { &narrow };
        stage.admit(checks, 0, None)
    });
    let verdicts = futures_util::future::join_all(admits).await;
    let remaining: Vec<Option<u64>> = verdicts
        .iter()
        .map(|v| 剩余(&v.as_ref().expect("判定").0, Kind::Requests))
        .collect();
    let wide_left = IP_REQUESTS - 1;
    let expected = vec![
        Some(wide_left - 1),
        Some(SMALL_IP_REQUESTS - 1),
        Some(wide_left - 2),
        Some(0),
        Some(wide_left - 3),
        None,
    ];
    assert_eq!(
        remaining, expected,
        "各按自己的 IP 层判定，小上限的第三个被拒绝"
    );
    let global = limiter_key("混合:", "g", "");
    let admitted = expected.iter().flatten().count() + 1;
    assert_eq!(
        hash_field(&server.url(), &global, "r"),
        i64::try_from(admitted).expect("很小"),
        "全局层只计放行的请求"
    );
}

#[tokio::test]
async fn 排队时调用方已经放弃的准入不发给_redis_也不计数() {
    let server = RedisProcess::start();
    let stage = RemoteStage::new(连接(&server.url()), "放弃:");
    let checks = 两层检查();
    stage.admit(&checks, 0, None).await.expect("预热");
    // 轮询一次：准入已经排进队列，随即丢弃（客户端断开时请求的 future 就是这样被丢弃的）
    let mut abandoned = Box::pin(stage.admit(&checks, 0, None));
    std::future::poll_fn(|cx| {
        assert!(abandoned.as_mut().poll(cx).is_pending(), "还在排队");
        std::task::Poll::Ready(())
    })
    .await;
    drop(abandoned);
    stage.admit(&checks, 0, None).await.expect("判定");
    let global = limiter_key("放弃:", "g", "");
    assert_eq!(
        hash_field(&server.url(), &global, "r"),
        2,
        "只有预热与最后一次计数"
    );
}

#[tokio::test]
async fn 探查的键存在时不预留_token_不存在时照常预留_都只有一条命令() {
    let server = RedisProcess::start();
    let proxy = CountingProxy::start(server.port).await;
    let stage = RemoteStage::new(连接(&format!("{REDIS_LOOPBACK}:{}", proxy.port)), "探查:");
    let checks = 两层检查();
    let _: () = redis::cmd("SET")
        .arg("探查:缓存条目")
        .arg("缓存的回答")
        .query(&mut connect(&server.url()))
        .expect("写入条目");
    stage
        .admit(&checks, 0, None)
        .await
        .expect("预热：建立连接并加载脚本");
    proxy.take();
    let (verdict, probed) = stage
        .admit(&checks, PROBE_TOKENS, Some("探查:缓存条目"))
        .await
        .expect("判定");
    assert_eq!(probed.as_deref(), Some("缓存的回答".as_bytes()));
    assert_eq!(
        剩余(&verdict, Kind::Tokens),
        Some(GLOBAL_TOKENS),
        "条目存在：不预留 token"
    );
    let (verdict, probed) = stage
        .admit(&checks, PROBE_TOKENS, Some("探查:没有的条目"))
        .await
        .expect("判定");
    assert_eq!(probed, None);
    assert_eq!(
        剩余(&verdict, Kind::Tokens),
        Some(GLOBAL_TOKENS - PROBE_TOKENS),
        "条目不存在：照常预留"
    );
    assert_eq!(
        proxy.take(),
        vec!["EVALSHA", "EVALSHA"],
        "探查并进准入脚本，不另发 GET"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 网关_redis_缓存命中与限流准入合成一次往返() {
    let server = RedisProcess::start();
    let proxy = CountingProxy::start(server.port).await;
    let redis = single_redis(&format!("{REDIS_LOOPBACK}:{}", proxy.port), "合并:");
    let gateway = start_cached_gateway(redis, Some(密钥额度()));
    assert_eq!(
        发送(gateway, "一次往返标记").await,
        (200, "miss".to_string())
    );
    eventually("未命中的回复存进 Redis", || {
        count_keys(&server.url(), "合并:cache:*") == 1
    })
    .await;
    // 结算在回复写完之后：等它把 token 计数改成实际用量，再清空记录
    eventually("未命中的请求结算为实际用量", || {
        hash_field(&server.url(), &limiter_key("合并:", "k", KEY_NAME), "t") == 实际用量()
    })
    .await;
    proxy.take();
    assert_eq!(
        发送(gateway, "一次往返标记").await,
        (200, "hit".to_string())
    );
    // 虚拟密钥的后台刷新会定时 GET 版本号：只看缓存键上的命令
    let commands = proxy.take_with_keys();
    let scripts = commands
        .iter()
        .filter(|(name, _)| name == "EVALSHA")
        .count();
    assert_eq!(scripts, 1, "命中只有一次准入：{commands:?}");
    assert!(
        !commands
            .iter()
            .any(|(name, key)| name == "GET" && key.contains("cache:")),
        "缓存条目由准入脚本读出，不另发 GET：{commands:?}"
    );
}
