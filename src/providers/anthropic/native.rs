//! Anthropic Messages 客户端 → Anthropic 上游的原样透传（参考文档 §M4）。
//!
//! 请求体只换 `model`（在原始字节里替换），`anthropic-*` 请求头原样转发（没有 `anthropic-version` 时补上缺省值）；
//! 回复的字节原样写给客户端，旁路只读 `message_start` 与 `message_delta` 里的用量（含缓存读写）、
//! `message_stop` 与流中的 `error`，不重新序列化任何事件。

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::error::{error_info, stream_error};
use super::response::{TokenCounts, WireUsage};
use super::stream::ended_or_truncated;
use super::{API_KEY_HEADER, MESSAGES_PATH, PROVIDER_LABEL};
use crate::config::Target;
use crate::dialects::messages::{DEFAULT_VERSION, VERSION_HEADER};
use crate::dialects::{Inbound, MessagesRequest};
use crate::error::{ApiError, Relayed};
use crate::providers::{
    body_with_model, json_content_type, key_header, last_usage_value, map_upstream_error,
    relay_unless_key_rejected, Passthrough, StreamStatus, StreamTranslator, UpstreamRequest,
};
use crate::streaming::{SseEvent, Usage};

/// count_tokens 接口相对 `base_url` 的路径。
const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";
/// 流中错误事件的状态码（响应头已是 200）。
const STATUS_IN_STREAM: u16 = 200;

/// Anthropic 透传规则。
pub(in crate::providers) struct AnthropicNative;

impl Passthrough for AnthropicNative {
    fn build_request(
        &self,
        inbound: &Inbound,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        let (req, path) = match inbound {
            Inbound::Messages(req) => (req, MESSAGES_PATH),
            Inbound::CountTokens(req) => (req, COUNT_TOKENS_PATH),
            Inbound::Chat(_) | Inbound::Responses(_) | Inbound::Embeddings(_) => {
                return Err(ApiError::internal(
                    "只有 Messages 请求能透传到 Anthropic 上游",
                ));
            }
        };
        let body = body_with_model(&req.raw, || &req.body, &req.model, &target.model)?;
        let provider = &target.provider;
        let mut headers = request_headers(req);
        headers.extend(key_header(
            provider,
            HeaderName::from_static(API_KEY_HEADER),
            "",
        )?);
        Ok(UpstreamRequest {
            path: format!("{}{path}", provider.base_url.path),
            headers,
            body,
        })
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        let value = last_usage_value(body)?;
        let usage =
            WireUsage::deserialize(&mut serde_json::Deserializer::from_slice(value)).ok()?;
        let mut counts = TokenCounts::default();
        counts.merge(&usage);
        Some(counts.usage())
    }

    fn relay_error(&self, status: u16, body: Bytes) -> ApiError {
        let error = map_upstream_error(status, error_info(status, &body), PROVIDER_LABEL);
        relay_unless_key_rejected(error, status, body)
    }

    fn observer(&self) -> Box<dyn StreamTranslator> {
        Box::new(NativeObserver::default())
    }
}

/// 透传的请求头：内容类型、客户端的 `anthropic-*` 头（原样），客户端没给版本时补上缺省版本。
fn request_headers(req: &MessagesRequest) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::with_capacity(req.headers.len() + 3);
    headers.push(json_content_type());
    headers.extend(req.headers.iter().cloned());
    if !req.headers.iter().any(|(name, _)| name == VERSION_HEADER) {
        headers.push((
            HeaderName::from_static(VERSION_HEADER),
            HeaderValue::from_static(DEFAULT_VERSION),
        ));
    }
    headers
}

/// 带 `usage` 的对象（完整响应与 `message_delta` 事件）：只定型解析用量，其余字段跳过。
#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// `message_start` 事件：用量在 `message.usage` 里。
#[derive(Deserialize)]
struct StartEvent {
    #[serde(default)]
    message: Option<WithUsage>,
}

/// 透传流的旁路观察者：字节由 `exchange` 原样转发，这里只读用量、结束与错误。
#[derive(Default)]
struct NativeObserver {
    counts: TokenCounts,
    started: bool,
    done: bool,
}

impl NativeObserver {
    /// `message_start`：定型解析输入用量。
    fn start(&mut self, data: &str) -> StreamStatus {
        self.started = true;
        let usage = serde_json::from_str::<StartEvent>(data)
            .ok()
            .and_then(|e| e.message)
            .and_then(|m| m.usage);
        if let Some(usage) = usage {
            self.counts.merge(&usage);
        }
        StreamStatus::Continue
    }

    /// `message_delta`：定型解析累计用量。
    fn delta(&mut self, data: &str) -> StreamStatus {
        if let Some(usage) = serde_json::from_str::<WithUsage>(data)
            .ok()
            .and_then(|e| e.usage)
        {
            self.counts.merge(&usage);
        }
        StreamStatus::Continue
    }

