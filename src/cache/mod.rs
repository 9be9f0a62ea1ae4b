//! 响应缓存的存储与键：判断请求能否用缓存、算缓存键、按配置的后端（进程内 LRU 或 Redis）读写条目。
//!
//! 键按范围隔离（缺省按客户端密钥），一个密钥永远拿不到另一个密钥的回答。缓存只是加速：
//! Redis 慢或不可用时查找返回 [`Lookup::Bypass`]、保存只记日志，请求照常走上游；
//! 损坏的条目当作未命中并删除。何时保存（只存完整成功的回复）、如何回放由请求路径决定。

mod entry;
mod flight;
mod key;
mod local;

pub use entry::{CorruptEntry, Entry};
pub use flight::{wait, Flight, FlightGuard};

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use log::{debug, warn};
use redis::Cmd;
use serde_json::{Map, Value};

use crate::clock::unix_now;
use crate::config::{CacheBackend, CacheSettings};
use crate::logging::WarnGate;
use crate::metrics::METRICS;
use crate::redis_link::{Fetched, RedisFailure, RedisLink};

use local::LocalStore;

/// Redis 键里在前缀之后的固定部分。
const KEY_SEGMENT: &str = "cache:";
/// Redis 错误指标中读缓存的操作标签。
const OP_GET: &str = "cache_get";
/// Redis 错误指标中写缓存的操作标签。
const OP_PUT: &str = "cache_put";
/// Redis 不可用的告警最多多久一条。
const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// 指标与访问日志里“命中”的标签。
pub const RESULT_HIT: &str = "hit";
/// 指标与访问日志里“未命中”的标签。
pub const RESULT_MISS: &str = "miss";
/// 指标与访问日志里“绕过”（缓存不可用）的标签。
pub const RESULT_BYPASS: &str = "bypass";

/// 一次查找的结果。
///
/// 用途：命中时直接回放条目；未命中时走上游并在成功后保存；绕过时走上游（缓存暂不可用）。
///
/// ```
/// let l = chatnexus::cache::Lookup::Miss; // 没有条目
/// assert_eq!(l.label(), "miss"); // 指标标签
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// 命中：缓存的条目。
    Hit(Entry),
    /// 未命中（没有、已过期或已损坏）。
    Miss,
    /// 缓存不可用（Redis 慢或连不上），本次不用缓存。
    Bypass,
}

impl Lookup {
    /// 指标 `llm_cache_requests_total{result}` 与响应头 `x-chatnexus-cache` 用的标签：hit、miss 或 bypass。
    pub fn label(&self) -> &'static str {
        match self {
            Lookup::Hit(_) => RESULT_HIT,
            Lookup::Miss => RESULT_MISS,
            Lookup::Bypass => RESULT_BYPASS,
        }
    }
}

/// 响应缓存：进程内 LRU 与（可选的）Redis 连接；用哪个由每次调用传入的 [`CacheSettings`] 决定，
/// 热重载换后端或改过期时间不必重建它。
///
/// 用途：请求路径先 [`ResponseCache::eligible`] 与 [`ResponseCache::key`]，再 `get`，上游成功后 `put`。
///
/// ```
/// let cache = chatnexus::cache::ResponseCache::new(None, "chatnexus:"); // 没有 Redis，只能用进程内后端
/// let settings = chatnexus::config::CacheSettings::default(); // 缺省 local
/// let key = chatnexus::cache::ResponseCache::key(&settings, ("密钥甲", None), "演示", "chat", &serde_json::Map::new());
/// assert_eq!(key.len(), 64); // sha256 十六进制
/// ```
pub struct ResponseCache {
    redis: Option<Arc<RedisLink>>,
    prefix: String,
    local: Mutex<LocalStore>,
    warn: WarnGate,
    flights: flight::Flights,
}

impl ResponseCache {
    /// 用共享的 Redis 连接（没有配置时为 `None`）与 Redis 键前缀创建。
    pub fn new(redis: Option<Arc<RedisLink>>, key_prefix: &str) -> Self {
        ResponseCache {
            redis,
            prefix: key_prefix.to_string(),
            local: Mutex::default(),
            warn: WarnGate::default(),
            flights: flight::Flights::default(),
        }
    }

    /// 相同请求的合并：没有进行中的相同请求（同一个键）时领头，否则跟随（先等领头的结束再查缓存）。
    pub fn join(&self, key: &str) -> Flight {
        self.flights.join(key)
    }

