//! 上游协议过滤器：每种上游一个目录，负责把 OpenAI 请求翻译给上游、把上游响应翻译回 OpenAI。
//!
//! `exchange` 只通过 [`ProviderFilter`] 与 [`StreamTranslator`] 两个接口驱动它们，
//! 新增一种上游只需新增一个目录并在 [`filter_for`] 登记。

mod anthropic;
mod azure;
mod convert;
mod gemini;
mod openai;
mod splice;
#[cfg(test)]
pub(crate) mod test_target;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue};
use memchr::memmem::Finder;
use once_cell::sync::Lazy;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{Provider, ProviderKind, Target};
use crate::dialects::{ChatRequest, EmbeddingsRequest, Inbound};
use crate::error::{ApiError, ErrorCode, Relayed, TYPE_INVALID_REQUEST, TYPE_SERVER};
use crate::streaming::{write_done, SseEvent, Usage, DONE_SENTINEL};

pub use convert::{Completion, ToolCall};
pub use splice::{body_with_model, splice_model, splice_request};

/// JSON 内容类型。
const JSON_CONTENT_TYPE: &str = "application/json";
/// 上游错误信息在日志与客户端消息中保留的最大字符数。
const MAX_ERROR_TEXT_CHARS: usize = 300;
/// 流式块中用量字段的键（带引号，用于不解析 JSON 的快速判断）。
const USAGE_KEY: &[u8] = b"\"usage\"";
/// 预先构造的 `"usage"` 查找器（SIMD 子串查找；每块现建一个查找器的开销比查找本身还大）。
static USAGE_FINDER: Lazy<Finder<'static>> = Lazy::new(|| Finder::new(USAGE_KEY));
/// JSON 键与值之间的分隔符。
const KEY_VALUE_SEPARATOR: u8 = b':';
/// JSON 对象的起始字节。
const OBJECT_OPEN: u8 = 0x7b;

/// 发往上游的请求（方法固定为 POST）。
///
/// 用途：过滤器构造它，`exchange` 补上 Host、Content-Length 等通用头后写给上游。
///
/// ```
/// let r = chatnexus::providers::UpstreamRequest { path: "/".into(), headers: vec![], body: "{}".into() }; // 最小请求
/// assert_eq!(r.body.len(), 2); // 长度由 exchange 写入 Content-Length
/// ```
#[derive(Debug)]
pub struct UpstreamRequest {
    /// 路径（含查询串）。
    pub path: String,
    /// 该上游特有的请求头（认证头已标记为敏感）。
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// 请求体。
    pub body: Bytes,
}

/// 翻译好的完整（非流式）响应。
///
/// 用途：过滤器翻译时已经读过上游的用量，一并交给 `exchange` 计量，不必再解析一遍响应体。
///
/// ```
/// let r = chatnexus::providers::TranslatedReply { body: "{}".into(), usage: None }; // 没有用量的响应
/// assert_eq!(r.body.len(), 2); // 原样写给客户端
/// ```
#[derive(Debug)]
pub struct TranslatedReply {
    /// OpenAI 格式的响应体。
    pub body: Bytes,
    /// 其中的用量（OpenAI 语义）。
    pub usage: Option<Usage>,
}

impl From<Completion> for TranslatedReply {
    fn from(completion: Completion) -> Self {
        TranslatedReply {
            body: completion.to_bytes(),
            usage: Some(completion.usage),
        }
    }
}

/// 从上游错误响应体中提取出的信息。
///
/// 用途：各过滤器解析自家错误格式，再由 [`map_upstream_error`] 统一决定返回给客户端的状态码。
///
/// ```
/// let i = chatnexus::providers::UpstreamErrorInfo { message: "坏请求".into(), ..Default::default() }; // 只有消息
/// assert_eq!(i.message, "坏请求");
/// ```
#[derive(Debug, Clone, Default)]
pub struct UpstreamErrorInfo {
    /// 上游的错误消息。
    pub message: String,
    /// 上游的错误类型。
    pub kind: Option<String>,
    /// 上游的错误码。
    pub code: Option<String>,
    /// 上游指出的出错参数。
    pub param: Option<String>,
    /// 按上游语义应当使用的状态码（如 Anthropic 529 过载 → 503）；`None` 表示沿用 HTTP 状态码。
    pub status: Option<u16>,
    /// 上游在响应体里给出的重试等待秒数（如 Gemini 的 `RetryInfo.retryDelay`）。
    pub retry_after: Option<u64>,
}

