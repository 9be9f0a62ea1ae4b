//! 防重放的 nonce 存储：每个（客户端密钥名, nonce）在有效期内只能被认领一次。
//!
//! - Redis：`SET <前缀>nonce:<密钥名>:<nonce> 1 NX PX <毫秒>`，一条原子命令同时完成“查”与“记”，
//!   没有先读后写的竞态；多个网关实例共享同一个 Redis 即共享防重放状态。Redis 不可用时返回
//!   [`NonceError::Unavailable`]，调用方拒绝请求（故障时关闭，而不是放行）。
//! - 进程内：没有配置 Redis 时使用；互斥锁内完成查与记，条目按到期时间清理，
//!   条目数有硬上限，满了也拒绝请求（绝不靠淘汰未到期的 nonce 腾地方——那等于允许重放）。
//!   上限按签名密钥平分：每个密钥最多占“总上限 ÷ 签名密钥数”条，一个密钥只能用满自己的那一份，
//!   不能让别的签名密钥跟着 503。

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::warn;

use crate::metrics::METRICS;
use crate::redis_link::RedisLink;

/// 进程内存储的缺省条目上限（每条约 200 字节，十万条约 20 MB）。
pub const DEFAULT_MEMORY_CAPACITY: usize = 100_000;
/// Redis 键中 nonce 部分的固定段。
const NONCE_SEGMENT: &str = "nonce:";
/// Redis 错误计数中本模块的操作名。
const REDIS_OP: &str = "nonce";

/// 一次认领的结果。
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// 第一次见到，已记下。
    Fresh,
    /// 有效期内已经见过：重放。
    Replayed,
}

/// nonce 存储不能给出可靠答案；调用方必须拒绝请求（503）。
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// Redis 连不上、超时或返回错误（消息不含连接串）。
    #[error("防重放存储（Redis {addr}）不可用：{reason}")]
    Unavailable {
        /// Redis 地址（主机:端口，不含密码）。
        addr: String,
        /// 原因。
        reason: String,
    },
    /// 进程内存储已满，或该密钥的那一份已满。
    #[error("进程内防重放存储已满（上限 {capacity} 条）")]
    Full {
        /// 达到的上限（总上限或该密钥的份额）。
        capacity: usize,
    },
}

