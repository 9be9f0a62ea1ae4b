//! 模拟器的 OpenAI 线上格式：完整响应、SSE 分块、用量块、错误信封。

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use serde_json::{json, Map, Value};

use super::{Fault, MockApp};
use crate::error::{ApiError, TYPE_INVALID_REQUEST, TYPE_SERVER};
use crate::streaming::{write_data, write_done};

/// 聊天补全接口路径的结尾（前缀可以是 `/v1` 或任意 base 路径）。
pub(super) const CHAT_PATH: &str = "/chat/completions";
/// 模型列表接口路径的结尾。
pub(super) const MODELS_PATH: &str = "/models";
/// 估算 token 时每个 token 对应的字节数。
const BYTES_PER_TOKEN: u64 = 4;
/// 429 时建议的重试秒数。
const RETRY_AFTER_SECS: &str = "1";
/// 模拟器的系统指纹。
const FINGERPRINT: &str = "fp_chatnexus_mock";

/// 生成补全 id 的计数器。
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// 一次补全的公共信息。
struct Completion {
    id: String,
    created: u64,
    model: String,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Completion {
    /// 由请求与模拟器设置生成补全的公共信息。
    fn new(app: &MockApp, request: &Map<String, Value>, body_len: usize) -> Self {
        let settings = &app.settings;
        let estimated_prompt = (body_len as u64 / BYTES_PER_TOKEN).max(1);
        Completion {
            id: format!("chatcmpl-mock-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            created: unix_now(),
            model: request
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("mock")
                .to_string(),
            prompt_tokens: settings.prompt_tokens.unwrap_or(estimated_prompt),
            completion_tokens: settings.completion_tokens.unwrap_or(settings.chunks as u64),
        }
    }
}

/// 处理聊天补全；返回连接是否仍可复用。
pub(super) async fn chat(
    app: &MockApp,
    session: &mut ServerSession,
    body: Bytes,
    shutdown: &ShutdownWatch,
) -> bool {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
        return error(session, 400, "模拟器收到的请求体不是 JSON 对象").await;
    };
    match app.settings.fault {
        Some(Fault::Status(code)) => {
            return error(session, code, &format!("模拟的上游故障（{code}）")).await
        }
        Some(Fault::Hang) => {
            let mut shutdown = shutdown.clone();
            let _ = shutdown.changed().await;
            return false;
        }
        _ => {}
    }
    let completion = Completion::new(app, &request, body.len());
    let pieces = split_reply(&app.settings.reply, app.settings.chunks);
    if request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        let include_usage = request
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        return stream(app, session, &completion, &pieces, include_usage).await;
    }
    let reply = full_response(&completion, &pieces.concat());
    write_json(session, 200, Bytes::from(reply.to_string())).await
}

/// 流式回复：角色块、内容块（按设置延迟）、结束块、可选用量块、`[DONE]`。
/// 写失败说明对端已断开，计入 `streams_aborted`；按故障设置主动断开的不计入。
async fn stream(
    app: &MockApp,
    session: &mut ServerSession,
    c: &Completion,
    pieces: &[String],
    include_usage: bool,
) -> bool {
    if start_stream(session).await.is_err() {
        return false;
    }
    let role = chunk(c, json!({"role": "assistant", "content": ""}), None);
    let mut ok = send_event(session, &role).await;
    match send_pieces(app, session, c, pieces, ok).await {
        Some(sent) => ok = sent,
        None => return false,
    }
    ok = ok && send_event(session, &chunk(c, json!({}), Some("stop"))).await;
    if include_usage {
        ok = ok && send_event(session, &usage_chunk(c)).await;
    }
    let mut done = BytesMut::new();
    write_done(&mut done);
    ok = ok
        && session
            .write_response_body(done.freeze(), true)
            .await
            .is_ok();
    let counter = if ok {
        &app.stats.streams_completed
    } else {
        &app.stats.streams_aborted
    };
    counter.fetch_add(1, Ordering::SeqCst);
    ok
}

