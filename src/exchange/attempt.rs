//! 与一个目标的一次尝试：翻译请求、连接、发送、读响应头，成功时把回复写回客户端；
//! 失败时给出能否换目标重试，以及对该目标的健康结论（被动健康检测）。

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use pingora::protocols::http::v1::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use pingora_proxy::Session;

use super::budget::{Budget, Phase, Wait};
use super::{io, render, stream, ExchangeReport, Failure, UpstreamClient};
use crate::config::{Provider, Target};
use crate::dialects::Inbound;
use crate::downstream::{self, GatewayHeaders, REQUEST_ID_HEADER};
use crate::error::{ApiError, ErrorCode, Relayed};
use crate::providers::{
    map_upstream_error, mode_for, Mode, StreamTranslator, TranslateCtx, UpstreamRequest,
};
use crate::upstream::{Lease, Verdict, MAX_UPSTREAM_WAIT};

/// 上游错误响应体读取的上限。
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// 上游完整（非流式）响应体的上限。
const MAX_RESPONSE_BODY_BYTES: usize = 64 * 1024 * 1024;
/// 用量是网关估算的回复带的响应头。
static ESTIMATED_USAGE: [(HeaderName, HeaderValue); 1] = [(
    HeaderName::from_static(USAGE_HEADER),
    HeaderValue::from_static(ESTIMATED),
)];
/// 标明用量来源的响应头。
const USAGE_HEADER: &str = "x-chatnexus-usage";
/// 用量是估算的。
const ESTIMATED: &str = "estimated";
/// 成功的状态码（流中错误事件写在 200 的响应里）。
const STATUS_OK: u16 = 200;
/// 限流状态码。
const STATUS_TOO_MANY_REQUESTS: u16 = 429;
/// 说明目标故障、值得换一个目标的状态码（映射之后；上游认证失败已映射为 502，Anthropic 529 为 503）。
const FAILOVER_STATUSES: [u16; 5] = [500, 502, 503, 504, 529];

/// 一次尝试的失败。
pub(super) struct AttemptError {
    /// 若不再重试，返回给客户端的失败。
    pub failure: Failure,
    /// 换一个目标是否可能成功（调用方还要确认客户端尚未收到任何字节）。
    pub retryable: bool,
    /// 对该目标的健康结论。
    pub verdict: Verdict,
}

impl From<Failure> for AttemptError {
    /// 上游侧的失败（连接、超时、读写、无法解析）可以重试并计入熔断；客户端断开则两者都不是。
    fn from(failure: Failure) -> Self {
        let gone = matches!(failure, Failure::ClientGone(_));
        AttemptError {
            failure,
            retryable: !gone,
            verdict: if gone {
                Verdict::Unknown
            } else {
                Verdict::Failed { retry_after: None }
            },
        }
    }
}

impl From<ApiError> for AttemptError {
    fn from(error: ApiError) -> Self {
        Failure::Api(error).into()
    }
}

/// 用租约中的目标完成一次交换；尝试次数、等待时间、首块时刻与用量记入 `report`。
///
/// 客户端方言与目标协议相同时透传（请求只换 `model`，回复原样），否则经枢纽格式翻译。
/// 首字节超时从开始写请求算起：写请求与等响应头共用一个时限。
/// 返回：写给客户端的状态码。错误：见 [`AttemptError`]。
pub(super) async fn once(
    client: &UpstreamClient,
    down: &mut Session,
    inbound: &Inbound,
    lease: &Lease<'_>,
    budget: &Budget<'_>,
    report: &mut ExchangeReport,
) -> Result<u16, AttemptError> {
    let target = lease.target();
    let provider = &target.provider;
    let mode = mode_for(inbound, provider).map_err(untranslatable)?;
    let mut request = build_request(&mode, inbound, target).map_err(untranslatable)?;
    report.attempts += 1;
    report.passthrough = matches!(mode, Mode::Native(_));
    forward_request_id(down, &mut request);
    tag_response(down, inbound, target, &mode);
    let (up, peer) = client.connect(provider, budget).await?;
    let first_byte = budget.wait(Phase::FirstByte);
    let mut up = send_request(up, &peer, provider, request, &first_byte).await?;
    let status = report
        .wait(io::read_header(&mut up, down, &first_byte))
        .await;
    if !matches!(status, Err(Failure::ClientGone(_))) {
        lease.record_first_byte();
    }
    let status = status?;
    if !status.is_success() {
        let reply = Reply {
            mode: &mode,
            provider,
            status: status.as_u16(),
            retry_after: up.resp_header().and_then(io::retry_after),
        };
        return Err(reject(&mut up, down, reply, budget, report).await);
    }
    let exchange = Exchange {
        up: &mut up,
        down,
        budget,
        report,
    };
    if inbound.stream() {
        deliver_stream(exchange, inbound, &mode).await?;
    } else {
        deliver_json(exchange, inbound, &mode).await?;
    }
    client.release(up, &peer).await;
    Ok(STATUS_OK)
}

