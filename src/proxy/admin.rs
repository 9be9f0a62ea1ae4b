//! 指标端口上的服务：`GET /health/details` 给出详细的健康状态（模型、上游、目标的延迟与在途数），
//! 其余路径照旧导出 Prometheus 指标。指标端口只应对运维网络开放，公开端口的 `/health` 只给整体状态。

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response};
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::modules::http::compression::ResponseCompressionBuilder;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use pingora_prometheus::PrometheusHttpApp;

use crate::config::SharedConfig;
use crate::upstream::{health_details, Balancer};

/// 详细健康状态的路径。
pub const DETAILS_PATH: &str = "/health/details";
/// 指标端口服务的名称（出现在 Pingora 日志里）。
const SERVICE_NAME: &str = "指标与健康详情";
/// 响应的 gzip 压缩级别（与 pingora-prometheus 的缺省一致）。
const GZIP_LEVEL: u32 = 7;
/// JSON 响应的内容类型。
const JSON_CONTENT_TYPE: &str = "application/json";

/// 指标端口的应用：按路径分派到健康详情或 Prometheus 指标。
///
/// 用途：`server::build` 在配置了 `server.metrics_listen` 时用它建立指标端口的服务。
///
/// ```
/// use std::sync::Arc; // 共享所有权
/// let cfg = chatnexus::config::build(chatnexus::config::parse("auth: { disabled: true }").unwrap(), |_| None).unwrap(); // 空配置
/// let shared = Arc::new(arc_swap::ArcSwap::from_pointee(cfg)); // 与网关共享的配置
/// let app = chatnexus::proxy::admin::AdminApp::new(shared, Arc::default(), std::time::Instant::now()); // 新的目标状态表
/// let _service = chatnexus::proxy::admin::admin_service(app); // 再 add_tcp 监听指标端口
/// ```
pub struct AdminApp {
    config: SharedConfig,
    balancer: Arc<Balancer>,
    started: Instant,
}

impl AdminApp {
    /// 用网关的共享配置、目标状态表与启动时刻创建应用。
    pub fn new(config: SharedConfig, balancer: Arc<Balancer>, started: Instant) -> Self {
        AdminApp {
            config,
            balancer,
            started,
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().uri.path() != DETAILS_PATH {
            return PrometheusHttpApp.response(session).await;
        }
        let config = self.config.load();
        let body = health_details(&config, &self.balancer, self.started)
            .to_string()
            .into_bytes();
        let mut response = Response::new(Vec::new());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        *response.body_mut() = body;
        response
    }
}

/// 建立指标端口的服务（带 gzip 压缩），调用方再 `add_tcp` 监听地址。
pub fn admin_service(app: AdminApp) -> Service<HttpServer<AdminApp>> {
    let mut server = HttpServer::new_app(app);
    server.add_module(ResponseCompressionBuilder::enable(GZIP_LEVEL));
    Service::new(SERVICE_NAME.to_string(), server)
}
