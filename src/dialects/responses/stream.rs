//! 占位：合并渲染器后替换。

use std::sync::Arc;

use bytes::BytesMut;
use serde_json::{Map, Value};

use super::tools::ToolMap;
use crate::error::{ApiError, ErrorCode};

/// 占位。
pub struct ResponsesStream;

impl ResponsesStream {
    /// 占位。
    pub fn new(_template: Map<String, Value>, _tools: Arc<ToolMap>, _input_estimate: u64) -> Self {
        ResponsesStream
    }
    /// 占位。
    pub fn on_hub_event(&mut self, _data: &str, _out: &mut BytesMut) -> Result<bool, ApiError> {
        Err(ApiError::bad_gateway(
            ErrorCode::InvalidUpstreamResponse,
            "占位",
        ))
    }
    /// 占位。
    pub fn fail(&mut self, _error: &ApiError, _out: &mut BytesMut) {}
}
