//! 交换中的底层读写：构造上游请求头，带超时地读取上游，同时留意客户端是否断开。

use std::future::Future;
use std::io::{self, ErrorKind, IoSlice};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, HOST, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, StatusCode};
use log::trace;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession};
use pingora::time::fast_timeout::fast_timeout;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType::{InvalidHTTPHeader, WriteError, WriteTimedout};
use pingora_proxy::Session;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::budget::{Budget, Phase, Wait};
use super::Failure;
use crate::config::Provider;
use crate::error::{ApiError, ErrorCode};
use crate::providers::UpstreamRequest;

/// 发往上游的 User-Agent。
pub(super) const GATEWAY_USER_AGENT: &str = concat!("chatnexus/", env!("CARGO_PKG_VERSION"));
/// 要求上游不压缩：网关要逐事件解析响应体。
static IDENTITY_ENCODING: HeaderValue = HeaderValue::from_static("identity");
/// User-Agent 的头值（预先构造，每个请求不必再校验）。
static USER_AGENT_VALUE: HeaderValue = HeaderValue::from_static(GATEWAY_USER_AGENT);
/// 错误消息里的“响应体”。
const BODY: &str = "响应体";
/// 网关自己设置的通用头的个数（Host、Content-Length、Accept-Encoding、User-Agent），用来预留容量。
const COMMON_HEADERS: usize = 4;

/// 构造上游请求头：路径、Host、长度、`accept-encoding: identity`，再加上过滤器给出的头。
///
/// 先用 `http` 的 `Parts` 直接写好全部头，再转成 Pingora 的请求头（不带大小写表，头名一律小写写出，
/// HTTP 头名不区分大小写）：Pingora 的 `insert_header` 会把每个头名转成字节再解析回来，是剖析中的热点。
pub(super) fn build_request_header(
    provider: &Provider,
    request: &UpstreamRequest,
) -> Result<RequestHeader, ApiError> {
    let (mut parts, ()) = http::Request::post(request.path.as_str())
        .body(())
        .map_err(|e| {
            ApiError::internal(format!(
                "构造发往上游 `{}` 的请求头失败：{e}",
                provider.name
            ))
        })?
        .into_parts();
    let headers = &mut parts.headers;
    headers.reserve(COMMON_HEADERS + request.headers.len());
    headers.insert(HOST, provider.base_url.host_header().clone());
    headers.insert(CONTENT_LENGTH, HeaderValue::from(request.body.len()));
    headers.insert(ACCEPT_ENCODING, IDENTITY_ENCODING.clone());
    headers.insert(USER_AGENT, USER_AGENT_VALUE.clone());
    for (name, value) in &request.headers {
        headers.insert(name.clone(), value.clone());
    }
    Ok(RequestHeader::from(parts))
}

/// 向 HTTP/1.1 上游一次写出请求头与请求体，再在同一条连接上建好读响应的会话。
///
/// Pingora 的会话写完头就冲刷、再写体，回环上是两次 `sendto`，上游也被唤醒两次；请求体已经完整在手，
/// 一次 `writev` 就够（请求体不复制）。最多等 `limit`：上游不读请求体时写不完，不能无限挂着。
/// 新会话与连接器给出的相同（按对端选项设超时）；它不记得写过的请求头，这只影响 HEAD 与协议升级的响应，
/// 网关两者都不发。
///
/// 错误：请求行含非法字节、写失败，或 `limit` 内没有写完（`WriteTimedout`）。
pub(super) async fn write_h1_request(
    h1: HttpSession,
    peer: &HttpPeer,
    header: &RequestHeader,
    body: &[u8],
    limit: Duration,
) -> pingora::Result<HttpSession> {
    let head = http_req_header_to_wire(header)
        .ok_or_else(|| pingora::Error::explain(InvalidHTTPHeader, "请求行含有不允许的字节"))?;
    // 与 Pingora 自己写请求头时一样在 TRACE 级记下整个请求头，便于排查；认证头的值由日志脱敏隐藏
    trace!("写给上游的请求头：{head:?}");
    let mut stream = h1.into_inner();
    match fast_timeout(limit, write_parts(&mut stream, &head, body)).await {
        Ok(Ok(())) => Ok(HttpSession::new_with_options(stream, peer)),
        Ok(Err(e)) => Err(pingora::Error::because(WriteError, "写上游请求失败", e)),
        Err(_) => Err(pingora::Error::explain(
            WriteTimedout,
            format!("{} 毫秒内没有写完上游请求", limit.as_millis()),
        )),
    }
}

