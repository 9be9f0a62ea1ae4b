//! 经枢纽翻译时把枢纽回复渲染成客户端的方言：Chat 客户端直接收到枢纽格式，
//! Anthropic Messages 与 OpenAI Responses 客户端收到各自的完整回复或事件流。
//!
//! 流式时在上游翻译器之后串一个渲染器：上游事件先由上游的翻译器写成枢纽的流式块，
//! 再逐个解析交给方言的状态机写出客户端的事件。

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use crate::dialects::messages::response::render_message;
use crate::dialects::messages::stream::MessagesStream;
use crate::dialects::responses::response::render_response;
use crate::dialects::responses::stream::ResponsesStream;
use crate::dialects::{Dialect, Inbound, ReplyBuilder};
use crate::error::ApiError;
use crate::providers::{StreamStatus, StreamTranslator};
use crate::streaming::{estimate_tokens, SseEvent, SseParser, Usage};

/// 客户端方言的完整回复：Chat 原样，Messages 渲染为 `message` 对象，Responses 渲染为 `response` 对象。
///
/// 错误：枢纽回复无法解析时返回 502。
pub(super) fn json_for(inbound: &Inbound, hub: Bytes) -> Result<Bytes, ApiError> {
    match inbound {
        Inbound::Chat(_) | Inbound::Embeddings(_) => Ok(hub),
        Inbound::Messages(req) | Inbound::CountTokens(req) => render_message(&hub, &req.model),
        Inbound::Responses(req) => {
            let tools = &req.translation()?.tools;
            render_response(&hub, &req.template(), tools)
        }
    }
}

/// 要保留的完整回复对象：调用方要保留时解析写给客户端的回复（其余为 `None`，不付解析的开销）。
pub(super) fn kept_response(keep: bool, rendered: &[u8]) -> Option<Value> {
    keep.then(|| serde_json::from_slice(rendered).ok())
        .flatten()
}

/// 客户端方言的流翻译器：Chat 用上游翻译器本身，Messages 与 Responses 在它之后串上各自的事件渲染器；
/// 要保留完整回复时再串上旁听者（见 [`capture`]）。
pub(super) fn stream_for(
    inbound: &Inbound,
    hub: Box<dyn StreamTranslator>,
    keep: bool,
) -> Box<dyn StreamTranslator> {
    match inbound {
        Inbound::Chat(_) | Inbound::Embeddings(_) => capture(hub, Dialect::Chat, keep),
        Inbound::Messages(req) | Inbound::CountTokens(req) => {
            let input = estimate_tokens(req.raw.len());
            let render = MessagesStream::new(req.model.clone(), input);
            capture(
                Box::new(Rendered::new(hub, render)),
                Dialect::Messages,
                keep,
            )
        }
        // Responses 的渲染器自己留着终止事件里的完整回复，不必旁听
        Inbound::Responses(req) => {
            let input = estimate_tokens(req.raw.len());
            let tools = req
                .translation()
                .map(|t| Arc::clone(&t.tools))
                .unwrap_or_default();
            let render = ResponsesStream::new(req.template(), tools, input);
            Box::new(Rendered::new(hub, render))
        }
    }
}

/// 要保留完整回复时在翻译器外串上旁听者，把写给客户端的方言事件累加成完整回复；不保留时原样返回
/// （旁听要把每个事件多解析一次，不保留时没有这份开销）。
///
/// 参数：`inner` 为透传的旁路观察者或翻译器；`dialect` 为客户端方言；`keep` 为是否保留。
pub(super) fn capture(
    inner: Box<dyn StreamTranslator>,
    dialect: Dialect,
    keep: bool,
) -> Box<dyn StreamTranslator> {
    if !keep {
        return inner;
    }
    Box::new(Captured {
        raw: inner.forwards_raw(),
        inner,
        parser: SseParser::default(),
        builder: dialect.reply_builder(),
    })
}

/// 方言的事件渲染器：逐个接收枢纽流式块，写出客户端方言的事件。
trait DialectStream: Send {
    /// 渲染一个枢纽事件的 data。
    fn on_hub_event(&mut self, data: &str, out: &mut BytesMut) -> Result<bool, ApiError>;

    /// 响应头已发出后交换失败：写出方言的终结事件；返回是否写了。
    fn on_failure(&mut self, error: &ApiError, out: &mut BytesMut) -> bool;

    /// 正常结束后的完整回复对象（只有 Responses 需要，用于会话保存）。
    fn final_response(&mut self) -> Option<Value> {
        None
    }

    /// 写一个保活事件。
    fn keepalive(&mut self, out: &mut BytesMut);
}

impl DialectStream for MessagesStream {
    fn on_hub_event(&mut self, data: &str, out: &mut BytesMut) -> Result<bool, ApiError> {
        MessagesStream::on_hub_event(self, data, out)
    }

    /// Anthropic 的流中错误是无状态的 `event: error`，由 `proxy` 按方言写出。
    fn on_failure(&mut self, _error: &ApiError, _out: &mut BytesMut) -> bool {
        false
    }

