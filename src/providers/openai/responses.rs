//! OpenAI Responses 客户端 → 说 Responses 协议的上游（`openai`，以及标明支持的兼容服务）的原样透传（参考文档 §R2）。
//!
//! 请求体只换 `model`（在原始字节里替换），推理条目与 `encrypted_content`、`include`、`prompt_cache_key`、
//! 内置工具与网关不认识的字段都原样到达上游；回复的字节原样写给客户端，旁路只读终结事件
//! （`response.completed`、`response.incomplete`、`response.failed`）里的用量，不重新序列化任何事件。

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::Value;

use super::{api_path, parse_openai_error, request_headers, PROVIDER_LABEL};
use crate::config::Target;
use crate::dialects::Inbound;
use crate::error::{ApiError, ErrorCode, Relayed};
use crate::providers::{
    body_with_model, last_usage_value, map_upstream_error, relay_unless_key_rejected, stream_error,
    Passthrough, StreamStatus, StreamTranslator, UpstreamErrorInfo, UpstreamRequest,
};
use crate::streaming::{SseEvent, Usage};

/// Responses 接口相对 `/v1` 的路径。
const RESPONSES_PATH: &str = "/responses";
/// 正常结束的终结事件。
const COMPLETED: &str = "response.completed";
/// 输出被截断的终结事件（仍是完整的一次交换）。
const INCOMPLETE: &str = "response.incomplete";
/// 失败的终结事件。
const FAILED: &str = "response.failed";
/// 流中的错误事件（不是终结事件，但之后流即结束）。
const ERROR_EVENT: &str = "error";
/// 流中错误事件的状态码（响应头已是 200）。
const STATUS_IN_STREAM: u16 = 200;

/// Responses 透传规则。
pub(in crate::providers) struct OpenAiResponses;

impl Passthrough for OpenAiResponses {
    fn build_request(
        &self,
        inbound: &Inbound,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        let Inbound::Responses(req) = inbound else {
            return Err(ApiError::internal(
                "只有 Responses 请求能透传到 Responses 上游",
            ));
        };
        let body = body_with_model(&req.raw, || &req.body, &req.model, &target.model)?;
        let provider = &target.provider;
        Ok(UpstreamRequest {
            path: api_path(&provider.base_url.path, RESPONSES_PATH),
            headers: request_headers(provider)?,
            body,
        })
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        usage_in(body)
    }

    fn relay_error(&self, status: u16, body: Bytes) -> ApiError {
        let error = map_upstream_error(status, parse_openai_error(&body), PROVIDER_LABEL);
        relay_unless_key_rejected(error, status, body)
    }

    fn observer(&self) -> Box<dyn StreamTranslator> {
        Box::new(ResponsesObserver::default())
    }
}

/// 完整响应或终结事件里的用量：从后往前找到 `usage` 键，只定型解析它的值（`output` 不解析）。
fn usage_in(bytes: &[u8]) -> Option<Usage> {
    let value = last_usage_value(bytes)?;
    let usage = WireUsage::deserialize(&mut serde_json::Deserializer::from_slice(value)).ok()?;
    Some(Usage::from(usage))
}

/// Responses 的 `usage` 对象（与 Chat 相同的包含关系：输入含缓存，输出含推理）。
#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

/// 输入用量的细分 `usage.input_tokens_details`。
#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

/// 输出用量的细分 `usage.output_tokens_details`。
#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(wire: WireUsage) -> Self {
        Usage {
            prompt: wire.input_tokens,
            completion: wire.output_tokens,
            cached: wire.input_tokens_details.map_or(0, |d| d.cached_tokens),
            reasoning: wire.output_tokens_details.map_or(0, |d| d.reasoning_tokens),
        }
    }
}

/// 透传流的旁路观察者：字节由 `exchange` 原样转发，这里只读终结事件里的用量与错误。
#[derive(Default)]
struct ResponsesObserver {
    usage: Option<Usage>,
    done: bool,
}

