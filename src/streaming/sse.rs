//! 增量 SSE 解析器与写出函数。
//!
//! TCP 分块与事件边界无关：一个 JSON 可能被拆到多次读取里，所以解析器缓存不完整的行，
//! 只在遇到空行时产出事件；行结束符接受 `\n`、`\r\n` 和 `\r`。

use std::borrow::Cow;
use std::ops::{ControlFlow, Range};

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
/// 回车。
const CR: u8 = b'\r';
/// 换行。
const LF: u8 = b'\n';
/// JSON 字符串字面量两端的引号数。
const QUOTES: usize = 2;

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

impl SseEvent {
    /// 按 SSE 格式写出这个事件（有事件名时带 `event:` 行）。
    pub fn write(&self, out: &mut BytesMut) {
        match &self.event {
            Some(name) => write_event(out, name, self.data.as_bytes()),
            None => write_data(out, self.data.as_bytes()),
        }
    }
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
/// 用途：每收到一块上游字节就 [`SseParser::each`]，逐个访问其中完整的事件（转发路径用，不为事件另做分配），
/// 或 [`SseParser::push`] 把事件复制进一个列表（测试与离线处理用）；上游结束时 [`SseParser::finish`]
/// 交出缺少结尾空行的最后一个事件。用 [`SseParser::with_limit`] 创建时，未完成的行或事件超过上限就丢弃缓存
/// 并标记溢出（[`SseParser::overflowed`]），内存不会被一行无尽的数据撑大。
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
    /// 正在组装的事件：事件之间复用它的缓冲，转发每个事件不做分配。
    current: SseEvent,
    /// 换下来的事件名缓冲（下一个带 `event:` 行的事件接着用）。
    spare_name: String,
    has_data: bool,
    /// 自上一个空行以来是否读到过行（为假时下一行是新事件的开头）。
    in_block: bool,
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
            current: SseEvent {
                event: None,
                data: String::new(),
            },
            spare_name: String::new(),
            has_data: false,
            in_block: false,
            limit,
            overflowed: false,
        }
    }

    /// 是否正好在两个事件之间：没有缓存的半行、当前事件还没有任何行，也不欠一个跨块的 `\r\n`。
    /// 此时调用方可以自己跳过本块开头若干个完整的事件，再把余下的字节交给解析器。
    pub fn at_boundary(&self) -> bool {
        self.pending.is_empty() && !self.in_block && !self.skip_lf && !self.overflowed
    }

    /// 是否有行或事件超过了上限（超过后不再产出事件）。
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// 缓存超过上限时丢弃它们并标记溢出。
    fn check_limit(&mut self) {
        if self.pending.len() > self.limit || self.current.data.len() > self.limit {
            self.overflowed = true;
            self.pending = Vec::new();
            self.current.data = String::new();
        }
    }

    /// 喂入一块字节，把其中完整的事件复制追加到 `out`。
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let _: ControlFlow<()> = self.each(chunk, |event, _| {
            out.push(event.clone());
            ControlFlow::Continue(())
        });
    }

    /// 喂入一块字节，按顺序访问其中每个完整的事件；`visit` 返回 `Break` 时停下并返回它（本块余下的字节丢弃）。
    ///
    /// `visit` 的第二个参数是事件在 `chunk` 里的字节范围（从上一个事件的结尾空行之后，到本事件的结尾空行为止）：
    /// 整个事件都在这一块里时才有，透传时可以原样转发这段字节而不重写事件。
    pub fn each<B>(
        &mut self,
        chunk: &[u8],
        mut visit: impl FnMut(&SseEvent, Option<Range<usize>>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        if self.overflowed {
            return ControlFlow::Continue(());
        }
        let mut at = 0;
        if std::mem::take(&mut self.skip_lf) && chunk.first() == Some(&LF) {
            at = 1;
        }
        let mut start = (self.pending.is_empty() && !self.in_block).then_some(at);
        while let Some(len) = memchr::memchr2(CR, LF, &chunk[at..]) {
            let end = at + len;
            let blank = self.take_line(&chunk[at..end]);
            self.check_limit();
            if self.overflowed {
                return ControlFlow::Continue(());
            }
            at = self.line_end(chunk, end);
            if !blank {
                continue;
            }
            let flow = match self.has_data {
                true => visit(&self.current, start.map(|from| from..at)),
                false => ControlFlow::Continue(()),
            };
            self.reset_event();
            if flow.is_break() {
                return flow;
            }
            start = Some(at);
        }
        self.pending.extend_from_slice(&chunk[at..]);
        self.check_limit();
        ControlFlow::Continue(())
    }

    /// 行结束符之后的位置：`\r\n` 算一个结束符；块恰好以 `\r` 结尾时记下，下一块开头的 `\n` 跳过。
    fn line_end(&mut self, chunk: &[u8], end: usize) -> usize {
        let next = end + 1;
        if chunk[end] != CR {
            return next;
        }
        match chunk.get(next) {
            Some(&LF) => next + 1,
            None => {
                self.skip_lf = true;
                next
            }
            Some(_) => next,
        }
    }

    /// 处理一行（之前缓存的半行在前）；返回它是不是空行（事件的结尾）。
    fn take_line(&mut self, rest: &[u8]) -> bool {
        if self.pending.is_empty() {
            return self.process_line(rest);
        }
        self.pending.extend_from_slice(rest);
        let line = std::mem::take(&mut self.pending);
        let blank = self.process_line(&line);
        self.pending = line;
        self.pending.clear();
        blank
    }

    /// 上游结束：把缺少结尾空行的残余事件交出（宽容对待省略最后空行的服务端）。
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        let _: ControlFlow<()> = self.finish_each(|event| {
            out.push(event.clone());
            ControlFlow::Continue(())
        });
    }

    /// 上游结束：访问缺少结尾空行的残余事件（没有时不调用 `visit`）。
    pub fn finish_each<B>(
        &mut self,
        visit: impl FnOnce(&SseEvent) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        if self.overflowed {
            return ControlFlow::Continue(());
        }
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.process_line(&line);
        }
        let flow = if self.has_data {
            visit(&self.current)
        } else {
            ControlFlow::Continue(())
        };
        self.reset_event();
        flow
    }

    /// 处理一个完整的行；返回它是不是空行。
    fn process_line(&mut self, line: &[u8]) -> bool {
        if line.is_empty() {
            return true;
        }
        self.in_block = true;
        if line[0] == b':' {
            return false;
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
                self.current.data.push('\n');
            }
            self.current.data.push_str(&decode(value));
            self.has_data = true;
        } else if field == FIELD_EVENT {
            let mut name = std::mem::take(&mut self.spare_name);
            name.clear();
            name.push_str(&decode(value));
            self.current.event = Some(name);
        }
        false
    }

    /// 一个事件结束（交出或丢弃之后）：清空数据（保留缓冲），事件名的缓冲留作下次用。
    fn reset_event(&mut self) {
        if let Some(name) = self.current.event.take() {
            self.spare_name = name;
        }
        self.current.data.clear();
        self.has_data = false;
        self.in_block = false;
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

/// `bytes` 开头是不是一个单行 `data:` 事件（`data: <负载>\n\n`，只用 `\n` 分隔）：是时返回负载与整个事件的字节数。
///
/// 用途：转发路径在解析器正好位于两个事件之间时（[`SseParser::at_boundary`]）先用它处理最常见的事件，不建事件、不复制；
/// 别的形状（多行、带事件名、回车换行、不完整）返回 `None`，交给解析器。
///
/// ```
/// let (data, len) = chatnexus::streaming::simple_data_event(b"data: {}\n\ndata: x").unwrap(); // 开头的一个事件
/// assert_eq!((data, len), (&b"{}"[..], 10)); // 负载与整个事件的字节数
/// assert!(chatnexus::streaming::simple_data_event(b"data: {}\r\n\r\n").is_none()); // 回车换行交给解析器
/// ```
pub fn simple_data_event(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let rest = bytes.strip_prefix(DATA_PREFIX)?;
    let end = memchr::memchr2(CR, LF, rest)?;
    let blank = rest[end] == LF && rest.get(end + 1) == Some(&LF);
    blank.then(|| (&rest[..end], DATA_PREFIX.len() + end + EVENT_END.len()))
}

/// 把 `text` 写成 JSON 字符串字面量（带引号）：不含需要转义的字符时直接复制字节，否则经 serde_json 转义。
///
/// 用途：翻译器与方言渲染器按字节拼事件时写其中的文本，不必为一段文本建 JSON 值。
///
/// ```
/// let mut out = bytes::BytesMut::new(); // 输出缓冲
/// chatnexus::streaming::write_json_str(&mut out, "你好\n\"世界\""); // 换行与引号要转义
/// assert_eq!(&out[..], "\"你好\\n\\\"世界\\\"\"".as_bytes());
/// ```
pub fn write_json_str(out: &mut BytesMut, text: &str) {
    let plain = text.bytes().all(|b| b >= b' ' && b != b'"' && b != b'\\');
    if plain {
        out.reserve(text.len() + QUOTES);
        out.put_u8(b'"');
        out.put_slice(text.as_bytes());
        out.put_u8(b'"');
        return;
    }
    // 写进内存缓冲、且文本本身是合法的 UTF-8，序列化不会失败
    if serde_json::to_writer(out.writer(), text).is_err() {
        log::warn!("文本序列化为 JSON 字符串失败");
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
    fn 逐个访问_事件的字节范围只在整个事件都在本块时给出() {
        let mut p = SseParser::default();
        let mut seen = Vec::new();
        let visit = |chunk: &[u8], seen: &mut Vec<(String, Option<String>)>, p: &mut SseParser| {
            let _: ControlFlow<()> = p.each(chunk, |event, span| {
                let raw = span.map(|r| String::from_utf8_lossy(&chunk[r]).into_owned());
                seen.push((event.data.clone(), raw));
                ControlFlow::Continue(())
            });
        };
        visit(
            b": ping\n\ndata: a\n\nevent: x\ndata: b\r\n\r\ndata: c",
            &mut seen,
            &mut p,
        );
        visit(b"\n\ndata: d\n\n", &mut seen, &mut p);
        let expected = [
            ("a", Some("data: a\n\n")),
            ("b", Some("event: x\ndata: b\r\n\r\n")),
            ("c", None),
            ("d", Some("data: d\n\n")),
        ];
        let expected: Vec<(String, Option<String>)> = expected
            .iter()
            .map(|(d, r)| (d.to_string(), r.map(str::to_string)))
            .collect();
        assert_eq!(seen, expected, "跨块的事件没有范围，注释块不算进下一个事件");
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
