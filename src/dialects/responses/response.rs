//! 占位：合并渲染器后替换。

use serde_json::{Map, Value};

use super::tools::ToolMap;
use crate::error::{ApiError, ErrorCode};

/// 占位。
pub fn render_response(
    _hub: &[u8],
    _template: &Map<String, Value>,
    _tools: &ToolMap,
) -> Result<bytes::Bytes, ApiError> {
    Err(ApiError::bad_gateway(
        ErrorCode::InvalidUpstreamResponse,
        "占位",
    ))
}
