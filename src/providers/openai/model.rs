//! 响应里的 `model` 统一为客户端请求的名字：只在字节上找到那个值并替换，不解析、不重新序列化整个 JSON
//! （透传的每个流事件都要经过这里）。上游自己报告的名字（如带日期的 `gpt-4o-mini-2024-07-18`）因此不进响应体；
//! 发给上游的模型名由响应头 `x-chatnexus-upstream-model` 给出。

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memmem::Finder;
use once_cell::sync::Lazy;

use crate::streaming::write_json_str;

/// JSON 字符串两端的引号数。
const QUOTES: usize = 2;
/// 要找的键（带引号）。
const MODEL_KEY: &[u8] = b"\"model\"";
/// 预先构造的子串查找器（SIMD）。
static MODEL_FINDER: Lazy<Finder<'static>> = Lazy::new(|| Finder::new(MODEL_KEY));

/// 客户端可见的模型名。
///
/// 用途：OpenAI 协议的完整响应与每个流式块都用它替换 `model` 的值；比较直接用原始字节，
/// 只有真要替换时才按 JSON 转义写出（每个请求不为它另做分配）。
#[derive(Debug, Clone)]
pub(super) struct ModelName<'a> {
    model: &'a str,
    /// 猜测的 `"model"` 键位置（上一块里的位置）：同一个流的块结构相同，猜中时不必搜索。
    hint: usize,
}

impl<'a> ModelName<'a> {
    /// 由客户端请求的模型名构造。
    pub(super) fn new(model: &'a str) -> Self {
        ModelName { model, hint: 0 }
    }

    /// 由客户端请求的模型名与上一块里 `"model"` 键的位置构造。
    pub(super) fn with_hint(model: &'a str, hint: usize) -> Self {
        ModelName { model, hint }
    }

    /// `json` 里第一个 `"model"` 键的位置（先看猜测的位置）。
    fn key_at(&self, json: &[u8]) -> Option<usize> {
        let guessed = json.get(self.hint..self.hint + MODEL_KEY.len()) == Some(MODEL_KEY);
        if guessed {
            return Some(self.hint);
        }
        MODEL_FINDER.find(json)
    }

    /// 把 `json` 写进 `out`，`span`（[`ModelName::locate`] 给出的值的范围）换成客户端的名字。
    pub(super) fn replace(&self, json: &[u8], span: Range<usize>, out: &mut BytesMut) {
        out.put_slice(&json[..span.start - 1]);
        write_json_str(out, self.model);
        out.put_slice(&json[span.end + 1..]);
    }

    /// 改写后的预计长度（替换时最多多出客户端名字的长度与转义）。
    pub(super) fn len_hint(&self, json: &[u8]) -> usize {
        json.len() + self.model.len() + QUOTES
    }

    /// 完整响应体的改写：不需要替换时原样返回同一块内存（不复制）。
    pub(super) fn rewrite(&self, body: Bytes) -> Bytes {
        let (_, Some(span)) = self.locate(&body) else {
            return body;
        };
        let mut out = BytesMut::with_capacity(self.len_hint(&body));
        self.replace(&body, span, &mut out);
        out.freeze()
    }

    /// `"model"` 键的位置，以及需要替换时值的范围（有 `model` 且与客户端的名字不同）。
    ///
    /// 先试“值正好是客户端的名字”（最常见：逐字节比一次），不是时才扫描字符串找结尾的引号。
    pub(super) fn locate(&self, json: &[u8]) -> (Option<usize>, Option<Range<usize>>) {
        let Some(key) = self.key_at(json) else {
            return (None, None);
        };
        let Some(start) = value_start(json, key) else {
            return (Some(key), None);
        };
        let name = self.model.as_bytes();
        let end = start + name.len();
        if json.get(start..end) == Some(name) && json.get(end) == Some(&b'"') {
            return (Some(key), None);
        }
        let span = string_end(json, start).map(|end| start..end);
        (Some(key), span)
    }
}

/// 位于 `key` 的 `"model"` 键的字符串值的起点（开头引号之后）；值不是字符串时为 `None`。
///
/// 字符串值里的引号必然被转义，所以原文中的 `"model"` 只可能是键；OpenAI 与兼容服务把顶层的 `model`
/// 放在 `choices` 之前，第一个就是它。
fn value_start(json: &[u8], key: usize) -> Option<usize> {
    let colon = skip_spaces(json, key + MODEL_KEY.len());
    (json.get(colon) == Some(&b':')).then_some(())?;
    let quote = skip_spaces(json, colon + 1);
    (json.get(quote) == Some(&b'"')).then_some(quote + 1)
}

/// 从 `start` 起的简单字符串（不含转义）的结尾引号位置；遇到转义时为 `None`（原样保留）。
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let len = memchr::memchr2(b'"', b'\\', &json[start..])?;
    (json[start + len] == b'"').then_some(start + len)
}

/// 跳过 JSON 空白，返回下一个非空白字节的位置。
fn skip_spaces(json: &[u8], mut at: usize) -> usize {
    while json.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 改写(json: &str, model: &str) -> String {
        let body = Bytes::copy_from_slice(json.as_bytes());
        let out = ModelName::new(model).rewrite(body);
        String::from_utf8(out.to_vec()).expect("UTF-8")
    }

    #[test]
    fn 模型名_换成客户端请求的名字_其余字节不变() {
        let chunk = r#"{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"delta":{"content":"\"model\":\"假的\""}}]}"#;
        let got = 改写(chunk, "我的模型");
        assert_eq!(
            got,
            chunk.replace("gpt-4o-mini-2024-07-18", "我的模型"),
            "只换顶层的值"
        );
        assert_eq!(
            改写(r#"{"model" : "x"}"#, "别名"),
            r#"{"model" : "别名"}"#,
            "容许空白"
        );
        assert_eq!(
            改写(r#"{"model":"a\"b"}"#, "别名"),
            r#"{"model":"a\"b"}"#,
            "含转义时原样保留"
        );
        assert_eq!(
            改写(r#"{"id":1}"#, "别名"),
            r#"{"id":1}"#,
            "没有 model 时原样保留"
        );
        assert_eq!(
            改写(r#"{"model":"x"}"#, "引\"号"),
            r#"{"model":"引\"号"}"#,
            "客户端的名字按 JSON 转义"
        );
    }
}
