//! 请求签名：按 docs/security.md 的规范串签名，发出带签名头的请求。

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chatnexus::security::signing::{canonical_string, sign};

use super::gateway::Gateway;

/// 一个新的随机 nonce（32 个 URL 安全字符）。
pub fn fresh_nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("n{:x}-{n:08x}-{}", nanos, std::process::id())
}

/// 一组签名参数。
#[derive(Clone)]
pub struct Signed {
    /// 时间戳。
    pub timestamp: String,
    /// 请求携带的 nonce。
    pub nonce: String,
    /// 签名。
    pub signature: String,
}

/// 按 docs/security.md 的规范串签名。
pub fn sign_request(
    secret: &str,
    method: &str,
    path: &str,
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> Signed {
    let ts = timestamp.to_string();
    let canonical = canonical_string(method, path, &ts, nonce, body);
    Signed {
        signature: sign(secret.as_bytes(), &canonical),
        timestamp: ts,
        nonce: nonce.to_string(),
    }
}

/// 带客户端密钥与签名头的 POST。
pub fn signed_post(
    client: &reqwest::Client,
    gateway: Gateway,
    path: &str,
    key: &str,
    body: Vec<u8>,
    signed: &Signed,
) -> reqwest::RequestBuilder {
    client
        .post(gateway.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header("x-chatnexus-timestamp", &signed.timestamp)
        .header("x-chatnexus-nonce", &signed.nonce)
        .header("x-chatnexus-signature", &signed.signature)
        .body(body)
}