/// 把两段字节按顺序写完并冲刷：每次用 `writev` 交出两段里还没写出的部分。
async fn write_parts<W: AsyncWrite + Unpin>(
    stream: &mut W,
    head: &[u8],
    body: &[u8],
) -> io::Result<()> {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() || !body.is_empty() {
        let written = stream
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            .await?;
        if written == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
        let from_head = written.min(head.len());
        head = &head[from_head..];
        body = &body[written - from_head..];
    }
    stream.flush().await
}

/// 上游响应头 `Retry-After` 中的秒数（只接受整数秒，HTTP 日期形式忽略）。
pub(super) fn retry_after(header: &ResponseHeader) -> Option<u64> {
    header
        .headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.ceil() as u64)
}

/// 等待上游响应头，返回状态码。`first_byte` 是写请求前建立的首字节等待：写请求用掉的时间已经算在里面，
/// 这里只等它剩下的部分。
///
/// 不复制整个响应头（每个请求一次克隆与释放）：要看别的头时调用方从 `up.resp_header()` 借用。
pub(super) async fn read_header(
    up: &mut HttpSession,
    down: &mut Session,
    first_byte: &Wait<'_>,
) -> Result<StatusCode, Failure> {
    let left = first_byte.left();
    guarded(down, (first_byte, left), "响应头", up.read_response()).await?;
    up.resp_header().map(|h| h.status).ok_or_else(|| {
        ApiError::bad_gateway(ErrorCode::InvalidUpstreamResponse, "上游没有返回响应头").into()
    })
}

/// 读取一块上游响应体（块间隔超时与剩余总时长中较短者）；`None` 表示响应体结束。
///
/// 已经送到的块（非流式的响应体往往随响应头一起到达）当场取出，不读时钟、不计算时限。
pub(super) async fn read_chunk(
    up: &mut HttpSession,
    down: &mut Session,
    budget: &Budget<'_>,
) -> Result<Option<Bytes>, Failure> {
    if let Some(ready) = read_ready(up) {
        return ready.map_err(Failure::from);
    }
    let wait = budget.wait(Phase::Idle);
    guarded(down, (&wait, wait.duration), BODY, up.read_body_bytes()).await
}

