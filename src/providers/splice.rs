//! 只改请求体顶层的少数几处：在原始字节里找到顶层 `model` 的值并替换、在对象开头追加 `stream_options`，
//! 其余字节（空白、字段顺序、数字写法、网关不认识的字段）一个不改，也不必把可能数 MiB 的请求重新序列化。
//!
//! 解析时已拒绝重复的顶层键，所以顶层的 `model` 至多一个。键名带转义（如 `"mod\u0065l"`）时找不到，
//! 由调用方退回按对象序列化。

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::streaming::write_json_str;

/// 顶层键名 `model`（带引号）。
const MODEL_KEY: &[u8] = b"\"model\"";
/// 要求流末尾给出用量的顶层成员（追加在对象开头）。
const USAGE_MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;
/// 字符串的引号。
const QUOTE: u8 = 0x22;
/// 字符串里的转义符。
const BACKSLASH: u8 = 0x5c;
/// 键与值之间的冒号。
const COLON: u8 = 0x3a;
/// 对象的开始。
const OBJECT_OPEN: u8 = 0x7b;
/// 对象的结束。
const OBJECT_CLOSE: u8 = 0x7d;
/// 数组的开始。
const ARRAY_OPEN: u8 = 0x5b;
/// 数组的结束。
const ARRAY_CLOSE: u8 = 0x5d;
/// 成员之间的逗号。
const COMMA: u8 = 0x2c;

/// 把原始请求体顶层 `model` 的字符串值换成 `model`；找不到顶层的字符串 `model` 时返回 `None`。
///
/// 参数：客户端的原始请求体（已确认是 JSON 对象）、新的模型名。返回：替换后的请求体。
pub fn splice_model(raw: &[u8], model: &str) -> Option<Bytes> {
    splice_request(raw, Some(model), false)
}

/// 在原始请求体上做两处可选的改写：`model` 为 `Some` 时换顶层 `model` 的字符串值，`add_usage` 时在对象开头追加
/// `"stream_options":{"include_usage":true}`（调用方保证原请求没有顶层 `stream_options`）。
///
/// 参数：客户端的原始请求体（已确认是 JSON 对象）、新的模型名、是否追加用量选项。
/// 返回：改写后的请求体；不是以对象开头、或要换模型却找不到顶层的字符串 `model` 时为 `None`。
///
/// ```
/// let raw = r#"{ "model": "别名", "stream": true }"#; // 客户端原文
/// let out = chatnexus::providers::splice_request(raw.as_bytes(), Some("gpt-4o"), true).unwrap(); // 换模型并要用量
/// assert_eq!(&out[..], br#"{"stream_options":{"include_usage":true}, "model": "gpt-4o", "stream": true }"#); // 其余字节不变
/// ```
pub fn splice_request(raw: &[u8], model: Option<&str>, add_usage: bool) -> Option<Bytes> {
    let open = skip_whitespace(raw, 0);
    if raw.get(open) != Some(&OBJECT_OPEN) {
        return None;
    }
    let replace = match model {
        Some(model) => Some((model_value_span(raw)?, model)),
        None => None,
    };
    // 空对象追加成员时后面不能跟逗号
    let empty = raw.get(skip_whitespace(raw, open + 1)) == Some(&OBJECT_CLOSE);
    let extra = model.map_or(0, str::len) + USAGE_MEMBER.len() + 1;
    let mut out = BytesMut::with_capacity(raw.len() + extra);
    out.put_slice(&raw[..=open]);
    if add_usage {
        out.put_slice(USAGE_MEMBER);
        if !empty {
            out.put_u8(COMMA);
        }
    }
    match replace {
        Some(((start, end), model)) => {
            out.put_slice(&raw[open + 1..start]);
            write_json_str(&mut out, model);
            out.put_slice(&raw[end..]);
        }
        None => out.put_slice(&raw[open + 1..]),
    }
    Some(out.freeze())
}

/// 透传的请求体：模型名相同时原样（零拷贝）；否则在原始字节里替换，找不到时退回按对象序列化
/// （字段顺序仍保持，空白与数字写法按 serde_json 的格式）。
///
/// 参数：`body` 给出请求对象，只在退回按对象序列化时才调用（向量请求的对象是用到时才解析的）。
/// 错误：序列化失败时返回 500。
pub fn body_with_model<'a>(
    raw: &Bytes,
    body: impl FnOnce() -> &'a Map<String, Value>,
    current: &str,
    model: &str,
) -> Result<Bytes, ApiError> {
    if current == model {
        return Ok(raw.clone());
    }
    if let Some(spliced) = splice_model(raw, model) {
        return Ok(spliced);
    }
    let mut copy = body().clone();
    copy.insert("model".into(), Value::String(model.to_string()));
    serde_json::to_vec(&copy)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("序列化上游请求失败：{e}")))
}

