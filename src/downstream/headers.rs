//! 网关写给客户端的每个响应都带的头：请求 id、安全头、CORS 头与限流额度头。
//!
//! 一个 Pingora 下游模块（`HttpModule`）保存本请求的这些头，只有一个函数（[`GatewayHeaders::write_to`]）
//! 写它们：网关自己构造响应头时（见 `respond`）直接写进头表；别的路径写出的响应（例如 Pingora
//! 自己生成的错误页）在 `write_response_header` 经过模块时补上。

use std::any::Any;

use async_trait::async_trait;
use http::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL,
    CONTENT_SECURITY_POLICY, ORIGIN, REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora_proxy::Session;

use crate::config::SharedConfig;

/// 请求 id 的请求头与响应头名（预先构造好，每个请求不必再解析头名）。
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Anthropic 的请求 id 响应头（anthropic SDK 从它读出异常的 `request_id`）。
pub static ANTHROPIC_REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("request-id");
/// 响应缓存的结果：`hit`、`miss` 或 `bypass`。
pub static CACHE_HEADER: HeaderName = HeaderName::from_static("x-chatnexus-cache");
/// 命中缓存时回复的年龄（秒，HTTP 的 `Age`）。
static AGE_HEADER: HeaderName = HeaderName::from_static("age");
/// 翻译到别家上游时丢弃的客户端功能（如 Codex 的内置工具 `tools.web_search`），逗号分隔。
pub static DROPPED_HEADER: HeaderName = HeaderName::from_static("x-chatnexus-dropped");
/// 发给上游的模型名（响应体里的 `model` 一律是客户端请求的名字）。
pub static UPSTREAM_MODEL_HEADER: HeaderName =
    HeaderName::from_static("x-chatnexus-upstream-model");
/// 禁止浏览器猜测内容类型（头值是编译期常量，每个响应不必再逐字节校验）。
static NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
/// 任何中间层都不得保存响应（补全内容与错误都可能含敏感信息）。
static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
/// JSON/SSE 接口不需要加载任何资源，也不允许被嵌入。
static CSP: HeaderValue =
    HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; sandbox");
/// 禁止被嵌入框架（老浏览器不认 CSP 的 frame-ancestors）。
static FRAME_DENY: HeaderValue = HeaderValue::from_static("DENY");
/// 不发送 Referer。
static NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");
/// 允许跨域读取的响应头：限流时的等待时间与放行时的额度。
static EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("retry-after, x-request-id, x-chatnexus-upstream-model, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens");
/// 开启 CORS 时响应随请求的 Origin 变化。
static VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");

/// 下游模块的构造器：每个请求创建一个 [`GatewayHeaders`]。
///
/// 用途：网关在 `init_downstream_modules` 中登记它。
pub struct GatewayHeadersBuilder {
    config: SharedConfig,
}

impl GatewayHeadersBuilder {
    /// 用共享（可热替换）的配置创建（读取其中的 CORS 设置）。
    pub fn new(config: SharedConfig) -> Self {
        GatewayHeadersBuilder { config }
    }
}

impl HttpModuleBuilder for GatewayHeadersBuilder {
    fn init(&self) -> Module {
        Box::new(GatewayHeaders {
            config: SharedConfig::clone(&self.config),
            cors_enabled: false,
            allowed_origin: None,
            request_id: None,
            anthropic_request_id: false,
            upstream_model: None,
            dropped: None,
            cache: None,
            quota: Vec::new(),
        })
    }
}

/// 每个请求一个：记下请求的来源、请求 id 与准入时算好的额度头，给本请求的每个响应加上它们。
///
/// ```
/// let shared = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(chatnexus::config::build(chatnexus::config::parse("auth: { disabled: true }").unwrap(), |_| None).unwrap())); // 空配置
/// use pingora::modules::http::HttpModuleBuilder; // 构造器接口
/// let module = chatnexus::downstream::GatewayHeadersBuilder::new(shared).init(); // 每个请求一个
/// let mut headers = http::HeaderMap::new(); // 响应头表
/// module.as_any().downcast_ref::<chatnexus::downstream::GatewayHeaders>().unwrap().write_to(&mut headers); // 写入全部网关头
/// assert_eq!(headers["x-content-type-options"], "nosniff"); // 安全头
/// ```
pub struct GatewayHeaders {
    config: SharedConfig,
    cors_enabled: bool,
    allowed_origin: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
    anthropic_request_id: bool,
    upstream_model: Option<HeaderValue>,
    dropped: Option<HeaderValue>,
    cache: Option<(HeaderValue, Option<u64>)>,
    quota: Vec<(HeaderName, HeaderValue)>,
}