/// 读完整个上游响应体，超过上限返回 502。
pub(super) async fn read_body(
    up: &mut HttpSession,
    down: &mut Session,
    budget: &Budget<'_>,
    limit: usize,
) -> Result<Bytes, Failure> {
    let mut body = BytesMut::new();
    while let Some(chunk) = read_chunk(up, down, budget).await? {
        if body.len() + chunk.len() > limit {
            return Err(ApiError::bad_gateway(
                ErrorCode::UpstreamResponseTooLarge,
                format!("上游响应超过 {limit} 字节上限"),
            )
            .into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// 带超时地等待一个上游读操作，同时监视客户端：客户端先断开则立即放弃（丢弃上游连接）。
///
/// 用 Pingora 的快速超时而不是 tokio 的：它只在操作真正挂起时才注册定时器，且按 10 ms 刻度共享；
/// tokio 定时器每次成为最早的到期点都要写 eventfd 唤醒驱动，每个请求多出几次系统调用。
///
/// 参数 `(wait, duration)`：超时时用 `wait` 说明是哪一个超时，最多等 `duration`（可以只是 `wait` 剩下的部分）。
async fn guarded<T>(
    down: &mut Session,
    (wait, duration): (&Wait<'_>, Duration),
    what: &str,
    read: impl Future<Output = pingora::Result<T>>,
) -> Result<T, Failure> {
    match guarded_for(down, duration, what, read).await? {
        Some(value) => Ok(value),
        None => Err(wait.timeout_error().into()),
    }
}

/// 最多等 `duration` 的上游读操作，同时监视客户端；到时返回 `Ok(None)`，由调用方决定是超时还是只是安静。
async fn guarded_for<T>(
    down: &mut Session,
    duration: Duration,
    what: &str,
    read: impl Future<Output = pingora::Result<T>>,
) -> Result<Option<T>, Failure> {
    tokio::select! {
        biased;
        result = fast_timeout(duration, read) => match result {
            Ok(Ok(value)) => Ok(Some(value)),
            Ok(Err(e)) => Err(read_failed(what, *e).into()),
            Err(_) => Ok(None),
        },
        _ = down.read_body_or_idle(true) => Err(Failure::ClientGone(None)),
    }
}

/// 读取一块上游响应体，但最多等 `quiet`：上游这么久没有数据时返回 `Ok(None)`（调用方补一个保活事件再读）。
/// 块间隔超时仍从上一块数据算起：`silent` 是自上一块数据以来已经安静地等过的时间，保活不会让超时失效。
///
/// 被放弃的读操作不会丢数据：读 socket 在拿到数据之前取消，什么也没有消费。
pub(super) async fn read_chunk_or_quiet(
    up: &mut HttpSession,
    down: &mut Session,
    budget: &Budget<'_>,
    quiet: Duration,
    silent: Duration,
) -> Result<Option<Option<Bytes>>, Failure> {
    let wait = budget.wait(Phase::Idle);
    let left = wait.duration.saturating_sub(silent);
    if quiet < left {
        return guarded_for(down, quiet, BODY, up.read_body_bytes()).await;
    }
    match guarded_for(down, left, BODY, up.read_body_bytes()).await? {
        Some(chunk) => Ok(Some(chunk)),
        None => Err(wait.timeout_error().into()),
    }
}

/// 读上游失败的错误（502 `upstream_read_failed`，带上 Pingora 的原因）。
fn read_failed(what: &str, cause: pingora::Error) -> ApiError {
    ApiError::bad_gateway(ErrorCode::UpstreamReadFailed, format!("读取上游{what}失败"))
        .with_cause(cause)
}

/// 上游已经送到、不必等待就能读出的下一块响应体；要等待时返回 `None`（调用方照常带超时地读）。
///
/// 只轮询一次，挂起的读操作随即丢弃：读 socket 在拿到数据之前取消，什么也没有消费。
pub(super) fn read_ready(up: &mut HttpSession) -> Option<Result<Option<Bytes>, ApiError>> {
    let mut read = pin!(up.read_body_bytes());
    match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => Some(result.map_err(|e| read_failed(BODY, *e))),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use pingora::connectors::http::v1::Connector;
    use tokio::io::{duplex, AsyncReadExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::exchange::tests::{回环监听, GIVE_UP, REPLY};

    /// 测试里写请求的时限。
    const WRITE_LIMIT: Duration = Duration::from_secs(5);
    /// 上游不读时的时限：足够短，测试很快结束。
    const STALL_LIMIT: Duration = Duration::from_millis(200);
    /// 远大于回环上收发缓冲能容下的请求体（几 MiB），上游不读时一定写不完。
    const STALL_BODY_BYTES: usize = 32 * 1024 * 1024;

    #[tokio::test]
    async fn 两段分多次才写得完时_按顺序一个字节不差() {
        // 管道每次最多收 5 个字节，逼出部分写；另一端同时读
        let (mut writer, mut reader) = duplex(5);
        let (head, body) = ("请求头：POST /v1/chat\r\n\r\n", "{\"内容\":\"你好\"}");
        let read = tokio::spawn(async move {
            let mut all = String::new();
            reader.read_to_string(&mut all).await.map(|_| all)
        });
        write_parts(&mut writer, head.as_bytes(), body.as_bytes())
            .await
            .expect("写入管道不应失败");
        drop(writer);
        let all = read.await.expect("读任务不应崩溃").expect("读管道不应失败");
        assert_eq!(all, format!("{head}{body}"), "两段应按顺序完整到达");
    }

    /// 经 Pingora 的连接器连到回环上的假上游，取出 HTTP/1.1 会话。
    async fn connect(addr: std::net::SocketAddr) -> (HttpSession, HttpPeer) {
        let peer = HttpPeer::new(addr, false, String::new());
        let (h1, _) = Connector::new(None)
            .get_http_session(&peer)
            .await
            .expect("连接回环上游");
        (h1, peer)
    }

    /// 在回环上假扮上游：收一个请求（直到请求体 `body` 收齐），回 [`REPLY`]，返回收到的全部字节。
    async fn answer_one(listener: TcpListener, body: &'static str) -> Vec<u8> {
        let (mut socket, _) = listener.accept().await.expect("接受连接");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(body.as_bytes()) {
            let n = socket.read(&mut buf).await.expect("读请求");
            assert!(n > 0, "请求没写完连接就断了：{got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        socket.write_all(REPLY).await.expect("写回复");
        got
    }

    #[tokio::test]
    async fn 请求头与请求体一次写出后_同一会话照常读响应() {
        let (listener, addr) = 回环监听().await;
        let body = "{\"model\":\"中文模型\"}";
        let upstream = tokio::spawn(answer_one(listener, body));
        let (h1, peer) = connect(addr).await;
        let mut header =
            RequestHeader::build("POST", b"/v1/chat/completions", None).expect("构造请求头");
        header
            .insert_header("content-length", body.len())
            .expect("设置长度");
        let exchange = async {
            let mut h1 = write_h1_request(h1, &peer, &header, body.as_bytes(), WRITE_LIMIT).await?;
            h1.read_response().await?;
            let reply = h1.read_body_bytes().await?;
            Ok::<_, Box<pingora::Error>>((h1, reply))
        };
        let (h1, reply) = tokio::time::timeout(GIVE_UP, exchange)
            .await
            .expect("请求没写全时上游不会回复，交换挂住即失败")
            .expect("写请求与读响应");
        let got = String::from_utf8(upstream.await.expect("上游任务")).expect("请求是 UTF-8");
        assert!(
            got.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
            "请求行：{got}"
        );
        assert!(
            got.ends_with(&format!("\r\n\r\n{body}")),
            "请求体紧跟在头后：{got}"
        );
        assert_eq!(h1.get_status().map(|s| s.as_u16()), Some(200));
        assert_eq!(
            reply.as_deref(),
            Some("好的".as_bytes()),
            "响应体应完整读出"
        );
    }

    #[tokio::test]
    async fn 上游不读请求体时_写请求按时限放弃而不是一直挂着() {
        let (listener, addr) = 回环监听().await;
        let accepted = tokio::spawn(async move { listener.accept().await });
        let (h1, peer) = connect(addr).await;
        // 假上游接受连接后一个字节也不读，连接保持打开直到测试结束
        let (_socket, _) = accepted.await.expect("接受任务").expect("接受连接");
        let header =
            RequestHeader::build("POST", b"/v1/chat/completions", None).expect("构造请求头");
        let body = vec![b' '; STALL_BODY_BYTES];
        let result = tokio::time::timeout(
            GIVE_UP,
            write_h1_request(h1, &peer, &header, &body, STALL_LIMIT),
        )
        .await
        .expect("写请求必须按时限放弃，不能一直挂着");
        let error = result.err().expect("上游不读时写不完，必须报错");
        assert_eq!(error.etype(), &WriteTimedout, "应是写超时：{error}");
    }
}