/// 一次翻译需要的请求级信息。
///
/// 用途：翻译后的响应与流式块都用客户端可见的模型名、同一个创建时间，并按客户端要求决定是否输出用量块。
///
/// ```
/// let ctx = chatnexus::providers::TranslateCtx { model: "演示".into(), include_usage: true, created: 1 }; // 请求级信息
/// assert!(ctx.include_usage); // 流末尾输出用量块
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateCtx {
    /// 客户端请求里的模型名（响应中的 `model` 用它）。
    pub model: String,
    /// 客户端是否要求流末尾的用量块。
    pub include_usage: bool,
    /// 响应的创建时间（Unix 秒）。
    pub created: u64,
}

impl TranslateCtx {
    /// 由客户端请求生成。
    pub fn for_request(req: &ChatRequest) -> Self {
        let created = crate::clock::unix_now();
        TranslateCtx {
            model: req.model.clone(),
            include_usage: convert::include_usage(req),
            created,
        }
    }
}

/// 一个流式翻译步骤的结果。
///
/// 用途：翻译器告诉 `exchange` 上游流是否已正常结束。
///
/// ```
/// use chatnexus::providers::StreamStatus; // 流的状态
/// assert_ne!(StreamStatus::Continue, StreamStatus::Done); // 只有 Done 表示上游正常结束
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    /// 还有后续事件。
    Continue,
    /// 上游已发出结束标记，客户端流已写完结束事件。
    Done,
    /// 这个事件不必改：`out` 里什么也没写，由调用方按上游发来的样子转发
    /// （只有 [`StreamTranslator::relay_event`] 返回它）。
    Forward,
}

/// 一次流式响应的逐事件翻译器（每个请求一个实例，持有流的状态）。
///
/// 用途：`exchange` 每解析出一个上游 SSE 事件就调用 [`StreamTranslator::on_event`]，
/// 把要发给客户端的 OpenAI 事件写入 `out`。
pub trait StreamTranslator: Send {
    /// 处理一个上游事件。
    ///
    /// 错误：事件无法翻译时返回错误，`exchange` 会向客户端写一个错误事件并结束流。
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError>;

    /// 转发路径上处理一个上游事件：与 [`StreamTranslator::on_event`] 相同，只是事件不必改时可以什么也不写、
    /// 返回 [`StreamStatus::Forward`]，让 `exchange` 直接转发上游的原始字节（同协议透传因此不复制、不重写事件）。
    ///
    /// 错误：同 `on_event`。
    fn relay_event(
        &mut self,
        event: &SseEvent,
        out: &mut BytesMut,
    ) -> Result<StreamStatus, ApiError> {
        self.on_event(event, out)
    }

    /// 上游连接结束时调用。
    ///
    /// 错误：在结束标记之前断开视为截断，返回 502 错误。
    fn on_eof(&mut self, out: &mut BytesMut) -> Result<(), ApiError>;

    /// 上游到目前为止报告的用量（OpenAI 语义）；流被中途取消时可能只有输入部分，没有报告时为 `None`。
    fn usage(&self) -> Option<Usage>;

    /// 同协议透传的快速路径：直接看一个单行 `data:` 事件的原始负载（不建事件、不复制，UTF-8 也不另行校验，
    /// 原样转发的字节就是上游的字节），能处理时返回结论（同 [`StreamTranslator::relay_event`]）；
    /// 返回 `None` 时这个事件照常解析后交给 `relay_event`。缺省不接。
    fn relay_data(
        &mut self,
        _data: &[u8],
        _out: &mut BytesMut,
    ) -> Option<Result<StreamStatus, ApiError>> {
        None
    }

    /// 是否原样转发上游的字节（透传的旁路观察者）：为真时 `exchange` 把读到的每块字节直接写给客户端，
    /// 翻译器只观察事件（用量、结束、错误），不写任何东西。
    fn forwards_raw(&self) -> bool {
        false
    }

    /// 响应头已发出后交换失败（上游报错、截断、超时）：需要时把客户端方言的终结事件写进 `out`
    /// （如 Responses 的 `response.failed`，它要带同一个回复 id 与后续序号，只有翻译器知道）。
    ///
    /// 返回：是否已写出终结事件（为真时 `exchange` 写出 `out` 并把错误标为已送达，`proxy` 不再写错误事件）。
    fn on_failure(&mut self, _error: &ApiError, _out: &mut BytesMut) -> bool {
        false
    }

    /// 上游沉默时是否要给客户端补保活事件（翻译给 Messages 与 Responses 客户端的流）。
    fn wants_keepalive(&self) -> bool {
        false
    }

    /// 写一个保活事件（Anthropic 的 `ping`、Responses 的 `response.in_progress`）。
    fn keepalive(&mut self, _out: &mut BytesMut) {}

