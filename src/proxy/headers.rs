//! 网关写出的每个响应都带的安全头，以及 CORS。
//!
//! 以 Pingora 下游模块（`HttpModule`）实现：`Session::write_response_header` 总会先经过它，
//! 所以 JSON、SSE、错误响应、预检应答，无论由哪段代码写出，都带同一组头，不会有漏网的路径。

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, CACHE_CONTROL, CONTENT_SECURITY_POLICY, ORIGIN, REFERRER_POLICY,
    VARY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora_proxy::Session;

use crate::config::{Config, CorsSettings};
use crate::error::ApiError;
use crate::proxy::respond;
use crate::proxy::routes;
use crate::reload::SharedConfig;

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
static EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens");
/// 开启 CORS 时响应随请求的 Origin 变化。
static VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
/// 预检应答允许的方法。
const ALLOW_METHODS: &str = "GET, POST";
/// 预检请求里 `Access-Control-Request-Headers` 的长度上限。
const MAX_REQUEST_HEADERS_LEN: usize = 2048;

/// 来源是否在允许列表里（ASCII 大小写不敏感的精确匹配）。
///
/// ```
/// let cors: chatnexus::config::CorsSettings = serde_yaml::from_str("allowed_origins: ['https://app.example.com']").unwrap(); // 允许一个来源
/// assert!(chatnexus::proxy::headers::origin_allowed(&cors, "https://app.example.com")); // 列表中的来源
/// assert!(!chatnexus::proxy::headers::origin_allowed(&cors, "https://app.example.com.evil.test")); // 不做前缀匹配
/// ```
pub fn origin_allowed(cors: &CorsSettings, origin: &str) -> bool {
    cors.allowed_origins
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(origin))
}

/// 下游模块的构造器：每个请求创建一个 [`SecurityHeaders`]。
pub struct SecurityHeadersBuilder {
    config: SharedConfig,
}

impl SecurityHeadersBuilder {
    /// 用共享（可热替换）的配置创建。
    pub fn new(config: SharedConfig) -> Self {
        SecurityHeadersBuilder { config }
    }
}

impl HttpModuleBuilder for SecurityHeadersBuilder {
    fn init(&self) -> Module {
        Box::new(SecurityHeaders {
            config: Arc::clone(&self.config),
            cors_enabled: false,
            allowed_origin: None,
        })
    }
}

/// 每个请求一个：记下请求的来源，给响应加安全头与 CORS 头。
pub struct SecurityHeaders {
    config: SharedConfig,
    cors_enabled: bool,
    allowed_origin: Option<HeaderValue>,
}

impl SecurityHeaders {
    /// 把安全头与 CORS 头直接写进一张头表（网关自己构造响应头时用，见 `proxy::respond`）。
    pub fn write_to(&self, headers: &mut HeaderMap) {
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
    }
}

#[async_trait]
impl HttpModule for SecurityHeaders {
    async fn request_header_filter(&mut self, req: &mut RequestHeader) -> pingora::Result<()> {
        let config = self.config.load();
        let cors = &config.security.cors;
        self.cors_enabled = !cors.allowed_origins.is_empty();
        if self.cors_enabled {
            self.allowed_origin = req
                .headers
                .get(ORIGIN)
                .filter(|v| v.to_str().is_ok_and(|origin| origin_allowed(cors, origin)))
                .cloned();
        }
        Ok(())
    }

