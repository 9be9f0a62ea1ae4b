//! 准入的响应带上最紧一层的额度：`x-ratelimit-limit-requests`、`x-ratelimit-remaining-requests`、
//! `x-ratelimit-reset-requests` 与对应的 `-tokens`，与 OpenAI 的同名响应头含义一致。
//!
//! 以 Pingora 下游模块实现：`request_filter` 准入后把头交给本请求的模块实例，
//! JSON、SSE 与错误响应无论由哪段代码写出，都在 `write_response_header` 时补上。

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora_proxy::Session;

use super::layer::Kind;
use super::verdict::Quota;

/// 请求数上限的响应头。
pub const LIMIT_REQUESTS: &str = "x-ratelimit-limit-requests";
/// 剩余请求数的响应头。
pub const REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";
/// 请求数额度完全恢复时间的响应头。
pub const RESET_REQUESTS: &str = "x-ratelimit-reset-requests";
/// token 上限的响应头。
pub const LIMIT_TOKENS: &str = "x-ratelimit-limit-tokens";
/// 剩余 token 的响应头。
pub const REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
/// token 额度完全恢复时间的响应头。
pub const RESET_TOKENS: &str = "x-ratelimit-reset-tokens";
/// 一分钟的秒数。
const SECS_PER_MINUTE: u64 = 60;
/// 一小时的分钟数。
const MINUTES_PER_HOUR: u64 = 60;
/// 一秒的毫秒数。
const MILLIS_PER_SEC: u64 = 1000;

/// 从各层额度中选出最紧的一层（剩余最少，相同时上限较小者），生成六个响应头（没有该种上限的不生成）。
///
/// ```
/// use chatnexus::limits::{rate_limit_headers, Kind, Layer, Quota}; // 额度与响应头
/// let q = |layer, remaining| Quota { layer, kind: Kind::Requests, limit: 100, remaining, reset: std::time::Duration::from_secs(90) }; // 一层的请求额度
/// let headers = rate_limit_headers(&[q(Layer::Global, 80), q(Layer::Key, 3)]); // 两层
/// assert_eq!(headers[1], ("x-ratelimit-remaining-requests", "3".to_string())); // 取最紧的密钥层
/// assert_eq!(headers[2].1, "1m30s"); // 与 OpenAI 相同的时长格式
/// ```
pub fn rate_limit_headers(quotas: &[Quota]) -> Vec<(&'static str, String)> {
    let tightest = |kind: Kind| {
        quotas
            .iter()
            .filter(|q| q.kind == kind)
            .min_by_key(|q| (q.remaining, q.limit))
    };
    let mut headers = Vec::new();
    let names = [
        (
            Kind::Requests,
            [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS],
        ),
        (Kind::Tokens, [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS]),
    ];
    for (kind, [limit, remaining, reset]) in names {
        if let Some(q) = tightest(kind) {
            headers.push((limit, q.limit.to_string()));
            headers.push((remaining, q.remaining.to_string()));
            headers.push((reset, go_duration(q.reset)));
        }
    }
    headers
}

/// 把时长写成 OpenAI 响应头使用的格式：`20ms`、`1.5s`、`6m0s`、`1h2m3s`。
pub fn go_duration(d: Duration) -> String {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if millis < MILLIS_PER_SEC {
        return format!("{millis}ms");
    }
    let total_secs = millis / MILLIS_PER_SEC;
    let fraction = millis % MILLIS_PER_SEC;
    let secs = total_secs % SECS_PER_MINUTE;
    let seconds = if fraction == 0 {
        format!("{secs}s")
    } else {
        let text = format!("{secs}.{fraction:03}");
        format!("{}s", text.trim_end_matches('0'))
    };
    let minutes = total_secs / SECS_PER_MINUTE;
    match (minutes / MINUTES_PER_HOUR, minutes % MINUTES_PER_HOUR) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// 把响应头交给本请求的模块实例，之后写出的响应头都会带上它们。
pub fn attach(session: &mut Session, headers: Vec<(&'static str, String)>) {
    if let Some(module) = session.downstream_modules_ctx.get_mut::<RateLimitHeaders>() {
        module.headers = headers;
    }
}

/// 下游模块的构造器：每个请求创建一个 [`RateLimitHeaders`]。
///
/// 用途：网关在 `init_downstream_modules` 中登记它。
pub struct RateLimitHeadersBuilder;

impl HttpModuleBuilder for RateLimitHeadersBuilder {
    fn init(&self) -> Module {
        Box::new(RateLimitHeaders::default())
    }
}

/// 每个请求一个：保存准入时算好的 `x-ratelimit-*` 头，写响应头时补上。
#[derive(Default)]
pub struct RateLimitHeaders {
    headers: Vec<(&'static str, String)>,
}

#[async_trait]
impl HttpModule for RateLimitHeaders {
    async fn response_header_filter(
        &mut self,
        resp: &mut ResponseHeader,
        _end_of_stream: bool,
    ) -> pingora::Result<()> {
        for (name, value) in &self.headers {
            resp.insert_header(*name, value.as_str())?;
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 时长_与_openai_格式一致() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(17)), "17ms");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(12_000)), "12s");
        assert_eq!(go_duration(ms(360_000)), "6m0s");
        assert_eq!(go_duration(ms(3_723_250)), "1h2m3.25s");
    }
}