    /// 正常结束后写给客户端的完整回复对象（Responses 的会话保存与响应缓存用）；不保留时为 `None`。
    fn final_response(&mut self) -> Option<Value> {
        None
    }
}

/// 从 OpenAI 格式的流式块中记下用量；返回该块是否只携带用量（`choices` 为空）。
///
/// 网关总是要求 OpenAI 与 Azure 在流末尾给出用量以便精确计量，客户端没要求时由调用方丢弃这种块。
pub(crate) fn take_usage(chunk: &Map<String, Value>, usage: &mut Option<Usage>) -> bool {
    let found = chunk.get("usage").and_then(Usage::from_openai);
    let no_choices = chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    let usage_only = no_choices && found.is_some();
    if found.is_some() {
        *usage = found;
    }
    usage_only
}

/// OpenAI 格式的流式块是否可能带有用量对象：某个 `"usage"` 键之后（允许空白）紧跟 `:` 与 `{`。
///
/// 要求上游报告用量时，OpenAI 的每个块都带 `"usage":null`，只有最后一块是对象；先做这个字节级判断，
/// 只解析真正带用量的块，其余块保持零解析透传。内容里的引号总是转义成 `\"`，不会被误认成键。
pub(crate) fn may_carry_usage(bytes: &[u8]) -> bool {
    usage_values(bytes)
        .any(|value| value.iter().find(|b| !b.is_ascii_whitespace()) == Some(&OBJECT_OPEN))
}

/// 原样转发的完整响应里最后一个 `"usage":` 键的值从哪个字节开始（只找到键就返回值的起点，不解析其余部分）。
///
/// 原样转发不必校验整个响应，只要用量：只用 SIMD 子串查找找键（比逐字节的反向查找与完整解析都便宜），
/// 再只解析这一个值。字符串里的引号总是转义的，所以 `"usage"` 后紧跟冒号时一定是键；
/// 后面没有冒号的是值恰好为 `usage` 的字符串（如工具名），不算。
pub(crate) fn last_usage_value(body: &[u8]) -> Option<&[u8]> {
    usage_values(body).last()
}

/// 依次给出每个 `"usage"` 键的值（从冒号之后开始、到文本末尾）：键后（允许空白）必须紧跟冒号，
/// 否则是值恰好为 `usage` 的字符串，跳过。
fn usage_values(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    USAGE_FINDER.find_iter(bytes).filter_map(move |at| {
        let rest = &bytes[at + USAGE_KEY.len()..];
        let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        (rest[colon] == KEY_VALUE_SEPARATOR).then(|| &rest[colon + 1..])
    })
}