    async fn response_header_filter(
        &mut self,
        resp: &mut ResponseHeader,
        _end_of_stream: bool,
    ) -> pingora::Result<()> {
        let mut extra = HeaderMap::new();
        self.write_to(&mut extra);
        fill_missing(resp, &extra)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// 给响应头补上一组头：网关自己构造的响应头（见 `respond`）已经直接写好它们，这时整组跳过；
/// 别的路径写出的响应（例如 Pingora 自己生成的错误页）才逐个补上，`Vary` 追加，其余覆盖同名头。
///
/// 用途：安全头与限流额度头两个下游模块共用。
/// 错误：头名不合法（只可能来自带大小写表的响应头）。
pub(crate) fn fill_missing(resp: &mut ResponseHeader, extra: &HeaderMap) -> pingora::Result<()> {
    let Some(first) = extra.keys().next() else {
        return Ok(());
    };
    if resp.headers.contains_key(first) {
        return Ok(());
    }
    for (name, value) in extra {
        if name == VARY {
            resp.append_header(name.clone(), value.clone())?;
        } else {
            resp.insert_header(name.clone(), value.clone())?;
        }
    }
    Ok(())
}

/// 应答 CORS 预检（`OPTIONS` 且带 `Origin` 与 `Access-Control-Request-Method`）。
///
/// 返回：不是预检或 CORS 未开启时 `Ok(None)`，由正常路由处理（得到 405）；是预检时写出 204
/// 并返回 `Ok(Some(204))`。
/// 错误：来源不在允许列表返回 403；请求的方法与路径不存在时返回对应的 404/405。
pub async fn preflight(session: &mut Session, config: &Config) -> Result<Option<u16>, ApiError> {
    let cors = &config.security.cors;
    let header = session.req_header();
    if header.method != Method::OPTIONS || cors.allowed_origins.is_empty() {
        return Ok(None);
    }
    let text = |name: HeaderName| {
        header
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(origin), Some(method)) = (text(ORIGIN), text(ACCESS_CONTROL_REQUEST_METHOD)) else {
        return Ok(None);
    };
    if !origin_allowed(cors, &origin) {
        return Err(ApiError::cors_forbidden(&origin));
    }
    let method = Method::from_bytes(method.trim().as_bytes()).map_err(|_| {
        ApiError::bad_request("invalid_header", "Access-Control-Request-Method 不合法")
    })?;
    routes::route(&method, header.uri.path())?;
    let mut extra = vec![
        (ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS.to_string()),
        (ACCESS_CONTROL_MAX_AGE, cors.max_age_secs.to_string()),
    ];
    if let Some(requested) = text(ACCESS_CONTROL_REQUEST_HEADERS) {
        extra.push((
            ACCESS_CONTROL_ALLOW_HEADERS,
            allowed_request_headers(&requested)?,
        ));
    }
    respond::write_no_content(session, extra)
        .await
        .map_err(|_| ApiError::internal("写预检应答失败"))?;
    Ok(Some(204))
}

/// 预检请求想带的头：来源已在允许列表中，原样允许（浏览器版 OpenAI SDK 会带一串 `x-stainless-*`），
/// 但每个名字都必须是合法的 HTTP 头名，总长有上限。
fn allowed_request_headers(requested: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_header",
            "Access-Control-Request-Headers 不合法或过长",
        )
    };
    if requested.len() > MAX_REQUEST_HEADERS_LEN {
        return Err(invalid());
    }
    let names: Vec<String> = requested
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            HeaderName::from_bytes(n.as_bytes())
                .map(|h| h.as_str().to_string())
                .map_err(|_| invalid())
        })
        .collect::<Result<_, _>>()?;
    Ok(names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 补头_别的路径写出的响应补齐且不重复_已写好时跳过() {
        let mut extra = HeaderMap::new();
        extra.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF.clone());
        extra.insert(CACHE_CONTROL, NO_STORE.clone());
        extra.append(VARY, VARY_ORIGIN.clone());
        // Pingora 自己的错误页带大小写表，且已有 Cache-Control 与 Vary
        let mut resp = ResponseHeader::build(502, None).expect("状态码合法");
        resp.insert_header(CACHE_CONTROL, "private")
            .expect("头合法");
        resp.insert_header(VARY, "Accept-Encoding").expect("头合法");
        fill_missing(&mut resp, &extra).expect("补头成功");
        fill_missing(&mut resp, &extra).expect("再补一次");
        let values = |name: HeaderName| resp.headers.get_all(name).iter().count();
        assert_eq!(
            resp.headers.get(CACHE_CONTROL),
            Some(&NO_STORE),
            "覆盖同名头"
        );
        assert_eq!(values(X_CONTENT_TYPE_OPTIONS), 1, "第二次调用不应重复");
        assert_eq!(values(VARY), 2, "Vary 追加而不是覆盖");
    }

    #[test]
    fn 预检_请求头名逐个校验() {
        assert_eq!(
            allowed_request_headers("Authorization, Content-Type,X-ChatNexus-Nonce").ok(),
            Some("authorization, content-type, x-chatnexus-nonce".to_string())
        );
        assert!(allowed_request_headers("bad header").is_err());
        assert!(allowed_request_headers(&"a,".repeat(2000)).is_err());
    }

    #[test]
    fn 来源_精确匹配() {
        let cors = CorsSettings {
            allowed_origins: vec!["https://app.example.com".into()],
            max_age_secs: 600,
        };
        assert!(origin_allowed(&cors, "HTTPS://APP.example.com"));
        assert!(!origin_allowed(&cors, "https://app.example.com:8443"));
        assert!(!origin_allowed(&cors, "http://app.example.com"));
        assert!(!origin_allowed(&cors, "null"));
    }
}
