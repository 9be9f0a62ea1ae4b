//! 客户端鉴权：`Authorization: Bearer <key>`，与配置中的 SHA-256 摘要常量时间比对。

use http::header::AUTHORIZATION;
use pingora_proxy::Session;

use crate::config::Config;
use crate::error::ApiError;
use crate::security::Client;

/// Bearer 方案前缀（大小写不敏感）。
const BEARER: &str = "bearer ";

/// 鉴权当前请求。
///
/// 返回：通过的客户端；鉴权关闭时返回 `None`。
/// 错误：缺少、格式错误或无效的密钥返回 401。
pub fn authenticate<'a>(
    session: &Session,
    config: &'a Config,
) -> Result<Option<&'a Client>, ApiError> {
    if config.auth_disabled {
        return Ok(None);
    }
    let key = bearer_token(session).ok_or_else(|| {
        ApiError::unauthorized("缺少 API 密钥：请在 Authorization 头中以 Bearer 方式提供")
    })?;
    config
        .clients
        .authenticate(key)
        .map(Some)
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
