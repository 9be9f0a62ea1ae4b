//! Gemini 上游：把 OpenAI 请求翻译为 Gemini 格式，把响应、流与错误翻译回 OpenAI。

use bytes::{Bytes, BytesMut};

use super::{
    ProviderFilter, StreamStatus, StreamTranslator, TranslateCtx, UpstreamErrorInfo,
    UpstreamRequest,
};
use crate::config::Target;
use crate::error::ApiError;
use crate::request::ChatRequest;
use crate::streaming::SseEvent;

/// Gemini 协议过滤器。
pub(super) struct GeminiFilter;

impl ProviderFilter for GeminiFilter {
    fn build_request(
        &self,
        _req: &ChatRequest,
        _target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        // TODO: 实现 Gemini 请求翻译（多平台适配）
        Err(ApiError::internal("尚未实现 Gemini 上游"))
    }

    fn translate_response(&self, _body: Bytes, _ctx: &TranslateCtx) -> Result<Bytes, ApiError> {
        Err(ApiError::internal("尚未实现 Gemini 上游"))
    }

    fn parse_error(&self, _status: u16, body: &[u8]) -> UpstreamErrorInfo {
        UpstreamErrorInfo {
            message: String::from_utf8_lossy(body).into_owned(),
            ..UpstreamErrorInfo::default()
        }
    }

    fn stream_translator(&self, _ctx: TranslateCtx) -> Box<dyn StreamTranslator> {
        Box::new(Unimplemented)
    }
}

struct Unimplemented;

impl StreamTranslator for Unimplemented {
    fn on_event(
        &mut self,
        _event: &SseEvent,
        _out: &mut BytesMut,
    ) -> Result<StreamStatus, ApiError> {
        Err(ApiError::internal("尚未实现 Gemini 上游"))
    }

    fn on_eof(&mut self, _out: &mut BytesMut) -> Result<(), ApiError> {
        Ok(())
    }
}