impl GatewayHeaders {
    /// 取本请求的模块实例（网关登记了模块时总有）。
    pub fn of(session: &mut Session) -> Option<&mut GatewayHeaders> {
        session.downstream_modules_ctx.get_mut::<GatewayHeaders>()
    }

    /// 只读地取本请求的模块实例（网关登记了模块时总有）。
    pub fn of_ref(session: &Session) -> Option<&GatewayHeaders> {
        session.downstream_modules_ctx.get::<GatewayHeaders>()
    }

    /// 记下本请求的请求 id，之后的响应都带上 `x-request-id`。
    pub fn set_request_id(&mut self, id: HeaderValue) {
        self.request_id = Some(id);
    }

    /// 本请求的请求 id（还没确定时为空）：发往上游的请求与日志都用它。
    pub fn request_id(&self) -> Option<&HeaderValue> {
        self.request_id.as_ref()
    }

    /// Anthropic 方言的请求：响应另带 `request-id`（与 `x-request-id` 相同的值）。
    pub fn set_anthropic_request_id(&mut self) {
        self.anthropic_request_id = true;
    }

    /// 记下发给上游的模型名（每次尝试更新，响应带最后一次尝试的），写成 `x-chatnexus-upstream-model`。
    pub fn set_upstream_model(&mut self, model: Option<HeaderValue>) {
        self.upstream_model = model;
    }

    /// 记下翻译时丢弃的客户端功能（逗号分隔），写成 `x-chatnexus-dropped`；最后一次尝试的为准。
    pub fn set_dropped(&mut self, dropped: Option<HeaderValue>) {
        self.dropped = dropped;
    }

    /// 记下响应缓存的结果（`hit`、`miss`、`bypass`）与命中时回复的年龄（秒）。
    pub fn set_cache(&mut self, result: &'static str, age: Option<u64>) {
        self.cache = Some((HeaderValue::from_static(result), age));
    }

    /// 记下准入时算好的 `x-ratelimit-*` 额度头。
    pub fn set_quota(&mut self, quota: Vec<(HeaderName, HeaderValue)>) {
        self.quota = quota;
    }

    /// 把本请求的全部网关头写进一张头表：请求 id、安全头、CORS 头、额度头。
    pub fn write_to(&self, headers: &mut HeaderMap) {
        if let Some(id) = &self.request_id {
            if self.anthropic_request_id {
                headers.insert(ANTHROPIC_REQUEST_ID_HEADER.clone(), id.clone());
            }
            headers.insert(REQUEST_ID_HEADER.clone(), id.clone());
        }
        if let Some(model) = &self.upstream_model {
            headers.insert(UPSTREAM_MODEL_HEADER.clone(), model.clone());
        }
        if let Some(dropped) = &self.dropped {
            headers.insert(DROPPED_HEADER.clone(), dropped.clone());
        }
        if let Some((result, age)) = &self.cache {
            headers.insert(CACHE_HEADER.clone(), result.clone());
            if let Some(age) = age {
                headers.insert(AGE_HEADER.clone(), HeaderValue::from(*age));
            }
        }
        let fixed = [
            (X_CONTENT_TYPE_OPTIONS, &NOSNIFF),
            (CACHE_CONTROL, &NO_STORE),
            (CONTENT_SECURITY_POLICY, &CSP),
            (X_FRAME_OPTIONS, &FRAME_DENY),
            (REFERRER_POLICY, &NO_REFERRER),
        ];
        for (name, value) in fixed {
            headers.insert(name, value.clone());
        }
        if self.cors_enabled {
            // 响应随 Origin 变化，缓存必须按 Origin 区分
            headers.append(VARY, VARY_ORIGIN.clone());
        }
        if let Some(origin) = &self.allowed_origin {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS.clone());
        }
        for (name, value) in &self.quota {
            headers.insert(name.clone(), value.clone());
        }
    }
}

