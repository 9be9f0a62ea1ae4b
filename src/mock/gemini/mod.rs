//! 模拟器的 Gemini generateContent 线上格式（v1beta），以及 `batchEmbedContents` 向量接口。
//!
//! 像真实 API 一样：路径为 `/v1beta/models/{model}:generateContent` 或
//! `:streamGenerateContent?alt=sse`，密钥只认 `x-goog-api-key` 头（查询串里的 `key=` 直接拒绝，
//! 网关绝不能把密钥放进 URL），按真实规则校验请求，错误使用 Google 的错误格式
//! （429 只在响应体的 `RetryInfo` 里给等待时间，没有 `Retry-After` 头）。
//! 流式事件以 `\r\n\r\n` 结束，考验网关的 SSE 解析器；没有结束标记，发完即关闭。

mod reply;
mod request;

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use super::embeddings::gemini_batch;
use super::io::{write_json_bytes, write_json_with};
use super::plan;
use super::{Fault, MockApp};
use reply::{full_response, stream, Meta};
use request::{check_call, turn_of, validate};

/// Gemini 模型路径中的片段（`/v1beta/models/{model}:method`）。
pub(super) const MODELS_SEGMENT: &str = "/models/";
/// HTTP 200（成功）。
const HTTP_OK: u16 = 200;
/// HTTP 400：请求不合法（含无效密钥）。
const HTTP_BAD_REQUEST: u16 = 400;
/// HTTP 429：限流（带配额违规与重试时间）。
const HTTP_TOO_MANY_REQUESTS: u16 = 429;
/// 模型一方的角色。
const ROLE_MODEL: &str = "model";
/// 429 时 `RetryInfo.retryDelay` 给出的等待时长。
const RETRY_DELAY: &str = "2.5s";
/// 响应 id 的前缀。
const RESPONSE_ID_PREFIX: &str = "mock-resp-";
/// 错误详情类型：重试等待时间。
const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";
/// 错误详情类型：配额违规。
const QUOTA_FAILURE_TYPE: &str = "type.googleapis.com/google.rpc.QuotaFailure";
/// HTTP 状态码到 gRPC 状态名。
const GRPC_STATUS: &[(u16, &str)] = &[
    (400, "INVALID_ARGUMENT"),
    (401, "UNAUTHENTICATED"),
    (403, "PERMISSION_DENIED"),
    (404, "NOT_FOUND"),
    (429, "RESOURCE_EXHAUSTED"),
    (500, "INTERNAL"),
    (503, "UNAVAILABLE"),
    (504, "DEADLINE_EXCEEDED"),
];
/// 表中没有的状态码对应的 gRPC 状态名。
const GRPC_UNKNOWN: &str = "UNKNOWN";

/// 一个 Google 格式的错误：HTTP 状态码、消息与 `details`。
struct GeminiError {
    status: u16,
    message: String,
    details: Vec<Value>,
}

impl GeminiError {
    /// 没有 `details` 的错误。
    fn new(status: u16, message: impl Into<String>) -> Self {
        GeminiError {
            status,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// 序列化为 Google 错误体 `{"error":{"code","message","status","details"?}}`。
    fn body(&self) -> Value {
        let status = GRPC_STATUS
            .iter()
            .find(|(code, _)| *code == self.status)
            .map_or(GRPC_UNKNOWN, |(_, name)| name);
        let mut error = json!({ "code": self.status, "message": self.message, "status": status });
        if !self.details.is_empty() {
            error["details"] = json!(self.details);
        }
        json!({ "error": error })
    }
}

/// 处理 `generateContent` 与 `streamGenerateContent`；返回连接是否仍可复用。
pub(super) async fn generate(app: &MockApp, session: &mut ServerSession, body: Bytes) -> bool {
    let call = match check_call(session.req_header()) {
        Ok(call) => call,
        Err(e) => return write_error(session, &e).await,
    };
    let request = match serde_json::from_slice::<Value>(&body) {
        Ok(request @ Value::Object(_)) => request,
        _ => {
            let e = GeminiError::new(
                HTTP_BAD_REQUEST,
                "Invalid JSON payload received.（模拟器：请求体不是 JSON 对象）",
            );
            return write_error(session, &e).await;
        }
    };
    if call.embed {
        return embed(app, session, (&call.model, &request)).await;
    }
    if let Err(message) = validate(&request) {
        return write_error(session, &GeminiError::new(HTTP_BAD_REQUEST, message)).await;
    }
    if let Some(Fault::Status(code)) = app.fault() {
        return write_error(session, &fault_error(code)).await;
    }
    let turn = turn_of(&request, body.len());
    if call.count {
        // 计数：按请求体字节数确定地算出（与回复的输入用量同一规则）
        let total = plan::usage(&app.settings, &turn).prompt;
        return write_json_with(session, HTTP_OK, &json!({ "totalTokens": total }), None).await;
    }
    let meta = Meta {
        id: plan::next_id(RESPONSE_ID_PREFIX),
        model: call.model,
        usage: plan::usage(&app.settings, &turn),
    };
    let reply = plan::plan(&app.settings, &turn);
    if call.stream {
        return stream(app, session, &meta, &reply).await;
    }
    write_json_with(session, HTTP_OK, &full_response(&meta, &reply), None).await
}

/// 处理 `batchEmbedContents`：校验请求、按故障设置出错，否则给出每条输入的向量；返回连接是否仍可复用。
async fn embed(
    app: &MockApp,
    session: &mut ServerSession,
    (model, request): (&str, &Value),
) -> bool {
    let reply = match gemini_batch(model, request) {
        Ok(reply) => reply,
        Err(message) => {
            return write_error(session, &GeminiError::new(HTTP_BAD_REQUEST, message)).await
        }
    };
    if let Some(Fault::Status(code)) = app.fault() {
        return write_error(session, &fault_error(code)).await;
    }
    write_json_bytes(session, (HTTP_OK, reply), None).await
}

/// 按故障设置返回的错误：429 带配额违规与 `RetryInfo`，其余只有消息。
fn fault_error(code: u16) -> GeminiError {
    let mut error = GeminiError::new(code, format!("模拟的上游故障（{code}）"));
    if code == HTTP_TOO_MANY_REQUESTS {
        error.message = "You exceeded your current quota, please check your plan and billing details.（模拟的限流）".into();
        error.details = vec![
            json!({ "@type": QUOTA_FAILURE_TYPE, "violations": [ { "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10" } ] }),
            json!({ "@type": RETRY_INFO_TYPE, "retryDelay": RETRY_DELAY }),
        ];
    }
    error
}

/// 以 Google 错误体应答（不带 `Retry-After` 头）；返回连接是否仍可复用。
async fn write_error(session: &mut ServerSession, error: &GeminiError) -> bool {
    write_json_with(session, error.status, &error.body(), None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 故障_429_只在响应体里给重试时间_其余状态映射_grpc_名称() {
        let body = fault_error(429).body();
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        let retry = body["error"]["details"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["@type"] == RETRY_INFO_TYPE))
            .cloned();
        assert_eq!(
            retry.map(|r| r["retryDelay"].clone()),
            Some(json!(RETRY_DELAY))
        );
        let statuses: Vec<Value> = [503, 500, 404, 418]
            .iter()
            .map(|c| fault_error(*c).body()["error"]["status"].clone())
            .collect();
        assert_eq!(
            statuses,
            [
                json!("UNAVAILABLE"),
                json!("INTERNAL"),
                json!("NOT_FOUND"),
                json!(GRPC_UNKNOWN)
            ]
        );
        assert!(fault_error(503).body()["error"].get("details").is_none());
    }
}
