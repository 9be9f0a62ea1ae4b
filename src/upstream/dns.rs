//! 异步 DNS 缓存：请求路径上不做阻塞解析（`HttpPeer::new(主机名)` 会阻塞并可能 panic）。
//!
//! 首次用到某主机时异步解析并缓存；后台服务定期刷新，刷新失败时保留旧地址。

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use log::{debug, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// 缓存的键：主机名与端口。
type HostPort = (String, u16);
/// 一个主机名解析出的全部地址（按解析器给出的顺序）。
pub type Addrs = Arc<[SocketAddr]>;

/// 主机名到地址的缓存。
///
/// 用途：`exchange` 连接上游前调用 [`DnsCache::resolve`]；[`DnsRefresher`] 在后台刷新。
///
/// ```
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(); // 单线程运行时
/// let cache = chatnexus::upstream::DnsCache::default(); // 空缓存
/// let addrs = rt.block_on(cache.resolve("127.0.0.1", 8080)).unwrap(); // IP 字面量无需解析
/// assert_eq!(addrs[0].port(), 8080); // 端口原样保留
/// ```
#[derive(Debug, Default)]
pub struct DnsCache {
    entries: RwLock<HashMap<HostPort, Addrs>>,
}

impl DnsCache {
    /// 解析主机名与端口为地址列表；IP 字面量直接返回，主机名先查缓存。
    ///
    /// 错误：解析失败或没有任何地址时返回中文说明。
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Addrs, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, port)]));
        }
        let key = (host.to_string(), port);
        if let Some(addrs) = self.read().get(&key) {
            return Ok(Arc::clone(addrs));
        }
        let addrs = lookup(host, port).await?;
        self.write().insert(key, Arc::clone(&addrs));
        Ok(addrs)
    }

    /// 重新解析所有缓存过的主机名；失败的保留旧地址。
    pub async fn refresh_all(&self) {
        let keys: Vec<HostPort> = self.read().keys().cloned().collect();
        for (host, port) in keys {
            match lookup(&host, port).await {
                Ok(addrs) => {
                    self.write().insert((host, port), addrs);
                }
                Err(e) => warn!("刷新 DNS 失败，继续使用旧地址：{e}"),
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<HostPort, Addrs>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<HostPort, Addrs>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
}

async fn lookup(host: &str, port: u16) -> Result<Addrs, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("解析主机名 {host} 失败：{e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("主机名 {host} 没有解析出任何地址"));
    }
    debug!("DNS：{host}:{port} -> {addrs:?}");
    Ok(Arc::from(addrs))
}

/// 定期刷新 [`DnsCache`] 的后台服务。
///
/// 用途：作为 Pingora 的后台服务加入 `Server`，与代理共享同一个缓存。
///
/// ```
/// let cache = std::sync::Arc::new(chatnexus::upstream::DnsCache::default()); // 与代理共享
/// let _refresher = chatnexus::upstream::DnsRefresher::new(cache, std::time::Duration::from_secs(60)); // 每分钟刷新
/// ```
pub struct DnsRefresher {
    cache: Arc<DnsCache>,
    interval: Duration,
}

impl DnsRefresher {
    /// 创建刷新服务。
    pub fn new(cache: Arc<DnsCache>, interval: Duration) -> Self {
        DnsRefresher { cache, interval }
    }
}

#[async_trait]
impl BackgroundService for DnsRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = ticker.tick() => self.cache.refresh_all().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn 解析_localhost_并缓存() {
        let cache = DnsCache::default();
        let addrs = cache
            .resolve("localhost", 9)
            .await
            .expect("localhost 必须可解析");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        assert_eq!(cache.read().len(), 1, "主机名结果必须进入缓存");
        cache.refresh_all().await;
        assert_eq!(cache.resolve("localhost", 9).await, Ok(addrs));
    }

    #[tokio::test]
    async fn 解析_ip_字面量不进缓存() {
        let cache = DnsCache::default();
        let addrs = cache.resolve("::1", 80).await.expect("IPv6 字面量");
        assert_eq!(addrs[..], ["[::1]:80".parse().expect("地址合法")]);
        assert!(cache.read().is_empty());
    }

    #[tokio::test]
    async fn 解析_不存在的主机名_返回错误() {
        let cache = DnsCache::default();
        assert!(cache.resolve("不存在.invalid", 80).await.is_err());
    }
}