    /// 请求是否可以用缓存：模型在 models 里（或没配 models）；mode=deterministic 时要求回复只由请求决定（如向量），
    /// 或 temperature 为 0 或给了 seed，且 n 不存在或为 1。
    ///
    /// 参数：缓存设置、客户端可见的模型名、请求体与回复是否只由请求决定。
    pub fn eligible(
        settings: &CacheSettings,
        model: &str,
        request: (&Map<String, Value>, bool),
    ) -> bool {
        key::eligible(settings, model, request)
    }

    /// 缓存键：sha256 十六进制，覆盖 范围主体（scope=global 时为空串，scope=team 时是团队、没有团队时与 key 一样是密钥名）、
    /// 客户端可见的模型名、接口标签、请求的语义内容——
    /// body 去掉 stream、stream_options、user、metadata 之后规范化（对象键递归排序，紧凑序列化），字段顺序与空白不影响键。
    ///
    /// 参数：缓存设置、客户端密钥名与它的团队、客户端可见的模型名、接口标签（如 `chat_completions`）、请求体。
    pub fn key(
        settings: &CacheSettings,
        owner: (&str, Option<&str>),
        model: &str,
        endpoint: &str,
        body: &Map<String, Value>,
    ) -> String {
        key::key(settings, owner, model, endpoint, body)
    }

    /// 查找：local 后端进程内 LRU（按总字节数淘汰、过期即删）；redis 后端 GET，Redis 慢或不可用时返回 Bypass（不失败），
    /// 计数 llm_cache_requests_total{result="bypass"} 并按间隔打一条 warn（WarnGate）；内容损坏当作 Miss 并删除。
    /// 命中与未命中也计入 llm_cache_requests_total。
    ///
    /// 过期按本次传入的 `ttl_seconds` 判断（热重载缩短过期时间立即生效）。
    pub async fn get(&self, settings: &CacheSettings, key: &str) -> Lookup {
        let lookup = match settings.backend {
            CacheBackend::Local => match self.lock().get(key, settings.ttl_seconds, unix_now()) {
                Some(entry) => Lookup::Hit(entry),
                None => Lookup::Miss,
            },
            CacheBackend::Redis => self.get_stored(settings, &self.redis_key(key)).await,
        };
        count(&lookup);
        lookup
    }

    /// 保存（超过 max_entry_bytes 时不存）；Redis 用 SET EX ttl；失败只记日志与计数，不报错。
    pub async fn put(&self, settings: &CacheSettings, key: &str, entry: &Entry) {
        let bytes = entry.encode();
        if bytes.len() > settings.max_entry_bytes {
            debug!(
                "回复有 {} 字节，超过缓存单条上限 {}，不缓存",
                bytes.len(),
                settings.max_entry_bytes
            );
            return;
        }
        match settings.backend {
            CacheBackend::Local => {
                let size = bytes.len();
                self.lock()
                    .put(key, entry.clone(), size, settings.max_bytes);
            }
            CacheBackend::Redis => self.put_redis(settings, key, bytes).await,
        }
    }

    /// 条目在 Redis 里的完整键：redis 后端且有 Redis 连接时才有（别处可以替缓存顺带读它，见 [`ResponseCache::resolve`]）。
    pub fn storage_key(&self, settings: &CacheSettings, key: &str) -> Option<String> {
        let redis = settings.backend == CacheBackend::Redis && self.redis.is_some();
        redis.then(|| self.redis_key(key))
    }

    /// 由别处顺带读出的值（如限流准入脚本读的 [`ResponseCache::storage_key`]）得出查找结果，规则与 `get` 相同：
    /// 读不到时绕过（计数并按间隔告警），损坏的删除并当作未命中；对方没有去读（[`Fetched::Unread`]）时自己 GET。
    /// 结果计入 llm_cache_requests_total。
    pub async fn resolve(
        &self,
        settings: &CacheSettings,
        redis_key: &str,
        fetched: Fetched,
    ) -> Lookup {
        let lookup = match fetched {
            Fetched::Value(raw) => self.accept(settings, redis_key, raw).await,
            Fetched::Missing => Lookup::Miss,
            Fetched::Unavailable => {
                self.report_unavailable(None, OP_GET);
                Lookup::Bypass
            }
            Fetched::Unread => self.get_stored(settings, redis_key).await,
        };
        count(&lookup);
        lookup
    }