/// 防重放存储：Redis 或进程内。
///
/// 用途：网关启动时按配置建立一个，跨配置热替换保留（进程内存储若随配置重建，已见过的 nonce 就丢了）。
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async { // 在运行时里执行
/// use chatnexus::security::nonce::{Claim, NonceStore}; // 防重放存储
/// let store = NonceStore::memory(1_000, 2); // 进程内，最多 1000 条，两个签名密钥各 500 条
/// let ttl = std::time::Duration::from_secs(600); // 记住 10 分钟
/// assert_eq!(store.claim("团队甲", "nonce-0123456789ab", ttl).await, Ok(Claim::Fresh)); // 第一次
/// assert_eq!(store.claim("团队甲", "nonce-0123456789ab", ttl).await, Ok(Claim::Replayed)); // 重放
/// assert_eq!(store.claim("团队乙", "nonce-0123456789ab", ttl).await, Ok(Claim::Fresh)); // 按密钥名隔离
/// # });
/// ```
pub enum NonceStore {
    /// 进程内存储。
    Memory(MemoryNonces),
    /// Redis 存储。
    Redis(RedisNonces),
    /// 配置了 Redis 却无法建立客户端：一律不可用（故障时关闭，绝不悄悄退回进程内存储）。
    Unavailable,
}

impl NonceStore {
    /// 进程内存储，最多 `capacity` 条未过期的 nonce，由 `signing_keys` 个签名密钥平分。
    pub fn memory(capacity: usize, signing_keys: usize) -> Self {
        NonceStore::Memory(MemoryNonces::new(capacity, signing_keys))
    }

    /// 永远不可用的存储（见 [`NonceStore::Unavailable`]）。
    pub fn unavailable() -> Self {
        NonceStore::Unavailable
    }

    /// 认领一个 nonce：有效期 `ttl` 内同一（scope, nonce）只有第一次得到 [`Claim::Fresh`]。
    ///
    /// 错误：存储不可用或已满——调用方必须拒绝请求。
    pub async fn claim(
        &self,
        scope: &str,
        nonce: &str,
        ttl: Duration,
    ) -> Result<Claim, NonceError> {
        match self {
            NonceStore::Memory(store) => store.claim(scope, nonce, ttl),
            NonceStore::Redis(store) => store.claim(scope, nonce, ttl).await,
            NonceStore::Unavailable => Err(NonceError::Unavailable {
                addr: "-".to_string(),
                reason: "Redis 连接串无法解析".to_string(),
            }),
        }
    }

    /// 一句话描述（启动日志用，不含密码）。
    pub fn describe(&self) -> String {
        match self {
            NonceStore::Memory(store) => format!(
                "进程内（上限 {} 条，每个签名密钥 {} 条）",
                store.capacity, store.per_key
            ),
            NonceStore::Redis(store) => {
                format!("Redis {}（键前缀 `{}`）", store.link.addr(), store.prefix)
            }
            NonceStore::Unavailable => {
                "不可用（Redis 连接串无法解析，签名请求将被拒绝）".to_string()
            }
        }
    }
}

/// 进程内 nonce 存储：总上限之外，每个密钥（scope）还有自己的份额。
pub struct MemoryNonces {
    capacity: usize,
    per_key: usize,
    state: Mutex<MemoryState>,
}

/// 进程内存储的一个条目在清理队列中的记录。
struct Entry {
    expiry: Instant,
    key: Arc<str>,
    scope: Arc<str>,
}

#[derive(Default)]
struct MemoryState {
    /// 键 → 到期时刻。
    seen: HashMap<Arc<str>, Instant>,
    /// 按插入顺序排列的条目，用于清理。
    order: VecDeque<Entry>,
    /// 密钥名 → 它占用的条目数（为 0 时删除）。
    per_scope: HashMap<Arc<str>, usize>,
}

impl MemoryNonces {
    /// 新建：最多 `capacity` 条，每个密钥最多 `capacity ÷ signing_keys` 条（至少 1 条）。
    ///
    /// 份额在网关启动时按签名密钥数算好；热重载新增的签名密钥也得到同样大的份额，总上限仍然有效。
    pub fn new(capacity: usize, signing_keys: usize) -> Self {
        MemoryNonces {
            capacity,
            per_key: (capacity / signing_keys.max(1)).max(1),
            state: Mutex::new(MemoryState::default()),
        }
    }

    /// 当前记住的条目数（测试与诊断用）。
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// 是否为空。
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim(&self, scope: &str, nonce: &str, ttl: Duration) -> Result<Claim, NonceError> {
        self.claim_at(scope, nonce, ttl, Instant::now())
    }

    /// 在给定时刻认领（测试可注入时间）。查与记在同一把锁内完成。
    fn claim_at(
        &self,
        scope: &str,
        nonce: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<Claim, NonceError> {
        let key: Arc<str> = Arc::from(store_key("", scope, nonce));
        let mut state = self.lock();
        state.purge(now);
        if state.seen.get(&key).is_some_and(|&expiry| expiry > now) {
            return Ok(Claim::Replayed);
        }
        let held = state.per_scope.get(scope).copied().unwrap_or(0);
        if held >= self.per_key {
            return Err(NonceError::Full {
                capacity: self.per_key,
            });
        }
        if state.seen.len() >= self.capacity {
            return Err(NonceError::Full {
                capacity: self.capacity,
            });
        }
        state.insert(key, Arc::from(scope), now + ttl);
        Ok(Claim::Fresh)
    }
}

impl MemoryState {
    /// 记下一个条目并给它的密钥计数。
    fn insert(&mut self, key: Arc<str>, scope: Arc<str>, expiry: Instant) {
        self.seen.insert(Arc::clone(&key), expiry);
        *self.per_scope.entry(Arc::clone(&scope)).or_insert(0) += 1;
        self.order.push_back(Entry { expiry, key, scope });
    }

    /// 清掉到期的条目。TTL 固定时插入顺序即到期顺序；TTL 不同时，队首未到期就停，
    /// 稍后到期的条目留到下次（查找时仍按各自的到期时刻判断，结果不受影响）。
    fn purge(&mut self, now: Instant) {
        while self.order.front().is_some_and(|e| e.expiry <= now) {
            let Some(entry) = self.order.pop_front() else {
                break;
            };
            self.release(&entry.scope);
            if self.seen.get(&entry.key) == Some(&entry.expiry) {
                self.seen.remove(&entry.key);
            }
        }
    }

    /// 队列中的一个条目出队：它的密钥少占一条。
    fn release(&mut self, scope: &str) {
        if let Some(held) = self.per_scope.get_mut(scope) {
            *held -= 1;
            if *held == 0 {
                self.per_scope.remove(scope);
            }
        }
    }
}

/// Redis nonce 存储：使用与限流器共用的 [`RedisLink`]（第一次使用时才连接）。
pub struct RedisNonces {
    link: Arc<RedisLink>,
    prefix: String,
}

impl RedisNonces {
    /// 用共享的 Redis 连接与键前缀新建（不连接）。
    pub fn new(link: Arc<RedisLink>, prefix: String) -> Self {
        RedisNonces { link, prefix }
    }

    async fn claim(&self, scope: &str, nonce: &str, ttl: Duration) -> Result<Claim, NonceError> {
        let key = store_key(&self.prefix, scope, nonce);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        // 一条原子命令：键不存在才写入并设置过期时间；已存在时返回 nil
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(1).arg("NX").arg("PX").arg(ttl_ms);
        match self.link.query::<Option<String>>(&set).await {
            Ok(Some(_)) => Ok(Claim::Fresh),
            Ok(None) => Ok(Claim::Replayed),
            Err(failure) => {
                METRICS.redis_errors.with_label_values(&[REDIS_OP]).inc();
                let error = NonceError::Unavailable {
                    addr: failure.addr,
                    reason: failure.reason,
                };
                warn!("{error}");
                Err(error)
            }
        }
    }
}

/// 存储键：`<前缀>nonce:<密钥名>:<nonce>`。nonce 只含 URL 安全字符（没有 `:`），
/// 所以从最后一个 `:` 切分总能还原出密钥名与 nonce，不同密钥的键不会相撞。
pub fn store_key(prefix: &str, scope: &str, nonce: &str) -> String {
    format!("{prefix}{NONCE_SEGMENT}{scope}:{nonce}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(600);

    #[test]
    fn 进程内_到期后可再次使用且条目被清理() {
        let store = MemoryNonces::new(10, 1);
        let t0 = Instant::now();
        assert_eq!(store.claim_at("甲", "n1", TTL, t0), Ok(Claim::Fresh));
        assert_eq!(
            store.claim_at("甲", "n1", TTL, t0 + TTL - Duration::from_millis(1)),
            Ok(Claim::Replayed)
        );
        assert_eq!(store.claim_at("甲", "n1", TTL, t0 + TTL), Ok(Claim::Fresh));
        assert_eq!(store.len(), 1, "过期条目必须被清理而不是累积");
    }

    #[test]
    fn 进程内_满了拒绝而不淘汰未过期的条目() {
        let store = MemoryNonces::new(3, 1);
        let t0 = Instant::now();
        for n in ["a", "b", "c"] {
            assert_eq!(store.claim_at("甲", n, TTL, t0), Ok(Claim::Fresh));
        }
        assert_eq!(
            store.claim_at("甲", "d", TTL, t0),
            Err(NonceError::Full { capacity: 3 })
        );
        assert_eq!(
            store.claim_at("甲", "a", TTL, t0),
            Ok(Claim::Replayed),
            "已满时重放仍被识别"
        );
        assert_eq!(store.claim_at("甲", "d", TTL, t0 + TTL), Ok(Claim::Fresh));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn 进程内_一个密钥用满自己的份额_不影响其他密钥() {
        let store = MemoryNonces::new(6, 2);
        let t0 = Instant::now();
        for n in ["a", "b", "c"] {
            assert_eq!(store.claim_at("甲", n, TTL, t0), Ok(Claim::Fresh));
        }
        assert_eq!(
            store.claim_at("甲", "d", TTL, t0),
            Err(NonceError::Full { capacity: 3 }),
            "甲只能用满自己的一半"
        );
        for n in ["a", "b", "c"] {
            assert_eq!(
                store.claim_at("乙", n, TTL, t0),
                Ok(Claim::Fresh),
                "甲用满了自己的份额，乙照常签名"
            );
        }
        assert_eq!(store.claim_at("甲", "a", TTL, t0), Ok(Claim::Replayed));
        assert_eq!(
            store.claim_at("甲", "d", TTL, t0 + TTL),
            Ok(Claim::Fresh),
            "到期后份额释放"
        );
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn 进程内_并发认领同一个_nonce_只有一个成功() {
        let store = Arc::new(MemoryNonces::new(1000, 1));
        let threads: Vec<_> = (0..50)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || store.claim("甲", "same-nonce-000000", TTL))
            })
            .collect();
        let fresh = threads
            .into_iter()
            .map(|t| t.join().expect("线程不应 panic"))
            .filter(|r| *r == Ok(Claim::Fresh))
            .count();
        assert_eq!(fresh, 1);
    }

    #[test]
    fn 进程内_不同_ttl_混用时结果仍正确() {
        let store = MemoryNonces::new(10, 1);
        let t0 = Instant::now();
        let long = Duration::from_secs(100);
        let short = Duration::from_secs(10);
        assert_eq!(store.claim_at("甲", "long", long, t0), Ok(Claim::Fresh));
        assert_eq!(store.claim_at("甲", "short", short, t0), Ok(Claim::Fresh));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(
            store.claim_at("甲", "short", short, later),
            Ok(Claim::Fresh)
        );
        assert_eq!(
            store.claim_at("甲", "long", long, later),
            Ok(Claim::Replayed)
        );
    }

    #[tokio::test]
    async fn 无法建立的_redis_存储_一律不可用而不是放行() {
        let store = NonceStore::unavailable();
        assert!(matches!(
            store.claim("甲", "nonce-0123456789ab", TTL).await,
            Err(NonceError::Unavailable { .. })
        ));
        assert!(store.describe().contains("不可用"));
    }

    #[test]
    fn 存储键_包含前缀与密钥名() {
        assert_eq!(
            store_key("chatnexus:", "团队甲", "abc"),
            "chatnexus:nonce:团队甲:abc"
        );
    }

    /// 测试用的 Redis 地址（tests/run.sh 保证它可用）。
    fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
    }

    /// 按连接串与超时建立共享连接（不连接）。
    fn 连接(url: &str, timeout: Duration) -> Arc<RedisLink> {
        Arc::new(RedisLink::open(url, false, timeout).expect("连接串合法"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_并发认领同一个_nonce_只有一个成功并设置过期时间() {
        let client = redis::Client::open(redis_url()).expect("REDIS_URL 合法");
        let prefix = format!("chatnexus-unit-{}-{}:", std::process::id(), line!());
        let link = 连接(&redis_url(), Duration::from_secs(2));
        let store = Arc::new(NonceStore::Redis(RedisNonces::new(link, prefix.clone())));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.claim("甲", "same-nonce-000000", TTL).await })
            })
            .collect();
        let mut fresh = 0;
        for task in tasks {
            match task.await.expect("任务不应 panic") {
                Ok(Claim::Fresh) => fresh += 1,
                Ok(Claim::Replayed) => {}
                Err(e) => panic!("需要可用的 Redis（bash tests/run.sh 会自动启动）：{e}"),
            }
        }
        assert_eq!(fresh, 1, "五十个并发认领只能有一个成功");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("连接 Redis");
        let pttl: i64 = redis::cmd("PTTL")
            .arg(store_key(&prefix, "甲", "same-nonce-000000"))
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        assert!(
            pttl > 590_000 && pttl <= 600_000,
            "过期时间必须随 SET 一起设置：{pttl}"
        );
        assert_eq!(
            store.claim("乙", "same-nonce-000000", TTL).await,
            Ok(Claim::Fresh),
            "不同密钥互不影响"
        );
    }

    #[tokio::test]
    async fn redis_不可达时报告不可用() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("空闲端口")
            .port();
        let link = 连接(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_millis(300),
        );
        let store = NonceStore::Redis(RedisNonces::new(link, "p:".into()));
        let started = Instant::now();
        let err = store
            .claim("甲", "nonce-0123456789ab", TTL)
            .await
            .expect_err("连不上必须报错");
        assert!(matches!(err, NonceError::Unavailable { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(3), "不能无限等待");
        assert!(store.describe().contains("Redis"));
    }
}
