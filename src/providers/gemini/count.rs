//! Anthropic count_tokens → Gemini 的 `countTokens`（参考文档 §M7）。
//!
//! Developer API 的 `countTokens` 只接受 `contents`（系统指令、工具与生成设置不被接受），所以对话内容由 Gemini
//! 精确计数，系统提示与工具定义在本地按偏高的估算补上——Claude Code 按这个数决定何时压缩，宁可多算。

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::parse_gemini_error;
use super::request::{count_path, request_body};
use super::request_headers;
use crate::config::Target;
use crate::dialects::messages::estimate_input_tokens;
use crate::dialects::Inbound;
use crate::error::{ApiError, ErrorCode};
use crate::providers::{TokenCounter, UpstreamErrorInfo, UpstreamRequest};

/// 本地估算的、Gemini 计数接口不接受的字段。
const ESTIMATED_FIELDS: [&str; 2] = ["system", "tools"];

/// Gemini 计数规则。
pub(in crate::providers) struct GeminiCount;

/// `countTokens` 的回复。
#[derive(Deserialize)]
struct CountReply {
    #[serde(rename = "totalTokens", default)]
    total_tokens: u64,
}

impl TokenCounter for GeminiCount {
    fn build_request(
        &self,
        inbound: &Inbound,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        let full = request_body(inbound.hub()?, target)?;
        let body = json!({ "contents": full["contents"] });
        let provider = &target.provider;
        Ok(UpstreamRequest {
            path: count_path(&provider.base_url.path, &target.model),
            headers: request_headers(provider)?,
            body: Bytes::from(body.to_string()),
        })
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo {
        parse_gemini_error(status, body)
    }

    /// 对话内容的精确计数加上系统提示与工具的估算，写成 Anthropic 的 `{"input_tokens": N}`。
    fn render(&self, inbound: &Inbound, body: &[u8]) -> Result<Bytes, ApiError> {
        let reply: CountReply = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_gateway(
                ErrorCode::InvalidUpstreamResponse,
                format!("gemini 类型的上游返回了无法解析的计数结果：{e}"),
            )
        })?;
        let total = reply
            .total_tokens
            .saturating_add(estimate_rest(inbound.body()));
        Ok(Bytes::from(json!({ "input_tokens": total }).to_string()))
    }
}

/// 系统提示与工具定义的估算（没有时为 0）。
fn estimate_rest(body: &Map<String, Value>) -> u64 {
    let rest: Map<String, Value> = ESTIMATED_FIELDS
        .iter()
        .filter_map(|field| body.get(*field).map(|v| ((*field).to_string(), v.clone())))
        .collect();
    if rest.is_empty() {
        return 0;
    }
    estimate_input_tokens(&rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::MessagesRequest;
    use crate::providers::gemini::test_support::目标;

    fn 计数请求(body: Value) -> Inbound {
        let req =
            MessagesRequest::parse(Bytes::from(body.to_string()), Vec::new()).expect("校验应通过");
        Inbound::CountTokens(req)
    }

    #[test]
    fn 计数请求_只带对话内容_走_count_tokens_接口() {
        let inbound = 计数请求(
            json!({ "model": "演示", "system": "你是助手", "messages": [{ "role": "user", "content": "你好" }] }),
        );
        let upstream = GeminiCount
            .build_request(&inbound, &目标("演示"))
            .expect("应能翻译");
        assert!(
            upstream
                .path
                .ends_with("/v1beta/models/gemini-2.5-flash:countTokens"),
            "{}",
            upstream.path
        );
        let body: Value = serde_json::from_slice(&upstream.body).expect("JSON");
        assert_eq!(
            body.as_object().map(Map::len),
            Some(1),
            "只带 contents：{body}"
        );
        assert_eq!(body["contents"][0]["parts"][0]["text"], "你好");
    }

    #[test]
    fn 计数结果_加上系统提示与工具的估算() {
        let plain = 计数请求(
            json!({ "model": "演示", "messages": [{ "role": "user", "content": "你好" }] }),
        );
        let reply = GeminiCount
            .render(&plain, br#"{"totalTokens": 7}"#)
            .expect("可解析");
        assert_eq!(reply, Bytes::from_static(br#"{"input_tokens":7}"#));
        let with_system = 计数请求(
            json!({ "model": "演示", "system": "规则".repeat(100), "messages": [{ "role": "user", "content": "你好" }] }),
        );
        let reply: Value = serde_json::from_slice(
            &GeminiCount
                .render(&with_system, br#"{"totalTokens": 7}"#)
                .expect("可解析"),
        )
        .expect("JSON");
        assert!(
            reply["input_tokens"].as_u64().is_some_and(|n| n > 7 + 200),
            "{reply}"
        );
        assert!(
            GeminiCount.render(&plain, b"<html>").is_err(),
            "无法解析时 502"
        );
    }
}
