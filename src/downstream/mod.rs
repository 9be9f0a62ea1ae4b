//! 网关写给客户端的一切：响应（JSON、错误信封、SSE 的开始/分块/结束与流中错误事件），
//! 以及每个响应都带的请求 id、安全头、CORS 头与限流额度头。
//!
//! 位于 `proxy` 与 `exchange` 之下：两者都经这里写响应，每个头只由一处代码写出。

mod headers;
mod respond;

pub use headers::{
    GatewayHeaders, GatewayHeadersBuilder, REQUEST_ID_HEADER, UPSTREAM_MODEL_HEADER,
};
pub use respond::{
    finish_body, start_event_stream, write_chunk, write_error, write_error_body, write_json,
    write_json_with, write_last_chunk, write_no_content, write_stream_error,
};
