//! 流式翻译：逐块去掉 Azure 的过滤注释，丢弃只有注释的块，识别结束标记。

use bytes::BytesMut;
use serde_json::Value;

use super::normalize;
use crate::error::{ApiError, ErrorCode};
use crate::providers::openai::parse_openai_error;
use crate::providers::{
    done_marker, done_or_truncated, stream_error, take_usage, StreamStatus, StreamTranslator,
    TranslateCtx,
};
use crate::streaming::{write_data, SseEvent, Usage};

/// 截断错误里的上游类型名。
const AZURE_LABEL: &str = "Azure";
/// Azure 流：逐块规范化，丢弃只有注释、没有 choices 也没有用量的块。
pub(super) struct AzureStream {
    ctx: TranslateCtx,
    /// 上游报告的用量。
    usage: Option<Usage>,
    /// 是否已收到结束标记。
    done: bool,
}

impl AzureStream {
    /// 为一次流式响应创建翻译器。
    pub(super) fn new(ctx: TranslateCtx) -> Self {
        AzureStream {
            ctx,
            usage: None,
            done: false,
        }
    }
}

impl StreamTranslator for AzureStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        if done_marker(&mut self.done, event, out) {
            return Ok(StreamStatus::Done);
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(&event.data) else {
            return Err(ApiError::bad_gateway(
                ErrorCode::InvalidUpstreamResponse,
                "Azure 流中出现无法解析的事件",
            ));
        };
        if chunk.contains_key("error") {
            return Err(stream_error(parse_openai_error(event.data.as_bytes())));
        }
        let usage_only = take_usage(&chunk, &mut self.usage);
        let no_choices = chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if (no_choices && !usage_only) || (usage_only && !self.ctx.include_usage) {
            return Ok(StreamStatus::Continue);
        }
        normalize(&mut chunk, &self.ctx);
        write_data(out, Value::Object(chunk).to_string().as_bytes());
        Ok(StreamStatus::Continue)
    }

    fn on_eof(&mut self, _out: &mut BytesMut) -> Result<(), ApiError> {
        done_or_truncated(self.done, AZURE_LABEL)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}
