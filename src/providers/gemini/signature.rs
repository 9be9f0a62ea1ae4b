//! 思维签名与工具调用 id：把 Gemini 的思维签名编码进合成的工具调用 id，客户端回传历史时再解出。

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

// Gemini 要求把模型给出的 `thoughtSignature` 原样放回同一个 `functionCall` 部分旁边，
// 而 OpenAI 格式没有地方存它。网关无状态，于是把签名编码进合成的工具调用 id，客户端回传历史时
// 从 id 中解出签名。id 的格式（可逆，只用 `[A-Za-z0-9_-]`，各家客户端与上游都接受）：
//
//   call_<16 位十六进制>                       —— 没有签名
//   call_<16 位十六进制>_sigb<URL 安全 base64>  —— 签名是规范的标准 base64（常见情况）：
//                                                `+` `/` 换成 `-` `_` 并去掉 `=` 填充，
//                                                还原时换回并按 4 的整数倍补齐 `=`，长度不膨胀
//   call_<16 位十六进制>_sigh<十六进制>          —— 其他任何字符串：按 UTF-8 字节十六进制编码
//
// 十六进制部分不含 `_`，所以第一个 `_sig` 必定是标记。解不出签名的 id（客户端自己生成的、
// 被截断的）按原样处理：不附签名。

/// 合成的工具调用 id 的前缀。
pub(super) const CALL_ID_PREFIX: &str = "call_";
/// 工具调用 id 中思维签名的起始标记，其后一个字符表示编码方式。
const SIGNATURE_MARKER: &str = "_sig";
/// 签名编码方式：URL 安全、无填充的 base64。
const SIGNATURE_BASE64URL: char = 'b';
/// 签名编码方式：UTF-8 字节的十六进制。
const SIGNATURE_HEX: char = 'h';
/// base64 每组的字符数（填充到它的整数倍）。
const BASE64_GROUP: usize = 4;
/// 规范 base64 末尾最多的填充字符数。
const MAX_BASE64_PADDING: usize = 2;

/// 合成工具调用 id：由补全 id 与调用序号确定（同一响应重放得到同一 id，不同响应互不相同），再嵌入思维签名。
pub(super) fn call_id(seed: &str, index: usize, signature: Option<&str>) -> String {
    let mut hasher = DefaultHasher::new();
    (seed, index).hash(&mut hasher);
    embed_signature(
        format!("{CALL_ID_PREFIX}{:016x}", hasher.finish()),
        signature,
    )
}

/// 把思维签名编码后接在 id 之后；没有签名或签名为空时原样返回。
pub(super) fn embed_signature(base: String, signature: Option<&str>) -> String {
    match signature.filter(|s| !s.is_empty()) {
        None => base,
        Some(sig) if is_canonical_base64(sig) => {
            let encoded: String = sig
                .trim_end_matches('=')
                .chars()
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            format!("{base}{SIGNATURE_MARKER}{SIGNATURE_BASE64URL}{encoded}")
        }
        Some(sig) => format!(
            "{base}{SIGNATURE_MARKER}{SIGNATURE_HEX}{}",
            hex::encode(sig)
        ),
    }
}

/// 从合成的工具调用 id 中解出思维签名；id 不含签名或无法解码时为 `None`。
pub(super) fn extract_signature(id: &str) -> Option<String> {
    let (_, encoded) = id
        .strip_prefix(CALL_ID_PREFIX)?
        .split_once(SIGNATURE_MARKER)?;
    let mut chars = encoded.chars();
    let scheme = chars.next()?;
    let payload = chars.as_str();
    let signature = match scheme {
        SIGNATURE_BASE64URL => from_base64url(payload)?,
        SIGNATURE_HEX => String::from_utf8(hex::decode(payload).ok()?).ok()?,
        _ => return None,
    };
    (!signature.is_empty()).then_some(signature)
}

/// 是否是规范的标准 base64：字母表 `A-Za-z0-9+/`，长度是 4 的整数倍，末尾至多两个 `=`。
fn is_canonical_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    text.len().is_multiple_of(BASE64_GROUP)
        && text.len() - body.len() <= MAX_BASE64_PADDING
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// URL 安全、无填充的 base64 → 规范的标准 base64；含非法字符或长度不可能时为 `None`。
fn from_base64url(payload: &str) -> Option<String> {
    let valid = payload
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid || payload.len() % BASE64_GROUP == 1 {
        return None;
    }
    let mut text: String = payload
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !text.len().is_multiple_of(BASE64_GROUP) {
        text.push('=');
    }
    Some(text)
}
