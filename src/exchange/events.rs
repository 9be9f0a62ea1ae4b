//! 把一块上游字节交给翻译器：解析出其中的事件逐个翻译，得到这一块要写给客户端的字节。
//!
//! 翻译器说事件不必改（[`StreamStatus::Forward`]）时，整块都在本块里的事件直接转发上游的原始字节：
//! 相邻的这种事件连成一段，用 `Bytes::slice` 交出（只加引用计数、不复制），同协议透传的流因此既不重写
//! 也不复制事件；一块里夹着改写或丢掉的事件时，才把各段复制进输出缓冲、保持原来的顺序。

use std::ops::{ControlFlow, Range};

use bytes::{Bytes, BytesMut};

use crate::error::ApiError;
use crate::providers::{StreamStatus, StreamTranslator};
use crate::streaming::{simple_data_event, SseParser};

/// 一块上游字节翻译的结果。
pub(super) struct Translated {
    /// 翻译器的结论：还有后续、已正常结束，或出错（出错前已翻译好的内容仍在 `data` 里）。
    pub(super) status: Result<StreamStatus, ApiError>,
    /// 要写给客户端的字节（可能为空）。
    pub(super) data: Bytes,
    /// 本块里解析出的事件数（预算的输出上限按它估算）。
    pub(super) events: u64,
}

/// 一个事件处理完之后：继续，或以这个结论停下（结束或出错）。
type Step = ControlFlow<Result<StreamStatus, ApiError>>;

/// 翻译一块上游字节：开头的单行 `data:` 事件先走翻译器的快速路径（[`StreamTranslator::relay_data`]），
/// 余下的（或翻译器不接的）交给解析器。
///
/// 参数：翻译器、这个流的解析器、上游的这一块、输出缓冲（翻译好的事件写在这里，调用之间复用它的容量）、
/// 翻译器是不是透传的旁路观察者（[`StreamTranslator::forwards_raw`]：它只看不写，整块原样转发）。
pub(super) fn translate_chunk(
    translator: &mut dyn StreamTranslator,
    parser: &mut SseParser,
    (chunk, raw): (Bytes, bool),
    out: &mut BytesMut,
) -> Translated {
    let mut verbatim = Verbatim {
        chunk: &chunk,
        range: None,
    };
    let mut events = 0;
    let (mut flow, from) = if parser.at_boundary() {
        relay_simple(translator, &chunk, out, &mut verbatim, &mut events)
    } else {
        (ControlFlow::Continue(()), 0)
    };
    if flow.is_continue() && from < chunk.len() {
        flow = parser.each(&chunk[from..], |event, span| {
            events += 1;
            let before = out.len();
            let result = translator.relay_event(event, out);
            apply(
                result,
                (&mut verbatim, out, before),
                |verbatim, out| match span {
                    Some(span) => verbatim.forward(span.start + from..span.end + from, out),
                    None => {
                        verbatim.spill(out);
                        event.write(out);
                    }
                },
            )
        });
    }
    let status = match flow {
        ControlFlow::Break(status) => status,
        ControlFlow::Continue(()) => Ok(StreamStatus::Continue),
    };
    let data = match verbatim.range {
        _ if raw => chunk,
        Some(range) if range.len() == chunk.len() => chunk,
        Some(range) => chunk.slice(range),
        None => out.split().freeze(),
    };
    Translated {
        status,
        data,
        events,
    }
}

/// 快速路径：从块开头起逐个处理单行 `data:` 事件，不建事件、不复制；遇到别的形状或翻译器不接时停下。
///
/// 返回：停下时的结论与位置（余下的字节从这里起交给解析器）。
fn relay_simple(
    translator: &mut dyn StreamTranslator,
    chunk: &Bytes,
    out: &mut BytesMut,
    verbatim: &mut Verbatim<'_>,
    events: &mut u64,
) -> (Step, usize) {
    let mut at = 0;
    while let Some((data, len)) = simple_data_event(&chunk[at..]) {
        let before = out.len();
        let Some(result) = translator.relay_data(data, out) else {
            break;
        };
        *events += 1;
        let span = at..at + len;
        at += len;
        let flow = apply(result, (verbatim, out, before), |verbatim, out| {
            verbatim.forward(span, out)
        });
        if flow.is_break() {
            return (flow, at);
        }
    }
    (ControlFlow::Continue(()), at)
}

