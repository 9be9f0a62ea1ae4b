//! 模拟器写响应的小工具：JSON、SSE 头、`data:` 事件与具名事件。

use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use serde_json::Value;

use crate::streaming::write_data;

/// 写一个完整的 JSON 响应（不带 `Retry-After`）；返回连接是否仍可复用。
pub(super) async fn write_json(session: &mut ServerSession, status: u16, body: &Value) -> bool {
    write_json_with(session, status, body, None).await
}

/// 写一个完整的 JSON 响应，`retry_after` 为 `None` 时不带 `Retry-After`
/// （Gemini 只在响应体的 `RetryInfo` 里给出等待时间）；返回连接是否仍可复用。
pub(super) async fn write_json_with(
    session: &mut ServerSession,
    status: u16,
    body: &Value,
    retry_after: Option<&str>,
) -> bool {
    write_json_bytes(
        session,
        (status, Bytes::from(body.to_string())),
        retry_after,
    )
    .await
}

/// 写一个已序列化好的 JSON 响应（向量的 f32 分量按 f32 的最短写法输出，不经 `Value` 变成 f64 的长写法）；
/// 返回连接是否仍可复用。
pub(super) async fn write_json_bytes(
    session: &mut ServerSession,
    (status, body): (u16, Bytes),
    retry_after: Option<&str>,
) -> bool {
    let written = async {
        let mut header = ResponseHeader::build(status, None)?;
        header.insert_header(CONTENT_TYPE, "application/json")?;
        header.insert_header(CONTENT_LENGTH, body.len().to_string())?;
        if let Some(seconds) = retry_after {
            header.insert_header(RETRY_AFTER, seconds)?;
        }
        session.write_response_header(Box::new(header)).await?;
        session.write_response_body(body, true).await
    };
    written.await.is_ok()
}

/// 写 SSE 响应头；返回是否成功。
pub(super) async fn start_stream(session: &mut ServerSession) -> bool {
    let written = async {
        let mut header = ResponseHeader::build(200, None)?;
        header.insert_header(CONTENT_TYPE, "text/event-stream; charset=utf-8")?;
        header.insert_header(CACHE_CONTROL, "no-cache")?;
        header.insert_header(TRANSFER_ENCODING, "chunked")?;
        session.write_response_header(Box::new(header)).await
    };
    written.await.is_ok()
}

/// 写一个 `data: <json>` 事件；返回是否成功。
pub(super) async fn send_data(session: &mut ServerSession, event: &Value) -> bool {
    let mut out = BytesMut::new();
    write_data(&mut out, event.to_string().as_bytes());
    session
        .write_response_body(out.freeze(), false)
        .await
        .is_ok()
}

/// 写一个具名事件 `event: <name>` + `data: <json>`（Anthropic 格式）；返回是否成功。
pub(super) async fn send_named(session: &mut ServerSession, name: &str, event: &Value) -> bool {
    let mut out = BytesMut::from(format!("event: {name}\n").as_bytes());
    write_data(&mut out, event.to_string().as_bytes());
    session
        .write_response_body(out.freeze(), false)
        .await
        .is_ok()
}

/// 写原始字节（如 `data: [DONE]`）并可选地结束响应体；返回是否成功。
pub(super) async fn send_raw(session: &mut ServerSession, data: Bytes, end: bool) -> bool {
    session.write_response_body(data, end).await.is_ok()
}