/// 把本次尝试的上游模型名与翻译时丢弃的功能交给网关头模块（写进给客户端的响应头）。
fn tag_response(down: &mut Session, inbound: &Inbound, target: &Target, mode: &Mode<'_>) {
    if let Some(headers) = GatewayHeaders::of(down) {
        headers.set_upstream_model(target.model_header.clone());
        headers.set_dropped(dropped_header(inbound, mode));
    }
}

/// 按交换方式构造上游请求：透传时由客户端的原始请求体换 `model`，翻译时由枢纽请求翻译。
fn build_request(
    mode: &Mode<'_>,
    inbound: &Inbound,
    target: &Target,
) -> Result<UpstreamRequest, ApiError> {
    match mode {
        Mode::Native(native) => native.build_request(inbound, target),
        Mode::Translated(filter, hub) => filter.build_request(hub, target),
        Mode::Counted(counter) => counter.build_request(inbound, target),
        Mode::Embedded(filter, req) => filter.build_request(req, target),
    }
}

/// 翻译时丢弃的客户端功能写成的响应头值（透传与没有丢弃时为 `None`）；功能名可能含非 ASCII 字符，按字节写。
fn dropped_header(inbound: &Inbound, mode: &Mode<'_>) -> Option<HeaderValue> {
    if !matches!(mode, Mode::Translated(..)) {
        return None;
    }
    let dropped = inbound.dropped().filter(|d| !d.0.is_empty())?;
    HeaderValue::from_bytes(dropped.0.join(",").as_bytes()).ok()
}

/// 一次交换的两端与它的时限、报告。
struct Exchange<'a, 'b> {
    up: &'a mut HttpSession,
    down: &'a mut Session,
    budget: &'a Budget<'b>,
    report: &'a mut ExchangeReport,
}

/// 流式：透传时旁路观察原样转发，翻译时逐事件翻译（非 Chat 方言再渲染成客户端的事件）。
async fn deliver_stream(
    x: Exchange<'_, '_>,
    inbound: &Inbound,
    mode: &Mode<'_>,
) -> Result<(), AttemptError> {
    stream::ensure_event_stream(x.up.resp_header(), x.budget.provider_label())?;
    let mut translator = match mode {
        Mode::Native(native) => {
            render::capture(native.observer(), inbound.dialect(), x.report.keep)
        }
        Mode::Translated(filter, hub) => {
            let hub_stream = filter.stream_translator(TranslateCtx::for_request(hub));
            render::stream_for(inbound, hub_stream, x.report.keep)
        }
        Mode::Counted(_) | Mode::Embedded(..) => {
            return Err(ApiError::internal("计数与向量请求不是流式的").into())
        }
    };
    let relayed = stream::relay(x.up, x.down, translator.as_mut(), x.budget, x.report).await;
    let completed = relayed.is_ok();
    x.report
        .settle_stream_usage(translator.usage(), completed, inbound.raw().len());
    if x.report.keep {
        x.report.rendered = translator.final_response();
    }
    let failed = match relayed {
        Err(Failure::Api(error)) if x.down.response_written().is_some() => {
            Err(close_failed(x.down, translator.as_mut(), error)
                .await
                .into())
        }
        other => other.map_err(AttemptError::from),
    };
    failed.map_err(spare_target)
}

