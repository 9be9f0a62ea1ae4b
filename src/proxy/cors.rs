//! CORS 预检（`OPTIONS`）的应答；普通响应的 CORS 头由 `downstream` 的网关头模块写出。

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use http::{HeaderName, Method};
use pingora_proxy::Session;

use super::routes;
use crate::config::Config;
use crate::downstream;
use crate::error::{ApiError, ErrorCode};

/// 预检应答允许的方法。
const ALLOW_METHODS: &str = "GET, POST";
/// 预检请求里 `Access-Control-Request-Headers` 的长度上限。
const MAX_REQUEST_HEADERS_LEN: usize = 2048;

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
    if !cors.allows_origin(&origin) {
        return Err(ApiError::cors_forbidden(&origin));
    }
    let method = Method::from_bytes(method.trim().as_bytes()).map_err(|_| {
        ApiError::bad_request(
            ErrorCode::InvalidHeader,
            "Access-Control-Request-Method 不合法",
        )
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
    downstream::write_no_content(session, extra)
        .await
        .map_err(|_| ApiError::internal("写预检应答失败"))?;
    Ok(Some(204))
}

/// 预检请求想带的头：来源已在允许列表中，原样允许（浏览器版 OpenAI SDK 会带一串 `x-stainless-*`），
/// 但每个名字都必须是合法的 HTTP 头名，总长有上限。
fn allowed_request_headers(requested: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            ErrorCode::InvalidHeader,
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
    use crate::config::CorsSettings;

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
        assert!(cors.allows_origin("HTTPS://APP.example.com"));
        assert!(!cors.allows_origin("https://app.example.com:8443"));
        assert!(!cors.allows_origin("http://app.example.com"));
        assert!(!cors.allows_origin("null"));
    }
}