/// 按翻译器对一个事件的结论更新输出：不必改时交给 `forward`，写了东西时保持与原样转发的一段的先后；
/// 结束或出错时停下。
fn apply(
    result: Result<StreamStatus, ApiError>,
    (verbatim, out, before): (&mut Verbatim<'_>, &mut BytesMut, usize),
    forward: impl FnOnce(&mut Verbatim<'_>, &mut BytesMut),
) -> Step {
    match result {
        Ok(StreamStatus::Forward) => {
            forward(verbatim, out);
            ControlFlow::Continue(())
        }
        Ok(StreamStatus::Continue) => {
            verbatim.written(out, before);
            ControlFlow::Continue(())
        }
        other => {
            verbatim.written(out, before);
            ControlFlow::Break(other)
        }
    }
}

/// 上游已结束：翻译缺少结尾空行的残余事件，再让翻译器判断是否被截断；正常时状态为 `Done`。
pub(super) fn translate_eof(
    translator: &mut dyn StreamTranslator,
    parser: &mut SseParser,
    out: &mut BytesMut,
) -> Translated {
    // 残余事件不完整地在任何一块里：没有可以原样转发的字节，不必改的按解析结果写出
    let nothing = Bytes::new();
    let mut verbatim = Verbatim {
        chunk: &nothing,
        range: None,
    };
    let mut events = 0;
    let flow = parser.finish_each(|event| {
        events += 1;
        let before = out.len();
        let result = translator.relay_event(event, out);
        apply(result, (&mut verbatim, out, before), |_, out| {
            event.write(out)
        })
    });
    let status = match flow {
        ControlFlow::Break(status) => status,
        ControlFlow::Continue(()) => translator.on_eof(out).map(|()| StreamStatus::Done),
    };
    Translated {
        status,
        data: out.split().freeze(),
        events,
    }
}

/// 本块里原样转发的一段上游字节：只在输出缓冲为空时存在（此前要写的内容都在这一段里），
/// 所以交出时不必复制。
struct Verbatim<'a> {
    chunk: &'a Bytes,
    range: Option<Range<usize>>,
}

impl Verbatim<'_> {
    /// 一个不必改、整个在本块里的事件（`span` 为它在块里的范围）：紧接着这一段（且还没有别的输出）时延长这一段，
    /// 否则按顺序复制进 `out`。
    fn forward(&mut self, span: Range<usize>, out: &mut BytesMut) {
        if out.is_empty() && self.joins(&span) {
            let start = self.range.as_ref().map_or(span.start, |r| r.start);
            self.range = Some(start..span.end);
        } else {
            self.spill(out);
            out.extend_from_slice(&self.chunk[span]);
        }
    }

    /// 事件能否接在这一段后面（还没有这一段时总能开始一段）。
    fn joins(&self, span: &Range<usize>) -> bool {
        self.range.as_ref().is_none_or(|r| r.end == span.start)
    }

    /// 翻译器刚往 `out` 写了东西（从 `before` 起）：有这一段时它在前面，先挪进 `out`。
    fn written(&mut self, out: &mut BytesMut, before: usize) {
        if out.len() == before || self.range.is_none() {
            return;
        }
        let fresh = out.split();
        self.spill(out);
        out.extend_from_slice(&fresh);
    }

    /// 把这一段复制进 `out`（之后的输出接在它后面）。
    fn spill(&mut self, out: &mut BytesMut) {
        if let Some(range) = self.range.take() {
            out.extend_from_slice(&self.chunk[range]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::providers::{filter_for, TranslateCtx};

    /// 客户端模型名为 `m` 的 OpenAI 透传翻译器（客户端没要求用量块）。
    fn 透传() -> Box<dyn StreamTranslator> {
        filter_for(ProviderKind::OpenAi).stream_translator(TranslateCtx {
            model: "m".into(),
            include_usage: false,
            created: 0,
        })
    }

    const 内容块: &str =
        "data: {\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"你好\"}}]}\n\n";
    const 用量块: &str =
        "data: {\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n";
    const 结束: &str = "data: [DONE]\n\n";

    /// 按切分点把整个流分块喂入，返回客户端收到的全部文本与最后的状态。
    fn 逐块翻译(text: &str, cuts: &[usize]) -> (String, Result<StreamStatus, ApiError>) {
        let (mut translator, mut parser) = (透传(), SseParser::default());
        let (mut out, mut got) = (BytesMut::new(), Vec::new());
        let mut from = 0;
        for &cut in cuts.iter().chain([text.len()].iter()) {
            let chunk = Bytes::copy_from_slice(&text.as_bytes()[from..cut]);
            from = cut;
            let step = translate_chunk(translator.as_mut(), &mut parser, (chunk, false), &mut out);
            got.extend_from_slice(&step.data);
            if step.status != Ok(StreamStatus::Continue) {
                return (String::from_utf8(got).expect("UTF-8"), step.status);
            }
        }
        let step = translate_eof(translator.as_mut(), &mut parser, &mut out);
        got.extend_from_slice(&step.data);
        (String::from_utf8(got).expect("UTF-8"), step.status)
    }

    /// 把一整块交给新的透传翻译器，返回结果与翻译器（看它记下的用量）。
    fn 一块翻译(chunk: &Bytes) -> (Translated, Box<dyn StreamTranslator>) {
        let (mut translator, mut parser) = (透传(), SseParser::default());
        let step = translate_chunk(
            translator.as_mut(),
            &mut parser,
            (chunk.clone(), false),
            &mut BytesMut::new(),
        );
        (step, translator)
    }

    #[test]
    fn 透传_整块都不必改时原样交出同一块内存() {
        let chunk = Bytes::from(format!("{内容块}{内容块}"));
        let (step, _) = 一块翻译(&chunk);
        assert_eq!(step.status, Ok(StreamStatus::Continue));
        assert_eq!(step.events, 2, "两个事件");
        assert_eq!(step.data, chunk, "内容不变");
        assert_eq!(step.data.as_ptr(), chunk.as_ptr(), "没有复制：同一块内存");
    }

    #[test]
    fn 透传_夹着要丢掉的用量块_其余事件按顺序写出且用量照记() {
        let chunk = Bytes::from(format!("{内容块}{用量块}{结束}"));
        let (step, translator) = 一块翻译(&chunk);
        assert_eq!(step.status, Ok(StreamStatus::Done));
        assert_eq!(
            step.data,
            format!("{内容块}{结束}").as_bytes(),
            "用量块被丢掉"
        );
        let usage = translator.usage().expect("记下了用量");
        assert_eq!((usage.prompt, usage.completion), (3, 2));
    }

    #[test]
    fn 透传_任意位置切分_客户端收到的事件不变() {
        let text = format!("{内容块}: 保活注释\n\n{内容块}{用量块}{结束}");
        let expected = format!("{内容块}{内容块}{结束}");
        for cut in 1..text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let (got, status) = 逐块翻译(&text, &[cut]);
            assert_eq!(status, Ok(StreamStatus::Done), "在第 {cut} 字节处切分");
            assert_eq!(got, expected, "在第 {cut} 字节处切分后客户端收到的不同");
        }
    }

    #[test]
    fn 回车换行分隔的流_走解析路径_客户端收到的事件相同() {
        let crlf = |text: &str| text.replace("\n", "\r\n");
        let text = crlf(&format!("{内容块}{用量块}{内容块}{结束}"));
        for cut in [0, 7, text.len() / 2, text.len() - 3] {
            let cuts: Vec<usize> = [cut].into_iter().filter(|&c| c > 0).collect();
            let (got, status) = 逐块翻译(&text, &cuts);
            assert_eq!(status, Ok(StreamStatus::Done), "在第 {cut} 字节处切分");
            let (mut parser, mut events) = (SseParser::default(), Vec::new());
            parser.push(got.as_bytes(), &mut events);
            let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
            let 内容 = 内容块.trim_start_matches("data: ").trim_end();
            assert_eq!(data, vec![内容, 内容, "[DONE]"], "在第 {cut} 字节处切分");
        }
    }

    #[test]
    fn 上游的模型名不同_改写后写出_其余事件仍原样() {
        let other = 内容块.replace("\"m\"", "\"gpt-4o-2024-08-06\"");
        let (got, status) = 逐块翻译(&format!("{other}{内容块}{结束}"), &[]);
        assert_eq!(status, Ok(StreamStatus::Done));
        assert_eq!(
            got,
            format!("{内容块}{内容块}{结束}"),
            "模型名换成客户端的名字"
        );
    }

    #[test]
    fn 没有结束标记就断开_报告截断且已到的事件照常写出() {
        let (got, status) = 逐块翻译(内容块, &[]);
        assert_eq!(got, 内容块);
        let e = status.expect_err("没有 [DONE] 是截断");
        assert_eq!(e.envelope_code(), "upstream_stream_truncated");
    }
}
