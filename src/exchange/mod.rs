//! 与上游的一次交换：经 Pingora 的 `Connector`（连接池、rustls）连接上游，写出翻译后的请求，
//! 读取响应并写回客户端。
//!
//! 之所以在 `request_filter` 里自己驱动交换，而不是走 Pingora 的代理阶段：路由需要请求体里的
//! `model`，而 Pingora 0.9 只能从 64 KiB 的重试缓冲区转发预读过的请求体，更大的请求会挂起。
//! 详见 docs/architecture.md。

mod attempt;
mod budget;
mod events;
mod io;
mod probe;
mod render;
mod stream;

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use log::{debug, warn};
use pingora::connectors::http::v1::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::server::configuration::ServerConf;
use pingora::time::fast_timeout::fast_timeout;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use pingora_proxy::Session;

use crate::config::{Config, Model, Provider};
use crate::dialects::Inbound;
use crate::downstream::GatewayHeaders;
use crate::error::{ApiError, ErrorCode};
use crate::streaming::{estimate_tokens, Usage};
use crate::upstream::{build_peer, Addrs, Balancer, DnsCache, Verdict};
use budget::{Budget, Phase, StreamCaps, Wait};

pub use probe::HealthProber;

/// 归还连接前等待上游响应体结束的最长时间。
const DRAIN_TIMEOUT: Duration = Duration::from_millis(100);

/// 一次（或多次尝试的）上游交换留下的记录，供访问日志、指标与限流结算使用。
///
/// 用途：[`run`] 在交换过程中逐步填写并连同结果一起返回，由调用方记入请求上下文；
/// 即使交换失败（如客户端中途断开）也保留已知的部分。
///
/// ```
/// let r = chatnexus::exchange::ExchangeReport::default(); // 尚未交换
/// assert_eq!(r.overhead(std::time::Duration::from_millis(5)), None); // 没有尝试时不计算网关开销
/// ```
#[derive(Debug, Clone, Default)]
pub struct ExchangeReport {
    /// 最后一次尝试的上游提供方（故障转移时是最终应答或最后失败的那个）。
    pub provider: Option<String>,
    /// 最后一次尝试发给上游的模型名（用于查价目表）。
    pub upstream_model: Option<String>,
    /// 尝试连接上游的次数。
    pub attempts: u32,
    /// 首个内容写给客户端的时刻（流式为第一块，非流式为完整响应）。
    pub first_output: Option<Instant>,
    /// 等待上游与等待客户端写入的累计时间（不算网关自身的开销）。
    pub waited: Duration,
    /// 已写给客户端的上游流式事件数（估算被取消的流的输出 token 时使用）。
    pub chunks: u64,
    /// token 用量（OpenAI 语义）。
    pub usage: Option<Usage>,
    /// 用量是否为估算（流被取消且上游没给出用量时）。
    pub estimated: bool,
    /// 调用方要保留写给客户端的完整回复（Responses 的会话保存、响应缓存）。
    pub keep: bool,
    /// 保留下来的完整回复对象（`keep` 为真且回复正常写完时才有）。
    pub rendered: Option<serde_json::Value>,
    /// 最后一次尝试是否透传（客户端方言与目标协议相同，回复原样转发）。
    pub passthrough: bool,
    /// 流式输出最多多少个上游事件（约等于 token）；越过时切断流（预算的 `cut_streams`）。
    pub output_cap: Option<u64>,
    /// 已从上游读到的事件数（只在有 `output_cap` 时才数）。
    pub events: u64,
}

impl ExchangeReport {
    /// 网关自身的处理时间：请求总时长减去等待；没有任何尝试时为 `None`。
    pub fn overhead(&self, total: Duration) -> Option<Duration> {
        (self.attempts > 0).then(|| total.saturating_sub(self.waited))
    }

