//! 上游目标：为请求列出候选目标、解析主机名、构造 Pingora 的 `HttpPeer`。

mod dns;

use std::net::SocketAddr;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

use crate::config::{Model, Provider, Target};

pub use dns::{Addrs, DnsCache, DnsRefresher};

/// 空闲的上游连接在连接池中保留的时长。
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// 列出模型当前可用的目标，按配置顺序。
///
/// 参数：模型；返回已启用提供方的目标（可能为空）。
pub fn candidates(model: &Model) -> Vec<&Target> {
    // TODO: 按延迟与健康状态选择（上游选择与故障转移）
    model
        .targets
        .iter()
        .filter(|t| t.provider.enabled)
        .collect()
}

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
        })
    }

    #[test]
    fn 候选_跳过停用的上游() {
        let model = Model {
            name: "m".into(),
            targets: vec![
                Target {
                    provider: 提供方("http://127.0.0.1:1", false),
                    model: "a".into(),
                    max_tokens: None,
                    deployment: "a".into(),
                },
                Target {
                    provider: 提供方("http://127.0.0.1:2", true),
                    model: "b".into(),
                    max_tokens: None,
                    deployment: "b".into(),
                },
            ],
        };
        let list = candidates(&model);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].model, "b");
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
