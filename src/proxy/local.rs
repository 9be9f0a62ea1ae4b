//! 网关自己应答的接口：公开的 `/health`、指标端口上的 `/health/details`、`/v1/models`，
//! 以及上游没有计数接口时本地估算的 count_tokens。

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use crate::clock::unix_now;
use crate::config::Config;
use crate::dialects::messages::estimate_input_tokens;
use crate::error::{ApiError, ErrorCode};
use crate::security::Client;
use crate::upstream::Balancer;

/// 标明 count_tokens 结果来源的响应头。
const TOKEN_COUNT_HEADER: &str = "x-chatnexus-token-count";
/// 本地估算时 [`TOKEN_COUNT_HEADER`] 的值。
const ESTIMATED: &str = "estimated";
/// 限流状态码。
const STATUS_TOO_MANY_REQUESTS: u16 = 429;

/// 本地估算的 count_tokens 响应体：`{"input_tokens": N}`（估算只会偏高）。
pub fn estimated_count_body(body: &Map<String, Value>) -> Bytes {
    let count = json!({ "input_tokens": estimate_input_tokens(body) });
    Bytes::from(count.to_string())
}

/// 本地估算的 count_tokens 响应带的头：`x-chatnexus-token-count: estimated`。
pub fn estimated_count_headers() -> [(HeaderName, HeaderValue); 1] {
    [(
        HeaderName::from_static(TOKEN_COUNT_HEADER),
        HeaderValue::from_static(ESTIMATED),
    )]
}

/// count_tokens 转发失败时是否改为本地估算：目标没有计数接口、上游限流或故障时估算；
/// 上游对请求本身的拒绝（400、404……）照常返回，客户端需要知道请求有问题。
pub fn count_fallback(error: &ApiError) -> bool {
    error.code == ErrorCode::UnsupportedParameter
        || error.status == STATUS_TOO_MANY_REQUESTS
        || error.status >= 500
}

/// 模型列表里的 `owned_by`。
const OWNER: &str = "chatnexus";

/// 生成公开 `/health` 的响应体：只有 `{"status":"ok"}` 或 `{"status":"degraded"}`（有模型此刻没有可用目标）。
///
/// 两种都是 200：网关进程在服务，其他模型照常可用，负载均衡器不应因一个模型缺密钥就摘除整个实例。
/// 该接口不鉴权，所以不列模型、上游、延迟与在途数：这些只在指标端口的 `/health/details` 上给出。
pub fn health_body(config: &Config, balancer: &Balancer) -> Bytes {
    if balancer.report(config).degraded_models.is_empty() {
        Bytes::from_static(br#"{"status":"ok"}"#)
    } else {
        Bytes::from_static(br#"{"status":"degraded"}"#)
    }
}

/// 生成 `/v1/models` 的响应体，按配置顺序列出该客户端可用的模型名
/// （客户端有模型允许列表时只列出其中的模型；鉴权关闭时 `client` 为 `None`，列出全部）。
///
/// 一个响应体同时满足两种 SDK：OpenAI 的列表格式（`object`、`data[].id/created/owned_by`），加上 Anthropic
/// 的字段（`has_more`、`first_id`、`last_id`、`data[].type/display_name/created_at`），两边都忽略不认识的字段。
pub fn models_body(config: &Config, client: Option<&Client>) -> Bytes {
    let created = unix_now();
    let created_at = rfc3339(created);
    let data: Vec<Value> = config
        .models
        .iter()
        .filter(|m| client.is_none_or(|c| c.allows_model(&m.name)))
        .map(|m| {
            json!({
                "id": m.name, "object": "model", "created": created, "owned_by": OWNER,
                "type": "model", "display_name": m.name, "created_at": created_at,
            })
        })
        .collect();
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    let body = json!({
        "object": "list", "data": data,
        "has_more": false, "first_id": first, "last_id": last,
    });
    Bytes::from(body.to_string())
}

/// Unix 秒写成 RFC 3339 时刻（Anthropic 模型列表的 `created_at`）。
fn rfc3339(unix_secs: u64) -> String {
    i64::try_from(unix_secs)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::两个上游的配置;

    #[test]
    fn 模型列表_按配置顺序() {
        let v: Value = serde_json::from_slice(&models_body(&两个上游的配置(), None)).expect("JSON");
        assert_eq!(v["object"], "list");
        let ids: Vec<&str> = v["data"]
            .as_array()
            .expect("数组")
            .iter()
            .map(|m| m["id"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(ids, vec!["甲", "乙"]);
    }

    #[test]
    fn 模型列表_同时带_anthropic_sdk_要的字段() {
        let v: Value = serde_json::from_slice(&models_body(&两个上游的配置(), None)).expect("JSON");
        assert_eq!(
            (&v["has_more"], &v["first_id"], &v["last_id"]),
            (&json!(false), &json!("甲"), &json!("乙"))
        );
        let first = &v["data"][0];
        assert_eq!(
            (&first["type"], &first["display_name"]),
            (&json!("model"), &json!("甲"))
        );
        let created_at = first["created_at"].as_str().expect("created_at 是字符串");
        assert!(
            created_at.ends_with('Z') && created_at.len() == "2026-12-05T07:00:00Z".len(),
            "{created_at}"
        );
    }

    #[test]
    fn rfc3339_时刻格式() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_760_000_000), "2025-10-09T08:53:20Z");
    }

    #[test]
    fn 模型列表_只列出客户端允许的模型() {
        use crate::security::KeyHash;
        let client = Client::new("甲", KeyHash::of("sk-甲")).with_models(vec!["乙".into()]);
        let v: Value =
            serde_json::from_slice(&models_body(&两个上游的配置(), Some(&client))).expect("JSON");
        assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["data"][0]["id"], "乙");
    }

    #[test]
    fn 公开健康检查_只给状态() {
        let body = health_body(&两个上游的配置(), &Balancer::default());
        assert_eq!(
            &body[..],
            br#"{"status":"degraded"}"#,
            "公开接口不能列出模型与上游"
        );
    }
}
