//! 增量 SSE 解析器与写出函数。
//!
//! TCP 分块与事件边界无关：一个 JSON 可能被拆到多次读取里，所以解析器缓存不完整的行，
//! 只在遇到空行时产出事件；行结束符接受 `\n`、`\r\n` 和 `\r`。

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

/// OpenAI 流的结束标记（`data: [DONE]`）。
pub const DONE_SENTINEL: &str = "[DONE]";
/// `data:` 字段名。
const FIELD_DATA: &[u8] = b"data";
/// `event:` 字段名。
const FIELD_EVENT: &[u8] = b"event";
/// 写出事件时的数据前缀。
const DATA_PREFIX: &[u8] = b"data: ";
/// 具名事件的事件名行前缀。
const EVENT_PREFIX: &[u8] = b"event: ";
/// 事件结束的空行。
const EVENT_END: &[u8] = b"\n\n";

/// 一个完整的 SSE 事件。
///
/// 用途：解析器产出它，`providers` 的流式翻译器逐个消费。
///
/// ```
/// use chatnexus::streaming::{SseEvent, SseParser}; // 解析器与事件
/// let (mut p, mut out) = (SseParser::default(), Vec::new()); // 新的解析器与输出
/// p.push("event: 心跳\ndata: {}\n\n".as_bytes(), &mut out);
/// assert_eq!(out, vec![SseEvent { event: Some("心跳".into()), data: "{}".into() }]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` 行的值（OpenAI 流没有）。
    pub event: Option<String>,
    /// 全部 `data:` 行用 `\n` 连接后的内容。
    pub data: String,
}

#[cfg(test)]
impl SseEvent {
    /// 测试用：一个带 `event:` 名的事件。
    ///
    /// 参数：`name` 为事件名；`data` 为事件的 data。
    pub(crate) fn named(name: &str, data: &str) -> Self {
        SseEvent {
            event: Some(name.to_string()),
            data: data.to_string(),
        }
    }
}

/// 增量 SSE 解析器。
///
/// 用途：每收到一块上游字节就 [`SseParser::push`]，完整事件追加到输出；上游结束时
/// [`SseParser::finish`] 交出缺少结尾空行的最后一个事件。用 [`SseParser::with_limit`] 创建时，
/// 未完成的行或事件超过上限就丢弃缓存并标记溢出（[`SseParser::overflowed`]），内存不会被一行无尽的数据撑大。
///
/// ```
/// let (mut p, mut out) = (chatnexus::streaming::SseParser::default(), Vec::new()); // 新的解析器
/// p.push("data: {\"内容\"".as_bytes(), &mut out);
/// assert!(out.is_empty()); // 事件还不完整
/// p.push(":1}\r\n\r\n".as_bytes(), &mut out); // 以 CRLF 空行结束
/// assert_eq!(out[0].data, "{\"内容\":1}"); // 跨块拼接后完整
/// ```
#[derive(Debug)]
pub struct SseParser {
    /// 尚未构成完整行的字节。
    pending: Vec<u8>,
    /// 上一块以 `\r` 结尾：下一块开头的 `\n` 属于同一个行结束符。
    skip_lf: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    /// 未完成的行与事件数据各自的字节上限。
    limit: usize,
    /// 是否超过过上限（之后的输入一律丢弃）。
    overflowed: bool,
}

impl Default for SseParser {
    /// 不设上限的解析器（测试与基准用；网关转发上游流时用 [`SseParser::with_limit`]）。
    fn default() -> Self {
        SseParser::with_limit(usize::MAX)
    }
}

impl SseParser {
    /// 创建解析器：未完成的行或一个事件的数据超过 `limit` 字节即溢出。
    pub fn with_limit(limit: usize) -> Self {
        SseParser {
            pending: Vec::new(),
            skip_lf: false,
            event: None,
            data: String::new(),
            has_data: false,
            limit,
            overflowed: false,
        }
    }

