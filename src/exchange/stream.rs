//! 流式响应：逐块读取上游，按 SSE 事件翻译，每批事件立即写给客户端。

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::v1::client::HttpSession;
use pingora_proxy::Session;

use super::budget::{Budget, StreamCaps};
use super::{events, io, ExchangeReport, Failure};
use crate::downstream;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{InflightGuard, METRICS};
use crate::providers::{StreamStatus, StreamTranslator};
use crate::streaming::SseParser;

/// 流大小指标的标签：单个事件超限。
const OVERSIZE_EVENT: &str = "event";
/// 流大小指标的标签：整个流超限。
const OVERSIZE_STREAM: &str = "stream";
/// SSE 的内容类型前缀。
const EVENT_STREAM: &str = "text/event-stream";
/// 一次写给客户端的字节数到这么多就先写出去，不再合并已经送到的后续数据。
const COALESCE_BYTES: usize = 64 * 1024;
/// 一次写之前最多合并多少次不必等待的读（上游一直有数据时也要按时写出）。
const COALESCE_READS: usize = 64;

/// 确认上游确实返回了 SSE；否则返回 502，而不是把非流式响应当成被截断的流。
pub(super) fn ensure_event_stream(
    header: Option<&ResponseHeader>,
    provider: &str,
) -> Result<(), ApiError> {
    let content_type = header
        .and_then(|h| h.headers.get(http::header::CONTENT_TYPE))
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
    let mut relay = Relay::new(budget.caps(), translator.forwards_raw());
    let mut quiet = translator
        .wants_keepalive()
        .then(|| Quiet::new(relay.caps.keepalive));
    loop {
        let chunk = next_chunk(up, down, translator, (budget, report), quiet.as_mut()).await?;
        let mut status = relay.absorb(chunk, translator, report);
        // 上游已经送到的后续数据一并翻译、合成一次写（只取不必等待的：每个事件照样一到就发出）
        for _ in 0..COALESCE_READS {
            if !matches!(status, Ok(StreamStatus::Continue)) || relay.batch.len() >= COALESCE_BYTES
            {
                break;
            }
            let Some(ready) = io::read_ready(up) else {
                break;
            };
            status = ready.and_then(|chunk| relay.absorb(chunk, translator, report));
        }
        let (data, events) = relay.batch.take();
        if !data.is_empty() {
            write_events(down, budget, report, data).await?;
            report.mark_output();
            report.chunks = report.chunks.saturating_add(events);
        }
        if status? == StreamStatus::Done {
            start_once(down, budget, report).await?;
            return report
                .wait(downstream::finish_body(down))
                .await
                .map_err(Failure::gone);
        }
    }
}

/// 一个流的转发状态：解析器、输出缓冲、已收的字节数与这一批要写给客户端的字节。
struct Relay {
    caps: StreamCaps,
    /// 翻译器是透传的旁路观察者：上游的每块原样转发。
    raw: bool,
    parser: SseParser,
    out: BytesMut,
    received: u64,
    batch: Batch,
}

impl Relay {
    fn new(caps: StreamCaps, raw: bool) -> Self {
        Relay {
            caps,
            raw,
            parser: SseParser::with_limit(caps.event_bytes),
            out: BytesMut::new(),
            received: 0,
            batch: Batch::default(),
        }
    }

    /// 处理上游的一块（`None` 为上游结束）：翻译，检查大小与预算的输出上限，要写给客户端的字节追加到这一批。
    ///
    /// 返回：翻译器的结论；翻译出错时出错前已翻译好的内容仍在这一批里，超限时这一块不写。
    fn absorb(
        &mut self,
        chunk: Option<Bytes>,
        translator: &mut dyn StreamTranslator,
        report: &mut ExchangeReport,
    ) -> Result<StreamStatus, ApiError> {
        let step = match chunk {
            Some(bytes) => {
                self.received = self.received.saturating_add(bytes.len() as u64);
                let chunk = (bytes, self.raw);
                events::translate_chunk(translator, &mut self.parser, chunk, &mut self.out)
            }
            None => events::translate_eof(translator, &mut self.parser, &mut self.out),
        };
        check_size(&self.parser, self.received, self.caps)?;
        check_output(report, step.events)?;
        self.batch.push(step.data, step.events);
        step.status
    }
}

/// 一次写给客户端的字节：只有一块时原样交出（不复制），多块时拼在一起；同时数其中的上游事件
/// （被取消的流按已写出的事件数估算输出 token，合并写之后不能再按写的次数数）。
#[derive(Default)]
struct Batch {
    first: Bytes,
    joined: BytesMut,
    events: u64,
}

impl Batch {
    fn push(&mut self, data: Bytes, events: u64) {
        if data.is_empty() {
            return;
        }
        self.events = self.events.saturating_add(events);
        if self.first.is_empty() && self.joined.is_empty() {
            self.first = data;
            return;
        }
        let first = std::mem::take(&mut self.first);
        self.joined.extend_from_slice(&first);
        self.joined.extend_from_slice(&data);
    }

    fn len(&self) -> usize {
        self.first.len() + self.joined.len()
    }

    /// 交出这一批的字节与其中的事件数（之后为空）。
    fn take(&mut self) -> (Bytes, u64) {
        let events = std::mem::take(&mut self.events);
        if self.joined.is_empty() {
            return (std::mem::take(&mut self.first), events);
        }
        (self.joined.split().freeze(), events)
    }
}

/// 预算的输出上限：数上游事件（约等于 token），越过 `output_cap` 时切断流（429 `insufficient_quota` 的流中错误）。
fn check_output(report: &mut ExchangeReport, new_events: u64) -> Result<(), ApiError> {
    let Some(cap) = report.output_cap else {
        return Ok(());
    };
    report.events = report.events.saturating_add(new_events);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 一批只有一块时原样交出_多块时按顺序拼接_并数出事件() {
        let mut batch = Batch::default();
        let first = Bytes::from_static("data: 第一块\n\n".as_bytes());
        batch.push(first.clone(), 1);
        batch.push(Bytes::new(), 1);
        let (only, events) = batch.take();
        assert_eq!(only.as_ptr(), first.as_ptr(), "只有一块：不复制");
        assert_eq!(events, 1, "没有写出内容的事件不算");
        assert_eq!(batch.len(), 0, "交出之后为空");

        batch.push(first.clone(), 1);
        batch.push(
            Bytes::from_static("data: 第二块\n\ndata: 第三块\n\n".as_bytes()),
            2,
        );
        let (joined, events) = batch.take();
        assert_eq!(
            joined,
            "data: 第一块\n\ndata: 第二块\n\ndata: 第三块\n\n".as_bytes(),
            "按顺序拼接"
        );
        assert_eq!(events, 3, "三个事件");
        assert_eq!(batch.take(), (Bytes::new(), 0), "交出之后为空");
    }
}
