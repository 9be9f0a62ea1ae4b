//! 在进程内启动网关与模拟上游：全部监听 127.0.0.1 的空闲端口，测试进程结束时随之结束。
//!
//! ```ignore
//! let mut mocks = Emulators::default();
//! let url = mocks.add("mock", MockSettings::default());
//! let config = GatewayConfig::on_loopback().provider(Provider::new("mock", kind, &url));
//! let gateway = Launch::new(config).emulators(&mut mocks).start();
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use pingora::server::Server;
use pingora::services::listening::Service;

use chatnexus::mock::{mock_service, MockApp, MockSettings, MockStats};

use super::config::GatewayConfig;

/// 回环地址上 HTTP 服务的地址前缀。
pub const LOOPBACK_HTTP: &str = "http://127.0.0.1";
/// 回环地址。
const LOOPBACK_IP: [u8; 4] = [127, 0, 0, 1];

/// 一个在进程内运行的网关：对客户端的地址与（若导出）指标地址。
#[derive(Debug, Clone, Copy)]
pub struct Gateway {
    /// 对客户端的监听地址。
    pub addr: SocketAddr,
    /// Prometheus 指标的监听地址。
    pub metrics: Option<SocketAddr>,
}

impl Gateway {
    /// 网关上某个路径的完整地址。
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// 指标接口的完整地址。
    pub fn metrics_url(&self) -> String {
        let metrics = self.metrics.expect("这个网关没有导出指标");
        format!("http://{metrics}/metrics")
    }
}

/// 一组按名称索引的模拟上游，每个监听一个空闲端口。
///
/// 用途：先 [`Emulators::add`] 得到地址写进网关配置，再随网关（[`Launch::emulators`]）
/// 或单独（[`Emulators::run_alone`]）运行；运行后仍可按名称读取统计。
#[derive(Default)]
pub struct Emulators {
    by_name: HashMap<String, (u16, Arc<MockStats>)>,
    pending: Vec<(u16, Service<MockApp>)>,
}

impl Emulators {
    /// 添加一个说明文 HTTP 的模拟上游，返回它的基础地址 `http://127.0.0.1:端口`。
    pub fn add(&mut self, name: &str, settings: MockSettings) -> String {
        let port = crate::support::free_port();
        let (mut service, stats) = mock_service(settings);
        service.add_tcp(&format!("127.0.0.1:{port}"));
        self.keep(name, port, service, stats);
        self.url(name)
    }

    /// 添加一个说 HTTPS 的模拟上游（证书与私钥为 PEM 文件），返回它的端口。
    pub fn add_tls(&mut self, name: &str, settings: MockSettings, cert: &str, key: &str) -> u16 {
        let port = crate::support::free_port();
        let (mut service, stats) = mock_service(settings);
        service
            .add_tls(&format!("127.0.0.1:{port}"), cert, key)
            .expect("HTTPS 模拟上游必须能加载测试证书");
        self.keep(name, port, service, stats);
        port
    }

    fn keep(&mut self, name: &str, port: u16, service: Service<MockApp>, stats: Arc<MockStats>) {
        let previous = self.by_name.insert(name.to_string(), (port, stats));
        assert!(previous.is_none(), "模拟上游 {name} 重名");
        self.pending.push((port, service));
    }

    /// 一个模拟上游的统计与请求记录。
    pub fn stats(&self, name: &str) -> &MockStats {
        &self.entry(name).1
    }

    /// 一个模拟上游的端口。
    pub fn port(&self, name: &str) -> u16 {
        self.entry(name).0
    }

    /// 一个模拟上游的基础地址 `http://127.0.0.1:端口`。
    pub fn url(&self, name: &str) -> String {
        format!("{LOOPBACK_HTTP}:{}", self.port(name))
    }

    fn entry(&self, name: &str) -> &(u16, Arc<MockStats>) {
        self.by_name
            .get(name)
            .unwrap_or_else(|| panic!("没有名为 {name} 的模拟上游"))
    }

    /// 取出还没运行的模拟上游及其端口。
    fn take_pending(&mut self) -> Vec<(u16, Service<MockApp>)> {
        std::mem::take(&mut self.pending)
    }

    /// 在单独的 `Server` 里运行还没运行的模拟上游（多个网关共用它们时），等到全部开始监听。
    pub fn run_alone(&mut self) {
        let mut server = Server::new(None).expect("创建模拟上游服务");
        server.bootstrap();
        let mut ports = Vec::new();
        for (port, service) in self.take_pending() {
            server.add_service(service);
            ports.push(port);
        }
        crate::support::spawn(server);
        crate::support::wait_ports(ports);
    }
}

/// 启动一个网关：配置、它读取的环境变量、与它同进程运行的模拟上游。
pub struct Launch {
    config: GatewayConfig,
    env: HashMap<String, String>,
    services: Vec<Service<MockApp>>,
    ports: Vec<u16>,
}

impl Launch {
    /// 用这份配置启动（没有环境变量，不带模拟上游）。
    pub fn new(config: GatewayConfig) -> Self {
        Launch {
            config,
            env: HashMap::new(),
            services: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// 网关加载配置时看到的环境变量。
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_string(), value.to_string());
        self
    }

    /// 与网关在同一个 `Server` 里运行这些模拟上游中还没运行的那些。
    pub fn emulators(mut self, emulators: &mut Emulators) -> Self {
        for (port, service) in emulators.take_pending() {
            self.ports.push(port);
            self.services.push(service);
        }
        self
    }

    /// 校验配置、在后台线程运行网关，等到网关、指标与模拟上游都开始监听。
    pub fn start(self) -> Gateway {
        let env = |var: &str| self.env.get(var).cloned();
        let yaml = self.config.to_yaml();
        let cfg = self
            .config
            .build(env)
            .unwrap_or_else(|e| panic!("测试配置必须通过校验：{e}\n{yaml}"));
        // 有人把整个配置打进调试日志也不能泄露密钥：no_leak 测试依赖这一行
        log::debug!("运行时配置：{cfg:?}");
        let mut server = chatnexus::server::build(cfg, None, None);
        for service in self.services {
            server.add_service(service);
        }
        crate::support::spawn(server);
        let gateway = Gateway {
            addr: (LOOPBACK_IP, self.config.listen_port()).into(),
            metrics: self
                .config
                .metrics_port()
                .map(|port| (LOOPBACK_IP, port).into()),
        };
        let metrics = gateway.metrics.map(|m| m.port());
        crate::support::wait_ports(
            [gateway.addr.port()]
                .into_iter()
                .chain(metrics)
                .chain(self.ports),
        );
        gateway
    }
}
