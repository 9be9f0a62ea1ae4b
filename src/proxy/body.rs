//! 读取客户端请求体：先看 Content-Length，再边读边计数，超过上限立即 413。

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT};
use pingora::time::fast_timeout::fast_timeout;
use pingora_proxy::Session;

use crate::error::{ApiError, ErrorCode};
use crate::exchange::Failure;

/// `Expect` 头要求先回 100 的取值。
const CONTINUE: &[u8] = b"100-continue";
/// 提前应答后读掉剩余请求体的最长时间（nginx 的 lingering close）：足够本机或局域网的客户端把
/// 十几 MiB 发完，又不让不发也不关的客户端长期占住连接。
const LINGER_DEADLINE: Duration = Duration::from_secs(5);
/// 提前应答后最多读掉的字节数是请求体上限的这么多倍。
const LINGER_FACTOR: usize = 2;

/// 读取完整请求体。
///
/// 参数：客户端会话、上限字节数。
/// 错误：超过上限返回 413（声明的长度超限时不读请求体）；读取失败返回 400。
pub async fn read(session: &mut Session, limit: usize) -> Result<Bytes, Failure> {
    let declared = declared_length(session)?;
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit).into());
    }
    if expects_continue(session) {
        session
            .write_continue_response()
            .await
            .map_err(Failure::gone)?;
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    loop {
        let chunk = session.read_request_body().await.map_err(|e| {
            ApiError::bad_request(ErrorCode::InvalidBody, "读取请求体失败").with_cause(*e)
        })?;
        let Some(chunk) = chunk else {
            return Ok(body.freeze());
        };
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit).into());
        }
        body.extend_from_slice(&chunk);
    }
}

/// 提前应答（401、413……）之后读掉客户端还在上传的请求体，最多 `limit` 的 [`LINGER_FACTOR`] 倍、
/// [`LINGER_DEADLINE`] 之内，再让连接复用或关闭。
///
/// 先发完整个请求体再读响应的客户端（Python 的 urllib、requests）在网关回 413 后仍在写；此时关闭连接，
/// 内核会对未读的数据回 RST，客户端只看到“连接被重置/断开的管道”而读不到 413。读够上限或超时仍没读完
/// 时关闭连接（不再复用），免得半截请求体被当成下一个请求。
pub async fn linger(session: &mut Session, limit: usize) {
    if session.is_body_done() {
        return;
    }
    let cap = limit.saturating_mul(LINGER_FACTOR);
    let drained = fast_timeout(LINGER_DEADLINE, discard(session, cap))
        .await
        .unwrap_or(false);
    if !drained {
        session.set_keepalive(None);
    }
}

/// 读掉并丢弃请求体，最多 `cap` 字节；返回是否读到了结尾。
async fn discard(session: &mut Session, cap: usize) -> bool {
    let mut read = 0usize;
    while read <= cap {
        match session.read_request_body().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
    false
}

/// 客户端是否在等 `100 Continue` 才上传请求体（curl 对大于 1 MiB 的请求体就会这样做）。
fn expects_continue(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(CONTINUE))
}

/// 解析 Content-Length；没有该头（如分块上传）时返回 `None`。
fn declared_length(session: &Session) -> Result<Option<usize>, ApiError> {
    let Some(value) = session.req_header().headers.get(CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(ErrorCode::InvalidHeader, "Content-Length 不是合法的数字")
        })
}