    /// 等待一个 I/O 操作（读上游或写客户端），把挂起的时间计入 `waited`。
    ///
    /// 当场完成的操作（数据已经送到、写进了发送缓冲）没有等待，它的耗时是网关自己的 CPU，
    /// 也就不必为它读两次时钟（非流式请求的读响应体与写回复几乎总是当场完成）。
    pub(crate) async fn wait<T>(&mut self, io: impl Future<Output = T>) -> T {
        let mut io = pin!(io);
        if let Poll::Ready(result) = poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await {
            return result;
        }
        let started = Instant::now();
        let result = io.await;
        self.waited += started.elapsed();
        result
    }

    /// 记下首个内容写给客户端的时刻（只记第一次）。
    pub(crate) fn mark_output(&mut self) {
        self.first_output.get_or_insert_with(Instant::now);
    }

    /// 流结束（正常或被取消）时确定用量：上游报告了完整用量就用它；否则估算并标记。
    ///
    /// 估算规则：输入取上游已报告的部分（如 Anthropic 在流开头给出），否则按请求体字节数 ÷ 4；
    /// 输出取上游已报告的部分与已写给客户端的事件数中的较大者（OpenAI 流大约每个事件一个 token）。
    pub(crate) fn settle_stream_usage(
        &mut self,
        reported: Option<Usage>,
        completed: bool,
        request_bytes: usize,
    ) {
        if let (true, Some(usage)) = (completed, reported) {
            self.usage = Some(usage);
            return;
        }
        let base = reported.unwrap_or_default();
        let prompt = if base.prompt > 0 {
            base.prompt
        } else {
            estimate_tokens(request_bytes)
        };
        self.usage = Some(Usage {
            prompt,
            completion: base.completion.max(self.chunks),
            ..base
        });
        self.estimated = true;
    }
}

/// 调用方对一次交换的要求。
///
/// 用途：`proxy` 按缓存、会话与预算的需要填写，交给 [`run`]。
///
/// ```
/// let w = chatnexus::exchange::Wants { keep: true, output_cap: None }; // 保留完整回复，不限输出
/// assert!(w.keep); // 要保留
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Wants {
    /// 保留写给客户端的完整回复（Responses 的会话保存、响应缓存）。
    pub keep: bool,
    /// 流式输出最多多少个上游事件（约等于 token）：越过时切断流，写一个 429 `insufficient_quota` 的流中错误。
    pub output_cap: Option<u64>,
}

/// 交换失败的原因。
///
/// 用途：`proxy` 据此决定是写错误响应（或流中的错误事件），还是只记录客户端已断开。
///
/// ```
/// let f: chatnexus::exchange::Failure = chatnexus::error::ApiError::gateway_timeout("超时").into(); // 上游超时
/// assert!(matches!(f, chatnexus::exchange::Failure::Api(e) if e.status == 504)); // 返回客户端 504
/// ```
#[derive(Debug)]
pub enum Failure {
    /// 需要告诉客户端的错误。
    Api(ApiError),
    /// 客户端已断开，上游连接已随之丢弃；写客户端失败时带着写失败的原因（只进日志）。
    ClientGone(Option<Box<pingora::Error>>),
}

impl Failure {
    /// 写客户端失败：客户端已断开，保留写失败的原因。
    pub fn gone(cause: Box<pingora::Error>) -> Failure {
        Failure::ClientGone(Some(cause))
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Api(e) => write!(f, "{} {}", e.status, e.describe()),
            Failure::ClientGone(None) => f.write_str("客户端已断开"),
            Failure::ClientGone(Some(cause)) => write!(f, "客户端已断开（写失败：{cause}）"),
        }
    }
}

/// 所有请求共享的上游客户端：连接池、DNS 缓存与目标状态注册表。
///
/// 用途：网关启动时创建一个，每次交换都经由它选择目标、取得和归还上游连接。
///
/// ```
/// let conf = pingora::server::configuration::ServerConf::default(); // Pingora 缺省配置
/// let client = chatnexus::exchange::UpstreamClient::new(&conf, Default::default()); // 新的 DNS 缓存
/// let _shared = client.balancer(); // 与主动探测服务共享的目标状态
/// ```
pub struct UpstreamClient {
    connector: Connector,
    dns: Arc<DnsCache>,
    balancer: Arc<Balancer>,
}

