//! 写给客户端的响应：JSON、OpenAI 错误信封、SSE 流的开始/分块/结束与流中错误事件。

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING};
use http::response::Parts;
use http::{HeaderName, HeaderValue, StatusCode};
use pingora::http::ResponseHeader;
use pingora::{ErrorType, OrErr};
use pingora_proxy::Session;

use super::headers::GatewayHeaders;
use crate::error::ApiError;
use crate::streaming::write_data;

/// JSON 响应的内容类型（头值是编译期常量，每个响应不必再逐字节校验）。
static JSON_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/json");
/// SSE 响应的内容类型。
static EVENT_STREAM_CONTENT_TYPE: HeaderValue =
    HeaderValue::from_static("text/event-stream; charset=utf-8");
/// 分块传输（SSE 的长度事先未知）。
static CHUNKED: HeaderValue = HeaderValue::from_static("chunked");
/// 让 nginx 等前置代理不要缓冲 SSE。
static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
/// `x-accel-buffering` 的值：不缓冲。
static NO_BUFFERING: HeaderValue = HeaderValue::from_static("no");
/// 响应头预留的条目数：自己写的至多 6 个（含请求 id 与上游模型名）、安全头 5 个、CORS 3 个、限流额度 6 个，避免逐个插入时反复扩容。
const HEADER_CAPACITY: usize = 20;

/// 写一个完整的 JSON 响应（带 Content-Length）。
///
/// 错误：写客户端失败（通常是客户端已断开）。
pub async fn write_json(session: &mut Session, status: u16, body: Bytes) -> pingora::Result<()> {
    let header = ResponseHeader::from(json_parts(session, status, body.len())?);
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// 写一个 OpenAI 错误信封响应（有建议等待时间时带 `Retry-After`）。
///
/// 错误：写客户端失败。
pub async fn write_error(session: &mut Session, error: &ApiError) -> pingora::Result<()> {
    write_error_body(session, error.status, error.to_body(), error.retry_after).await
}

/// 写一个已渲染好的错误响应（某种方言的错误体；有建议等待时间时带 `Retry-After`）。
///
/// 错误：写客户端失败。
pub async fn write_error_body(
    session: &mut Session,
    status: u16,
    body: Bytes,
    retry_after: Option<u64>,
) -> pingora::Result<()> {
    let mut parts = json_parts(session, status, body.len())?;
    if let Some(seconds) = retry_after {
        parts
            .headers
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    let header = ResponseHeader::from(parts);
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// 写一个 JSON 响应，另带几个响应头（如说明 token 数是估算的头）。
///
/// 错误：写客户端失败。
pub async fn write_json_with(
    session: &mut Session,
    body: Bytes,
    extra: &[(HeaderName, HeaderValue)],
) -> pingora::Result<()> {
    let mut parts = json_parts(session, 200, body.len())?;
    for (name, value) in extra {
        parts.headers.insert(name.clone(), value.clone());
    }
    let header = ResponseHeader::from(parts);
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

fn json_parts(session: &Session, status: u16, length: usize) -> pingora::Result<Parts> {
    let mut parts = base_parts(session, status)?;
    parts
        .headers
        .insert(CONTENT_TYPE, JSON_CONTENT_TYPE.clone());
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(length));
    Ok(parts)
}

/// 所有响应共有的部分：状态码与本请求的网关头（请求 id、安全头与 CORS 头、限流额度头）。
///
/// 直接在 `http` 的头表上构造，最后才转成 Pingora 的响应头（不带大小写表，头名一律小写写出）：
/// Pingora 的 `insert_header` 会把每个头名转成字节再解析回来，每个响应十几个头时是剖析中的热点。
/// 下游模块在写出时看到网关头已经写好便不再重复。
fn base_parts(session: &Session, status: u16) -> pingora::Result<Parts> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status =
        StatusCode::from_u16(status).or_err(ErrorType::InternalError, "响应状态码不合法")?;
    parts.headers.reserve(HEADER_CAPACITY);
    if let Some(gateway) = GatewayHeaders::of_ref(session) {
        gateway.write_to(&mut parts.headers);
    }
    Ok(parts)
}

/// 写出 SSE 响应头（分块传输；不缓存由安全头的 `cache-control: no-store` 保证）。
///
/// 错误：写客户端失败。
pub async fn start_event_stream(session: &mut Session) -> pingora::Result<()> {
    let mut parts = base_parts(session, 200)?;
    let headers = &mut parts.headers;
    headers.insert(CONTENT_TYPE, EVENT_STREAM_CONTENT_TYPE.clone());
    headers.insert(TRANSFER_ENCODING, CHUNKED.clone());
    headers.insert(X_ACCEL_BUFFERING.clone(), NO_BUFFERING.clone());
    let header = ResponseHeader::from(parts);
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
    write_last_chunk(session, out.freeze()).await
}

/// 写最后一块流式数据（如某种方言的流中错误事件，可以为空）并结束流。
///
/// 错误：写客户端失败。
pub async fn write_last_chunk(session: &mut Session, data: Bytes) -> pingora::Result<()> {
    let data = (!data.is_empty()).then_some(data);
    session.write_response_body(data, true).await
}
