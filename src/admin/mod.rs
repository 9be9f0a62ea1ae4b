//! 管理接口：独立的监听地址（`server.admin_listen`，只应对本机或运维网络开放，绝不开在公开端口上），
//! 每个请求都要带 `Authorization: Bearer <管理令牌>`，与配置里 `admin.token_sha256` 常量时间比对。
//!
//! 提供虚拟密钥（[`keys`]）与团队（[`teams`]）的增删改查、用量（[`usage`]）与健康详情，以及一个管理页面（`GET /admin`），
//! 见 docs/admin.md。回复是 JSON，错误是与网关相同的
//! OpenAI 错误信封（中文消息）。

mod keys;
mod teams;
mod usage;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderValue, Method, Response, StatusCode};
use log::warn;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use serde_json::Value;

use crate::config::SharedConfig;
use crate::error::{ApiError, ErrorCode};
use crate::security::bearer_token;
use crate::upstream::{health_details, Balancer};
use crate::virtual_keys::VirtualKeys;

/// 管理接口服务的名称（出现在 Pingora 日志里）。
const SERVICE_NAME: &str = "管理接口";
/// 管理请求体的上限（字节）。
const MAX_BODY_BYTES: usize = 64 * 1024;
/// JSON 响应的内容类型。
const JSON_CONTENT_TYPE: &str = "application/json";
/// 管理页面（中文界面，没有构建步骤，不用 CDN：页面与脚本都由二进制自己提供）。
const PAGE_HTML: &str = include_str!("page/index.html");
/// 管理页面的脚本。
const PAGE_JS: &str = include_str!("page/app.js");
/// 页面的内容类型。
const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";
/// 脚本的内容类型。
const JS_CONTENT_TYPE: &str = "text/javascript; charset=utf-8";
/// 页面的内容安全策略：只加载本站的脚本，不许内联脚本、不许被别的页面嵌入。
const PAGE_CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'";
/// 管理页面的路径。
const PAGE_PATHS: [&str; 2] = ["/admin", "/admin/"];
/// 管理页面脚本的路径。
const SCRIPT_PATH: &str = "/admin/app.js";
/// 成功的状态码。
const STATUS_OK: u16 = 200;
/// 禁止浏览器猜测内容类型。
const NOSNIFF: &str = "nosniff";
/// 管理接口路径的第一段。
const ADMIN: &str = "admin";
/// 密钥集合的路径段。
const KEYS: &str = "keys";
/// 团队集合的路径段。
const TEAMS: &str = "teams";
/// 用量的路径段。
const USAGE: &str = "usage";
/// 健康详情的路径段。
const HEALTH: &str = "health";

/// 管理接口的应用。
///
/// 用途：`server::build` 在配置了 `server.admin_listen` 时用 [`admin_api_service`] 建立它的服务。
///
/// ```
/// use std::sync::Arc; // 共享所有权
/// let cfg = chatnexus::config::build(chatnexus::config::parse("auth: { disabled: true }").unwrap(), |_| None).unwrap(); // 空配置
/// let shared = Arc::new(arc_swap::ArcSwap::from_pointee(cfg)); // 与网关共享的配置
/// let keys = Arc::new(chatnexus::virtual_keys::VirtualKeys::new(None, "")); // 与网关共享的密钥表
/// let state = (Arc::default(), std::time::Instant::now()); // 目标状态表与启动时刻
/// let _service = chatnexus::admin::admin_api_service(chatnexus::admin::AdminApi::new(shared, keys, state)); // 再 add_tcp
/// ```
pub struct AdminApi {
    config: SharedConfig,
    keys: Arc<VirtualKeys>,
    balancer: Arc<Balancer>,
    started: Instant,
}

impl AdminApi {
    /// 用网关的共享配置、虚拟密钥表、目标状态表与启动时刻创建。
    pub fn new(
        config: SharedConfig,
        keys: Arc<VirtualKeys>,
        (balancer, started): (Arc<Balancer>, Instant),
    ) -> Self {
        AdminApi {
            config,
            keys,
            balancer,
            started,
        }
    }