/// 一种上游协议的翻译规则（无状态，全进程共享）。
///
/// 用途：`exchange` 用 [`filter_for`] 取得它，构造上游请求、翻译完整响应和错误，
/// 并为流式响应创建 [`StreamTranslator`]。
pub trait ProviderFilter: Send + Sync {
    /// 为目标构造上游请求。
    ///
    /// 错误：请求无法翻译为该上游的格式时返回 400。
    fn build_request(
        &self,
        req: &ChatRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError>;

    /// 把上游的完整（非流式）成功响应翻译为 OpenAI 响应体，并给出其中的用量。
    ///
    /// 错误：上游响应无法解析时返回 502。
    fn translate_response(
        &self,
        body: Bytes,
        ctx: &TranslateCtx,
    ) -> Result<TranslatedReply, ApiError>;

    /// 从上游错误响应（HTTP 状态码与响应体）中提取错误信息。
    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo;

    /// 为一次流式响应创建翻译器。
    fn stream_translator(&self, ctx: TranslateCtx) -> Box<dyn StreamTranslator>;
}

/// 客户端方言与目标协议相同时的透传规则（如 Anthropic Messages → Anthropic 上游）。
///
/// 用途：请求体只换 `model`、方言自己的请求头原样转发；回复原样写给客户端，只旁路读出用量；
/// 上游的错误回复原样转告（Claude Code 按 Anthropic 的原文恢复）。
pub trait Passthrough: Send + Sync {
    /// 构造上游请求。
    ///
    /// 错误：请求头或上游密钥含非法字符时返回 500。
    fn build_request(
        &self,
        inbound: &Inbound,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError>;

    /// 完整（非流式）响应里的用量（OpenAI 语义）；响应不是合法 JSON 时为 `None`。
    fn usage_of(&self, body: &[u8]) -> Option<Usage>;

    /// 上游的错误回复 → 客户端错误：状态码与信封照常映射（用于日志、指标与重试判断），
    /// 并附上原样的上游回复；上游拒绝网关自己的密钥（401/403）时不附，客户端拿到网关的 502。
    fn relay_error(&self, status: u16, body: Bytes) -> ApiError;

    /// 流的旁路观察者（[`StreamTranslator::forwards_raw`] 为真）。
    fn observer(&self) -> Box<dyn StreamTranslator>;
}

/// 透传时上游错误回复的转告规则（各 [`Passthrough::relay_error`] 共用）：附上原样的上游回复；
/// 上游拒绝网关自己的密钥（401/403）时不附，客户端拿到网关映射的错误。
///
/// 参数：`error` 为映射好的网关错误；`status`、`body` 为上游的状态码与回复体。
fn relay_unless_key_rejected(error: ApiError, status: u16, body: Bytes) -> ApiError {
    if matches!(status, 401 | 403) {
        return error;
    }
    error.with_relayed(Relayed {
        status,
        body,
        delivered: false,
    })
}

/// 上游自己的输入 token 计数接口，用于客户端方言与目标协议不同的计数请求
/// （如 Anthropic 的 count_tokens 问 Gemini 的 `countTokens`）。
///
/// 用途：计数请求不流式、不计量；请求翻译成上游的计数请求，回复换算成客户端方言的计数结果。
pub trait TokenCounter: Send + Sync {
    /// 构造上游的计数请求。
    ///
    /// 错误：请求无法翻译时返回 400。
    fn build_request(
        &self,
        inbound: &Inbound,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError>;

    /// 从上游错误响应中提取错误信息。
    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo;

    /// 上游的计数结果 → 客户端方言的计数回复。
    ///
    /// 错误：上游回复无法解析时返回 502。
    fn render(&self, inbound: &Inbound, body: &[u8]) -> Result<Bytes, ApiError>;
}

/// 向量接口的上游规则（无状态，全进程共享）：OpenAI、Azure 与兼容服务只换 `model` 透传，
/// Gemini 翻译成它的批量向量接口 `batchEmbedContents`。
///
/// 用途：`exchange` 用它构造上游请求、把上游回复写成客户端要的 OpenAI 列表（含编码）并给出用量。
pub trait EmbeddingsFilter: Send + Sync {
    /// 构造上游请求。
    ///
    /// 错误：上游不接受这种输入（如 Gemini 不接受 token id）时返回 400；密钥含非法字符时返回 500。
    fn build_request(
        &self,
        req: &EmbeddingsRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError>;

    /// 从上游错误响应中提取错误信息。
    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo;

    /// 上游的成功回复 → 客户端的 OpenAI 向量列表与用量。
    ///
    /// 错误：上游回复无法解析或向量条数与输入不符时返回 502。
    fn render(&self, req: &EmbeddingsRequest, body: Bytes) -> Result<EmbeddingsReply, ApiError>;
}

/// 写给客户端的向量回复与它的用量。
///
/// 用途：[`EmbeddingsFilter::render`] 给出，`exchange` 写出并计量；上游没报告用量时 `estimated` 为真（响应头标明）。
///
/// ```
/// let r = chatnexus::providers::EmbeddingsReply { body: "{}".into(), usage: Default::default(), estimated: true }; // 估算的用量
/// assert!(r.estimated); // 网关估算的用量
/// ```
#[derive(Debug)]
pub struct EmbeddingsReply {
    /// OpenAI 形状的向量列表。
    pub body: Bytes,
    /// 用量（只有输入 token）。
    pub usage: Usage,
    /// 用量是否为网关的估算。
    pub estimated: bool,
}

/// 一次尝试与目标交换的方式。
///
/// 用途：`exchange` 按客户端请求与目标的协议选择透传还是经枢纽翻译。
pub enum Mode<'a> {
    /// 透传（方言与目标协议相同）。
    Native(&'static dyn Passthrough),
    /// 经枢纽格式翻译：目标的过滤器与枢纽请求。
    Translated(&'static dyn ProviderFilter, &'a ChatRequest),
    /// 问上游自己的计数接口（计数请求的目标协议与方言不同时）。
    Counted(&'static dyn TokenCounter),
    /// 向量请求：目标的向量规则与请求。
    Embedded(&'static dyn EmbeddingsFilter, &'a EmbeddingsRequest),
}

/// 按客户端请求与目标的上游选择交换方式：Messages 到 Anthropic、Responses 到提供 Responses 接口的上游透传，
/// 其余经枢纽翻译。
///
/// 错误：请求无法翻译为枢纽格式时返回 400；count_tokens 请求的目标既不是 Anthropic 也不是 Gemini
/// （没有计数接口）时返回 400 `unsupported_parameter`（调用方改为本地估算）。
pub fn mode_for<'a>(inbound: &'a Inbound, provider: &Provider) -> Result<Mode<'a>, ApiError> {
    let kind = provider.kind;
    match (inbound, kind) {
        (Inbound::Messages(_) | Inbound::CountTokens(_), ProviderKind::Anthropic) => {
            Ok(Mode::Native(&anthropic::AnthropicNative))
        }
        (Inbound::Responses(_), _) if provider.responses => {
            Ok(Mode::Native(&openai::OpenAiResponses))
        }
        (Inbound::Embeddings(req), _) => embeddings_for(kind)
            .map(|filter| Mode::Embedded(filter, req))
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::WrongModelKind,
                    format!("{} 类型的上游没有向量接口", kind.label()),
                )
            }),
        (Inbound::CountTokens(_), ProviderKind::Gemini) => Ok(Mode::Counted(&gemini::GeminiCount)),
        (Inbound::CountTokens(_), _) => Err(ApiError::bad_request(
            ErrorCode::UnsupportedParameter,
            format!("{} 类型的上游没有 count_tokens 接口", kind.label()),
        )),
        _ => Ok(Mode::Translated(filter_for(kind), inbound.hub()?)),
    }
}

