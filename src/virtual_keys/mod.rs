//! 虚拟密钥：不改 YAML、由管理接口创建的客户端密钥，保存在 Redis 里，所有实例共用。
//!
//! Redis 里一个哈希存全部记录（字段是密钥名，值是 [`KeyRecord`] 的 JSON），另一个计数器是版本号，
//! 每次修改都在同一个脚本里加一。每个实例在后台每 [`POLL_INTERVAL`] 读一次版本号，变了才重读全部记录，
//! 换掉进程内的“摘要 → 客户端”表：鉴权时只查内存，已知密钥没有逐请求的 Redis 往返；
//! 任何实例上的创建、停用、轮换在一秒内对所有实例生效。两个键带同一个哈希标签，Redis Cluster 下落在同一槽位。

mod record;
mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::{info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::clock::unix_now;
use crate::logging::WarnGate;
use crate::redis_link::RedisLink;
use crate::security::{Client, KeyHash};

pub use record::{check_name, KeyRecord, KeySpec, TeamRecord};
pub use store::KeyStore;

/// 后台读版本号的间隔：修改在一秒内对所有实例生效。
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// 刷新失败的告警最多多久一条。
const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// 还没读到过版本号。
const NO_VERSION: i64 = -1;

/// 进程内的一个虚拟密钥：运行时客户端与它的过期时刻。
struct Known {
    client: Arc<Client>,
    expires_unix: Option<u64>,
}

/// 进程内的虚拟密钥表与它对应的 Redis 存储。
///
/// 用途：网关鉴权时在配置里的密钥之后查它（[`VirtualKeys::authenticate`]）；管理接口经 [`VirtualKeys::store`]
/// 修改；后台服务 [`VirtualKeys::refresh`] 让修改在一秒内生效。没有配置 Redis 时表一直为空。
///
/// ```
/// let keys = chatnexus::virtual_keys::VirtualKeys::new(None, "chatnexus:"); // 没有 Redis
/// assert!(keys.authenticate("sk-甲").is_none() && keys.store().is_none()); // 没有虚拟密钥
/// ```
pub struct VirtualKeys {
    store: Option<KeyStore>,
    table: ArcSwap<HashMap<KeyHash, Known>>,
    version: AtomicI64,
    warn: WarnGate,
}

impl VirtualKeys {
    /// 用共享的 Redis 连接（没有配置时为 `None`）与键前缀创建；表在第一次刷新后才有内容。
    pub fn new(link: Option<Arc<RedisLink>>, prefix: &str) -> Self {
        VirtualKeys {
            store: link.map(|link| KeyStore::new(link, prefix)),
            table: ArcSwap::default(),
            version: AtomicI64::new(NO_VERSION),
            warn: WarnGate::default(),
        }
    }

    /// Redis 里的存储（管理接口用）；没有配置 Redis 时为 `None`。
    pub fn store(&self) -> Option<&KeyStore> {
        self.store.as_ref()
    }

    /// 按明文密钥查找启用中、未过期的虚拟密钥（只查内存）。
    pub fn authenticate(&self, presented: &str) -> Option<Arc<Client>> {
        let table = self.table.load();
        let known = table.get(&KeyHash::of(presented))?;
        if known.expires_unix.is_some_and(|e| e <= unix_now()) {
            return None;
        }
        Some(Arc::clone(&known.client))
    }

    /// 读一次版本号，变了就重读全部记录并换掉内存中的表；Redis 不可用时保留旧表并（限频）告警。
    pub async fn refresh(&self) {
        let Some(store) = &self.store else {
            return;
        };
        let version = match store.version().await {
            Ok(version) => version,
            Err(e) => return self.report(&e.to_string()),
        };
        if version == self.version.load(Ordering::Acquire) {
            return;
        }
        let (records, teams) = match (store.list().await, store.teams().await) {
            (Ok(records), Ok(teams)) => (records, teams),
            (Err(e), _) | (_, Err(e)) => return self.report(&e.to_string()),
        };
        let count = self.install(&records, &teams);
        self.version.store(version, Ordering::Release);
        info!(
            "虚拟密钥已更新到版本 {version}：{count} 个可用，{} 个团队",
            teams.len()
        );
    }

    /// 用记录建立新表（停用的与摘要损坏的不进表；团队按名字对上），返回表里的密钥数。
    fn install(&self, records: &[KeyRecord], teams: &[TeamRecord]) -> usize {
        let teams: HashMap<&str, &TeamRecord> =
            teams.iter().map(|t| (t.name.as_str(), t)).collect();
        let table: HashMap<KeyHash, Known> = records
            .iter()
            .filter(|r| !r.disabled)
            .filter_map(|r| {
                let team = r.team.as_deref().and_then(|name| teams.get(name).copied());
                let (hash, client) = r.client(team)?;
                let known = Known {
                    client: Arc::new(client),
                    expires_unix: r.expires_unix,
                };
                Some((hash, known))
            })
            .collect();
        let count = table.len();
        self.table.store(Arc::new(table));
        count
    }

    /// 刷新失败：按间隔告警，表保持不变（已知密钥照常可用）。
    fn report(&self, reason: &str) {
        if self.warn.due(WARN_INTERVAL) {
            warn!("刷新虚拟密钥失败（{reason}），继续使用上次读到的密钥表");
        }
    }
}

/// 后台刷新虚拟密钥的服务。
///
/// 用途：`server::build` 在配置了 Redis 时加入它。
///
/// ```
/// let keys = std::sync::Arc::new(chatnexus::virtual_keys::VirtualKeys::new(None, "")); // 没有 Redis
/// let _service = chatnexus::virtual_keys::KeyRefresher::new(keys); // 再用 background_service 包装
/// ```
pub struct KeyRefresher {
    keys: Arc<VirtualKeys>,
}

impl KeyRefresher {
    /// 为共享的密钥表创建刷新服务。
    pub fn new(keys: Arc<VirtualKeys>) -> Self {
        KeyRefresher { keys }
    }
}

#[async_trait]
impl BackgroundService for KeyRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => self.keys.refresh().await,
            }
        }
    }
}
