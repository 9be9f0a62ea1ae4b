//! 读取客户端请求体：先看 Content-Length，再边读边计数，超过上限立即 413。

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT};
use pingora_proxy::Session;

use crate::error::{ApiError, ErrorCode};
use crate::exchange::Failure;

/// `Expect` 头要求先回 100 的取值。
const CONTINUE: &[u8] = b"100-continue";

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
