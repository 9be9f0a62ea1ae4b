//! 客户端方言：客户端对网关说的协议。
//!
//! Chat Completions（[`chat`]）是枢纽格式：每种方言先翻译成它，再由 `providers` 翻译到上游的协议；
//! 方言与上游的协议相同时请求体原样透传（只换 `model`）。每种方言各占一个文件夹：请求 → 枢纽、
//! 枢纽回复 → 方言、流事件、方言的错误格式。

mod body;
/// Chat Completions：枢纽格式，也是 OpenAI SDK 使用的方言。
pub mod chat;
/// 响应缓存用的 Chat 格式函数：把枢纽流累加成完整回复，把完整回复重放为 Chat 流。
pub mod chat_replay;
#[cfg(test)]
mod chat_replay_tests;
/// OpenAI 向量接口 `POST /v1/embeddings`：请求校验与回复的编码。
pub mod embeddings;
mod hub_calls;
mod hub_stream;
/// Anthropic Messages：Claude Code 与 anthropic SDK 使用的方言。
pub mod messages;
/// OpenAI Responses：Codex CLI 与 openai SDK 的 `responses` 接口使用的方言。
pub mod responses;
#[cfg(test)]
mod test_chunks;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};
use chat_replay::CompletionBuilder;
use messages::replay::MessageBuilder;
use responses::replay::ResponseCapture;

pub use chat::ChatRequest;
pub use embeddings::EmbeddingsRequest;
pub use messages::MessagesRequest;
pub use responses::ResponsesRequest;

/// 翻译到枢纽格式时丢弃的功能（字段名、块类型或工具名），供访问日志记录。
///
/// 用途：别家上游无法执行的功能不让请求失败，但运维要看得到丢了什么。
///
/// ```
/// let d = chatnexus::dialects::Dropped(vec!["thinking".into()]); // 丢弃了思考设置
/// assert_eq!(d.0.len(), 1); // 一项
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped(pub Vec<String>);

impl Dropped {
    /// 记下一项（重复的只记一次）。
    pub fn note(&mut self, what: impl Into<String>) {
        let what = what.into();
        if !self.0.contains(&what) {
            self.0.push(what);
        }
    }

    /// 记下请求体里翻译时没有处理的顶层字段（别家上游不认识，翻译时丢弃）。
    ///
    /// 参数：`body` 为客户端的请求对象；`handled` 为翻译处理过的顶层字段名。
    pub(crate) fn note_unhandled(&mut self, body: &Map<String, Value>, handled: &[&str]) {
        for name in body.keys() {
            if !handled.contains(&name.as_str()) {
                self.note(name.as_str());
            }
        }
    }
}

/// 客户端方言（访问日志与指标的 `dialect` 标签）。
///
/// 用途：错误按客户端的方言写出；方言与上游协议相同时透传。
///
/// ```
/// use chatnexus::dialects::Dialect; // 客户端方言
/// assert_eq!(Dialect::Messages.label(), "messages"); // 指标标签
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// OpenAI Chat Completions（聊天补全）。
    #[default]
    Chat,
    /// Anthropic Messages（消息接口）。
    Messages,
    /// OpenAI Responses（响应接口）。
    Responses,
}

impl Dialect {
    /// 指标与访问日志里的标签。
    ///
    /// 返回：`chat`、`messages` 或 `responses`。
    pub fn label(self) -> &'static str {
        match self {
            Dialect::Chat => "chat",
            Dialect::Messages => "messages",
            Dialect::Responses => "responses",
        }
    }

    /// 把本方言的事件流累加成完整回复的累加器（响应缓存保存流式回复用）。
    pub fn reply_builder(self) -> Box<dyn ReplyBuilder> {
        match self {
            Dialect::Chat => Box::<CompletionBuilder>::default(),
            Dialect::Messages => Box::<MessageBuilder>::default(),
            Dialect::Responses => Box::<ResponseCapture>::default(),
        }
    }

    /// 本方言的完整回复是否正常结束（只有正常结束的回复才缓存）。
    ///
    /// 参数：`reply` 为 `chat.completion`、`message` 或 `response` 对象。
    pub fn completed_normally(self, reply: &Value) -> bool {
        match self {
            Dialect::Chat => chat_replay::completed_normally(reply),
            Dialect::Messages => messages::replay::completed_normally(reply),
            Dialect::Responses => responses::replay::completed_normally(reply),
        }
    }
}

/// 把客户端方言的事件流累加成完整回复（响应缓存保存流式回复用）。
///
/// 用途：`exchange` 转发流时把客户端方言的每个事件的 data 喂给它，流结束后取出完整回复；
/// 各方言的累加器由 [`Dialect::reply_builder`] 给出。
///
/// ```
/// use chatnexus::dialects::{Dialect, ReplyBuilder}; // 方言与累加器
/// let mut b = Dialect::Chat.reply_builder(); // Chat 流的累加器
/// b.push("[DONE]"); // 只有结束标记，没有结束原因
/// assert!(b.finish().is_none()); // 不完整的流没有完整回复
/// ```
pub trait ReplyBuilder: Send {
    /// 喂一个事件的 data。
    fn push(&mut self, data: &str);

    /// 流正常结束时的完整回复；流不完整（截断、出错、没有结束标记）时为 `None`。
    fn finish(&mut self) -> Option<Value>;
}

