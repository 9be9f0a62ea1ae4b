//! 主动健康检查：Pingora 后台服务，按每个上游的 `health_check` 定期发一个不带密钥的 `GET`，
//! 状态码小于 500 即健康（LLM 接口不带密钥通常回 401/404，说明服务在线）。
//!
//! 探测用自己的连接池（后台服务有自己的运行时，连接不与代理服务混用），每次探测后丢弃连接；
//! 结果写进与代理共享的 [`Balancer`]。每轮还会按当前配置清理已删除目标的状态，配置热重载因此无需通知它。

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::header::{HOST, USER_AGENT};
use log::{info, warn};
use pingora::http::RequestHeader;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinSet;

use super::budget::{Budget, Phase, StreamCaps};
use super::{io, UpstreamClient};
use crate::config::{Config, HealthCheck, Provider};
use crate::upstream::{Balancer, DnsCache};

/// 没有任何探测到期时，最长隔多久重新读取一次配置（热重载后的新探测设置在此之内生效）。
const CONFIG_RECHECK: Duration = Duration::from_secs(1);
/// 探测请求的方法。
const METHOD_GET: &str = "GET";
/// 状态码不小于它即视为不健康。
const UNHEALTHY_STATUS: u16 = 500;

/// 主动健康检查的后台服务。
///
/// 用途：`server::build` 把它加入 Pingora `Server`，与代理共享配置与目标状态。
///
/// ```
/// use std::sync::Arc; // 共享指针
/// let cfg = chatnexus::config::build(chatnexus::config::parse("auth: { disabled: true }").unwrap(), |_| None).unwrap(); // 空配置
/// let config = Arc::new(arc_swap::ArcSwap::from_pointee(cfg)); // 与代理共享、可热替换
/// let conf = pingora::server::configuration::ServerConf::default(); // Pingora 缺省配置
/// let _prober = chatnexus::exchange::HealthProber::new(config, Arc::default(), Arc::default(), &conf); // 新的状态与 DNS 缓存
/// ```
pub struct HealthProber {
    config: Arc<ArcSwap<Config>>,
    client: Arc<UpstreamClient>,
}

impl HealthProber {
    /// 创建探测服务。
    ///
    /// 参数：共享配置、共享目标状态、共享 DNS 缓存、Pingora 服务端配置（CA 文件等）。
    pub fn new(
        config: Arc<ArcSwap<Config>>,
        balancer: Arc<Balancer>,
        dns: Arc<DnsCache>,
        conf: &ServerConf,
    ) -> Self {
        HealthProber {
            config,
            client: Arc::new(UpstreamClient::with_balancer(conf, dns, balancer)),
        }
    }

    /// 为到期的上游启动探测（上一次探测还没结束的跳过），返回下一次需要醒来的时间。
    fn launch_due(
        &self,
        config: &Config,
        due: &mut HashMap<String, Instant>,
        running: &mut JoinSet<String>,
        busy: &mut HashSet<String>,
    ) -> Instant {
        let now = Instant::now();
        let mut wake = now + CONFIG_RECHECK;
        for provider in config.providers.iter().filter(|p| p.enabled) {
            let Some(check) = &provider.health_check else {
                continue;
            };
            let next = *due.entry(provider.name.clone()).or_insert(now);
            if next <= now && busy.insert(provider.name.clone()) {
                due.insert(provider.name.clone(), now + check.interval());
                let (client, provider) = (Arc::clone(&self.client), Arc::clone(provider));
                running.spawn(async move { probe(&client, &provider).await });
            }
            wake = wake.min(due.get(&provider.name).copied().unwrap_or(wake));
        }
        wake
    }
}

#[async_trait]
impl BackgroundService for HealthProber {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut due: HashMap<String, Instant> = HashMap::new();
        let mut busy: HashSet<String> = HashSet::new();
        let mut running: JoinSet<String> = JoinSet::new();
        loop {
            let config = self.config.load_full();
            self.client.balancer.retain(&config);
            due.retain(|name, _| config.providers.iter().any(|p| &p.name == name));
            let wake = self.launch_due(&config, &mut due, &mut running, &mut busy);
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep_until(wake.into()) => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok(name) = done {
                        busy.remove(&name);
                    }
                }
            }
        }
    }
}

/// 探测一个上游并记录结果；返回上游名。状态由健康变为不健康（或反过来）时记一条日志。
async fn probe(client: &UpstreamClient, provider: &Provider) -> String {
    let Some(check) = &provider.health_check else {
        return provider.name.clone();
    };
    let outcome = tokio::time::timeout(check.timeout(), request(client, provider, check))
        .await
        .unwrap_or_else(|_| Err(format!("{} 毫秒内没有响应", check.timeout_ms)));
    let state = client.balancer.probe(&provider.name);
    let before = state.status();
    let (healthy, detail) = match outcome {
        Ok(status) if status < UNHEALTHY_STATUS => (true, format!("状态码 {status}")),
        Ok(status) => (false, format!("状态码 {status}")),
        Err(reason) => (false, reason),
    };
    if before != Some(healthy) {
        match healthy {
            true => info!("上游 `{}` 主动健康检查通过：{detail}", provider.name),
            false => warn!("上游 `{}` 主动健康检查失败：{detail}", provider.name),
        }
    }
    state.record(healthy, detail);
    provider.name.clone()
}

/// 连接并发出 `GET path`，返回响应状态码；失败时返回中文原因。
async fn request(
    client: &UpstreamClient,
    provider: &Provider,
    check: &HealthCheck,
) -> Result<u16, String> {
    let budget = Budget::new(
        Instant::now(),
        provider,
        StreamCaps::of(&Default::default()),
    );
    let (session, peer) = client
        .connect(provider, &budget)
        .await
        .map_err(|e| e.message)?;
    let header = probe_header(provider, check).map_err(|e| e.to_string())?;
    let wait = budget.wait(Phase::FirstByte);
    let mut session = io::write_h1_request(session, &peer, &header, &[], wait.duration)
        .await
        .map_err(|e| format!("发送探测请求失败：{e}"))?;
    tokio::time::timeout(wait.left(), session.read_response())
        .await
        .map_err(|_| wait.timeout_error().message)?
        .map_err(|e| format!("读取探测响应失败：{e}"))?;
    session
        .resp_header()
        .map(|h| h.status.as_u16())
        .ok_or_else(|| "上游没有返回响应头".to_string())
}

/// 探测请求头：路径、Host 与 User-Agent，不带任何密钥。
fn probe_header(provider: &Provider, check: &HealthCheck) -> pingora::Result<RequestHeader> {
    let mut header = RequestHeader::build(METHOD_GET, check.path.as_bytes(), None)?;
    header.insert_header(HOST, provider.base_url.host_header().clone())?;
    header.insert_header(USER_AGENT, io::GATEWAY_USER_AGENT)?;
    Ok(header)
}