/// 逐块发送内容；返回 `None` 表示按故障设置在此主动断开，否则返回是否全部写成功。
async fn send_pieces(
    app: &MockApp,
    session: &mut ServerSession,
    c: &Completion,
    pieces: &[String],
    mut ok: bool,
) -> Option<bool> {
    let drop_after = match app.settings.fault {
        Some(Fault::DropAfter(n)) => Some(n),
        _ => None,
    };
    for (i, piece) in pieces.iter().enumerate() {
        if drop_after == Some(i) {
            return None;
        }
        if i > 0 && !app.chunk_delay().is_zero() {
            tokio::time::sleep(app.chunk_delay()).await;
        }
        ok = ok && send_event(session, &chunk(c, json!({ "content": piece }), None)).await;
        if !ok {
            break;
        }
    }
    Some(ok)
}

/// `GET /v1/models`：列出一个模拟模型。
pub(super) async fn models(session: &mut ServerSession) -> bool {
    let body = json!({ "object": "list", "data": [ { "id": "mock", "object": "model", "created": 0, "owned_by": "chatnexus-mock" } ] });
    write_json(session, 200, Bytes::from(body.to_string())).await
}

/// 以 OpenAI 错误信封应答；返回连接是否仍可复用。
pub(super) async fn error(session: &mut ServerSession, status: u16, message: &str) -> bool {
    let kind = if status >= 500 {
        TYPE_SERVER
    } else {
        TYPE_INVALID_REQUEST
    };
    let body = ApiError::new(status, kind, "mock_error", message).to_body();
    write_json(session, status, body).await
}

fn full_response(c: &Completion, content: &str) -> Value {
    json!({
        "id": c.id, "object": "chat.completion", "created": c.created, "model": c.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [ { "index": 0, "message": { "role": "assistant", "content": content, "refusal": null },
                       "logprobs": null, "finish_reason": "stop" } ],
        "usage": usage(c),
    })
}

fn chunk(c: &Completion, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": c.id, "object": "chat.completion.chunk", "created": c.created, "model": c.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [ { "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish } ],
    })
}

fn usage_chunk(c: &Completion) -> Value {
    json!({
        "id": c.id, "object": "chat.completion.chunk", "created": c.created, "model": c.model,
        "system_fingerprint": FINGERPRINT, "choices": [], "usage": usage(c),
    })
}

fn usage(c: &Completion) -> Value {
    json!({
        "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
        "total_tokens": c.prompt_tokens + c.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": 0 },
    })
}

/// 把回复按字符大致均分为 `n` 块（至少一块）。
fn split_reply(reply: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = reply.chars().collect();
    let n = n.max(1);
    let per = chars.len().div_ceil(n).max(1);
    let mut pieces: Vec<String> = chars.chunks(per).map(|c| c.iter().collect()).collect();
    pieces.resize(n, String::new());
    pieces
}

async fn send_event(session: &mut ServerSession, event: &Value) -> bool {
    let mut out = BytesMut::new();
    write_data(&mut out, event.to_string().as_bytes());
    session
        .write_response_body(out.freeze(), false)
        .await
        .is_ok()
}

async fn start_stream(session: &mut ServerSession) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(200, None)?;
    header.insert_header(CONTENT_TYPE, "text/event-stream; charset=utf-8")?;
    header.insert_header(CACHE_CONTROL, "no-cache")?;
    header.insert_header(TRANSFER_ENCODING, "chunked")?;
    session.write_response_header(Box::new(header)).await
}

async fn write_json(session: &mut ServerSession, status: u16, body: Bytes) -> bool {
    let written = async {
        let mut header = ResponseHeader::build(status, None)?;
        header.insert_header(CONTENT_TYPE, "application/json")?;
        header.insert_header(CONTENT_LENGTH, body.len().to_string())?;
        if status == 429 {
            header.insert_header(RETRY_AFTER, RETRY_AFTER_SECS)?;
        }
        session.write_response_header(Box::new(header)).await?;
        session.write_response_body(body, true).await
    };
    written.await.is_ok()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 分块_均分且块数准确() {
        let pieces = split_reply("你好世界啊", 2);
        assert_eq!(pieces, vec!["你好世".to_string(), "界啊".to_string()]);
        assert_eq!(split_reply("短", 3).len(), 3, "块数多于字符时以空块补齐");
        assert_eq!(split_reply("短", 3).concat(), "短");
    }
}
