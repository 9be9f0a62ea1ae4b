//! 流式响应：逐块读取上游，按 SSE 事件翻译，每批事件立即写给客户端。

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::client::HttpSession;
use pingora_proxy::Session;

use super::budget::{Budget, StreamCaps};
use super::{io, ExchangeReport, Failure};
use crate::downstream;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{InflightGuard, METRICS};
use crate::providers::{StreamStatus, StreamTranslator};
use crate::streaming::{SseEvent, SseParser};

/// 流大小指标的标签：单个事件超限。
const OVERSIZE_EVENT: &str = "event";
/// 流大小指标的标签：整个流超限。
const OVERSIZE_STREAM: &str = "stream";
/// SSE 的内容类型前缀。
const EVENT_STREAM: &str = "text/event-stream";

/// 确认上游确实返回了 SSE；否则返回 502，而不是把非流式响应当成被截断的流。
pub(super) fn ensure_event_stream(header: &ResponseHeader, provider: &str) -> Result<(), ApiError> {
    let content_type = header
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.trim_start().starts_with(EVENT_STREAM) {
        Ok(())
    } else {
        Err(ApiError::bad_gateway(
            ErrorCode::InvalidUpstreamResponse,
            format!("请求了流式响应，但 {provider} 类型的上游返回的内容类型是 `{content_type}`"),
        ))
    }
}

/// 把上游 SSE 流翻译后转发给客户端，直到翻译器报告结束或上游关闭；透传的旁路观察者
/// （[`StreamTranslator::forwards_raw`]）只看事件，上游的字节原样转发。
///
/// 客户端的响应头推迟到第一批翻译好的事件要写出时才发：在此之前上游断开、发来乱码或超时，
/// 客户端还什么都没收到，调用方可以换一个目标重试。
/// 等待上游与写客户端的时间、首块时刻与写出次数记入 `report`。
/// 错误：上游读失败、超时或截断时，已写出的事件保留，错误交给调用方写成流中错误事件
/// （还没写出任何东西时写成普通错误响应）。
pub(super) async fn relay(
    up: &mut HttpSession,
    down: &mut Session,
    translator: &mut dyn StreamTranslator,
    budget: &Budget<'_>,
    report: &mut ExchangeReport,
) -> Result<(), Failure> {
    let _inflight = InflightGuard::new(&METRICS.inflight_streams);
    let caps = budget.caps();
    let mut parser = SseParser::with_limit(caps.event_bytes);
    let mut events: Vec<SseEvent> = Vec::new();
    let mut out = BytesMut::new();
    let mut received: u64 = 0;
    let raw = translator.forwards_raw();
    let mut quiet = translator
        .wants_keepalive()
        .then(|| Quiet::new(caps.keepalive));
    loop {
        let chunk = next_chunk(up, down, translator, (budget, report), quiet.as_mut()).await?;
        let eof = chunk.is_none();
        match &chunk {
            Some(bytes) => {
                received = received.saturating_add(bytes.len() as u64);
                parser.push(bytes, &mut events);
            }
            None => parser.finish(&mut events),
        }
        check_size(&parser, received, caps)?;
        check_output(report, events.len())?;
        let step = translate(translator, &mut events, &mut out, eof);
        // 透传时原样写出上游的这一块（零拷贝），翻译时写出翻译好的事件
        let data = match chunk {
            Some(bytes) if raw => bytes,
            _ => out.split().freeze(),
        };
        if !data.is_empty() {
            write_events(down, budget, report, data).await?;
            report.mark_output();
            report.chunks += 1;
        }
        if step? == StreamStatus::Done {
            start_once(down, budget, report).await?;
            return report
                .wait(downstream::finish_body(down))
                .await
                .map_err(Failure::gone);
        }
    }
}

/// 预算的输出上限：数上游事件（约等于 token），越过 `output_cap` 时切断流（429 `insufficient_quota` 的流中错误）。
fn check_output(report: &mut ExchangeReport, new_events: usize) -> Result<(), ApiError> {
    let Some(cap) = report.output_cap else {
        return Ok(());
    };
    report.events = report.events.saturating_add(new_events as u64);
    if report.events > cap {
        return Err(ApiError::budget_cut());
    }
    Ok(())
}

/// 保活：上游沉默多久补一个事件，以及自上一块数据以来已经安静地等过多久（块间隔超时要减去它）。
///
/// 按等过的间隔累加而不读时钟：每块数据都要经过这里，读时钟是每个事件的额外开销。
struct Quiet {
    interval: Duration,
    silent: Duration,
}

