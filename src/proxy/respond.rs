//! 写给客户端的响应：JSON、OpenAI 错误信封、SSE 流的开始/分块/结束与流中错误事件。

use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING};
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora_proxy::Session;

use super::REQUEST_ID_HEADER;
use crate::error::ApiError;
use crate::streaming::write_data;

/// JSON 响应的内容类型（头值是编译期常量，每个响应不必再逐字节校验）。
static JSON_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/json");
/// SSE 响应的内容类型。
const EVENT_STREAM_CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";
/// SSE 不可缓存。
const NO_CACHE: &str = "no-cache";
/// 让 nginx 等前置代理不要缓冲 SSE。
const X_ACCEL_BUFFERING: &str = "x-accel-buffering";
/// 响应头预留的条目数：自己写的至多 5 个，加上安全头模块的 5 个与 CORS 的 3 个，避免逐个插入时反复扩容。
const HEADER_CAPACITY: usize = 13;

/// 写一个完整的 JSON 响应（带 Content-Length）。
///
/// 错误：写客户端失败（通常是客户端已断开）。
pub async fn write_json(session: &mut Session, status: u16, body: Bytes) -> pingora::Result<()> {
    let header = json_header(session, status, body.len())?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// 写一个 OpenAI 错误信封响应（有建议等待时间时带 `Retry-After`）。
///
/// 错误：写客户端失败。
pub async fn write_error(session: &mut Session, error: &ApiError) -> pingora::Result<()> {
    let body = error.to_body();
    let mut header = json_header(session, error.status, body.len())?;
    if let Some(seconds) = error.retry_after {
        header.insert_header(RETRY_AFTER, seconds.to_string())?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// 写一个没有响应体的 204（CORS 预检应答），附带给定的头。
///
/// 错误：写客户端失败。
pub async fn write_no_content(
    session: &mut Session,
    headers: Vec<(http::HeaderName, String)>,
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build_no_case(204, Some(HEADER_CAPACITY + headers.len()))?;
    for (name, value) in headers {
        header.insert_header(name, value)?;
    }
    session.write_response_header(Box::new(header), true).await
}

fn json_header(session: &Session, status: u16, length: usize) -> pingora::Result<ResponseHeader> {
    let mut header = base_header(session, status)?;
    header.insert_header(CONTENT_TYPE, JSON_CONTENT_TYPE.clone())?;
    header.insert_header(CONTENT_LENGTH, HeaderValue::from(length))?;
    Ok(header)
}

/// 所有响应共有的部分：状态码与请求 id（`request_filter` 已把它写进请求头）。
///
/// 头名一律小写写出（HTTP 头名不区分大小写）：保留大小写要为每个头另外维护一份名字表，是白做的功。
fn base_header(session: &Session, status: u16) -> pingora::Result<ResponseHeader> {
    let mut header = ResponseHeader::build_no_case(status, Some(HEADER_CAPACITY))?;
    if let Some(id) = session.req_header().headers.get(&REQUEST_ID_HEADER) {
        header.insert_header(REQUEST_ID_HEADER.clone(), id.clone())?;
    }
    Ok(header)
}

/// 写出 SSE 响应头（分块传输，不缓存）。
///
/// 错误：写客户端失败。
pub async fn start_event_stream(session: &mut Session) -> pingora::Result<()> {
    let mut header = base_header(session, 200)?;
    header.insert_header(CONTENT_TYPE, EVENT_STREAM_CONTENT_TYPE)?;
    header.insert_header(CACHE_CONTROL, NO_CACHE)?;
    header.insert_header(TRANSFER_ENCODING, "chunked")?;
    header.insert_header(X_ACCEL_BUFFERING, "no")?;
    session.write_response_header(Box::new(header), false).await
}

/// 写一块流式数据（分块编码下每块立即刷出）。
///
/// 错误：写客户端失败。
pub async fn write_chunk(session: &mut Session, data: Bytes) -> pingora::Result<()> {
    session.write_response_body(Some(data), false).await
}

/// 结束流式响应体。
///
/// 错误：写客户端失败。
pub async fn finish_body(session: &mut Session) -> pingora::Result<()> {
    session.write_response_body(None, true).await
}

/// 响应头已发出后只能在流中报告错误：写一个 `data: {"error":…}` 事件并干净地结束流。
///
/// 错误：写客户端失败。
pub async fn write_stream_error(session: &mut Session, error: &ApiError) -> pingora::Result<()> {
    let mut out = BytesMut::new();
    write_data(&mut out, &error.to_body());
    session.write_response_body(Some(out.freeze()), true).await
}