impl UpstreamClient {
    /// 按 Pingora 服务端配置（连接池大小、CA 文件等）创建客户端，带一个新的目标状态注册表。
    pub fn new(conf: &ServerConf, dns: Arc<DnsCache>) -> Self {
        Self::with_balancer(conf, dns, Arc::default())
    }

    /// 创建共享已有目标状态注册表的客户端（主动探测服务用自己的连接池，但写同一份状态）。
    pub fn with_balancer(conf: &ServerConf, dns: Arc<DnsCache>, balancer: Arc<Balancer>) -> Self {
        UpstreamClient {
            connector: Connector::new(Some(ConnectorOptions::from_server_conf(conf))),
            dns,
            balancer,
        }
    }

    /// 目标状态注册表（`/health` 与主动探测服务使用）。
    pub fn balancer(&self) -> &Arc<Balancer> {
        &self.balancer
    }

    /// 在连接超时与剩余总时长内取得到提供方的连接（优先复用连接池里的）。
    ///
    /// 主机名解析出多个地址时按顺序逐个尝试（例如 `localhost` 先给出 `::1` 而上游只听 IPv4）。
    /// 只有解析与新建连接计时：从连接池取连接只等池里看守空闲连接的任务交出它（马上就会），
    /// 不必为每个请求注册一个定时器（剖析中每个请求三个定时器之一）。
    ///
    /// 错误：DNS 失败或全部地址都连不上返回 502，超时返回 504（指明是哪个超时）。
    async fn connect(
        &self,
        provider: &Provider,
        budget: &Budget<'_>,
    ) -> Result<(HttpSession, HttpPeer), ApiError> {
        let wait = budget.wait(Phase::Connect);
        let addrs = within(&wait, wait.duration, self.resolve(provider)).await??;
        let mut last_error = None;
        for &addr in addrs.iter() {
            let peer = build_peer(provider, addr);
            if let Some(session) = self.connector.reused_http_session(&peer).await {
                return Ok((session, peer));
            }
            // 新建连接的 future 有 8 KB 多（含 TLS 握手状态），放在堆上，外层的 future 就不必按它的大小逐字节复制
            let connecting = Box::pin(self.connector.get_http_session(&peer));
            match within(&wait, wait.left(), connecting).await? {
                Ok((session, reused)) => {
                    debug!("已连接上游 {}（{addr}，复用连接：{reused}）", provider.name);
                    return Ok((session, peer));
                }
                Err(e) => {
                    debug!("连接上游 {}（{addr}）失败：{e}", provider.name);
                    last_error = Some(e);
                }
            }
        }
        Err(connect_error(provider, last_error))
    }

    /// 解析提供方的主机名（IP 字面量与缓存命中时当场返回）。
    ///
    /// 错误：解析失败返回 502。
    async fn resolve(&self, provider: &Provider) -> Result<Addrs, ApiError> {
        let url = &provider.base_url;
        self.dns.resolve(&url.host, url.port).await.map_err(|e| {
            ApiError::bad_gateway(
                ErrorCode::UpstreamUnreachable,
                format!("{} 类型的上游不可达（域名解析失败）", provider.kind.label()),
            )
            .with_detail(format!("上游 `{}`：{e}", provider.name))
        })
    }

    /// 响应读完的连接放回连接池，否则丢弃（关闭）。
    ///
    /// 流式响应在结束标记后，上游的分块结束符可能还在路上，短暂等它一下，连接就能复用。
    async fn release(&self, mut session: HttpSession, peer: &HttpPeer) {
        let drained = session.is_body_done()
            || fast_timeout(DRAIN_TIMEOUT, drain(&mut session))
                .await
                .unwrap_or(false);
        if drained {
            self.connector
                .release_http_session(session, peer, peer.options.idle_timeout)
                .await;
        }
    }
}

/// 最多等 `limit` 的一步；到时返回 `wait` 说明的超时（当场完成的一步不注册定时器）。
///
/// 错误：超时返回 504。
async fn within<T>(
    wait: &Wait<'_>,
    limit: Duration,
    step: impl Future<Output = T>,
) -> Result<T, ApiError> {
    fast_timeout(limit, step)
        .await
        .map_err(|_| wait.timeout_error())
}