    /// 从 Redis 读出条目（`GET <完整的键>`）；Redis 出错时绕过。
    async fn get_stored(&self, settings: &CacheSettings, redis_key: &str) -> Lookup {
        let Some(link) = &self.redis else {
            self.report_missing_link();
            return Lookup::Bypass;
        };
        let mut cmd = Cmd::new();
        cmd.arg("GET").arg(redis_key);
        match link.query::<Option<Vec<u8>>>(&cmd).await {
            Ok(Some(raw)) => self.accept(settings, redis_key, raw).await,
            Ok(None) => Lookup::Miss,
            Err(e) => {
                self.report_unavailable(Some(&e), OP_GET);
                Lookup::Bypass
            }
        }
    }

    /// 解析从 Redis 读出的条目：按当前的过期时间判断新旧；损坏的删除并当作未命中。
    async fn accept(&self, settings: &CacheSettings, redis_key: &str, raw: Vec<u8>) -> Lookup {
        match Entry::decode(raw) {
            // Redis 的过期时间是保存时的 TTL；按当前设置再判断一次，热重载缩短 TTL 立即生效
            Ok(entry) if entry.created_unix.saturating_add(settings.ttl_seconds) > unix_now() => {
                Lookup::Hit(entry)
            }
            Ok(_) => Lookup::Miss,
            Err(e) => {
                warn!("缓存条目 {redis_key} 已损坏（{e}），删除并当作未命中");
                if let Some(link) = &self.redis {
                    self.delete(link, redis_key).await;
                }
                Lookup::Miss
            }
        }
    }

    /// 用 `SET … EX ttl` 写进 Redis；失败只记指标与（限频的）日志。
    async fn put_redis(&self, settings: &CacheSettings, key: &str, bytes: Vec<u8>) {
        let Some(link) = &self.redis else {
            self.report_missing_link();
            return;
        };
        let mut cmd = Cmd::new();
        cmd.arg("SET")
            .arg(self.redis_key(key))
            .arg(bytes)
            .arg("EX")
            .arg(settings.ttl_seconds.max(1));
        if let Err(e) = link.query::<()>(&cmd).await {
            self.report_unavailable(Some(&e), OP_PUT);
        }
    }

    /// 删除一个损坏的条目；删不掉只记调试日志（它总会过期）。
    async fn delete(&self, link: &RedisLink, redis_key: &str) {
        let mut cmd = Cmd::new();
        cmd.arg("DEL").arg(redis_key);
        if let Err(e) = link.query::<()>(&cmd).await {
            debug!("删除损坏的缓存条目 {redis_key} 失败：{e}");
        }
    }

    /// Redis 操作失败（`failure`），或替缓存读的一方报告 Redis 不可用（`None`，那一方已记过 Redis 错误指标）：
    /// 按间隔告警。
    fn report_unavailable(&self, failure: Option<&RedisFailure>, op: &str) {
        if failure.is_some() {
            METRICS.redis_errors.with_label_values(&[op]).inc();
        }
        if self.warn.due(WARN_INTERVAL) {
            let reason =
                failure.map_or_else(|| "限流准入时没有读到条目".to_string(), ToString::to_string);
            warn!("响应缓存的 Redis 不可用（{reason}），请求绕过缓存直接走上游");
        }
    }

    /// 配置了 `backend: redis` 却没有 Redis 连接（配置校验应已拦下）：按间隔告警。
    fn report_missing_link(&self) {
        if self.warn.due(WARN_INTERVAL) {
            warn!("响应缓存配置为 redis 后端，但没有可用的 Redis 连接，请求绕过缓存");
        }
    }

    /// Redis 键：`前缀cache:<缓存键>`。
    fn redis_key(&self, key: &str) -> String {
        format!("{}{KEY_SEGMENT}{key}", self.prefix)
    }

    /// 锁住进程内存储；持锁的线程 panic 过也继续用（LRU 的每步更新都不会留下不一致的状态）。
    fn lock(&self) -> MutexGuard<'_, LocalStore> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// 把一次查找计入 `llm_cache_requests_total{result}`。
fn count(lookup: &Lookup) {
    METRICS
        .cache
        .requests
        .with_label_values(&[lookup.label()])
        .inc();
}

#[cfg(test)]
mod tests;