/// 响应头已发出后失败：让翻译器写出客户端方言的终结事件（如 `response.failed`），写出后把错误标为已送达。
async fn close_failed(
    down: &mut Session,
    translator: &mut dyn StreamTranslator,
    error: ApiError,
) -> Failure {
    let mut out = BytesMut::new();
    if !translator.on_failure(&error, &mut out) {
        return error.into();
    }
    if let Err(cause) = downstream::write_chunk(down, out.freeze()).await {
        return Failure::gone(cause);
    }
    let delivered = Relayed {
        status: STATUS_OK,
        body: Bytes::new(),
        delivered: true,
    };
    error.with_relayed(delivered).into()
}

/// 非流式：读完上游响应体；透传时原样写给客户端（只读出用量），翻译时翻译后写出。
/// 用量是网关估算的（如 Gemini 的向量）时带响应头 `x-chatnexus-usage: estimated`。
async fn deliver_json(
    x: Exchange<'_, '_>,
    inbound: &Inbound,
    mode: &Mode<'_>,
) -> Result<(), AttemptError> {
    let body = x
        .report
        .wait(io::read_body(
            x.up,
            x.down,
            x.budget,
            MAX_RESPONSE_BODY_BYTES,
        ))
        .await?;
    let body = render_json(x.report, inbound, mode, body)?;
    let extra = if x.report.estimated {
        &ESTIMATED_USAGE[..]
    } else {
        &[]
    };
    let written = x
        .report
        .wait(downstream::write_json_with(x.down, body, extra))
        .await;
    written.map_err(Failure::gone)?;
    x.report.mark_output();
    Ok(())
}

/// 上游的完整回复 → 写给客户端的回复，同时记下用量（与要保留的完整回复）。
///
/// 错误：上游回复无法解析或翻译时返回 502。
fn render_json(
    report: &mut ExchangeReport,
    inbound: &Inbound,
    mode: &Mode<'_>,
    body: Bytes,
) -> Result<Bytes, ApiError> {
    let rendered = match mode {
        Mode::Native(native) => {
            report.usage = native.usage_of(&body);
            body
        }
        Mode::Translated(filter, hub) => {
            let reply = filter.translate_response(body, &TranslateCtx::for_request(hub))?;
            report.usage = reply.usage;
            render::json_for(inbound, reply.body)?
        }
        Mode::Embedded(filter, req) => {
            let reply = filter.render(req, body)?;
            report.usage = Some(reply.usage);
            report.estimated = reply.estimated;
            reply.body
        }
        Mode::Counted(counter) => return counter.render(inbound, &body),
    };
    report.rendered = render::kept_response(report.keep, &rendered);
    Ok(rendered)
}

/// 把本请求的请求 id 一并发给上游，便于跨系统排查。
fn forward_request_id(down: &Session, request: &mut UpstreamRequest) {
    if let Some(id) = GatewayHeaders::of_ref(down).and_then(GatewayHeaders::request_id) {
        request
            .headers
            .push((REQUEST_ID_HEADER.clone(), id.clone()));
    }
}

/// 上游的非 2xx 回复：交换方式（决定怎样解析与是否原样转告）、来自哪个上游、状态码与响应头 `Retry-After` 的秒数。
struct Reply<'a> {
    mode: &'a Mode<'a>,
    provider: &'a Provider,
    status: u16,
    retry_after: Option<u64>,
}

/// 预算切断的流（429 `insufficient_quota`）不是目标的错：不计入熔断，也不换目标。
fn spare_target(mut error: AttemptError) -> AttemptError {
    if matches!(&error.failure, Failure::Api(e) if e.code == ErrorCode::InsufficientQuota) {
        error.verdict = Verdict::Healthy;
        error.retryable = false;
    }
    error
}

/// 请求无法翻译成该目标的协议（例如某家不支持的参数）：换一个协议不同的目标也许可以，
/// 但这不说明目标不健康。
fn untranslatable(error: ApiError) -> AttemptError {
    AttemptError {
        failure: error.into(),
        retryable: true,
        verdict: Verdict::Unknown,
    }
}