impl Quiet {
    fn new(interval: Duration) -> Self {
        Quiet {
            interval,
            silent: Duration::ZERO,
        }
    }
}

/// 读下一块上游数据；需要保活的流在上游沉默时先给客户端写保活事件（这会发出响应头，之后不再换目标）。
async fn next_chunk(
    up: &mut HttpSession,
    down: &mut Session,
    translator: &mut dyn StreamTranslator,
    (budget, report): (&Budget<'_>, &mut ExchangeReport),
    quiet: Option<&mut Quiet>,
) -> Result<Option<Bytes>, Failure> {
    let Some(quiet) = quiet else {
        return report.wait(io::read_chunk(up, down, budget)).await;
    };
    loop {
        let read = io::read_chunk_or_quiet(up, down, budget, quiet.interval, quiet.silent);
        if let Some(chunk) = report.wait(read).await? {
            quiet.silent = Duration::ZERO;
            return Ok(chunk);
        }
        quiet.silent += quiet.interval;
        let mut beat = BytesMut::new();
        translator.keepalive(&mut beat);
        if !beat.is_empty() {
            write_events(down, budget, report, beat.freeze()).await?;
        }
    }
}

/// 写出一批事件（还没写过响应头时先写 SSE 响应头）。
async fn write_events(
    down: &mut Session,
    budget: &Budget<'_>,
    report: &mut ExchangeReport,
    data: Bytes,
) -> Result<(), Failure> {
    start_once(down, budget, report).await?;
    report
        .wait(downstream::write_chunk(down, data))
        .await
        .map_err(Failure::gone)
}

/// 上游流的大小检查：单个事件（或未完成的一行）超过上限、整个流超过上限时以 502 结束，并计入指标。
///
/// 每读一块都要查：没超限时只做两次比较，超限的说明在不内联的 [`oversize`] 里构造。
#[inline]
fn check_size(parser: &SseParser, received: u64, caps: StreamCaps) -> Result<(), ApiError> {
    if !parser.overflowed() && received <= caps.stream_bytes {
        return Ok(());
    }
    Err(oversize(parser, caps))
}

/// 超限时的错误（并计入 `llm_stream_oversize_total`）。
#[cold]
fn oversize(parser: &SseParser, caps: StreamCaps) -> ApiError {
    let (what, message) = if parser.overflowed() {
        (
            OVERSIZE_EVENT,
            format!(
                "上游流中的单个事件超过 {} 字节上限（server.max_stream_event_bytes）",
                caps.event_bytes
            ),
        )
    } else {
        (
            OVERSIZE_STREAM,
            format!(
                "上游流超过 {} 字节上限（server.max_stream_bytes）",
                caps.stream_bytes
            ),
        )
    };
    METRICS.stream_oversize.with_label_values(&[what]).inc();
    ApiError::bad_gateway(ErrorCode::UpstreamResponseTooLarge, message)
}

/// 还没向客户端写过响应头时写出 SSE 响应头。
///
/// 同时把每次写客户端的超时收紧到剩余的请求总时长（每个流算一次，不在每块上读时钟）：
/// 客户端读得再慢，一次写也不会越过总时长；总时长在每次读上游时另有检查。
async fn start_once(
    down: &mut Session,
    budget: &Budget<'_>,
    report: &mut ExchangeReport,
) -> Result<(), Failure> {
    if down.response_written().is_some() {
        return Ok(());
    }
    let per_write = down.get_write_timeout().unwrap_or(Duration::MAX);
    down.set_write_timeout(Some(per_write.min(budget.remaining())));
    report
        .wait(downstream::start_event_stream(down))
        .await
        .map_err(Failure::gone)
}

/// 翻译本批事件；上游已结束时让翻译器判断是否被截断。
fn translate(
    translator: &mut dyn StreamTranslator,
    events: &mut Vec<SseEvent>,
    out: &mut BytesMut,
    eof: bool,
) -> Result<StreamStatus, ApiError> {
    for event in events.drain(..) {
        if translator.on_event(&event, out)? == StreamStatus::Done {
            return Ok(StreamStatus::Done);
        }
    }
    if eof {
        translator.on_eof(out)?;
        return Ok(StreamStatus::Done);
    }
    Ok(StreamStatus::Continue)
}
