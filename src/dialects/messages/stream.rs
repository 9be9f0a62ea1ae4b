//! 占位：合并渲染器后替换。

use bytes::BytesMut;

use crate::error::{ApiError, ErrorCode};

/// 占位。
pub struct MessagesStream;

impl MessagesStream {
    /// 占位。
    pub fn new(_model: String, _input_estimate: u64) -> Self {
        MessagesStream
    }
    /// 占位。
    pub fn on_hub_event(&mut self, _data: &str, _out: &mut BytesMut) -> Result<bool, ApiError> {
        Err(ApiError::bad_gateway(
            ErrorCode::InvalidUpstreamResponse,
            "占位",
        ))
    }
    /// 占位。
    pub fn ping(&mut self, _out: &mut BytesMut) {}
}