    /// 是否有行或事件超过了上限（超过后不再产出事件）。
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// 缓存超过上限时丢弃它们并标记溢出。
    fn check_limit(&mut self) {
        if self.pending.len() > self.limit || self.data.len() > self.limit {
            self.overflowed = true;
            self.pending = Vec::new();
            self.data = String::new();
        }
    }

    /// 喂入一块字节，把其中完整的事件追加到 `out`。
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        if self.overflowed {
            return;
        }
        let mut rest = chunk;
        if self.skip_lf {
            self.skip_lf = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(pos) = memchr::memchr2(b'\r', b'\n', rest) {
            let line_end = rest[pos];
            if self.pending.is_empty() {
                self.process_line(&rest[..pos], out);
            } else {
                self.pending.extend_from_slice(&rest[..pos]);
                let line = std::mem::take(&mut self.pending);
                self.process_line(&line, out);
            }
            self.check_limit();
            if self.overflowed {
                return;
            }
            rest = &rest[pos + 1..];
            if line_end == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.skip_lf = true,
                    Some(_) => {}
                }
            }
        }
        self.pending.extend_from_slice(rest);
        self.check_limit();
    }

    /// 上游结束：把缺少结尾空行的残余事件交出（宽容对待省略最后空行的服务端）。
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if self.overflowed {
            return;
        }
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.process_line(&line, out);
        }
        self.dispatch(out);
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => (
                &line[..i],
                line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..]),
            ),
            None => (line, &b""[..]),
        };
        if field == FIELD_DATA {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(&decode(value));
            self.has_data = true;
        } else if field == FIELD_EVENT {
            self.event = Some(decode(value).into_owned());
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.event = None;
        self.has_data = false;
    }
}

