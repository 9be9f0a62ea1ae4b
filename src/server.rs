//! 组装 Pingora `Server`：代理服务、可选的指标服务、管理接口与内置模拟器、DNS 刷新、主动健康检查、虚拟密钥刷新与配置热重载后台服务。

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;

use crate::admin::{admin_api_service, AdminApi};
use crate::config::{Config, SharedConfig};
use crate::drain::DrainExit;
use crate::exchange::{HealthProber, UpstreamClient};
use crate::logging::LogFlusher;
use crate::mock::mock_service;
use crate::proxy::admin::{admin_service, AdminApp};
use crate::proxy::Gateway;
use crate::reload::ConfigReloader;
use crate::upstream::{Balancer, DnsCache, DnsRefresher};
use crate::virtual_keys::{KeyRefresher, VirtualKeys};

/// 上游主机名的刷新间隔。
const DNS_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// 代理服务的名称（出现在 Pingora 日志里）。
const PROXY_SERVICE_NAME: &str = "ChatNexus 网关";
/// DNS 刷新服务的名称。
const DNS_SERVICE_NAME: &str = "DNS 刷新";
/// 关停时提前退出服务的名称。
const DRAIN_SERVICE_NAME: &str = "关停时提前退出";
/// 配置热重载服务的名称。
const RELOAD_SERVICE_NAME: &str = "配置热重载";
/// 按间隔写出攒着的访问日志的后台服务名。
const LOG_SERVICE_NAME: &str = "访问日志写出";
/// 主动健康检查服务的名称。
const PROBE_SERVICE_NAME: &str = "上游健康检查";
/// 虚拟密钥刷新服务的名称。
const KEYS_SERVICE_NAME: &str = "虚拟密钥刷新";

/// 按配置构建一个可运行的 Pingora `Server`（已 bootstrap，尚未运行）。
///
/// 参数：运行时配置；配置文件路径（命令行运行时给出：加入 SIGHUP 热重载与关停时提前退出服务）；Pingora 命令行选项
/// （升级、守护进程），测试中传 `None`。
/// 返回：加好全部服务的 `Server`，调用方用 `run_forever` 或 `run` 启动。
pub fn build(config: Config, path: Option<PathBuf>, opt: Option<Opt>) -> Server {
    let conf = server_conf(&config);
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let dns = Arc::new(DnsCache::default());
    let upstream = UpstreamClient::new(&server.configuration, Arc::clone(&dns));
    let listen = config.server.listen.0.to_string();
    let mock = config.mock.clone();
    let shared: SharedConfig = Arc::new(ArcSwap::from_pointee(config));
    let prober = HealthProber::new(
        Arc::clone(&shared),
        Arc::clone(upstream.balancer()),
        Arc::clone(&dns),
        &server.configuration,
    );
    let balancer = Arc::clone(upstream.balancer());
    let started = Instant::now();
    let gateway = Gateway::new(Arc::clone(&shared), upstream);
    let keys = gateway.virtual_keys();
    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        gateway,
        PROXY_SERVICE_NAME,
    );
    proxy.add_listener(ListenerConfig::tcp(listen).l4_buffer(client_buffers()));
    server.add_service(proxy);

    add_side_services(&mut server, &shared, keys, (balancer, started));
    if let Some(mock) = mock {
        let (mut service, _stats) = mock_service(mock.behavior);
        service.add_tcp(&mock.listen.0.to_string());
        server.add_service(service);
    }
    let refresher = DnsRefresher::new(dns, DNS_REFRESH_INTERVAL);
    server.add_service(background_service(DNS_SERVICE_NAME, refresher));
    server.add_service(background_service(PROBE_SERVICE_NAME, prober));
    if let Some(path) = path {
        let current = Arc::clone(&shared);
        let flusher = LogFlusher::new(move || current.load().access_log.flush_interval());
        server.add_service(background_service(LOG_SERVICE_NAME, flusher));
        let reloader = ConfigReloader::new(path, shared);
        server.add_service(background_service(RELOAD_SERVICE_NAME, reloader));
        server.add_service(background_service(DRAIN_SERVICE_NAME, DrainExit::gateway()));
    }
    server
}

/// 旁路的服务：指标端口（配置了 `server.metrics_listen` 时）、管理接口（配置了 `server.admin_listen` 时）
/// 与虚拟密钥的后台刷新（配置了 Redis 时）。
fn add_side_services(
    server: &mut Server,
    shared: &SharedConfig,
    keys: Arc<VirtualKeys>,
    state: (Arc<Balancer>, Instant),
) {
    let settings = shared.load().server.clone();
    if let Some(listen) = settings.metrics_listen {
        let app = AdminApp::new(Arc::clone(shared), Arc::clone(&state.0), state.1);
        let mut metrics = admin_service(app);
        metrics.add_tcp(&listen.0.to_string());
        server.add_service(metrics);
    }
    if let Some(listen) = settings.admin_listen {
        let app = AdminApi::new(Arc::clone(shared), Arc::clone(&keys), state);
        let mut api = admin_api_service(app);
        api.add_tcp(&listen.0.to_string());
        server.add_service(api);
    }
    if keys.store().is_some() {
        let refresher = KeyRefresher::new(keys);
        server.add_service(background_service(KEYS_SERVICE_NAME, refresher));
    }
}

/// 客户端连接的 L4 缓冲：不要读缓冲，写缓冲用 Pingora 的缺省值（合并响应头与响应体为一次发送）。
///
/// Pingora 缺省给每个接入的连接一个 64 KiB 的读缓冲（tokio `BufReader`，分配时清零），一万个并发流就是
/// 六百多 MiB 常驻内存；而 HTTP 会话本来就把报文读进自己的缓冲区，这一层只多一次复制。
fn client_buffers() -> L4BufferSettings {
    L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)
}

/// 由网关配置生成 Pingora 的服务端配置：工作线程数缺省取 CPU 核数，线程之间是否偷任务按 `server.work_stealing`。
fn server_conf(config: &Config) -> ServerConf {
    let threads = config.server.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let path = |p: &std::path::Path| p.display().to_string();
    ServerConf {
        threads,
        pid_file: path(&config.server.pid_file),
        upgrade_sock: path(&config.server.upgrade_sock),
        grace_period_seconds: Some(config.server.grace_period_seconds),
        ca_file: config.server.ca_file.as_deref().map(path),
        work_stealing: config.server.work_stealing,
        ..ServerConf::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 由一段 YAML 建出配置（不需要任何环境变量）。
    fn 配置(yaml: &str) -> Config {
        let file = crate::config::parse(yaml).expect("YAML 合法");
        crate::config::build(file, |_| None).expect("配置有效")
    }

    #[test]
    fn 线程间偷任务_缺省关_配置打开时交给_pingora() {
        let quiet = 配置("auth: { disabled: true }\nserver: { threads: 3 }");
        let conf = server_conf(&quiet);
        assert_eq!(conf.threads, 3, "线程数照配置");
        assert!(
            !conf.work_stealing,
            "缺省每个线程一个单线程运行时，不偷任务"
        );
        let stealing = 配置("auth: { disabled: true }\nserver: { work_stealing: true }");
        assert!(
            server_conf(&stealing).work_stealing,
            "配置打开时交给 Pingora"
        );
    }
}
