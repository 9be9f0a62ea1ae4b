//! 请求签名：HMAC-SHA256 覆盖方法、路径（含查询串）、时间戳、nonce 与请求体的 SHA-256。
//!
//! 规范串（字段之间用 `\n` 连接，末尾没有换行）：
//!
//! 1. 固定的算法标记 `CHATNEXUS-HMAC-SHA256`；
//! 2. 方法，如 `POST`；
//! 3. 请求行里的路径与查询串，原样，如 `/v1/chat/completions` 或 `/v1/models?x=1`；
//! 4. `X-ChatNexus-Timestamp` 的值，十进制 Unix 秒；
//! 5. `X-ChatNexus-Nonce` 的值；
//! 6. 请求体的 SHA-256，64 位小写十六进制（空请求体也要算）。
//!
//! `X-ChatNexus-Signature` = 以签名密钥（UTF-8 字节）为 HMAC 密钥，对规范串计算的 HMAC-SHA256，
//! 64 位十六进制（大小写均可）。详见 docs/security.md。

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::Secret;

/// 时间戳请求头。
pub const HEADER_TIMESTAMP: &str = "x-chatnexus-timestamp";
/// nonce 请求头。
pub const HEADER_NONCE: &str = "x-chatnexus-nonce";
/// 签名请求头。
pub const HEADER_SIGNATURE: &str = "x-chatnexus-signature";
/// 规范串的第一行：算法与格式版本。
pub const ALGORITHM: &str = "CHATNEXUS-HMAC-SHA256";
/// 缺省的时间窗口：时间戳与服务器时间相差超过 ±300 秒即拒绝。
pub const DEFAULT_WINDOW_SECS: u64 = 300;
/// nonce 的最短长度。
pub const NONCE_MIN_LEN: usize = 16;
/// nonce 的最长长度。
pub const NONCE_MAX_LEN: usize = 64;
/// HMAC-SHA256 输出的字节数。
const MAC_LEN: usize = 32;
/// 时间戳的最多位数（足够到公元 33658 年，也挡住超长输入）。
const MAX_TIMESTAMP_DIGITS: usize = 12;

type HmacSha256 = Hmac<Sha256>;

/// 签名校验失败的原因；中文消息可直接返回给客户端（不含任何密钥）。
///
/// 用途：`proxy` 把它映射为 401 OpenAI 错误信封。
///
/// ```
/// use chatnexus::security::signing::{check_timestamp, SignatureError}; // 时间窗口
/// assert!(check_timestamp(1_000, 1_300, 300).is_ok()); // 恰在窗口边上
/// assert!(matches!(check_timestamp(1_000, 1_301, 300), Err(SignatureError::Expired { .. }))); // 超出 1 秒
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// 要求签名但缺少签名头（或只带了一部分）。
    #[error("该 API 密钥要求请求签名：缺少请求头 {0}（需要 X-ChatNexus-Timestamp、X-ChatNexus-Nonce、X-ChatNexus-Signature）")]
    Missing(&'static str),
    /// 同一个签名头出现了多次（有歧义，一律拒绝）。
    #[error("请求头 {0} 只能出现一次")]
    Duplicate(&'static str),
    /// 时间戳不是十进制 Unix 秒。
    #[error("X-ChatNexus-Timestamp 必须是十进制 Unix 秒")]
    BadTimestamp,
    /// nonce 格式不对。
    #[error("X-ChatNexus-Nonce 必须是 {NONCE_MIN_LEN} 到 {NONCE_MAX_LEN} 个 URL 安全字符（A-Z a-z 0-9 - _）")]
    BadNonce,
    /// 签名头不是 64 位十六进制。
    #[error("X-ChatNexus-Signature 必须是 64 位十六进制的 HMAC-SHA256")]
    BadSignatureFormat,
    /// 时间戳超出窗口。
    #[error(
        "签名时间戳超出允许的 ±{window} 秒窗口（服务器时间 {now}），请校准客户端时钟并重新签名"
    )]
    Expired {
        /// 窗口秒数。
        window: u64,
        /// 服务器当前 Unix 秒。
        now: u64,
    },
    /// 签名不匹配。
    #[error(
        "签名不匹配：请检查签名密钥与规范串（方法、路径含查询串、时间戳、nonce、请求体 SHA-256）"
    )]
    Mismatch,
}