/// 按 UTF-8 解码一行的值；合法时直接借用，只有含非法字节时才替换为 U+FFFD。
///
/// 标准库的合法性检查按机器字批量跳过 ASCII，比逐字符的有损解码快得多，而流里几乎总是合法 UTF-8
/// （剖析中有损解码曾占流式每块开销的五分之一）。
fn decode(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// 写出一个 `data: <payload>\n\n` 事件。
pub fn write_data(out: &mut BytesMut, payload: &[u8]) {
    out.reserve(DATA_PREFIX.len() + payload.len() + EVENT_END.len());
    out.put_slice(DATA_PREFIX);
    out.put_slice(payload);
    out.put_slice(EVENT_END);
}

/// 写出一个 `data: <payload>\n\n` 事件，负载由 `payload` 直接写进缓冲（免去中间拷贝）。
///
/// 参数 `len_hint`：负载的预计字节数，整个事件的空间一次预留好（逐段追加会让缓冲反复扩容）。
///
/// 返回：`payload` 的返回值。
pub fn write_data_with<R>(
    out: &mut BytesMut,
    len_hint: usize,
    payload: impl FnOnce(&mut BytesMut) -> R,
) -> R {
    out.reserve(DATA_PREFIX.len() + len_hint + EVENT_END.len());
    out.put_slice(DATA_PREFIX);
    let result = payload(out);
    out.put_slice(EVENT_END);
    result
}

/// 写出一个具名事件 `event: <name>\ndata: <payload>\n\n`（Anthropic 流的每个事件都带事件名，
/// anthropic SDK 会跳过没有 `event:` 行的事件）。
pub fn write_event(out: &mut BytesMut, name: &str, payload: &[u8]) {
    out.reserve(
        EVENT_PREFIX.len() + name.len() + 1 + DATA_PREFIX.len() + payload.len() + EVENT_END.len(),
    );
    out.put_slice(EVENT_PREFIX);
    out.put_slice(name.as_bytes());
    out.put_u8(b'\n');
    write_data(out, payload);
}

/// 写出一个具名事件，负载由 `payload` 直接写进缓冲（免去中间拷贝与 JSON 树）。
///
/// 参数 `len_hint`：负载的预计字节数，整个事件的空间一次预留好。
pub fn write_event_with(
    out: &mut BytesMut,
    name: &str,
    len_hint: usize,
    payload: impl FnOnce(&mut BytesMut),
) {
    out.reserve(
        EVENT_PREFIX.len() + name.len() + 1 + DATA_PREFIX.len() + len_hint + EVENT_END.len(),
    );
    out.put_slice(EVENT_PREFIX);
    out.put_slice(name.as_bytes());
    out.put_u8(b'\n');
    write_data_with(out, len_hint, payload);
}

/// 写出 OpenAI 流的结束事件 `data: [DONE]`。
pub fn write_done(out: &mut BytesMut) {
    write_data(out, DONE_SENTINEL.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 解析(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out);
        }
        p.finish(&mut out);
        out
    }

    fn 数据(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn 解析_三种行结束符都接受() {
        let text = b"data: \xe4\xbd\xa0\n\ndata: b\r\n\r\ndata: c\r\rdata: [DONE]\n\n";
        assert_eq!(数据(&解析(&[text])), vec!["你", "b", "c", "[DONE]"]);
    }

    #[test]
    fn 解析_任意位置切分_结果不变() {
        let text = "event: message_start\r\ndata: {\"内容\":\"你好\"}\r\n\r\n: 保活注释\n\ndata: 第一行\ndata: 第二行\n\n";
        let whole = 解析(&[text.as_bytes()]);
        assert_eq!(whole.len(), 2, "注释不应产生事件");
        for cut in 0..text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            assert_eq!(解析(&[a, b]), whole, "在第 {cut} 字节处切分后结果不同");
        }
        assert_eq!(whole[1].data, "第一行\n第二行");
        assert_eq!(whole[0].event.as_deref(), Some("message_start"));
    }

    #[test]
    fn 解析_逐字节喂入_回车换行跨块() {
        let text = b"data: x\r\n\r\ndata: y\r\n\r\n";
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(数据(&解析(&chunks)), vec!["x", "y"]);
    }

    #[test]
    fn 解析_非法_utf8_替换为替代字符且合法中文不受影响() {
        let events = 解析(&[b"event: \xff\n", b"data: \xe4\xbd\xa0\xff\xe5\xa5\xbd\n\n"]);
        assert_eq!(数据(&events), vec!["你\u{fffd}好"]);
        assert_eq!(events[0].event.as_deref(), Some("\u{fffd}"));
    }

    #[test]
    fn 解析_缺少结尾空行_结束时交出() {
        assert_eq!(数据(&解析(&[b"data: last"])), vec!["last"]);
    }

    #[test]
    fn 写出_数据与结束事件格式正确() {
        let mut out = BytesMut::new();
        write_data(&mut out, "{\"a\":1}".as_bytes());
        write_done(&mut out);
        assert_eq!(&out[..], b"data: {\"a\":1}\n\ndata: [DONE]\n\n");
    }

    #[test]
    fn 上限_无尽的一行与过大的事件都溢出_缓存被丢弃() {
        let mut out = Vec::new();
        let mut line = SseParser::with_limit(16);
        line.push(b"data: ", &mut out);
        line.push("没有换行的很长很长的一行".as_bytes(), &mut out);
        assert!(line.overflowed(), "一行超过上限");
        assert!(line.pending.capacity() == 0, "缓存已释放");
        line.push(b"\n\ndata: {}\n\n", &mut out);
        line.finish(&mut out);
        assert!(out.is_empty(), "溢出后不再产出事件");

        let mut event = SseParser::with_limit(16);
        event.push(b"data: 0123456789\ndata: 0123456789\n", &mut out);
        assert!(event.overflowed(), "多行 data 拼起来超过上限");

        let mut fine = SseParser::with_limit(16);
        fine.push(b"data: {\"a\":1}\n\n", &mut out);
        assert!(!fine.overflowed() && out.len() == 1, "上限以内照常解析");
    }
}
