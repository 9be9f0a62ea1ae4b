//! Responses 方言的错误（参考文档 §R6）：响应头之前与 Chat 相同的 OpenAI 错误信封（透传时是上游原样的回复）；
//! 响应头之后、又没有翻译流可以写 `response.failed` 时（透传的流被截断、超时），写一个 `error` 事件。

use bytes::{Bytes, BytesMut};
use serde_json::json;

use crate::error::ApiError;
use crate::streaming::write_event;

/// 流中错误事件的事件名。
const ERROR_EVENT: &str = "error";

/// 响应头之前的错误：状态码与响应体（透传时上游原样的回复，否则 OpenAI 错误信封）。
///
/// 参数：错误。返回：状态码与响应体。
pub fn error_reply(error: &ApiError) -> (u16, Bytes) {
    match &error.relayed {
        Some(relayed) => (relayed.status, relayed.body.clone()),
        None => (error.status, error.to_body()),
    }
}

/// 响应头之后的错误：`event: error` 事件（`type`、`code`、`message`、`param`、`sequence_number`）；
/// 上游的错误事件已原样转发、或翻译流已写过 `response.failed` 时什么也不写。
///
/// 参数：错误、下一个事件序号（不知道时为 0）、输出缓冲。
pub fn stream_error_event(error: &ApiError, sequence_number: u64, out: &mut BytesMut) {
    if error.relayed.as_ref().is_some_and(|r| r.delivered) {
        return;
    }
    let event = json!({
        "type": ERROR_EVENT,
        "code": error.envelope_code(),
        "message": error.message,
        "param": error.param,
        "sequence_number": sequence_number,
    });
    write_event(out, ERROR_EVENT, event.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorCode, Relayed};

    #[test]
    fn 错误_响应头之前是信封_透传时原样() {
        let e = ApiError::bad_request(ErrorCode::InvalidJson, "不是 JSON");
        let (status, body) = error_reply(&e);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("invalid_json"))
        );
        let relayed = e.with_relayed(Relayed {
            status: 429,
            body: Bytes::from_static(b"{\"error\":{}}"),
            delivered: false,
        });
        assert_eq!(
            error_reply(&relayed),
            (429, Bytes::from_static(b"{\"error\":{}}"))
        );
    }

    #[test]
    fn 流中错误_写成_error_事件_已转发的不重复() {
        let mut out = BytesMut::new();
        stream_error_event(&ApiError::gateway_timeout("上游超时"), 7, &mut out);
        let text = std::str::from_utf8(&out).expect("UTF-8");
        assert!(text.starts_with("event: error\ndata: {"), "{text}");
        assert!(
            text.contains("\"sequence_number\":7") && text.contains("upstream_timeout"),
            "{text}"
        );
        let delivered = ApiError::gateway_timeout("x").with_relayed(Relayed {
            status: 200,
            body: Bytes::new(),
            delivered: true,
        });
        let mut out = BytesMut::new();
        stream_error_event(&delivered, 0, &mut out);
        assert!(out.is_empty());
    }
}
