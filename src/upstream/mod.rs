//! 上游目标：选择目标（延迟与健康感知）、熔断、解析主机名、构造 Pingora 的 `HttpPeer`。

mod adaptive;
mod balancer;
mod breaker;
mod dns;
mod ewma;
mod health;
mod select;
mod state;

use std::net::SocketAddr;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

use crate::config::Provider;

pub use adaptive::{decide, Adaptive, Change, Step};
pub use balancer::{Balancer, HealthReport, Plan};
pub use breaker::{Admission, Breaker, BreakerState};
pub use dns::{Addrs, DnsCache, DnsRefresher};
pub use ewma::{PeakEwma, INITIAL_LATENCY};
pub use health::health_details;
#[cfg(test)]
pub(crate) use health::tests::配置 as 两个上游的配置;
pub use select::{choose, Choice};
pub use state::{
    Health, Lease, LeaseSettings, ProbeState, TargetState, Verdict, DEFAULT_THROTTLE,
    MAX_UPSTREAM_WAIT,
};

/// 空闲的上游连接在连接池中保留的时长。
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// 为提供方的一个已解析地址构造 `HttpPeer`：HTTPS 时以主机名做 SNI 并校验证书。
pub fn build_peer(provider: &Provider, addr: SocketAddr) -> HttpPeer {
    let url = &provider.base_url;
    let sni = if url.tls {
        url.host.clone()
    } else {
        String::new()
    };
    let mut peer = HttpPeer::new(addr, url.tls, sni);
    let connect = provider.timeouts.connect();
    peer.options.connection_timeout = Some(connect);
    peer.options.total_connection_timeout = Some(connect);
    peer.options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
    peer
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{BaseUrl, ProviderKind, Timeouts};

    fn 提供方(url: &str, enabled: bool) -> Arc<Provider> {
        Arc::new(Provider {
            name: "测试".into(),
            kind: ProviderKind::OpenAiCompatible,
            base_url: BaseUrl::try_from(url.to_string()).expect("URL 合法"),
            api_key: None,
            timeouts: Timeouts::default(),
            enabled,
            api_version: None,
            health_check: None,
            concurrency: None,
            responses: false,
        })
    }

    #[test]
    fn 对端_https_使用主机名作_sni() {
        let addr: SocketAddr = "127.0.0.1:443".parse().expect("地址合法");
        let peer = build_peer(&提供方("https://api.openai.com", true), addr);
        assert_eq!(peer.sni, "api.openai.com");
        let plain = build_peer(&提供方("http://127.0.0.1:8000", true), addr);
        assert!(plain.sni.is_empty());
    }
}
