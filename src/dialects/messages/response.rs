//! 占位：合并渲染器后替换。

use crate::error::{ApiError, ErrorCode};

/// 占位。
pub fn render_message(_hub: &[u8], _model: &str) -> Result<bytes::Bytes, ApiError> {
    Err(ApiError::bad_gateway(
        ErrorCode::InvalidUpstreamResponse,
        "占位",
    ))
}
