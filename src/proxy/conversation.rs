//! Responses 会话：`previous_response_id` 在交换之前展开成完整输入，翻译的回复在交换之后保存，
//! `GET /v1/responses/{id}` 读回保存的回复。会话按客户端密钥隔离（见 `response_store`）。
//!
//! 透传到 OpenAI 的回复由 OpenAI 自己保存，网关不存；网关没保存过的 id 原样留给上游（透传时 OpenAI 认得它，
//! 翻译时 `dialects::responses` 返回 400）。

use bytes::Bytes;
use log::warn;
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::dialects::{Inbound, ResponsesRequest};
use crate::error::{ApiError, ErrorCode};
use crate::exchange::ExchangeReport;
use crate::response_store::{ResponseStore, StoredResponse};

/// 没有鉴权（`auth.disabled`）时会话的归属名。
const ANONYMOUS: &str = "";
/// 会话相关的字段名。
const PREVIOUS_RESPONSE_ID: &str = "previous_response_id";

/// 会话归属：客户端密钥名（没有鉴权时为空）。
pub fn owner(client: Option<&str>) -> &str {
    client.unwrap_or(ANONYMOUS)
}

/// 交换之前：展开 `previous_response_id`（见 [`expand`]），并记下交换后是否要保存回复。
///
/// 错误：同 [`expand`]。
pub async fn prepare(
    store: &ResponseStore,
    owner: &str,
    inbound: Inbound,
) -> Result<Inbound, ApiError> {
    let mut inbound = expand(store, owner, inbound).await?;
    if let Inbound::Responses(req) = &mut inbound {
        req.keep = store.enabled() && req.body.get("store") != Some(&Value::Bool(false));
    }
    Ok(inbound)
}

/// 请求带着网关保存过的 `previous_response_id` 时，把保存的输入与输出接在新输入之前，
/// 并去掉这个字段；其余请求原样返回。
///
/// 错误：Redis 不可用返回 503；展开后的请求体不合法（不应发生）返回 400。
async fn expand(store: &ResponseStore, owner: &str, inbound: Inbound) -> Result<Inbound, ApiError> {
    let Inbound::Responses(req) = &inbound else {
        return Ok(inbound);
    };
    let Some(previous) = req.body.get(PREVIOUS_RESPONSE_ID).and_then(Value::as_str) else {
        return Ok(inbound);
    };
    let Some(stored) = store.load(owner, previous).await? else {
        return Ok(inbound);
    };
    let mut body = req.body.clone();
    body.remove(PREVIOUS_RESPONSE_ID);
    let mut items = stored.input.clone();
    items.extend(stored.output().iter().cloned());
    items.extend(input_items(&req.body));
    body.insert("input".into(), Value::Array(items));
    let raw = serde_json::to_vec(&body)
        .map_err(|e| ApiError::internal(format!("序列化展开的会话失败：{e}")))?;
    let mut expanded = ResponsesRequest::parse(Bytes::from(raw))?;
    expanded.continued_from = Some(previous.to_string());
    Ok(Inbound::Responses(expanded))
}

/// 请求的 `input` 统一成条目数组（字符串 → 一条用户消息）。
fn input_items(body: &Map<String, Value>) -> Vec<Value> {
    match body.get("input") {
        Some(Value::String(text)) => vec![json!({ "role": "user", "content": text })],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// 交换成功之后：翻译得到的回复在客户端没有 `store: false` 时保存（透传的回复由 OpenAI 保存，网关不存）。
/// 保存失败只记日志：回复已经写给客户端了。
pub async fn remember(
    store: &ResponseStore,
    owner: &str,
    inbound: &Inbound,
    report: &mut ExchangeReport,
    config: &Config,
) {
    let Inbound::Responses(req) = inbound else {
        return;
    };
    let Some(response) = report
        .rendered
        .take()
        .filter(|_| req.keep && !report.passthrough)
    else {
        return;
    };
    let Some(id) = response["id"].as_str().map(str::to_string) else {
        return;
    };
    let stored = StoredResponse {
        input: input_items(&req.body),
        response,
    };
    let ttl = config.responses.store_ttl();
    if let Err(e) = store.save(owner, &id, &stored, ttl).await {
        warn!(
            "保存 Responses 会话 {id} 失败（之后的 previous_response_id 会找不到它）：{}",
            e.describe()
        );
    }
}

/// `GET /v1/responses/{id}`：返回这个密钥保存的回复。
///
/// 错误：没有配置存储、不存在或不属于这个密钥时 404，Redis 不可用时 503。
pub async fn lookup(store: &ResponseStore, owner: &str, id: &str) -> Result<Bytes, ApiError> {
    let stored = store.load(owner, id).await?.ok_or_else(|| {
        ApiError::new(
            404,
            crate::error::TYPE_INVALID_REQUEST,
            ErrorCode::PreviousResponseNotFound,
            format!("回复 `{}` 不存在、已过期，或不属于这个密钥", truncated(id)),
        )
    })?;
    serde_json::to_vec(&stored.response)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("序列化保存的回复失败：{e}")))
}

/// 错误消息里显示的 id（去掉控制字符、限制长度：id 来自客户端）。
fn truncated(id: &str) -> String {
    id.chars()
        .filter(|c| !c.is_control())
        .take(MAX_SHOWN_ID)
        .collect()
}

/// 错误消息里最多显示的 id 字符数。
const MAX_SHOWN_ID: usize = 64;
