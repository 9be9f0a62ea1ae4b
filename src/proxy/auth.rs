//! 客户端鉴权：`Authorization: Bearer <key>`（OpenAI SDK、Claude Code 的 `ANTHROPIC_AUTH_TOKEN`）或
//! `x-api-key: <key>`（Claude Code 的 `ANTHROPIC_API_KEY`、模型发现），与配置中的 SHA-256 摘要常量时间比对。
//!
//! 先比对配置文件里的密钥，再查管理接口创建的虚拟密钥（只查内存，见 `virtual_keys`）。
//!
//! 鉴权之前先查一次该客户端 IP 的鉴权失败次数（[`AuthGuard`]）：失败过多的 IP 直接 429，
//! 不读请求体、不比对密钥；鉴权失败后给该 IP 记一次。

use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::HeaderName;
use pingora_proxy::Session;

use crate::config::Config;
use crate::error::ApiError;
use crate::limits::AuthGuard;
use crate::security::{bearer_token, Client};
use crate::virtual_keys::VirtualKeys;

/// Anthropic 客户端放密钥的请求头。
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// 鉴权通过的客户端：配置文件里的（借用当前配置）或虚拟密钥（共享所有权，表被换掉也不影响进行中的请求）。
pub enum Caller<'a> {
    /// `auth.keys` 里的密钥。
    Configured(&'a Client),
    /// 管理接口创建的虚拟密钥。
    Virtual(Arc<Client>),
}

impl Deref for Caller<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        match self {
            Caller::Configured(client) => client,
            Caller::Virtual(client) => client,
        }
    }
}

/// 鉴权当前请求。
///
/// 返回：通过的客户端；鉴权关闭时返回 `None`。
/// 错误：该 IP 鉴权失败过多时 429（不看密钥）；缺少、格式错误或无效的密钥返回 401，并给该 IP 记一次失败。
pub fn authenticate<'a>(
    session: &Session,
    (config, keys): (&'a Config, &VirtualKeys),
    (guard, ip): (&AuthGuard, Option<IpAddr>),
) -> Result<Option<Caller<'a>>, ApiError> {
    if config.auth_disabled {
        return Ok(None);
    }
    let settings = &config.rate_limits;
    guard.check(&settings.auth_failures, ip)?;
    let verified = verify(session, config, keys);
    if verified.is_err() {
        guard.failed(&settings.auth_failures, ip);
    }
    verified.map(Some)
}

/// 比对密钥：先配置文件里的（常量时间比对全部条目），再虚拟密钥。
fn verify<'a>(
    session: &Session,
    config: &'a Config,
    keys: &VirtualKeys,
) -> Result<Caller<'a>, ApiError> {
    let key = client_key(session).ok_or_else(|| {
        ApiError::unauthorized(
            "缺少 API 密钥：请在 Authorization 头中以 Bearer 方式提供，或放在 x-api-key 头中",
        )
    })?;
    config
        .clients
        .authenticate(key)
        .map(Caller::Configured)
        .or_else(|| keys.authenticate(key).map(Caller::Virtual))
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
