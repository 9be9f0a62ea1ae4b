//! OpenAI 与兼容 OpenAI 的上游（vLLM、Ollama、DeepSeek……）：协议相同，几乎原样转发。

use bytes::{Bytes, BytesMut};
use http::header::AUTHORIZATION;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::{
    body_for_model, json_content_type, key_header, truncate_chars, ProviderFilter, StreamStatus,
    StreamTranslator, TranslateCtx, UpstreamErrorInfo, UpstreamRequest, MAX_ERROR_TEXT_CHARS,
};
use crate::config::Target;
use crate::error::ApiError;
use crate::request::ChatRequest;
use crate::streaming::{write_data, write_done, SseEvent, DONE_SENTINEL};

/// 聊天补全接口相对 `/v1` 的路径。
const CHAT_PATH: &str = "/chat/completions";
/// API 版本前缀：`base_url` 未以它结尾时自动补上。
const VERSION_PREFIX: &str = "/v1";
/// Bearer 认证头的前缀。
const BEARER_PREFIX: &str = "Bearer ";

/// OpenAI 协议过滤器。
///
/// 用途：由 [`super::filter_for`] 为 `openai` 与 `openai_compatible` 两种上游返回。
pub(super) struct OpenAiFilter;

impl ProviderFilter for OpenAiFilter {
    fn build_request(
        &self,
        req: &ChatRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        let provider = &target.provider;
        let mut headers = vec![json_content_type()];
        headers.extend(key_header(provider, AUTHORIZATION, BEARER_PREFIX)?);
        Ok(UpstreamRequest {
            path: chat_path(&provider.base_url.path),
            headers,
            body: body_for_model(req, &target.model)?,
        })
    }

    fn translate_response(&self, body: Bytes, _ctx: &TranslateCtx) -> Result<Bytes, ApiError> {
        serde_json::from_slice::<IgnoredAny>(&body).map_err(|e| {
            ApiError::bad_gateway(
                "invalid_upstream_response",
                format!("上游返回了无法解析的 JSON：{e}"),
            )
        })?;
        Ok(body)
    }

    fn parse_error(&self, _status: u16, body: &[u8]) -> UpstreamErrorInfo {
        parse_openai_error(body)
    }

    fn stream_translator(&self, _ctx: TranslateCtx) -> Box<dyn StreamTranslator> {
        Box::new(OpenAiStream { done: false })
    }
}

/// 拼出聊天接口路径：`base_url` 可以带也可以不带 `/v1`（OpenAI SDK 的习惯是带）。
fn chat_path(base_path: &str) -> String {
    if base_path.ends_with(VERSION_PREFIX) {
        format!("{base_path}{CHAT_PATH}")
    } else {
        format!("{base_path}{VERSION_PREFIX}{CHAT_PATH}")
    }
}

/// 解析 OpenAI 错误信封；不是信封时把原文（截断后）当作消息。
pub(super) fn parse_openai_error(body: &[u8]) -> UpstreamErrorInfo {
    let text_of = |v: &Value| v.as_str().map(str::to_string);
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) if map.get("error").is_some_and(Value::is_object) => {
            let e = &map["error"];
            UpstreamErrorInfo {
                message: text_of(&e["message"]).unwrap_or_default(),
                kind: text_of(&e["type"]),
                code: text_of(&e["code"]),
                param: text_of(&e["param"]),
                ..UpstreamErrorInfo::default()
            }
        }
        _ => UpstreamErrorInfo {
            message: truncate_chars(&String::from_utf8_lossy(body), MAX_ERROR_TEXT_CHARS),
            ..UpstreamErrorInfo::default()
        },
    }
}

/// OpenAI 流：事件本来就是 OpenAI 格式，逐个转发并识别 `[DONE]`。
struct OpenAiStream {
    done: bool,
}

impl StreamTranslator for OpenAiStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        if self.done {
            return Ok(StreamStatus::Done);
        }
        if event.data.trim() == DONE_SENTINEL {
            self.done = true;
            write_done(out);
            return Ok(StreamStatus::Done);
        }
        write_data(out, event.data.as_bytes());
        Ok(StreamStatus::Continue)
    }

    fn on_eof(&mut self, _out: &mut BytesMut) -> Result<(), ApiError> {
        if self.done {
            Ok(())
        } else {
            Err(ApiError::bad_gateway(
                "upstream_stream_truncated",
                "上游在发送结束标记 [DONE] 之前断开了流",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 事件(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }

    fn 上下文() -> TranslateCtx {
        TranslateCtx {
            model: "演示".into(),
            include_usage: false,
            created: 0,
        }
    }

    #[test]
    fn 路径_带或不带_v1_都正确() {
        assert_eq!(chat_path(""), "/v1/chat/completions");
        assert_eq!(chat_path("/v1"), "/v1/chat/completions");
        assert_eq!(chat_path("/api"), "/api/v1/chat/completions");
    }

    #[test]
    fn 流_原样转发并识别结束标记() {
        let mut s = OpenAiStream { done: false };
        let mut out = BytesMut::new();
        let chunk = r#"{"choices":[{"index":0,"delta":{"content":"你好"}}]}"#;
        assert_eq!(
            s.on_event(&事件(chunk), &mut out),
            Ok(StreamStatus::Continue)
        );
        assert_eq!(
            s.on_event(&事件("[DONE]"), &mut out),
            Ok(StreamStatus::Done)
        );
        assert_eq!(out, format!("data: {chunk}\n\ndata: [DONE]\n\n").as_bytes());
        assert!(s.on_eof(&mut out).is_ok());
    }

    #[test]
    fn 流_缺少结束标记_视为截断() {
        let mut s = OpenAiStream { done: false };
        let e = s.on_eof(&mut BytesMut::new()).expect_err("截断必须报错");
        assert_eq!(e.code.as_deref(), Some("upstream_stream_truncated"));
    }

    #[test]
    fn 错误_解析信封或原文() {
        let info = parse_openai_error(br#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":"x"}}"#);
        assert_eq!(
            (info.message.as_str(), info.code.as_deref()),
            ("bad", Some("x"))
        );
        let info = parse_openai_error(b"<html>502</html>");
        assert_eq!(info.message, "<html>502</html>");
    }

    #[test]
    fn 完整响应_非_json_返回_502() {
        let e = OpenAiFilter
            .translate_response(Bytes::from_static(b"oops"), &上下文())
            .expect_err("应失败");
        assert_eq!(e.status, 502);
    }
}