    /// 事件名缺失或是 `error`：读 JSON 按 `type` 判断。
    fn inspect(&mut self, data: &str) -> Result<StreamStatus, ApiError> {
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            return Ok(StreamStatus::Continue);
        };
        match value["type"].as_str().unwrap_or_default() {
            "message_start" => {
                self.counts.update(&value["message"]["usage"]);
                self.started = true;
            }
            "message_delta" => self.counts.update(&value["usage"]),
            "message_stop" => return Ok(self.stop()),
            "error" => {
                let relayed = Relayed {
                    status: STATUS_IN_STREAM,
                    body: Bytes::new(),
                    delivered: true,
                };
                return Err(stream_error(&value["error"]).with_relayed(relayed));
            }
            _ => {}
        }
        Ok(StreamStatus::Continue)
    }

    fn stop(&mut self) -> StreamStatus {
        self.done = true;
        StreamStatus::Done
    }
}

impl StreamTranslator for NativeObserver {
    /// 内容块事件（流的绝大部分）只看事件名、不解析 JSON；其余事件读出用量、结束或错误。
    fn on_event(
        &mut self,
        event: &SseEvent,
        _out: &mut BytesMut,
    ) -> Result<StreamStatus, ApiError> {
        if self.done {
            return Ok(StreamStatus::Done);
        }
        match event.event.as_deref() {
            Some("content_block_start" | "content_block_delta" | "content_block_stop" | "ping") => {
                Ok(StreamStatus::Continue)
            }
            Some("message_stop") => Ok(self.stop()),
            Some("message_start") => Ok(self.start(&event.data)),
            Some("message_delta") => Ok(self.delta(&event.data)),
            _ => self.inspect(&event.data),
        }
    }

    /// 没收到 `message_stop` 就断开是截断（已转发的字节保留，`exchange` 补一个流中错误事件）。
    fn on_eof(&mut self, _out: &mut BytesMut) -> Result<(), ApiError> {
        ended_or_truncated(self.done)
    }

    fn usage(&self) -> Option<Usage> {
        self.started.then(|| self.counts.usage())
    }

    fn forwards_raw(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 旁路观察_用量含缓存读写_增量事件不解析() {
        let mut observer = NativeObserver::default();
        let mut out = BytesMut::new();
        let start = r#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":20,"cache_read_input_tokens":10,"cache_creation_input_tokens":5,"output_tokens":1}}}"#;
        assert_eq!(
            observer.on_event(&SseEvent::named("message_start", start), &mut out),
            Ok(StreamStatus::Continue)
        );
        let delta = SseEvent::named("content_block_delta", "不是 JSON 也不解析");
        assert_eq!(
            observer.on_event(&delta, &mut out),
            Ok(StreamStatus::Continue)
        );
        let end = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12,"output_tokens_details":{"thinking_tokens":4}}}"#;
        observer
            .on_event(&SseEvent::named("message_delta", end), &mut out)
            .expect("合法事件");
        assert_eq!(
            observer.on_event(&SseEvent::named("message_stop", "{}"), &mut out),
            Ok(StreamStatus::Done)
        );
        assert_eq!(
            observer.usage(),
            Some(Usage {
                prompt: 35,
                completion: 12,
                cached: 10,
                reasoning: 4
            }),
            "输入 = 未缓存 + 缓存读取 + 缓存写入"
        );
        assert!(out.is_empty(), "观察者不写任何东西");
        assert!(observer.forwards_raw());
    }

    #[test]
    fn 旁路观察_流中错误已转发_截断报错() {
        let mut observer = NativeObserver::default();
        let error =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = observer
            .on_event(&SseEvent::named("error", error), &mut BytesMut::new())
            .expect_err("错误事件");
        assert!(
            e.relayed.is_some_and(|r| r.delivered),
            "上游的错误事件已原样转发"
        );
        assert!(NativeObserver::default()
            .on_eof(&mut BytesMut::new())
            .is_err());
    }

    #[test]
    fn 完整响应_只定型解析用量() {
        let body = r#"{"id":"msg_1","content":[{"type":"text","text":"你好"}],"usage":{"input_tokens":3,"cache_read_input_tokens":2,"output_tokens":7}}"#;
        assert_eq!(
            AnthropicNative.usage_of(body.as_bytes()),
            Some(Usage {
                prompt: 5,
                completion: 7,
                cached: 2,
                reasoning: 0
            })
        );
        assert_eq!(
            AnthropicNative.usage_of(br#"{"input_tokens":3}"#),
            None,
            "count_tokens 的回复没有用量"
        );
    }
}