/// 顶层 `model` 的字符串值（含引号）在原始字节里的起止位置。
///
/// 逐字节扫描，记录嵌套深度与是否在字符串里：只在深度 1、且字符串处在键的位置时比对键名。
fn model_value_span(raw: &[u8]) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut i = 0;
    // 深度 1 的下一个字符串是键（对象开头或逗号之后）
    let mut expect_key = false;
    while i < raw.len() {
        match raw[i] {
            QUOTE => {
                let end = string_end(raw, i)?;
                if depth == 1 && expect_key && &raw[i..end] == MODEL_KEY {
                    return string_value_after_colon(raw, end);
                }
                expect_key = false;
                i = end;
                continue;
            }
            OBJECT_OPEN | ARRAY_OPEN => {
                depth += 1;
                expect_key = depth == 1 && raw[i] == OBJECT_OPEN;
            }
            OBJECT_CLOSE | ARRAY_CLOSE => depth = depth.saturating_sub(1),
            COMMA => expect_key = depth == 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// 从 `start`（开引号）起的字符串的结束位置（闭引号之后）；跳过转义字符。
fn string_end(raw: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < raw.len() {
        match raw[i] {
            BACKSLASH => i += 2,
            QUOTE => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// 键之后（允许空白）的冒号后面紧跟的字符串值的起止位置；值不是字符串时为 `None`。
fn string_value_after_colon(raw: &[u8], mut i: usize) -> Option<(usize, usize)> {
    i = skip_whitespace(raw, i);
    if raw.get(i) != Some(&COLON) {
        return None;
    }
    i = skip_whitespace(raw, i + 1);
    if raw.get(i) != Some(&QUOTE) {
        return None;
    }
    Some((i, string_end(raw, i)?))
}

/// 跳过 JSON 空白。
fn skip_whitespace(raw: &[u8], mut i: usize) -> usize {
    while raw.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 替换(raw: &str, model: &str) -> Option<String> {
        splice_model(raw.as_bytes(), model).map(|b| String::from_utf8(b.to_vec()).expect("UTF-8"))
    }

    #[test]
    fn 替换_只改顶层模型名_其余字节不变() {
        let raw = "{ \"metadata\": {\"model\": \"内层\"},\n  \"model\" :  \"客户端名\", \"temperature\": 1.0e0 }";
        assert_eq!(
            替换(raw, "claude-上游").as_deref(),
            Some("{ \"metadata\": {\"model\": \"内层\"},\n  \"model\" :  \"claude-上游\", \"temperature\": 1.0e0 }")
        );
    }

    #[test]
    fn 替换_值里的引号与转义不干扰扫描() {
        let raw = r#"{"system":"说 \"model\": \"x\"","messages":[{"content":"a,\"model\":\"b\""}],"model":"甲"}"#;
        let out = 替换(raw, "乙").expect("应找到顶层 model");
        assert!(out.ends_with(r#""model":"乙"}"#), "{out}");
        assert!(
            out.starts_with(r#"{"system":"说 \"model\": \"x\"""#),
            "{out}"
        );
    }

    #[test]
    fn 替换_新名字按_json_转义() {
        assert_eq!(
            替换(r#"{"model":"a"}"#, "带\"引号").as_deref(),
            Some(r#"{"model":"带\"引号"}"#)
        );
    }

    fn 改写(raw: &str, model: Option<&str>) -> Option<String> {
        splice_request(raw.as_bytes(), model, true)
            .map(|b| String::from_utf8(b.to_vec()).expect("UTF-8"))
    }

    #[test]
    fn 追加用量选项_其余字节不变_结果仍是同一个对象() {
        let raw = "  {\n \"model\": \"甲\", \"temperature\": 1.0e0, \"messages\": [{\"content\": \"你好\"}] }";
        let out = 改写(raw, None).expect("应能追加");
        assert_eq!(
            out,
            "  {\"stream_options\":{\"include_usage\":true},\n \"model\": \"甲\", \"temperature\": 1.0e0, \"messages\": [{\"content\": \"你好\"}] }"
        );
        let parsed: Value = serde_json::from_str(&out).expect("改写后仍是合法 JSON");
        assert_eq!(parsed["stream_options"]["include_usage"], true);
        assert_eq!(parsed["messages"][0]["content"], "你好");
    }

    #[test]
    fn 追加用量选项_空对象不留逗号_可同时换模型() {
        assert_eq!(
            改写("{ }", None).as_deref(),
            Some("{\"stream_options\":{\"include_usage\":true} }")
        );
        let out = 改写(r#"{"messages":[],"model":"别名"}"#, Some("上游")).expect("应能改写");
        assert_eq!(
            out,
            r#"{"stream_options":{"include_usage":true},"messages":[],"model":"上游"}"#
        );
        assert_eq!(改写("[1]", None), None, "不是对象时不改写");
        assert_eq!(
            改写(r#"{"messages":[]}"#, Some("上游")),
            None,
            "要换模型却没有 model 时退回"
        );
    }

    #[test]
    fn 替换_找不到时返回_none() {
        assert_eq!(替换(r#"{"mod\u0065l":"a"}"#, "b"), None);
        assert_eq!(替换(r#"{"model":5}"#, "b"), None);
        assert_eq!(替换(r#"{"messages":[]}"#, "b"), None);
    }
}
