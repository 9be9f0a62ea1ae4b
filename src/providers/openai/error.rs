//! 错误翻译：解析 OpenAI 格式的错误信封（OpenAI 与 Azure 共用）。

use serde_json::Value;

use crate::providers::{truncate_chars, UpstreamErrorInfo, MAX_ERROR_TEXT_CHARS};

/// 解析 OpenAI 错误信封；不是信封时把原文（截断后）当作消息。
pub(in crate::providers) fn parse_openai_error(body: &[u8]) -> UpstreamErrorInfo {
    let text_of = |v: &Value| v.as_str().map(str::to_string);
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) if map.get("error").is_some_and(Value::is_object) => {
            let e = &map["error"];
            UpstreamErrorInfo {
                message: text_of(&e["message"]).unwrap_or_default(),
                kind: text_of(&e["type"]),
                code: text_of(&e["code"]),
                param: text_of(&e["param"]),
                ..UpstreamErrorInfo::default()
            }
        }
        _ => UpstreamErrorInfo {
            message: truncate_chars(&String::from_utf8_lossy(body), MAX_ERROR_TEXT_CHARS),
            ..UpstreamErrorInfo::default()
        },
    }
}
