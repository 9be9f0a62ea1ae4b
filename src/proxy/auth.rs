//! 客户端鉴权：`Authorization: Bearer <key>`（OpenAI SDK、Claude Code 的 `ANTHROPIC_AUTH_TOKEN`）或
//! `x-api-key: <key>`（Claude Code 的 `ANTHROPIC_API_KEY`、模型发现），与配置中的 SHA-256 摘要常量时间比对。
//!
//! 鉴权之前先查一次该客户端 IP 的鉴权失败次数（[`AuthGuard`]）：失败过多的 IP 直接 429，
//! 不读请求体、不比对密钥；鉴权失败后给该 IP 记一次。

use std::net::IpAddr;

use http::header::AUTHORIZATION;
use http::HeaderName;
use pingora_proxy::Session;

use crate::config::Config;
use crate::error::ApiError;
use crate::limits::AuthGuard;
use crate::security::Client;

/// Bearer 方案前缀（大小写不敏感）。
const BEARER: &str = "bearer ";
/// Anthropic 客户端放密钥的请求头。
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// 鉴权当前请求。
///
/// 返回：通过的客户端；鉴权关闭时返回 `None`。
/// 错误：该 IP 鉴权失败过多时 429（不看密钥）；缺少、格式错误或无效的密钥返回 401，并给该 IP 记一次失败。
pub fn authenticate<'a>(
    session: &Session,
    config: &'a Config,
    (guard, ip): (&AuthGuard, Option<IpAddr>),
) -> Result<Option<&'a Client>, ApiError> {
    if config.auth_disabled {
        return Ok(None);
    }
    let settings = &config.rate_limits;
    guard.check(&settings.auth_failures, ip)?;
    let verified = verify(session, config);
    if verified.is_err() {
        guard.failed(&settings.auth_failures, ip);
    }
    verified.map(Some)
}

/// 比对密钥。
fn verify<'a>(session: &Session, config: &'a Config) -> Result<&'a Client, ApiError> {
    let key = client_key(session).ok_or_else(|| {
        ApiError::unauthorized(
            "缺少 API 密钥：请在 Authorization 头中以 Bearer 方式提供，或放在 x-api-key 头中",
        )
    })?;
    config
        .clients
        .authenticate(key)
        .ok_or_else(|| ApiError::unauthorized("API 密钥无效或已停用"))
}

/// 客户端给出的密钥：先看 `Authorization: Bearer`，没有再看 `x-api-key`（Claude Code 的 apiKeyHelper 两个都发，值相同）。
fn client_key(session: &Session) -> Option<&str> {
    let headers = &session.req_header().headers;
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    bearer.or_else(|| {
        let key = headers.get(&X_API_KEY)?.to_str().ok()?.trim();
        (!key.is_empty()).then_some(key)
    })
}

/// `Authorization` 头里 Bearer 方案的密钥（方案名大小写不敏感，去掉首尾空白，空的算没有）。
fn bearer_token(value: &str) -> Option<&str> {
    let prefix = value.get(..BEARER.len())?;
    if !prefix.eq_ignore_ascii_case(BEARER) {
        return None;
    }
    Some(value[BEARER.len()..].trim()).filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_方案名大小写不敏感_空密钥算没有() {
        assert_eq!(bearer_token("Bearer sk-密钥"), Some("sk-密钥"));
        assert_eq!(bearer_token("bearer   sk-1  "), Some("sk-1"));
        assert_eq!(bearer_token("Bearer   "), None);
        assert_eq!(bearer_token("Basic abc"), None);
    }
}