    fn keepalive(&mut self, out: &mut BytesMut) {
        self.ping(out);
    }
}

impl DialectStream for ResponsesStream {
    fn on_hub_event(&mut self, data: &str, out: &mut BytesMut) -> Result<bool, ApiError> {
        ResponsesStream::on_hub_event(self, data, out)
    }

    /// `response.failed` 要带同一个回复 id 与后续序号，由渲染器自己写。
    fn on_failure(&mut self, error: &ApiError, out: &mut BytesMut) -> bool {
        self.fail(error, out);
        true
    }

    fn final_response(&mut self) -> Option<Value> {
        ResponsesStream::final_response(self).cloned()
    }

    fn keepalive(&mut self, out: &mut BytesMut) {
        self.keep_alive(out);
    }
}

/// 上游翻译器 + 方言的事件渲染器。
struct Rendered<R> {
    /// 上游事件 → 枢纽流式块。
    hub: Box<dyn StreamTranslator>,
    /// 枢纽流式块 → 客户端方言的事件。
    render: R,
    /// 解析枢纽流式块（都是网关自己写出的完整事件）。
    parser: SseParser,
    /// 上游翻译器写出的枢纽字节。
    scratch: BytesMut,
}

impl<R: DialectStream> Rendered<R> {
    fn new(hub: Box<dyn StreamTranslator>, render: R) -> Self {
        Rendered {
            hub,
            render,
            parser: SseParser::default(),
            scratch: BytesMut::new(),
        }
    }

    /// 把上游翻译器刚写出的枢纽事件逐个渲染到 `out`。
    fn drain(&mut self, out: &mut BytesMut) -> Result<(), ApiError> {
        if self.scratch.is_empty() {
            return Ok(());
        }
        let written = self.scratch.split();
        let render = &mut self.render;
        let flow = self.parser.each(&written, |event, _| {
            match render.on_hub_event(&event.data, out) {
                Ok(_) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e),
            }
        });
        match flow {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        }
    }
}

impl<R: DialectStream> StreamTranslator for Rendered<R> {
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        let status = self.hub.relay_event(event, &mut self.scratch);
        // 上游报错前已翻译好的内容照常写出，错误交给 exchange 写成 `event: error`
        self.drain(out)?;
        if let Ok(StreamStatus::Forward) = status {
            // 上游的事件本来就是枢纽格式：直接渲染它，不必先写出再解析回来
            self.render.on_hub_event(&event.data, out)?;
            return Ok(StreamStatus::Continue);
        }
        status
    }

    fn on_eof(&mut self, out: &mut BytesMut) -> Result<(), ApiError> {
        let result = self.hub.on_eof(&mut self.scratch);
        self.drain(out)?;
        result
    }

    fn usage(&self) -> Option<Usage> {
        self.hub.usage()
    }

    fn on_failure(&mut self, error: &ApiError, out: &mut BytesMut) -> bool {
        self.render.on_failure(error, out)
    }

    fn final_response(&mut self) -> Option<Value> {
        self.render.final_response()
    }

    fn wants_keepalive(&self) -> bool {
        true
    }

    fn keepalive(&mut self, out: &mut BytesMut) {
        self.render.keepalive(out);
    }
}

/// 流的旁听者：原样交出内层写的事件（或透传时上游的事件），同时把客户端方言的事件喂给累加器，
/// 流正常结束后交出完整回复（响应缓存要保存它）。
struct Captured {
    /// 透传的旁路观察者或翻译器。
    inner: Box<dyn StreamTranslator>,
    /// 透传时客户端收到的就是上游的事件，直接喂它们；翻译时解析内层写出的字节。
    raw: bool,
    parser: SseParser,
    builder: Box<dyn ReplyBuilder>,
}

impl Captured {
    /// 累加内层刚写出的字节里的事件。
    fn feed(&mut self, written: &[u8]) {
        if written.is_empty() {
            return;
        }
        let builder = &mut self.builder;
        let _: ControlFlow<()> = self.parser.each(written, |event, _| {
            builder.push(&event.data);
            ControlFlow::Continue(())
        });
    }
}

impl StreamTranslator for Captured {
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        let start = out.len();
        let status = self.inner.on_event(event, out);
        if self.raw {
            self.builder.push(&event.data);
        } else {
            self.feed(&out[start..]);
        }
        status
    }

    fn on_eof(&mut self, out: &mut BytesMut) -> Result<(), ApiError> {
        let start = out.len();
        let result = self.inner.on_eof(out);
        self.feed(&out[start..]);
        result
    }

    fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }

    fn forwards_raw(&self) -> bool {
        self.raw
    }

    fn on_failure(&mut self, error: &ApiError, out: &mut BytesMut) -> bool {
        self.inner.on_failure(error, out)
    }

    /// 正常结束时的完整回复（累加器判断流是否完整）。
    fn final_response(&mut self) -> Option<Value> {
        self.builder.finish()
    }

    fn wants_keepalive(&self) -> bool {
        self.inner.wants_keepalive()
    }

    fn keepalive(&mut self, out: &mut BytesMut) {
        self.inner.keepalive(out);
    }
}