/// 为一个客户端请求选择目标并与之交换，失败时在还没向客户端写出任何字节前换下一个目标重试。
///
/// 参数：共享客户端、客户端会话、已校验的请求与调用方的要求（保留完整回复、输出上限）、模型、当前配置（重试上限、熔断与衰减参数）。
/// 返回：交换报告（所用的上游与上游模型名、尝试次数、用量……），以及写给客户端的 HTTP 状态码或失败：
/// 全部尝试失败时是最后一次的错误（消息附上此前每个目标的失败原因）；一个目标都不可用时
/// 是 503（带最早恢复时间）；已开始流式输出后出错则不再重试，调用方写一个流中错误事件。
pub async fn run(
    client: &UpstreamClient,
    down: &mut Session,
    (inbound, wants): (&Inbound, Wants),
    model: &Model,
    config: &Config,
) -> (ExchangeReport, Result<u16, Failure>) {
    let mut report = ExchangeReport {
        keep: wants.keep,
        output_cap: wants.output_cap,
        ..ExchangeReport::default()
    };
    let result = try_targets(client, down, (inbound, model), config, &mut report).await;
    (report, result)
}

/// 按计划逐个尝试目标，直到一个成功、不可重试的失败、尝试次数用完或没有可用目标。
async fn try_targets(
    client: &UpstreamClient,
    down: &mut Session,
    (inbound, model): (&Inbound, &Model),
    config: &Config,
    report: &mut ExchangeReport,
) -> Result<u16, Failure> {
    let started = Instant::now();
    let caps = StreamCaps::of(&config.server);
    let mut plan = client.balancer.plan(model, config);
    let mut last: Option<(Arc<str>, Failure)> = None;
    let mut earlier: Vec<String> = Vec::new();
    for attempt in 1..=config.retry.max_attempts {
        let Some(lease) = plan.next() else { break };
        let target = lease.target();
        report.provider = Some(target.provider.name.clone());
        report.upstream_model = Some(target.model.clone());
        let budget = Budget::new(started, &target.provider, caps);
        // 第一次尝试从 `started` 起算，总时长不可能已经用完，不必再读一次时钟
        if attempt > 1 && budget.expired() {
            last = Some((Arc::clone(&target.key), budget.total_error().into()));
            break;
        }
        let error = match attempt::once(client, down, inbound, &lease, &budget, report).await {
            Ok(status) => {
                lease.settle(Verdict::Healthy);
                return Ok(status);
            }
            Err(error) => error,
        };
        let key = Arc::clone(&target.key);
        lease.settle(error.verdict);
        if !error.retryable || down.response_written().is_some() {
            return Err(error.failure);
        }
        warn!(
            "请求 {} 的目标 `{key}` 第 {attempt} 次尝试失败，改试其他目标：{}",
            request_id(down),
            error.failure
        );
        if let Some((previous_key, previous)) = last.replace((key, error.failure)) {
            earlier.push(format!("`{previous_key}`：{previous}"));
        }
    }
    Err(last.map_or_else(
        || plan.unavailable().into(),
        |(_, f)| with_history(f, &earlier),
    ))
}

