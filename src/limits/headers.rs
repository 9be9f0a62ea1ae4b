//! 准入的响应带上最紧一层的额度：`x-ratelimit-limit-requests`、`x-ratelimit-remaining-requests`、
//! `x-ratelimit-reset-requests` 与对应的 `-tokens`，与 OpenAI 的同名响应头含义一致。
//!
//! 这里只算出头的名字与值；`proxy` 准入后交给 `downstream` 的网关头模块，由它写进每个响应。

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use super::layer::Kind;
use super::verdict::Quota;

/// 每种计数的额度头个数：上限、剩余、恢复时间。
const HEADERS_PER_KIND: usize = 3;
/// 计数的种类数（请求数、token 数）。
const KINDS: usize = 2;
/// 请求数上限的响应头。
static LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
/// 剩余请求数的响应头。
static REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
/// 请求数额度完全恢复时间的响应头。
static RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
/// token 上限的响应头。
static LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
/// 剩余 token 的响应头。
static REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
/// token 额度完全恢复时间的响应头。
static RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
/// 一分钟的秒数。
const SECS_PER_MINUTE: u64 = 60;
/// 一小时的分钟数。
const MINUTES_PER_HOUR: u64 = 60;
/// 一秒的毫秒数。
const MILLIS_PER_SEC: u64 = 1000;
/// 秒的小数部分最多的位数（毫秒精度）。
const FRACTION_DIGITS: usize = 3;
/// 十进制的基数。
const DECIMAL_BASE: u64 = 10;
/// 六个头值文本预留的长度（常见的两个上限、两个剩余量与两个形如 `12h34m56.789s` 的时长；更长时自动扩容）。
const VALUES_CAPACITY: usize = 80;

/// 一个请求的额度头（名字与值都已构造好，写响应头时直接放进头表）。
pub type QuotaHeaders = Vec<(HeaderName, HeaderValue)>;

/// 从各层额度中选出最紧的一层（剩余最少，相同时上限较小者），生成六个响应头（没有该种上限的不生成）。
///
/// 每个受限流的请求都要生成它们：六个值先写进同一段文本（整数格式化，不经 `format!`），
/// 头值都是这段文本的切片，一次分配而不是每个值各分配一次。
///
/// ```
/// use chatnexus::limits::{rate_limit_headers, Kind, Layer, Quota}; // 额度与响应头
/// let q = |layer, remaining| Quota { layer, kind: Kind::Requests, limit: 100, remaining, reset: std::time::Duration::from_secs(90) }; // 一层的请求额度
/// let headers = rate_limit_headers(&[q(Layer::Global, 80), q(Layer::Key, 3)]); // 两层
/// assert_eq!((headers[1].0.as_str(), headers[1].1.to_str().unwrap()), ("x-ratelimit-remaining-requests", "3")); // 取最紧的密钥层
/// assert_eq!(headers[2].1, "1m30s"); // 与 OpenAI 相同的时长格式
/// ```
pub fn rate_limit_headers(quotas: &[Quota]) -> QuotaHeaders {
    let tightest = |kind: Kind| {
        quotas
            .iter()
            .filter(|q| q.kind == kind)
            .min_by_key(|q| (q.remaining, q.limit))
    };
    let names = [
        (
            Kind::Requests,
            [&LIMIT_REQUESTS, &REMAINING_REQUESTS, &RESET_REQUESTS],
        ),
        (
            Kind::Tokens,
            [&LIMIT_TOKENS, &REMAINING_TOKENS, &RESET_TOKENS],
        ),
    ];
    let mut text = String::with_capacity(VALUES_CAPACITY);
    let mut spans = Vec::with_capacity(HEADERS_PER_KIND * KINDS);
    for (kind, [limit, remaining, reset]) in names {
        if let Some(q) = tightest(kind) {
            spans.push((limit, push_span(&mut text, |t| push_number(t, q.limit))));
            spans.push((
                remaining,
                push_span(&mut text, |t| push_number(t, q.remaining)),
            ));
            spans.push((
                reset,
                push_span(&mut text, |t| push_go_duration(t, q.reset)),
            ));
        }
    }
    let text = Bytes::from(text);
    spans
        .into_iter()
        .filter_map(|(name, span)| {
            // 只含数字、字母与小数点，必然是合法的头值
            let value = HeaderValue::from_maybe_shared(text.slice(span)).ok()?;
            Some((name.clone(), value))
        })
        .collect()
}

/// 把 `write` 写出的一段追加到 `text`，返回这一段的范围。
fn push_span(text: &mut String, write: impl FnOnce(&mut String)) -> Range<usize> {
    let start = text.len();
    write(text);
    start..text.len()
}

/// 追加一个十进制整数。
fn push_number(out: &mut String, value: u64) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// 追加时长，格式与 OpenAI 响应头相同：`20ms`、`1.5s`、`6m0s`、`1h2m3s`。
fn push_go_duration(out: &mut String, d: Duration) {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut digits = itoa::Buffer::new();
    if millis < MILLIS_PER_SEC {
        out.push_str(digits.format(millis));
        out.push_str("ms");
        return;
    }
    let total_secs = millis / MILLIS_PER_SEC;
    let minutes = total_secs / SECS_PER_MINUTE;
    let (hours, minutes) = (minutes / MINUTES_PER_HOUR, minutes % MINUTES_PER_HOUR);
    if hours > 0 {
        out.push_str(digits.format(hours));
        out.push('h');
    }
    if hours > 0 || minutes > 0 {
        out.push_str(digits.format(minutes));
        out.push('m');
    }
    out.push_str(digits.format(total_secs % SECS_PER_MINUTE));
    push_millis_fraction(out, millis % MILLIS_PER_SEC);
    out.push('s');
}

/// 追加秒的小数部分（毫秒，去掉末尾的 0；为 0 时不写）：250 → `.25`，5 → `.005`。
fn push_millis_fraction(out: &mut String, millis: u64) {
    if millis == 0 {
        return;
    }
    let (mut value, mut width) = (millis, FRACTION_DIGITS);
    while value % DECIMAL_BASE == 0 {
        value /= DECIMAL_BASE;
        width -= 1;
    }
    let mut digits = itoa::Buffer::new();
    let text = digits.format(value);
    out.push('.');
    (text.len()..width).for_each(|_| out.push('0'));
    out.push_str(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go_duration(d: Duration) -> String {
        let mut out = String::new();
        push_go_duration(&mut out, d);
        out
    }

    #[test]
    fn 时长_与_openai_格式一致() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(17)), "17ms");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(12_000)), "12s");
        assert_eq!(go_duration(ms(360_000)), "6m0s");
        assert_eq!(go_duration(ms(3_723_250)), "1h2m3.25s");
        assert_eq!(go_duration(ms(1_005)), "1.005s");
        assert_eq!(go_duration(ms(60_050)), "1m0.05s");
        assert_eq!(go_duration(ms(0)), "0ms");
        assert_eq!(go_duration(ms(7_200_000)), "2h0m0s");
    }
}