/// 按上游类型取得过滤器。
pub fn filter_for(kind: ProviderKind) -> &'static dyn ProviderFilter {
    match kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => &openai::OpenAiFilter,
        ProviderKind::Anthropic => &anthropic::AnthropicFilter,
        ProviderKind::Gemini => &gemini::GeminiFilter,
        ProviderKind::Azure => &azure::AzureFilter,
    }
}

/// 按上游类型取得向量规则；没有向量接口的上游（Anthropic）为 `None`。
pub fn embeddings_for(kind: ProviderKind) -> Option<&'static dyn EmbeddingsFilter> {
    match kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Some(&openai::OpenAiEmbeddings),
        ProviderKind::Azure => Some(&azure::AzureEmbeddings),
        ProviderKind::Gemini => Some(&gemini::GeminiEmbeddings),
        ProviderKind::Anthropic => None,
    }
}

/// 上游的这些 4xx 是客户端自己的请求有问题（参数错误、模型不存在、请求过大、语义错误），
/// 原文（如“上下文超长”）对客户端有用，照原样转告；其余状态码的上游原文只进日志。
const CLIENT_FAULT_STATUSES: &[u16] = &[400, 404, 413, 422];

/// 转告上游的错误：信封里保留上游自己的错误码；网关认识的错误码同时作为指标标签，其余记为 `upstream_error`。
fn relayed(
    status: u16,
    kind: &'static str,
    upstream_code: Option<String>,
    message: String,
) -> ApiError {
    let code = upstream_code
        .as_deref()
        .and_then(ErrorCode::parse)
        .unwrap_or(ErrorCode::UpstreamError);
    let mut error = ApiError::new(status, kind, code, message);
    error.upstream_code = upstream_code.map(String::into_boxed_str);
    error
}

/// 上游在流中（响应头已是 200 之后）报告的错误：502 `upstream_stream_error`，信封里转告上游自己的错误码。
///
/// 流中错误之后流即结束：翻译器返回它，`exchange` 只写这一个错误事件，不再报告截断。
/// 上游原文只进日志（与响应头之前的上游错误同一规则）。
pub fn stream_error(info: UpstreamErrorInfo) -> ApiError {
    let text = truncate_chars(&info.message, MAX_ERROR_TEXT_CHARS);
    let mut error = ApiError::bad_gateway(ErrorCode::UpstreamStreamError, "上游在流中报告了错误")
        .with_detail(format!("上游原文：{text}"));
    error.upstream_code = info.code.map(String::into_boxed_str);
    error
}

/// OpenAI 协议的流（OpenAI、Azure）的结束标记：流已结束，或本事件是 `[DONE]`（写出结束事件并记下）时为真。
pub(crate) fn done_marker(done: &mut bool, event: &SseEvent, out: &mut BytesMut) -> bool {
    if !*done && event.data.trim() == DONE_SENTINEL {
        *done = true;
        write_done(out);
    }
    *done
}

/// OpenAI 协议的流（OpenAI、Azure）在上游结束时的检查：收到过结束标记 `[DONE]` 是正常结束，
/// 否则是截断（502 `upstream_stream_truncated`，消息点名上游类型）。
pub(crate) fn done_or_truncated(done: bool, kind: &str) -> Result<(), ApiError> {
    if done {
        return Ok(());
    }
    Err(ApiError::bad_gateway(
        ErrorCode::UpstreamStreamTruncated,
        format!("{kind} 在发送结束标记 [DONE] 之前断开了流"),
    ))
}