    /// 鉴权、读请求体、分派；返回状态码与 JSON 回复。
    async fn handle(&self, session: &mut ServerSession) -> Result<(u16, Value), ApiError> {
        let config = self.config.load_full();
        check_token(session, &config)?;
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let query = session.req_header().uri.query().map(str::to_string);
        let body = read_body(session).await?;
        let store = self.keys.store().ok_or_else(|| keys::unavailable(None))?;
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            [ADMIN, KEYS, rest @ ..] => {
                keys::dispatch(store, &config, (&method, rest), &body).await
            }
            [ADMIN, TEAMS, rest @ ..] => teams::dispatch(store, (&method, rest), &body).await,
            [ADMIN, HEALTH] if method == Method::GET => Ok((
                STATUS_OK,
                health_details(&config, &self.balancer, self.started),
            )),
            [ADMIN, USAGE] if method == Method::GET => {
                usage::report(store, &config, query.as_deref()).await
            }
            _ => Err(keys::unknown()),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApi {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if let Some(page) = static_page(session) {
            return page;
        }
        match self.handle(session).await {
            Ok((status, body)) => respond(status, JSON_CONTENT_TYPE, body.to_string().into_bytes()),
            Err(error) => {
                if error.status >= 500 {
                    warn!("管理接口出错：{}", error.describe());
                }
                respond(error.status, JSON_CONTENT_TYPE, error.to_body().to_vec())
            }
        }
    }
}

/// 建立管理接口的服务，调用方再 `add_tcp` 监听地址。
pub fn admin_api_service(app: AdminApi) -> Service<HttpServer<AdminApi>> {
    Service::new(SERVICE_NAME.to_string(), HttpServer::new_app(app))
}

/// 管理页面与它的脚本（`GET`，不要令牌：页面本身不含数据，数据要用令牌经接口读取）。
fn static_page(session: &ServerSession) -> Option<Response<Vec<u8>>> {
    let header = session.req_header();
    if header.method != Method::GET {
        return None;
    }
    let path = header.uri.path();
    let (body, content_type) = if PAGE_PATHS.contains(&path) {
        (PAGE_HTML, HTML_CONTENT_TYPE)
    } else if path == SCRIPT_PATH {
        (PAGE_JS, JS_CONTENT_TYPE)
    } else {
        return None;
    };
    let mut response = respond(STATUS_OK, content_type, body.as_bytes().to_vec());
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static(NOSNIFF));
    Some(response)
}

/// 核对管理令牌：缺少、格式不对或不匹配都是 401（不说明是哪一种）。
fn check_token(session: &ServerSession, config: &crate::config::Config) -> Result<(), ApiError> {
    let presented = session
        .req_header()
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match (presented, config.admin_token) {
        (Some(token), Some(hash)) if hash.matches(token) => Ok(()),
        _ => Err(ApiError::unauthorized(
            "管理令牌缺失或错误：请在 Authorization 头中以 Bearer 方式提供",
        )),
    }
}

/// 读完请求体（不超过 [`MAX_BODY_BYTES`]）。
///
/// 错误：超过上限 413，读失败 400。
async fn read_body(session: &mut ServerSession) -> Result<Bytes, ApiError> {
    let mut body = Vec::new();
    loop {
        let chunk = session.read_request_body().await.map_err(|e| {
            ApiError::bad_request(ErrorCode::InvalidBody, format!("读取请求体失败：{e}"))
        })?;
        let Some(chunk) = chunk else {
            return Ok(Bytes::from(body));
        };
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                413,
                crate::error::TYPE_INVALID_REQUEST,
                ErrorCode::RequestTooLarge,
                format!("管理请求体超过 {MAX_BODY_BYTES} 字节上限"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
}

/// 一个回复：状态码、内容类型与正文。
fn respond(status: u16, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(Vec::new());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = body;
    response
}