/// 上游返回了非 2xx：读错误体，映射为客户端错误，并判断是否换目标。
///
/// 429 按 `Retry-After` 暂停该目标；500/502/503/504/529 与上游拒绝网关密钥计为故障；
/// 其余 4xx 是请求本身的问题，换目标也没用，目标本身是健康的。
async fn reject(
    up: &mut HttpSession,
    down: &mut Session,
    reply: Reply<'_>,
    budget: &Budget<'_>,
    report: &mut ExchangeReport,
) -> AttemptError {
    let status = reply.status;
    let read = io::read_body(up, down, budget, MAX_ERROR_BODY_BYTES);
    let body = match report.wait(read).await {
        Ok(body) => body,
        Err(failure) => return failure.into(),
    };
    let mut error = match reply.mode {
        Mode::Native(native) => native.relay_error(status, body),
        Mode::Translated(filter, _) => {
            let info = filter.parse_error(status, &body);
            map_upstream_error(status, info, reply.provider.kind.label())
        }
        Mode::Counted(counter) => {
            let info = counter.parse_error(status, &body);
            map_upstream_error(status, info, reply.provider.kind.label())
        }
        Mode::Embedded(filter, _) => {
            let info = filter.parse_error(status, &body);
            map_upstream_error(status, info, reply.provider.kind.label())
        }
    };
    // 上游给出的等待时间不可信：截到上限再告诉客户端与记入目标状态
    error.retry_after = error
        .retry_after
        .or(reply.retry_after)
        .map(|secs| secs.min(MAX_UPSTREAM_WAIT.as_secs()));
    let verdict = verdict_for(error.status, error.retry_after.map(Duration::from_secs));
    AttemptError {
        failure: error.into(),
        retryable: verdict != Verdict::Healthy,
        verdict,
    }
}

/// 上游错误（映射之后的状态码）对目标的结论：429 是限流（按等待时间暂停，不计入熔断）；
/// 500/502/503/504/529 与上游拒绝网关密钥是故障；其余 4xx（400、404、413、422……）是客户端请求的问题，目标是健康的。
fn verdict_for(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        STATUS_TOO_MANY_REQUESTS => Verdict::Throttled { retry_after },
        s if FAILOVER_STATUSES.contains(&s) => Verdict::Failed { retry_after },
        _ => Verdict::Healthy,
    }
}

/// 写出请求头与请求体，返回接着读响应的会话。通用头（Host、长度、编码）在这里统一设置，认证头来自过滤器。
///
/// 头与体一次写出（见 [`io::write_h1_request`]），最多等首字节等待 `first_byte` 的时限；写不完（上游不读）时
/// 返回与等响应头超时相同的说法。
async fn send_request(
    up: HttpSession,
    peer: &HttpPeer,
    provider: &Provider,
    request: UpstreamRequest,
    first_byte: &Wait<'_>,
) -> Result<HttpSession, ApiError> {
    let header = io::build_request_header(provider, &request)?;
    io::write_h1_request(up, peer, &header, &request.body, first_byte.duration)
        .await
        .map_err(|e| match e.etype() {
            ErrorType::WriteTimedout => first_byte.timeout_error(),
            _ => ApiError::bad_gateway(
                ErrorCode::UpstreamWriteFailed,
                format!("向 {} 类型的上游发送请求失败", provider.kind.label()),
            )
            .with_cause(*e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 客户端自己的错误_不计入目标的故障() {
        for status in [400, 404, 413, 422] {
            assert_eq!(
                verdict_for(status, None),
                Verdict::Healthy,
                "{status} 是请求本身的问题"
            );
        }
    }

    #[test]
    fn 限流与故障_分别暂停与计入熔断() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(
            verdict_for(429, wait),
            Verdict::Throttled { retry_after: wait }
        );
        for status in FAILOVER_STATUSES {
            assert_eq!(
                verdict_for(status, None),
                Verdict::Failed { retry_after: None }
            );
        }
    }
}
