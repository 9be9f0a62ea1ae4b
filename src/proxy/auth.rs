//! 客户端鉴权：`Authorization: Bearer <key>`，与配置中的 SHA-256 摘要常量时间比对。
//!
//! 鉴权之前先查一次该客户端 IP 的鉴权失败次数（[`AuthGuard`]）：失败过多的 IP 直接 429，
//! 不读请求体、不比对密钥；鉴权失败后给该 IP 记一次。

use std::net::IpAddr;

use http::header::AUTHORIZATION;
use pingora_proxy::Session;

use crate::config::Config;
use crate::error::ApiError;
use crate::limits::AuthGuard;
use crate::security::Client;

/// Bearer 方案前缀（大小写不敏感）。
const BEARER: &str = "bearer ";

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
    let key = bearer_token(session).ok_or_else(|| {
        ApiError::unauthorized("缺少 API 密钥：请在 Authorization 头中以 Bearer 方式提供")
    })?;
    config
        .clients
        .authenticate(key)
        .ok_or_else(|| ApiError::unauthorized("API 密钥无效或已停用"))
}

fn bearer_token(session: &Session) -> Option<&str> {
    let value = session
        .req_header()
        .headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?;
    let prefix = value.get(..BEARER.len())?;
    if !prefix.eq_ignore_ascii_case(BEARER) {
        return None;
    }
    Some(value[BEARER.len()..].trim()).filter(|k| !k.is_empty())
}
