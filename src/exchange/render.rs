//! 经枢纽翻译时把枢纽回复渲染成客户端的方言：Chat 客户端直接收到枢纽格式，
//! Anthropic Messages 客户端收到 `message` 对象或具名事件流。
//!
//! 流式时在上游翻译器之后串一个渲染器：上游事件先由上游的翻译器写成枢纽的流式块，
//! 再逐个解析交给方言的状态机写出客户端的事件。

use bytes::{Bytes, BytesMut};

use crate::dialects::messages::response::render_message;
use crate::dialects::messages::stream::MessagesStream;
use crate::dialects::Inbound;
use crate::error::ApiError;
use crate::providers::{StreamStatus, StreamTranslator};
use crate::streaming::{estimate_tokens, SseEvent, SseParser, Usage};

/// 客户端方言的完整回复：Chat 原样，Messages 渲染为 `message` 对象。
///
/// 错误：枢纽回复无法解析时返回 502。
pub(super) fn json_for(inbound: &Inbound, hub: Bytes) -> Result<Bytes, ApiError> {
    match inbound {
        Inbound::Chat(_) => Ok(hub),
        Inbound::Messages(req) | Inbound::CountTokens(req) => render_message(&hub, &req.model),
    }
}

/// 客户端方言的流翻译器：Chat 用上游翻译器本身，Messages 在它之后串上事件渲染器。
pub(super) fn stream_for(
    inbound: &Inbound,
    hub: Box<dyn StreamTranslator>,
) -> Box<dyn StreamTranslator> {
    match inbound {
        Inbound::Chat(_) => hub,
        Inbound::Messages(req) | Inbound::CountTokens(req) => {
            let input = estimate_tokens(req.raw.len());
            Box::new(MessagesRender {
                hub,
                render: MessagesStream::new(req.model.clone(), input),
                parser: SseParser::default(),
                scratch: BytesMut::new(),
                events: Vec::new(),
            })
        }
    }
}

/// 上游翻译器 + Anthropic 事件渲染器。
struct MessagesRender {
    /// 上游事件 → 枢纽流式块。
    hub: Box<dyn StreamTranslator>,
    /// 枢纽流式块 → Anthropic 事件。
    render: MessagesStream,
    /// 解析枢纽流式块（都是网关自己写出的完整事件）。
    parser: SseParser,
    /// 上游翻译器写出的枢纽字节。
    scratch: BytesMut,
    /// 解析出的枢纽事件（复用缓冲）。
    events: Vec<SseEvent>,
}

impl MessagesRender {
    /// 把上游翻译器刚写出的枢纽事件逐个渲染到 `out`。
    fn drain(&mut self, out: &mut BytesMut) -> Result<(), ApiError> {
        if self.scratch.is_empty() {
            return Ok(());
        }
        let written = self.scratch.split();
        self.parser.push(&written, &mut self.events);
        for event in self.events.drain(..) {
            self.render.on_hub_event(&event.data, out)?;
        }
        Ok(())
    }
}

impl StreamTranslator for MessagesRender {
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        let status = self.hub.on_event(event, &mut self.scratch);
        // 上游报错前已翻译好的内容照常写出，错误交给 exchange 写成 `event: error`
        self.drain(out)?;
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
}