/// 把上游错误状态码与信息映射为返回给客户端的错误。
///
/// 参数：状态码、上游错误信息、上游类型名（如 `openai`，不是提供方的名字或地址）。
/// 上游的 401/403 说明网关自己的上游密钥有问题，不能原样返回，否则客户端会误以为
/// 自己的密钥错了；这类错误改为 502。其余状态码保留，让 SDK 抛出正确的异常。
/// 只有客户端之过的 4xx（见 [`CLIENT_FAULT_STATUSES`]）转告上游原文；其余（认证失败、限流、5xx）
/// 给出通用的中文消息（保留上游的错误码，如 `rate_limit_exceeded`），上游原文（可能含密钥末几位、
/// 组织 id、内部地址）作为只进日志的细节。
pub fn map_upstream_error(status: u16, info: UpstreamErrorInfo, kind: &str) -> ApiError {
    let status = info.status.unwrap_or(status);
    let text = truncate_chars(&info.message, MAX_ERROR_TEXT_CHARS);
    if CLIENT_FAULT_STATUSES.contains(&status) {
        let message = format!("{kind} 类型的上游拒绝了请求：{text}");
        return relayed(status, TYPE_INVALID_REQUEST, info.code, message)
            .with_param_opt(info.param)
            .with_retry_after(info.retry_after);
    }
    let detail = format!(
        "上游原文（{}）：{text}",
        info.code.as_deref().unwrap_or("-")
    );
    let error = match status {
        401 | 403 => ApiError::bad_gateway(
            ErrorCode::UpstreamAuthFailed,
            format!("{kind} 类型的上游拒绝了网关的认证（{status}），请联系网关管理员检查上游密钥"),
        ),
        400..=499 => relayed(
            status,
            TYPE_INVALID_REQUEST,
            info.code,
            format!("{kind} 类型的上游拒绝了请求（{status}）"),
        ),
        500..=599 => relayed(
            status,
            TYPE_SERVER,
            info.code,
            format!("{kind} 类型的上游服务错误（{status}）"),
        ),
        _ => ApiError::bad_gateway(
            ErrorCode::UpstreamError,
            format!("{kind} 类型的上游返回了意外的状态码 {status}"),
        ),
    };
    error.with_detail(detail).with_retry_after(info.retry_after)
}

/// JSON 请求体的内容类型头。
pub(crate) fn json_content_type() -> (HeaderName, HeaderValue) {
    (CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE))
}

/// 发往上游的 JSON 请求的头：内容类型，以及提供方配置了密钥时携带它的认证头（见 [`key_header`]）。
///
/// 参数：提供方、认证头的名字与值的前缀（如 `Authorization` 与 `Bearer `）。
/// 错误：密钥含非法字符时返回 500。
pub(crate) fn json_headers(
    provider: &Provider,
    name: HeaderName,
    prefix: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    let mut headers = vec![json_content_type()];
    headers.extend(key_header(provider, name, prefix)?);
    Ok(headers)
}

/// 提供方配置了密钥时，生成携带它的认证头（`前缀 + 密钥`），并标记为敏感（不进日志与 HPACK 索引）。
///
/// 错误：密钥含有不能出现在 HTTP 头里的字符时返回 500（配置问题，消息不含密钥本身）。
pub(crate) fn key_header(
    provider: &Provider,
    name: HeaderName,
    prefix: &str,
) -> Result<Option<(HeaderName, HeaderValue)>, ApiError> {
    let Some(key) = &provider.api_key else {
        return Ok(None);
    };
    // 拼接用的临时串也清零；HeaderValue 自身的副本随请求头写出后释放
    let joined = zeroize::Zeroizing::new(format!("{prefix}{}", key.expose()));
    let mut value = HeaderValue::from_str(&joined)
        .map_err(|_| ApiError::internal(format!("上游 `{}` 的密钥含有非法字符", provider.name)))?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

/// 按字符截断文本（不会切坏 UTF-8）。
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// 序列化请求对象时改写少数字段，避免为改一个字段而复制整个（可能数 MiB 的）请求：
/// `model` 换成上游模型名；`force_usage` 时让 `stream_options.include_usage` 为真（没有就追加）；
/// 输出上限超过 `cap` 时截到它。
struct UpstreamBody<'a> {
    body: &'a Map<String, Value>,
    model: &'a str,
    force_usage: bool,
    cap: Option<u64>,
}

