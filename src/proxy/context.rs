//! 一个请求的上下文：请求 id、鉴权结果、路由结果、交换报告，供访问日志与指标使用。

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;
use pingora_proxy::Session;

use crate::budgets::BudgetTicket;
use crate::config::Config;
use crate::dialects::Dialect;
use crate::downstream::{GatewayHeaders, REQUEST_ID_HEADER};
use crate::error::ErrorCode;
use crate::exchange::ExchangeReport;
use crate::limits::Ticket;
use crate::metrics::{InflightGuard, METRICS};
use crate::providers::truncate_chars;
use crate::streaming::random_id;

/// 路由失败（未知路径、方法不对）的请求的接口标签。
const UNKNOWN_ENDPOINT: &str = "unknown";
/// 接受客户端给出的请求 id 的最大长度。
const MAX_REQUEST_ID_LEN: usize = 128;
/// 网关生成的请求 id 的前缀。
const REQUEST_ID_PREFIX: &str = "req_";
/// 访问日志中提示词摘录的最大字符数。
const MAX_PROMPT_CHARS: usize = 2000;

/// 一个请求的上下文。
///
/// 用途：Pingora 为每个请求创建一个，`request_filter` 填写，`logging` 读取后记入访问日志与指标。
///
/// ```
/// let ctx = chatnexus::proxy::RequestCtx::default(); // 新请求
/// assert!(ctx.status == 0 && ctx.model.is_none()); // 尚未处理
/// ```
#[derive(Debug)]
pub struct RequestCtx {
    /// 请求开始的时刻。
    pub started: Instant,
    /// 请求 id（客户端给出的 `x-request-id`，或网关生成的）。
    pub request_id: String,
    /// 写给客户端的状态码（客户端断开为 499）。
    pub status: u16,
    /// 客户端 IP（直连对端，或可信代理转发的 `X-Forwarded-For`）。
    pub client_ip: Option<IpAddr>,
    /// 通过鉴权的客户端密钥名。
    pub client: Option<String>,
    /// 请求的模型名（客户端输入，只进日志，不进指标标签）。
    pub model: Option<String>,
    /// 已配置的模型名（可作为指标标签）。
    pub model_label: Option<String>,
    /// 客户端方言（由路由决定；错误按它的形状写出，也是指标的 `dialect` 标签）。
    pub dialect: Dialect,
    /// 接口（指标的 `endpoint` 标签；路由失败时为 `unknown`）。
    pub endpoint: &'static str,
    /// 翻译到别家上游时丢弃的功能（逗号分隔，访问日志记录）。
    pub dropped: Option<String>,
    /// 响应缓存的结果（`hit`、`miss`、`bypass`；没有用缓存时为空）。
    pub cache: Option<&'static str>,
    /// 与上游交换的报告（所用的上游、尝试次数、首字时间、用量、等待时间）。
    pub report: ExchangeReport,
    /// 请求的 `messages`（只在配置允许记录提示词时保存，已截断）。
    pub prompt: Option<String>,
    /// 错误说明（成功时为空）。
    pub error: Option<String>,
    /// 错误码（成功时为空），进访问日志与指标标签。
    pub error_code: Option<ErrorCode>,
    /// 处理本请求时使用的配置（访问日志按它的价目表计费）。
    pub config: Option<Arc<Config>>,
    /// 进行中请求数的守卫，上下文释放时计数减一。
    pub inflight: InflightGuard,
    /// 限流准入记录（请求受限流约束且被放行时才有），请求结束时按实际用量结算。
    pub limit: Option<Ticket>,
    /// 美元预算的预留（密钥有预算且被放行时才有），请求结束时按实际费用结算。
    pub budget: Option<BudgetTicket>,
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            client_ip: None,
            status: 0,
            client: None,
            model: None,
            model_label: None,
            dialect: Dialect::Chat,
            endpoint: UNKNOWN_ENDPOINT,
            dropped: None,
            cache: None,
            report: ExchangeReport::default(),
            prompt: None,
            error: None,
            error_code: None,
            config: None,
            inflight: InflightGuard::new(&METRICS.inflight_requests),
            limit: None,
            budget: None,
        }
    }
}

/// 确定请求 id：客户端给出的合法 `x-request-id` 原样沿用，否则生成一个；交给网关头模块，
/// 写给客户端的每个响应与发往上游的请求都带上它（不改写客户端的请求头）。
pub fn assign_request_id(session: &mut Session) -> String {
    let given = session
        .req_header()
        .headers
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_request_id(v))
        .map(str::to_string);
    let id = given.unwrap_or_else(|| random_id(REQUEST_ID_PREFIX));
    // 只含安全字符（客户端给出的已校验，生成的是字母数字），必然是合法的头值
    let Ok(value) = HeaderValue::from_str(&id) else {
        log::warn!("请求 id 不是合法的头值：{id:?}");
        return id;
    };
    if let Some(headers) = GatewayHeaders::of(session) {
        headers.set_request_id(value);
    }
    id
}

/// 客户端的请求 id 只接受 1 到 128 个字母、数字与 `._-`，防止日志注入。
fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// 访问日志里的提示词摘录（请求对象里 `messages` 的 JSON，Responses 请求是 `input`；截断）。
pub fn prompt_excerpt(body: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let messages = body.get("messages").or_else(|| body.get("input"))?;
    Some(truncate_chars(&messages.to_string(), MAX_PROMPT_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 提示词摘录_聊天取_messages_responses_取_input() {
        let chat = serde_json::json!({ "messages": [{ "role": "user", "content": "你好" }] });
        let responses = serde_json::json!({ "input": "你好" });
        let excerpt = |v: &serde_json::Value| v.as_object().and_then(prompt_excerpt);
        assert!(excerpt(&chat).is_some_and(|p| p.contains("你好")));
        assert_eq!(excerpt(&responses).as_deref(), Some("\"你好\""));
        assert_eq!(excerpt(&serde_json::json!({})), None);
    }

    #[test]
    fn 请求id_只接受安全字符() {
        assert!(is_valid_request_id("req-123_abc.9"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("带中文"));
        assert!(!is_valid_request_id("a b"));
        assert!(!is_valid_request_id(&"x".repeat(MAX_REQUEST_ID_LEN + 1)));
    }
}