/// 从请求头里取出的签名参数。
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// 时间戳原文（规范串里用原文）。
    pub timestamp_raw: String,
    /// 时间戳数值。
    pub timestamp: u64,
    /// 请求携带的 nonce。
    pub nonce: String,
    /// 解码后的签名。
    pub signature: [u8; MAC_LEN],
}

/// 组成规范串。
///
/// ```
/// let c = chatnexus::security::signing::canonical_string("POST", "/v1/chat/completions", "1700000000", "n0nce-n0nce-n0nce", b""); // 空请求体
/// assert_eq!(c, "CHATNEXUS-HMAC-SHA256\nPOST\n/v1/chat/completions\n1700000000\nn0nce-n0nce-n0nce\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"); // 末行是空串的 SHA-256
/// ```
pub fn canonical_string(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    [
        ALGORITHM,
        method,
        path_and_query,
        timestamp,
        nonce,
        body_hash.as_str(),
    ]
    .join("\n")
}

/// 用签名密钥对规范串计算 HMAC-SHA256，返回小写十六进制（客户端与测试用）。
///
/// ```
/// use chatnexus::security::signing::sign; // RFC 4231 测试向量 2
/// assert_eq!(sign(b"Jefe", "what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"); // RFC 4231 的测试向量
/// ```
pub fn sign(secret: &[u8], canonical: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC 接受任意长度的密钥");
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// 取出并检查三个签名头的格式。
///
/// 返回：三个头都没有时为 `Ok(None)`（未签名的请求）。
/// 错误：只带了一部分，或任一格式不对。
pub fn parse_headers(headers: &HeaderMap) -> Result<Option<SignedHeaders>, SignatureError> {
    let get = |name: &'static str| headers.get(name).map(|v| v.to_str().map(str::trim));
    for (name, shown) in [
        (HEADER_TIMESTAMP, "X-ChatNexus-Timestamp"),
        (HEADER_NONCE, "X-ChatNexus-Nonce"),
        (HEADER_SIGNATURE, "X-ChatNexus-Signature"),
    ] {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(SignatureError::Duplicate(shown));
        }
    }
    let (ts, nonce, sig) = (
        get(HEADER_TIMESTAMP),
        get(HEADER_NONCE),
        get(HEADER_SIGNATURE),
    );
    if ts.is_none() && nonce.is_none() && sig.is_none() {
        return Ok(None);
    }
    let ts = ts
        .ok_or(SignatureError::Missing("X-ChatNexus-Timestamp"))?
        .map_err(|_| SignatureError::BadTimestamp)?;
    let nonce = nonce
        .ok_or(SignatureError::Missing("X-ChatNexus-Nonce"))?
        .map_err(|_| SignatureError::BadNonce)?;
    let sig = sig
        .ok_or(SignatureError::Missing("X-ChatNexus-Signature"))?
        .map_err(|_| SignatureError::BadSignatureFormat)?;
    let timestamp = parse_timestamp(ts)?;
    if !valid_nonce(nonce) {
        return Err(SignatureError::BadNonce);
    }
    let mut signature = [0u8; MAC_LEN];
    hex::decode_to_slice(sig, &mut signature).map_err(|_| SignatureError::BadSignatureFormat)?;
    Ok(Some(SignedHeaders {
        timestamp_raw: ts.to_string(),
        timestamp,
        nonce: nonce.to_string(),
        signature,
    }))
}

/// 只接受 1 到 12 位十进制数字（不接受符号、空格、小数）。
fn parse_timestamp(text: &str) -> Result<u64, SignatureError> {
    if text.is_empty()
        || text.len() > MAX_TIMESTAMP_DIGITS
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignatureError::BadTimestamp);
    }
    text.parse().map_err(|_| SignatureError::BadTimestamp)
}