/// 一个已校验的客户端请求：`exchange` 据它的方言与目标的协议决定透传还是经枢纽翻译。
///
/// 用途：`proxy` 解析后交给 `exchange::run`；翻译到上游时统一用 [`Inbound::hub`]。
///
/// ```
/// let raw = r#"{"model":"演示","messages":[{"role":"user","content":"你好"}]}"#;
/// let chat = chatnexus::dialects::ChatRequest::parse(raw.into()).unwrap(); // Chat 请求
/// let inbound = chatnexus::dialects::Inbound::Chat(chat); // 它本身就是枢纽格式
/// assert_eq!(inbound.hub().unwrap().model, "演示");
/// ```
#[derive(Debug)]
pub enum Inbound {
    /// 聊天补全 `POST /v1/chat/completions`。
    Chat(ChatRequest),
    /// 消息 `POST /v1/messages`。
    Messages(MessagesRequest),
    /// 计数 `POST /v1/messages/count_tokens`。
    CountTokens(MessagesRequest),
    /// 响应 `POST /v1/responses`。
    Responses(ResponsesRequest),
    /// 向量 `POST /v1/embeddings`（错误与 Chat 一样是 OpenAI 的形状）。
    Embeddings(EmbeddingsRequest),
}

impl Inbound {
    /// 客户端的方言。
    pub fn dialect(&self) -> Dialect {
        match self {
            Inbound::Chat(_) | Inbound::Embeddings(_) => Dialect::Chat,
            Inbound::Messages(_) | Inbound::CountTokens(_) => Dialect::Messages,
            Inbound::Responses(_) => Dialect::Responses,
        }
    }

    /// 回复是否只由请求决定（向量是；聊天要看采样参数），响应缓存的 `deterministic` 模式据此判断。
    pub fn deterministic(&self) -> bool {
        matches!(self, Inbound::Embeddings(_))
    }

    /// 完整回复是否正常结束（只有正常结束的回复才缓存）：向量回复要有非空的 `data`，其余按方言判断。
    pub fn completed_normally(&self, reply: &Value) -> bool {
        match self {
            Inbound::Embeddings(_) => reply
                .get("data")
                .and_then(Value::as_array)
                .is_some_and(|data| !data.is_empty()),
            _ => self.dialect().completed_normally(reply),
        }
    }

    /// 客户端请求的模型名。
    pub fn model(&self) -> &str {
        match self {
            Inbound::Chat(req) => &req.model,
            Inbound::Messages(req) | Inbound::CountTokens(req) => &req.model,
            Inbound::Responses(req) => &req.model,
            Inbound::Embeddings(req) => &req.model,
        }
    }

    /// 是否流式。
    pub fn stream(&self) -> bool {
        match self {
            Inbound::Chat(req) => req.stream,
            Inbound::Messages(req) => req.stream,
            Inbound::Responses(req) => req.stream,
            Inbound::CountTokens(_) | Inbound::Embeddings(_) => false,
        }
    }

    /// 客户端的请求对象。
    pub fn body(&self) -> &Map<String, Value> {
        match self {
            Inbound::Chat(req) => &req.body,
            Inbound::Messages(req) | Inbound::CountTokens(req) => &req.body,
            Inbound::Responses(req) => &req.body,
            Inbound::Embeddings(req) => req.body(),
        }
    }

    /// 客户端的原始请求体。
    pub fn raw(&self) -> &Bytes {
        match self {
            Inbound::Chat(req) => &req.raw,
            Inbound::Messages(req) | Inbound::CountTokens(req) => &req.raw,
            Inbound::Responses(req) => &req.raw,
            Inbound::Embeddings(req) => &req.raw,
        }
    }

    /// 翻译到枢纽格式时丢弃的功能（Chat 请求、还没翻译或翻译失败时为 `None`）。
    pub fn dropped(&self) -> Option<&Dropped> {
        match self {
            Inbound::Chat(_) | Inbound::Embeddings(_) => None,
            Inbound::Messages(req) | Inbound::CountTokens(req) => req.dropped(),
            Inbound::Responses(req) => req.dropped(),
        }
    }

    /// 把缓存的完整回复重放为本请求方言的事件流（SSE 字节）；Chat 请求按客户端的
    /// `stream_options.include_usage` 决定是否带用量块。
    pub fn replay_stream(&self, reply: &Value) -> Bytes {
        match self {
            Inbound::Chat(req) => {
                let include_usage = req
                    .body
                    .get("stream_options")
                    .and_then(|o| o.get("include_usage"))
                    == Some(&Value::Bool(true));
                chat_replay::replay_stream(reply, include_usage)
            }
            Inbound::Messages(_) | Inbound::CountTokens(_) => {
                messages::replay::replay_stream(reply)
            }
            Inbound::Responses(_) => responses::replay::replay_stream(reply),
            // 向量请求不流式，不会重放成事件流
            Inbound::Embeddings(_) => Bytes::new(),
        }
    }

    /// 枢纽格式的请求（Chat 请求本身就是；其他方言第一次调用时翻译）。
    ///
    /// 错误：请求无法翻译为枢纽格式时返回 400（向量请求没有枢纽格式）。
    pub fn hub(&self) -> Result<&ChatRequest, ApiError> {
        match self {
            Inbound::Chat(req) => Ok(req),
            Inbound::Messages(req) | Inbound::CountTokens(req) => req.hub(),
            Inbound::Responses(req) => req.hub(),
            Inbound::Embeddings(_) => Err(ApiError::bad_request(
                ErrorCode::WrongModelKind,
                "向量请求不能翻译成聊天请求",
            )),
        }
    }
}