impl ResponsesObserver {
    /// 终结或错误事件：读出用量；失败与错误交给 `exchange` 记录（事件已原样转发，不再写）。
    fn terminal(&mut self, name: &str, data: &str) -> Result<StreamStatus, ApiError> {
        self.done = true;
        if name == COMPLETED || name == INCOMPLETE {
            self.usage = usage_in(data.as_bytes());
            return Ok(StreamStatus::Done);
        }
        let value: Value = serde_json::from_str(data).unwrap_or_default();
        let error = if name == FAILED {
            &value["response"]["error"]
        } else {
            &value
        };
        let error = error.get("error").unwrap_or(error);
        let info = UpstreamErrorInfo {
            message: error["message"].as_str().unwrap_or_default().to_string(),
            code: error["code"].as_str().map(str::to_string),
            ..UpstreamErrorInfo::default()
        };
        let relayed = Relayed {
            status: STATUS_IN_STREAM,
            body: Bytes::new(),
            delivered: true,
        };
        Err(stream_error(info).with_relayed(relayed))
    }
}

impl StreamTranslator for ResponsesObserver {
    /// 只有终结事件与错误事件才解析 JSON，其余事件（绝大部分是增量）只看事件名。
    fn on_event(
        &mut self,
        event: &SseEvent,
        _out: &mut BytesMut,
    ) -> Result<StreamStatus, ApiError> {
        if self.done {
            return Ok(StreamStatus::Done);
        }
        match event.event.as_deref() {
            Some(name @ (COMPLETED | INCOMPLETE | FAILED | ERROR_EVENT)) => {
                self.terminal(name, &event.data)
            }
            Some(_) => Ok(StreamStatus::Continue),
            // 没有事件名时按 JSON 里的 type 判断（SDK 只看 type）
            None => {
                let value: Value = serde_json::from_str(&event.data).unwrap_or_default();
                match value["type"].as_str() {
                    Some(name @ (COMPLETED | INCOMPLETE | FAILED | ERROR_EVENT)) => {
                        self.terminal(name, &event.data)
                    }
                    _ => Ok(StreamStatus::Continue),
                }
            }
        }
    }

    /// 没收到终结事件就断开是截断。
    fn on_eof(&mut self, _out: &mut BytesMut) -> Result<(), ApiError> {
        if self.done {
            return Ok(());
        }
        Err(ApiError::bad_gateway(
            ErrorCode::UpstreamStreamTruncated,
            "上游 OpenAI 在发送 response.completed 之前断开了流",
        ))
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn forwards_raw(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 旁路观察_从终结事件读出用量_增量事件不解析() {
        let mut observer = ResponsesObserver::default();
        let mut out = BytesMut::new();
        let delta = SseEvent::named("response.output_text.delta", "不是 JSON 也不解析");
        assert_eq!(
            observer.on_event(&delta, &mut out),
            Ok(StreamStatus::Continue)
        );
        let completed = r#"{"type":"response.completed","response":{"id":"resp_1","usage":{"input_tokens":30,"input_tokens_details":{"cached_tokens":10},"output_tokens":12,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":42}}}"#;
        assert_eq!(
            observer.on_event(&SseEvent::named(COMPLETED, completed), &mut out),
            Ok(StreamStatus::Done)
        );
        assert_eq!(
            observer.usage(),
            Some(Usage {
                prompt: 30,
                completion: 12,
                cached: 10,
                reasoning: 5
            })
        );
        assert!(out.is_empty(), "观察者不写任何东西");
        assert!(observer.on_eof(&mut out).is_ok());
    }

    #[test]
    fn 旁路观察_失败事件_报告已转发的错误_截断报错() {
        let mut observer = ResponsesObserver::default();
        let failed = r#"{"type":"response.failed","response":{"id":"r","status":"failed","error":{"code":"context_length_exceeded","message":"太长"}}}"#;
        let error = observer
            .on_event(&SseEvent::named(FAILED, failed), &mut BytesMut::new())
            .expect_err("失败事件是错误");
        assert_eq!(
            error.upstream_code.as_deref(),
            Some("context_length_exceeded")
        );
        assert!(error.relayed.is_some_and(|r| r.delivered), "事件已原样转发");
        let mut cut = ResponsesObserver::default();
        assert!(
            cut.on_eof(&mut BytesMut::new()).is_err(),
            "没有终结事件就断开是截断"
        );
    }
}