/// OpenAI 格式请求里的输出上限字段。
const OUTPUT_LIMIT_FIELDS: [&str; 2] = ["max_tokens", "max_completion_tokens"];

/// 输出上限字段的值超过 `cap` 时返回截后的值。
fn capped(key: &str, value: &Value, cap: Option<u64>) -> Option<u64> {
    let cap = cap?;
    let wanted = value.as_u64()?;
    (OUTPUT_LIMIT_FIELDS.contains(&key) && wanted > cap).then_some(cap)
}

/// `stream_options` 字段名。
const STREAM_OPTIONS: &str = "stream_options";
/// `include_usage` 字段名。
const INCLUDE_USAGE: &str = "include_usage";

impl Serialize for UpstreamBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.body {
            if let Some(limit) = capped(key, value, self.cap) {
                map.serialize_entry(key, &limit)?;
                continue;
            }
            match key.as_str() {
                "model" => map.serialize_entry(key, self.model)?,
                STREAM_OPTIONS if self.force_usage => {
                    let mut options = value.as_object().cloned().unwrap_or_default();
                    options.insert(INCLUDE_USAGE.to_string(), Value::Bool(true));
                    map.serialize_entry(key, &options)?;
                }
                _ => map.serialize_entry(key, value)?,
            }
        }
        if self.force_usage && !self.body.contains_key(STREAM_OPTIONS) {
            map.serialize_entry(STREAM_OPTIONS, &serde_json::json!({ INCLUDE_USAGE: true }))?;
        }
        map.end()
    }
}

/// 发往 OpenAI 格式上游的请求体：`model` 改为目标的上游模型名；`force_usage` 时要求流末尾给出用量
/// （网关要精确计量；客户端没要求的用量块由翻译器去掉）；输出上限超过目标的 `max_output_tokens` 时截到它。
/// 无需改写时原样返回原始字节（零拷贝）；只需换模型名或追加 `stream_options` 时在原始字节上改（见 [`splice_request`]），
/// 不重新序列化整个请求；其余情况（截输出上限、合并已有的 `stream_options`）按对象序列化。
pub fn upstream_body(
    req: &ChatRequest,
    target: &Target,
    force_usage: bool,
) -> Result<Bytes, ApiError> {
    let usage_already = !force_usage || convert::include_usage(req);
    let cap = target.max_output_tokens;
    let over_cap = cap.is_some() && req.body.iter().any(|(k, v)| capped(k, v, cap).is_some());
    if req.model == target.model && usage_already && !over_cap {
        return Ok(req.raw.clone());
    }
    let add_usage = !usage_already && !req.body.contains_key(STREAM_OPTIONS);
    let model = (req.model != target.model).then_some(target.model.as_str());
    if !over_cap && (usage_already || add_usage) {
        if let Some(spliced) = splice_request(&req.raw, model, add_usage) {
            return Ok(spliced);
        }
    }
    let body = UpstreamBody {
        body: &req.body,
        model: &target.model,
        force_usage: !usage_already,
        cap,
    };
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("序列化上游请求失败：{e}")))
}

#[cfg(test)]
mod tests {
    use super::test_target::目标;
    use super::*;

    fn may_carry_usage_text(data: &str) -> bool {
        may_carry_usage(data.as_bytes())
    }

    #[test]
    fn 用量判断_只有对象形式的用量才需要解析() {
        assert!(may_carry_usage_text(
            r#"{"choices":[],"usage":{"prompt_tokens":9}}"#
        ));
        assert!(may_carry_usage_text(
            "{\"choices\":[],\"usage\" :\n {\"prompt_tokens\":9}}"
        ));
        assert!(!may_carry_usage_text(
            r#"{"choices":[{"delta":{"content":"你"}}],"usage":null}"#
        ));
        assert!(!may_carry_usage_text(
            r#"{"choices":[{"delta":{"content":"谈谈 \"usage\": {一}"}}]}"#
        ));
        assert!(!may_carry_usage_text(
            r#"{"choices":[{"delta":{"content":"好"}}]}"#
        ));
    }