impl GatewayHeaders {
    /// 给一个响应头补上全部网关头：网关自己构造的响应头已经带着它们（以必有的 `x-content-type-options`
    /// 为标记），这时什么都不做，所以每个头只写一次。
    fn complete(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        if resp.headers.contains_key(X_CONTENT_TYPE_OPTIONS) {
            return Ok(());
        }
        let mut extra = HeaderMap::new();
        self.write_to(&mut extra);
        fill(resp, &extra)
    }
}

#[async_trait]
impl HttpModule for GatewayHeaders {
    async fn request_header_filter(&mut self, req: &mut RequestHeader) -> pingora::Result<()> {
        let config = self.config.load();
        let cors = &config.security.cors;
        self.cors_enabled = !cors.allowed_origins.is_empty();
        if self.cors_enabled {
            self.allowed_origin = req
                .headers
                .get(ORIGIN)
                .filter(|v| v.to_str().is_ok_and(|origin| cors.allows_origin(origin)))
                .cloned();
        }
        Ok(())
    }

    async fn response_header_filter(
        &mut self,
        resp: &mut ResponseHeader,
        _end_of_stream: bool,
    ) -> pingora::Result<()> {
        self.complete(resp)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// 给别的路径写出的响应头逐个补上一组头：`Vary` 追加，其余覆盖同名头。
///
/// 错误：头名不合法（只可能来自带大小写表的响应头）。
fn fill(resp: &mut ResponseHeader, extra: &HeaderMap) -> pingora::Result<()> {
    for (name, value) in extra {
        if name == VARY {
            resp.append_header(name.clone(), value.clone())?;
        } else {
            resp.insert_header(name.clone(), value.clone())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(origin: Option<&'static str>) -> GatewayHeaders {
        let config = crate::config::parse("auth: { disabled: true }").expect("配置合法");
        let config = crate::config::build(config, |_| None).expect("配置可用");
        GatewayHeaders {
            config: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(config)),
            cors_enabled: origin.is_some(),
            allowed_origin: origin.map(HeaderValue::from_static),
            request_id: Some(HeaderValue::from_static("req_1")),
            anthropic_request_id: false,
            upstream_model: None,
            dropped: None,
            cache: None,
            quota: vec![(
                HeaderName::from_static("x-ratelimit-remaining-requests"),
                HeaderValue::from(3),
            )],
        }
    }

    #[test]
    fn 补头_重复调用不重复_网关自己构造的响应头不再补() {
        let headers = module(Some("https://app.example.com"));
        let mut resp = ResponseHeader::build(502, None).expect("状态码合法");
        headers.complete(&mut resp).expect("补头成功");
        headers.complete(&mut resp).expect("再补一次");
        let values = |name: &str| resp.headers.get_all(name).iter().count();
        for name in [
            "x-request-id",
            "x-ratelimit-remaining-requests",
            "access-control-allow-origin",
            "vary",
        ] {
            assert_eq!(values(name), 1, "{name} 应当恰好一个");
        }
        let (mut parts, ()) = http::Response::new(()).into_parts();
        headers.write_to(&mut parts.headers);
        let mut own = ResponseHeader::from(parts);
        headers.complete(&mut own).expect("已写好时跳过");
        assert_eq!(
            own.headers.get_all("vary").iter().count(),
            1,
            "网关自己构造的响应头不再追加 Vary"
        );
    }

    #[test]
    fn 补头_别的路径写出的响应补齐_vary_追加而不覆盖() {
        let mut extra = HeaderMap::new();
        extra.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF.clone());
        extra.insert(CACHE_CONTROL, NO_STORE.clone());
        extra.append(VARY, VARY_ORIGIN.clone());
        // Pingora 自己的错误页带大小写表，且已有 Cache-Control 与 Vary
        let mut resp = ResponseHeader::build(502, None).expect("状态码合法");
        resp.insert_header(CACHE_CONTROL, "private")
            .expect("头合法");
        resp.insert_header(VARY, "Accept-Encoding").expect("头合法");
        fill(&mut resp, &extra).expect("补头成功");
        let values = |name: HeaderName| resp.headers.get_all(name).iter().count();
        assert_eq!(
            resp.headers.get(CACHE_CONTROL),
            Some(&NO_STORE),
            "覆盖同名头"
        );
        assert_eq!(values(X_CONTENT_TYPE_OPTIONS), 1, "安全头只有一个");
        assert_eq!(values(VARY), 2, "Vary 追加而不是覆盖");
    }
}