/// nonce：16 到 64 个 URL 安全字符。
pub fn valid_nonce(nonce: &str) -> bool {
    (NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 时间戳与服务器时间之差不超过 `window` 秒（两个方向都算）。
///
/// 错误：超出窗口。
pub fn check_timestamp(timestamp: u64, now: u64, window: u64) -> Result<(), SignatureError> {
    if timestamp.abs_diff(now) > window {
        return Err(SignatureError::Expired { window, now });
    }
    Ok(())
}

/// 常量时间校验签名（`hmac` 的 `verify_slice` 用 `subtle` 比较）。
///
/// 参数：签名密钥、请求方法、请求行里的路径与查询串、已解析的签名头、请求体。
/// 错误：签名不匹配。
pub fn verify(
    secret: &Secret,
    method: &str,
    path_and_query: &str,
    signed: &SignedHeaders,
    body: &[u8],
) -> Result<(), SignatureError> {
    let canonical = canonical_string(
        method,
        path_and_query,
        &signed.timestamp_raw,
        &signed.nonce,
        body,
    );
    let mut mac =
        HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC 接受任意长度的密钥");
    mac.update(canonical.as_bytes());
    mac.verify_slice(&signed.signature)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const 密钥: &str = "cnxs-签名密钥-至少三十二字节长度的测试值";
    const NONCE: &str = "abcdefghijklmnop";

    fn 头(ts: Option<&str>, nonce: Option<&str>, sig: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in [
            (HEADER_TIMESTAMP, ts),
            (HEADER_NONCE, nonce),
            (HEADER_SIGNATURE, sig),
        ] {
            if let Some(v) = value {
                h.insert(name, HeaderValue::from_str(v).expect("合法头"));
            }
        }
        h
    }

    fn 签名(method: &str, path: &str, ts: &str, nonce: &str, body: &[u8]) -> String {
        sign(
            密钥.as_bytes(),
            &canonical_string(method, path, ts, nonce, body),
        )
    }

    #[test]
    fn 规范串_字段顺序与格式固定() {
        let c = canonical_string(
            "POST",
            "/v1/chat/completions?a=1&b=2",
            "1700000000",
            NONCE,
            b"{}",
        );
        let lines: Vec<&str> = c.split('\n').collect();
        assert_eq!(
            lines,
            vec![
                "CHATNEXUS-HMAC-SHA256",
                "POST",
                "/v1/chat/completions?a=1&b=2",
                "1700000000",
                NONCE,
                "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            ]
        );
        assert!(!c.ends_with('\n'), "规范串末尾没有换行");
    }

    /// docs/security.md 里的示例向量：文档与实现不能各说各的。
    #[test]
    fn 签名_文档示例向量() {
        let body = br#"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#;
        let canonical = canonical_string(
            "POST",
            "/v1/chat/completions",
            "1700000000",
            "3f9c2a7e1b4d4c0e8a6b5d2f1e0c9b8a",
            body,
        );
        assert!(
            canonical.ends_with("6149ca9d80a5ba2ede06bc594fedae824a30589c1f7bf323d5034615f33b17e8")
        );
        assert_eq!(
            sign(b"cnxs-example-secret-please-change-0000000", &canonical),
            "61ba90eb07a79e99345ce442de79f4b6b876e20483e98b97579e4d97891bebd9"
        );
    }

    #[test]
    fn 签名_正确时通过_任一字段变化都失败() {
        let body = br#"{"model":"m"}"#;
        let sig = 签名("POST", "/v1/chat/completions", "1700000000", NONCE, body);
        let signed = parse_headers(&头(Some("1700000000"), Some(NONCE), Some(&sig)))
            .expect("格式合法")
            .expect("已签名");
        let secret = Secret::new(密钥.to_string());
        assert_eq!(
            verify(&secret, "POST", "/v1/chat/completions", &signed, body),
            Ok(())
        );
        let upper = parse_headers(&头(
            Some("1700000000"),
            Some(NONCE),
            Some(&sig.to_uppercase()),
        ))
        .expect("大写十六进制也合法")
        .expect("已签名");
        assert_eq!(
            verify(&secret, "POST", "/v1/chat/completions", &upper, body),
            Ok(())
        );
        let cases: [(&str, &str, &[u8]); 4] = [
            ("GET", "/v1/chat/completions", body),
            ("POST", "/v1/chat/completions?x=1", body),
            ("POST", "/v1/chat/completions/", body),
            ("POST", "/v1/chat/completions", br#"{"model":"n"}"#),
        ];
        for (method, path, b) in cases {
            assert_eq!(
                verify(&secret, method, path, &signed, b),
                Err(SignatureError::Mismatch),
                "{method} {path}"
            );
        }
        let other = Secret::new("另一个密钥".repeat(8));
        assert_eq!(
            verify(&other, "POST", "/v1/chat/completions", &signed, body),
            Err(SignatureError::Mismatch)
        );
        let moved = parse_headers(&头(Some("1700000001"), Some(NONCE), Some(&sig)))
            .expect("格式合法")
            .expect("已签名");
        assert_eq!(
            verify(&secret, "POST", "/v1/chat/completions", &moved, body),
            Err(SignatureError::Mismatch),
            "时间戳被改必须失败"
        );
    }

    #[test]
    fn 签名头_缺失或格式错误() {
        assert_eq!(parse_headers(&头(None, None, None)), Ok(None));
        let sig = "a".repeat(64);
        assert_eq!(
            parse_headers(&头(Some("1"), Some(NONCE), None)),
            Err(SignatureError::Missing("X-ChatNexus-Signature"))
        );
        assert_eq!(
            parse_headers(&头(None, Some(NONCE), Some(&sig))),
            Err(SignatureError::Missing("X-ChatNexus-Timestamp"))
        );
        for ts in ["", "-1", "+1", "1.5", "12345678901234", " 1x", "１２"] {
            assert_eq!(
                parse_headers(&头(Some(ts), Some(NONCE), Some(&sig))),
                Err(SignatureError::BadTimestamp),
                "{ts:?}"
            );
        }
        let long = "n".repeat(65);
        for nonce in [
            "short",
            long.as_str(),
            "abcdefghijklmno=",
            "abcdefghijklmno/",
            "abcdefgh ijklmnop",
        ] {
            assert_eq!(
                parse_headers(&头(Some("1"), Some(nonce), Some(&sig))),
                Err(SignatureError::BadNonce),
                "{nonce:?}"
            );
        }
        assert!(valid_nonce(&"A-_z09".repeat(11)[..64]));
        let mut dup = 头(Some("1"), Some(NONCE), Some(&sig));
        dup.append(HEADER_NONCE, HeaderValue::from_static("another-nonce-0000"));
        assert_eq!(
            parse_headers(&dup),
            Err(SignatureError::Duplicate("X-ChatNexus-Nonce"))
        );
        for bad in ["zz".repeat(32), "a".repeat(63), "a".repeat(66)] {
            assert_eq!(
                parse_headers(&头(Some("1"), Some(NONCE), Some(&bad))),
                Err(SignatureError::BadSignatureFormat)
            );
        }
    }

    #[test]
    fn 时间窗口_两个方向各三百秒() {
        let now = 1_700_000_000;
        assert!(check_timestamp(now - 300, now, 300).is_ok());
        assert!(check_timestamp(now + 300, now, 300).is_ok());
        assert!(check_timestamp(now - 301, now, 300).is_err());
        assert!(check_timestamp(now + 301, now, 300).is_err());
        assert!(check_timestamp(0, now, 300).is_err());
        assert!(check_timestamp(u64::MAX, now, 300).is_err());
        let msg = check_timestamp(0, now, 300).unwrap_err().to_string();
        assert!(msg.contains("±300"), "{msg}");
    }
}