    #[test]
    fn 用量定位_从后往前找键_文本里的转义引号不算() {
        let body = r#"{"output":[{"text":"谈谈 \"usage\": {一}"}],"usage" : {"input_tokens":3},"user":null}"#;
        let value = last_usage_value(body.as_bytes()).expect("应找到用量");
        assert!(
            value
                .trim_ascii_start()
                .starts_with(br#"{"input_tokens":3}"#),
            "{}",
            String::from_utf8_lossy(value)
        );
        assert!(last_usage_value(br#"{"text":"\"usage\": 1"}"#).is_none());
        assert!(last_usage_value(br#"{"input_tokens":3}"#).is_none());
    }

    fn 信息(message: &str) -> UpstreamErrorInfo {
        UpstreamErrorInfo {
            message: message.into(),
            kind: None,
            code: Some("context_length_exceeded".into()),
            param: Some("messages".into()),
            ..UpstreamErrorInfo::default()
        }
    }

    #[test]
    fn 上游错误_认证失败映射为_502且不转告上游原文() {
        let e = map_upstream_error(
            401,
            信息("Incorrect API key provided: sk-proj-****WXYZ"),
            "openai",
        );
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (502, Some("upstream_auth_failed"))
        );
        assert!(
            !e.message.contains("WXYZ"),
            "密钥末几位不能写给客户端：{}",
            e.message
        );
        assert!(
            e.message.contains("openai"),
            "应说明是哪类上游：{}",
            e.message
        );
        assert!(
            e.detail().is_some_and(|d| d.contains("WXYZ")),
            "上游原文应留给日志"
        );
    }

    #[test]
    fn 上游错误_客户端之过的_4xx_转告原文_其余只给通用消息() {
        let e = map_upstream_error(400, 信息("too long"), "openai");
        assert_eq!((e.status, e.param.as_deref()), (400, Some("messages")));
        assert!(e.message.contains("too long"), "{}", e.message);
        let busy = map_upstream_error(503, 信息("10.0.0.7:8443 busy"), "p");
        assert_eq!(busy.status, 503);
        assert!(!busy.message.contains("10.0.0.7"), "{}", busy.message);
        let limited = map_upstream_error(429, 信息("org-秘密 的限额已满"), "p");
        assert!(!limited.message.contains("org-秘密"), "{}", limited.message);
        assert_eq!(map_upstream_error(302, 信息("moved"), "p").status, 502);
    }

    #[test]
    fn 输出上限_超过目标上限时截断_没超过时原样转发() {
        let req = ChatRequest::parse(Bytes::from_static(
            br#"{"model":"demo","max_tokens":32000,"messages":[{"role":"user","content":"x"}]}"#,
        ))
        .expect("应当通过");
        let capped = upstream_body(&req, &目标("demo", Some(16384)), false).expect("应当成功");
        assert_eq!(
            std::str::from_utf8(&capped).expect("UTF-8"),
            r#"{"model":"demo","max_tokens":16384,"messages":[{"role":"user","content":"x"}]}"#
        );
        let roomy = upstream_body(&req, &目标("demo", Some(64000)), false).expect("应当成功");
        assert_eq!(roomy, req.raw, "没超过上限时零拷贝转发");
    }

    #[test]
    fn 截断_按字符不切坏中文() {
        assert_eq!(truncate_chars("你好世界", 2), "你好…");
        assert_eq!(truncate_chars("短", 5), "短");
    }

    #[test]
    fn 改写模型名_保留其余字段与顺序() {
        let req = ChatRequest::parse(Bytes::from_static(
            br#"{"stream":false,"model":"demo","messages":[{"role":"user","content":"x"}]}"#,
        ))
        .expect("应当通过");
        let same = upstream_body(&req, &目标("demo", None), false).expect("应当成功");
        assert_eq!(same, req.raw, "模型名相同时必须原样转发");
        let changed = upstream_body(&req, &目标("上游模型", None), false).expect("应当成功");
        assert_eq!(
            std::str::from_utf8(&changed).expect("UTF-8"),
            r#"{"stream":false,"model":"上游模型","messages":[{"role":"user","content":"x"}]}"#
        );
    }

    #[test]
    fn 流式要用量_在原始字节上追加_stream_options_不重新序列化() {
        let rest = r#""stream": true, "temperature": 1.0e0,
  "messages": [{"role": "user", "content": "你好"}] }"#;
        let raw = format!(r#"{{ "model": "demo", {rest}"#);
        let req = ChatRequest::parse(Bytes::from(raw)).expect("应当通过");
        let body = upstream_body(&req, &目标("上游模型", None), true).expect("应当成功");
        let expected =
            format!(r#"{{"stream_options":{{"include_usage":true}}, "model": "上游模型", {rest}"#);
        assert_eq!(
            std::str::from_utf8(&body).expect("UTF-8"),
            expected,
            "空白与数字写法保持原样"
        );
        let same_model = upstream_body(&req, &目标("demo", None), true).expect("应当成功");
        let expected =
            format!(r#"{{"stream_options":{{"include_usage":true}}, "model": "demo", {rest}"#);
        assert_eq!(std::str::from_utf8(&same_model).expect("UTF-8"), expected);
    }
}