/// 本请求的请求 id（`request_filter` 已交给网关头模块），供日志关联。
fn request_id(down: &Session) -> &str {
    GatewayHeaders::of_ref(down)
        .and_then(GatewayHeaders::request_id)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// 此前失败的目标（目标键与各自的失败原因）附在最终错误只进日志的细节里：运维能看到每个目标是
/// 怎么失败的，客户端看到的消息不含目标键与内部地址。
fn with_history(failure: Failure, earlier: &[String]) -> Failure {
    match failure {
        Failure::Api(error) if !earlier.is_empty() => {
            let last = error.detail().unwrap_or_default();
            Failure::Api(
                error.with_detail(format!("{last}（此前失败的目标：{}）", earlier.join("；"))),
            )
        }
        other => other,
    }
}

/// 把最后一次连接失败映射为客户端错误：超时 504，其余 502。消息只说上游类型，地址与原因进日志。
fn connect_error(provider: &Provider, error: Option<Box<pingora::Error>>) -> ApiError {
    let kind = provider.kind.label();
    let detail = |e: &dyn fmt::Display| format!("上游 `{}`：{e}", provider.name);
    match error {
        Some(e) if matches!(e.etype(), ErrorType::ConnectTimedout) => ApiError::gateway_timeout(
            format!("连接 {kind} 类型的上游超时（连接超时 timeouts.connect_ms）"),
        )
        .with_detail(detail(&e)),
        Some(e) => ApiError::bad_gateway(
            ErrorCode::UpstreamUnreachable,
            format!("无法连接 {kind} 类型的上游"),
        )
        .with_detail(detail(&e)),
        None => ApiError::bad_gateway(
            ErrorCode::UpstreamUnreachable,
            format!("{kind} 类型的上游没有可用地址"),
        )
        .with_detail(detail(&"没有可用地址")),
    }
}

/// 读完上游剩余的响应体；返回是否正常读到结尾。
async fn drain(session: &mut HttpSession) -> bool {
    loop {
        match session.read_body_bytes().await {
            Ok(Some(_)) => continue,
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use pingora::http::RequestHeader;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::providers::test_target::提供方;

    /// 假上游的回复（保持连接，响应体是“好的”）。
    pub(super) const REPLY: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n\xe5\xa5\xbd\xe7\x9a\x84";
    /// 测试自己最多等多久（远大于各项时限，只为实现出错时测试失败而不是挂住）。
    pub(super) const GIVE_UP: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn 等待_当场完成的操作不计等待_挂起过的照常返回结果() {
        let mut report = ExchangeReport::default();
        assert_eq!(report.wait(std::future::ready("好的")).await, "好的");
        assert_eq!(report.waited, Duration::ZERO, "没有挂起就没有等待");
        let pending_once = async {
            tokio::task::yield_now().await;
            "稍后"
        };
        assert_eq!(
            report.wait(pending_once).await,
            "稍后",
            "挂起后再完成的结果不丢"
        );
    }

    /// 在回环上监听一个空闲端口，返回监听与它的地址。
    pub(super) async fn 回环监听() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("绑定回环端口");
        let addr = listener.local_addr().expect("取监听地址");
        (listener, addr)
    }

    /// 在一条连接上逐个回复请求（没有请求体的 GET），直到对端关闭。
    async fn serve(mut socket: TcpStream) {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            while !got.ends_with(b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            got.clear();
            if socket.write_all(REPLY).await.is_err() {
                return;
            }
        }
    }

    /// 经上游客户端完成一次 `GET /`：取连接、写请求、读完响应、归还连接。
    async fn exchange_once(client: &UpstreamClient, provider: &Provider) {
        let budget = Budget::new(
            Instant::now(),
            provider,
            StreamCaps::of(&Default::default()),
        );
        let (up, peer) = client.connect(provider, &budget).await.expect("连接假上游");
        let header = RequestHeader::build("GET", b"/", None).expect("构造请求头");
        let mut up = io::write_h1_request(up, &peer, &header, &[], GIVE_UP)
            .await
            .expect("写请求");
        up.read_response().await.expect("读响应头");
        let body = up.read_body_bytes().await.expect("读响应体");
        assert_eq!(body.as_deref(), Some("好的".as_bytes()), "响应体应完整读出");
        client.release(up, &peer).await;
    }

    #[tokio::test]
    async fn 读完的连接归还后_下一次交换复用它而不是新建() {
        let (listener, addr) = 回环监听().await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket));
            }
        });
        let provider = 提供方(&format!("http://{addr}"));
        let client = UpstreamClient::new(&ServerConf::default(), Arc::default());
        let three = async {
            for _ in 0..3 {
                exchange_once(&client, &provider).await;
            }
        };
        tokio::time::timeout(GIVE_UP, three)
            .await
            .expect("三次交换应很快完成");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "三次交换应共用一条连接");
    }
}
