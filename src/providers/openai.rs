//! OpenAI 与兼容 OpenAI 的上游（vLLM、Ollama、DeepSeek……）：协议相同，几乎原样转发。

use bytes::{Bytes, BytesMut};
use http::header::AUTHORIZATION;
use serde_json::{Map, Value};

use super::{
    json_content_type, key_header, may_carry_usage, stream_error, take_usage, truncate_chars,
    upstream_body, ProviderFilter, StreamStatus, StreamTranslator, TranslateCtx, TranslatedReply,
    UpstreamErrorInfo, UpstreamRequest, MAX_ERROR_TEXT_CHARS,
};
use crate::config::{ProviderKind, Target};
use crate::dialects::ChatRequest;
use crate::error::{ApiError, ErrorCode};
use crate::streaming::{write_data, write_done, SseEvent, Usage, DONE_SENTINEL};

/// 聊天补全接口相对 `/v1` 的路径。
const CHAT_PATH: &str = "/chat/completions";
/// OpenAI 流中错误块的开头。
const ERROR_CHUNK_PREFIX: &str = "{\"error\"";
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
            body: upstream_body(
                req,
                &target.model,
                req.stream && provider.kind == ProviderKind::OpenAi,
            )?,
        })
    }

    fn translate_response(
        &self,
        body: Bytes,
        _ctx: &TranslateCtx,
    ) -> Result<TranslatedReply, ApiError> {
        let usage = Usage::from_openai_body(&body).map_err(|e| {
            ApiError::bad_gateway(
                ErrorCode::InvalidUpstreamResponse,
                format!("上游返回了无法解析的 JSON：{e}"),
            )
        })?;
        Ok(TranslatedReply { body, usage })
    }

    fn parse_error(&self, _status: u16, body: &[u8]) -> UpstreamErrorInfo {
        parse_openai_error(body)
    }

    fn stream_translator(&self, ctx: TranslateCtx) -> Box<dyn StreamTranslator> {
        Box::new(OpenAiStream {
            include_usage: ctx.include_usage,
            usage: None,
            done: false,
        })
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
    /// 客户端是否要求用量块。
    include_usage: bool,
    /// 上游报告的用量。
    usage: Option<Usage>,
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
        // 上游在流中报告的错误（`{"error":…}`）结束这个流：只看开头，正常的块不多花解析
        if event.data.trim_start().starts_with(ERROR_CHUNK_PREFIX) {
            return Err(stream_error(parse_openai_error(event.data.as_bytes())));
        }
        // 只有可能带用量的块才解析，其余原样转发，保持透传的零解析开销
        if may_carry_usage(&event.data) {
            let parsed = serde_json::from_str::<Map<String, Value>>(&event.data);
            let usage_only = parsed.is_ok_and(|chunk| take_usage(&chunk, &mut self.usage));
            if usage_only && !self.include_usage {
                return Ok(StreamStatus::Continue);
            }
        }
        write_data(out, event.data.as_bytes());
        Ok(StreamStatus::Continue)
    }

    fn on_eof(&mut self, _out: &mut BytesMut) -> Result<(), ApiError> {
        if self.done {
            Ok(())
        } else {
            Err(ApiError::bad_gateway(
                ErrorCode::UpstreamStreamTruncated,
                "上游在发送结束标记 [DONE] 之前断开了流",
            ))
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
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
        let mut s = OpenAiStream {
            include_usage: false,
            usage: None,
            done: false,
        };
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
    fn 流_记录用量且客户端没要求时去掉用量块() {
        let usage_chunk = r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        for include_usage in [false, true] {
            let mut s = OpenAiStream {
                include_usage,
                usage: None,
                done: false,
            };
            let mut out = BytesMut::new();
            s.on_event(
                &事件(r#"{"choices":[{"index":0,"delta":{"content":"你"}}],"usage":null}"#),
                &mut out,
            )
            .expect("可翻译");
            s.on_event(&事件(usage_chunk), &mut out).expect("可翻译");
            let text = String::from_utf8_lossy(&out).into_owned();
            assert_eq!(
                text.contains("\"prompt_tokens\":9"),
                include_usage,
                "客户端要求时才转发用量块：{text}"
            );
            assert!(text.contains("你"), "内容块照常转发");
            assert_eq!(
                s.usage(),
                Some(Usage {
                    prompt: 9,
                    completion: 2,
                    cached: 4,
                    reasoning: 0
                })
            );
        }
    }

    #[test]
    fn 请求_流式时要求上游给出用量_已要求时原样转发() {
        let req = |body: &str| ChatRequest::parse(Bytes::from(body.to_string())).expect("合法请求");
        let plain =
            req(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"你好"}]}"#);
        let forced: Value =
            serde_json::from_slice(&upstream_body(&plain, "m", true).expect("可序列化"))
                .expect("JSON");
        assert_eq!(forced["stream_options"]["include_usage"], true);
        let merged = req(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1},"messages":[{"role":"user","content":"你好"}]}"#,
        );
        let merged: Value =
            serde_json::from_slice(&upstream_body(&merged, "m", true).expect("可序列化"))
                .expect("JSON");
        assert_eq!(
            (
                merged["stream_options"]["include_usage"].as_bool(),
                merged["stream_options"]["x"].as_u64()
            ),
            (Some(true), Some(1))
        );
        let asked = req(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"你好"}]}"#,
        );
        assert_eq!(
            upstream_body(&asked, "m", true).expect("可序列化"),
            asked.raw,
            "已要求用量且模型相同时零拷贝转发"
        );
    }

    #[test]
    fn 流_缺少结束标记_视为截断() {
        let mut s = OpenAiStream {
            include_usage: false,
            usage: None,
            done: false,
        };
        let e = s.on_eof(&mut BytesMut::new()).expect_err("截断必须报错");
        assert_eq!(Some(e.envelope_code()), Some("upstream_stream_truncated"));
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
