//! 请求签名与防重放：鉴权通过、读完请求体之后校验（签名覆盖请求体的 SHA-256）。
//!
//! 顺序：签名头格式 → 时间窗口 → HMAC（常量时间比较）→ 认领 nonce。签名通过之后才认领 nonce，
//! 没有签名密钥的人既不能消耗别人的 nonce，也不能往存储里塞垃圾。

use std::time::Duration;

use pingora_proxy::Session;

use crate::clock::unix_now;
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::security::nonce::{Claim, NonceError, NonceStore};
use crate::security::signing::{self, SignatureError};
use crate::security::Client;

/// 校验当前请求的签名并认领 nonce。
///
/// 客户端没有签名密钥时直接通过；有密钥但 `require_signature: false` 时，带了签名头就完整校验
/// （灰度阶段先让客户端签起来），没带就放行；`require_signature: true` 时必须签名。
///
/// 错误：签名缺失、格式错误、过期、不匹配或重放返回 401；防重放存储不可用或已满返回 503。
pub async fn check(
    session: &Session,
    client: &Client,
    body: &[u8],
    config: &Config,
    nonces: &NonceStore,
) -> Result<(), ApiError> {
    let Some(secret) = &client.signing_secret else {
        return Ok(());
    };
    let header = session.req_header();
    let signed = match signing::parse_headers(&header.headers).map_err(reject)? {
        Some(signed) => signed,
        None if client.require_signature => {
            return Err(reject(SignatureError::Missing("X-ChatNexus-Signature")))
        }
        None => return Ok(()),
    };
    let window = config.security.signature_window_secs;
    signing::check_timestamp(signed.timestamp, unix_now(), window).map_err(reject)?;
    let path = header
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    signing::verify(secret, header.method.as_str(), path, &signed, body).map_err(reject)?;
    match nonces
        .claim(&client.name, &signed.nonce, nonce_ttl(window))
        .await
    {
        Ok(Claim::Fresh) => Ok(()),
        Ok(Claim::Replayed) => Err(ApiError::signature(
            ErrorCode::ReplayedRequest,
            "重放请求：该 X-ChatNexus-Nonce 在有效期内已经用过，每个请求都必须使用新的 nonce 并重新签名",
        )),
        Err(NonceError::Unavailable { .. }) => Err(ApiError::nonce_store_unavailable(
            "防重放存储暂时不可用，签名请求已被拒绝（宁可拒绝也不放过重放），请稍后重试",
        )),
        Err(NonceError::Full { .. }) => Err(ApiError::nonce_store_unavailable(
            "防重放存储已满，签名请求已被拒绝，请稍后重试（运维：配置 redis 或调大 security.memory_nonce_capacity）",
        )),
    }
}

/// nonce 需要记住的时长：时间戳可以比服务器快或慢各 `window` 秒，同一个请求在
/// 服务器时间上最多能在 `2 × window` 秒内通过时间窗口检查；记住这么久，重放就不可能通过。
/// 用固定时长而不按时间戳计算，多个实例之间的时钟差也不会留下缺口。
pub fn nonce_ttl(window_secs: u64) -> Duration {
    Duration::from_secs(window_secs.saturating_mul(2))
}

fn reject(error: SignatureError) -> ApiError {
    let code = match error {
        SignatureError::Missing(_) => ErrorCode::SignatureRequired,
        SignatureError::Expired { .. } => ErrorCode::SignatureExpired,
        _ => ErrorCode::InvalidSignature,
    };
    ApiError::signature(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 有效期_覆盖时间戳允许的全部范围() {
        assert_eq!(nonce_ttl(300), Duration::from_secs(600));
        assert_eq!(nonce_ttl(u64::MAX), Duration::from_secs(u64::MAX));
    }

    #[test]
    fn 错误码_按原因区分() {
        assert_eq!(
            reject(SignatureError::Missing("X")).code,
            ErrorCode::SignatureRequired
        );
        assert_eq!(
            reject(SignatureError::Expired { window: 1, now: 2 }).code,
            ErrorCode::SignatureExpired
        );
        let e = reject(SignatureError::Mismatch);
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (401, Some("invalid_signature"))
        );
    }
}
