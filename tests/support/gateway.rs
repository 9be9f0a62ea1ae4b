//! 在进程内启动网关与模拟上游：全部监听 127.0.0.1 的空闲端口，测试进程结束时随之结束。
//!
//! ```
//! let mut mocks = Emulators::default(); // 一组模拟上游
//! let url = mocks.add("mock", MockSettings::default()); // 取得空闲端口上的地址
//! let config = GatewayConfig::on_loopback().provider(Provider::new("mock", kind, &url)); // 写进配置
//! let gateway = Launch::new(config).emulators(&mut mocks).start(); // 同一进程里一起运行
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

/// 一个在进程内运行的网关：对客户端的地址与（若导出）指标地址。
#[derive(Debug, Clone, Copy)]
pub struct Gateway {
    /// 对客户端的监听地址。
    pub addr: SocketAddr,
    /// Prometheus 指标的监听地址。
    pub metrics: Option<SocketAddr>,
    /// 管理接口的监听地址。
    pub admin: Option<SocketAddr>,
}

impl Gateway {
    /// 网关上某个路径的完整地址。
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// 管理接口上某个路径的完整地址。
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self.admin.expect("这个网关没有开管理接口");
        format!("http://{admin}{path}")
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
        let ports = serve(&mut server, self.take_pending());
        crate::support::spawn(server);
        crate::support::wait_ports(ports);
    }
}

/// 把模拟上游加入 `server`，返回它们的端口。
fn serve(server: &mut Server, emulators: Vec<(u16, Service<MockApp>)>) -> Vec<u16> {
    emulators
        .into_iter()
        .map(|(port, service)| {
            server.add_service(service);
            port
        })
        .collect()
}

/// 启动一个网关：配置、它读取的环境变量、与它同进程运行的模拟上游。
pub struct Launch {
    config: GatewayConfig,
    env: HashMap<String, String>,
    emulators: Vec<(u16, Service<MockApp>)>,
}

impl Launch {
    /// 用这份配置启动（没有环境变量，不带模拟上游）。
    pub fn new(config: GatewayConfig) -> Self {
        Launch {
            config,
            env: HashMap::new(),
            emulators: Vec::new(),
        }
    }

    /// 网关加载配置时看到的环境变量。
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_string(), value.to_string());
        self
    }

    /// 与网关在同一个 `Server` 里运行这些模拟上游中还没运行的那些。
    pub fn emulators(mut self, emulators: &mut Emulators) -> Self {
        self.emulators.extend(emulators.take_pending());
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
        let emulator_ports = serve(&mut server, self.emulators);
        crate::support::spawn(server);
        let gateway = Gateway {
            addr: self.config.listen_addr(),
            metrics: self.config.metrics_addr(),
            admin: self.config.admin_addr(),
        };
        crate::support::wait_ready(gateway.addr);
        gateway
            .metrics
            .into_iter()
            .chain(gateway.admin)
            .for_each(crate::support::wait_ready);
        crate::support::wait_ports(emulator_ports);
        gateway
    }
}
