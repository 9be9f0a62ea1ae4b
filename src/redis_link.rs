//! 防重放与限流共用的 Redis 连接：单机（`ConnectionManager`，断线自动重连）或集群
//! （`cluster_async::ClusterConnection`，按槽路由、拓扑变化自动刷新）。
//!
//! 两者都必须在 tokio 运行时里创建，而网关对象是在 Pingora 启动运行时之前构造的，
//! 所以连接放在 `tokio::sync::OnceCell` 里、第一次用到时才建立；建立失败不缓存，下次再试。
//! 每个操作都有超时（`redis.timeout_ms`），调用方据此降级或拒绝，绝不无限等待。
//! 这里不写日志：防重放每次失败都要告警，限流只按间隔告警，由调用方各自决定。
//!
//! 每个 tokio 运行时各用一条连接：连接的驱动任务（读写 socket、解析回复）跑在建立它的运行时里。
//! 网关的请求、管理接口与各个后台服务各有自己的运行时，共用一条连接时谁先用到它，驱动任务就落在谁的线程上——
//! 实测虚拟密钥的后台刷新先建立了连接，此后每个请求的每次 Redis 往返都要跨线程唤醒两次，
//! 那个后台线程占了网关进程两成多的 CPU 样本。

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::runtime::{self, Handle};
use tokio::sync::OnceCell;

/// 单机连接断开后重连的最少退避。
const RETRY_MIN_DELAY: Duration = Duration::from_millis(50);
/// 单条命令失败后连接层自己的重试次数（再多就超出调用方的超时了）。
const RETRIES: u32 = 1;
/// 集群节点列表中各节点连接串的分隔符。
pub const CLUSTER_URL_SEPARATOR: char = ',';

/// Redis 不可用：连不上、超时或返回错误。消息只含地址与错误类别，不含连接串（其中可能有密码）。
///
/// 用途：[`RedisLink`] 的每个操作失败时返回它，调用方转换成自己的错误（503、降级到本地限流）。
///
/// ```
/// let e = chatnexus::redis_link::RedisFailure { addr: "127.0.0.1:6379".into(), reason: "连接被拒绝".into() }; // 一次失败
/// assert!(e.to_string().contains("127.0.0.1:6379")); // 消息带地址
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Redis {addr} 不可用：{reason}")]
pub struct RedisFailure {
    /// Redis 地址（主机:端口，集群时为第一个节点，不含密码）。
    pub addr: String,
    /// 原因（中文）。
    pub reason: String,
}

/// 一个已建立的连接（单机或集群）；克隆开销很小，多个请求共用同一条多路复用的连接。
///
/// 用途：[`RedisLink::connection`] 返回它，调用方直接用它执行命令或脚本。
#[derive(Clone)]
pub enum RedisConn {
    /// 单机。
    Single(ConnectionManager),
    /// 集群。
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_command(cmd),
            RedisConn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(conn) => conn.get_db(),
            RedisConn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// 顺带读一个键的结果（例如限流准入脚本替响应缓存读条目，省一次往返）。
///
/// 用途：读的一方（限流）与用的一方（缓存）在同一层、互不引用，经它传递读到的原始值。
///
/// ```
/// let f = chatnexus::redis_link::Fetched::Missing; // 键不存在
/// assert_ne!(f, chatnexus::redis_link::Fetched::Unavailable); // 与 Redis 不可用不同
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// 键存在：它的原始值。
    Value(Vec<u8>),
    /// 键不存在。
    Missing,
    /// 没有读到：Redis 不可用（连不上、超时，或处在失败后的等待期）。
    Unavailable,
    /// 没有去读（没有要顺带做的事，单独读不省往返）：调用方自己读。
    Unread,
}

/// 客户端：单机或集群。
enum LinkClient {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

/// 共享的 Redis 连接（懒建立、带超时）。
///
/// 用途：网关按配置的 `redis` 段建立一个，防重放存储与限流器共用，跨配置热替换保留。
///
/// ```
/// let timeout = std::time::Duration::from_millis(100); // 连接与命令超时
/// let link = chatnexus::redis_link::RedisLink::open("redis://127.0.0.1:6379", false, timeout).unwrap(); // 不连接
/// assert_eq!(link.addr(), "127.0.0.1:6379"); // 只显示地址
/// ```
pub struct RedisLink {
    client: LinkClient,
    conns: Mutex<Vec<(runtime::Id, Arc<OnceCell<RedisConn>>)>>,
    timeout: Duration,
    addr: String,
}

impl RedisLink {
    /// 创建（不连接）。
    ///
    /// 参数：连接串（集群时为逗号分隔的节点列表）、是否为 Redis Cluster、连接与单条命令的超时。
    /// 错误：连接串无法解析（配置校验已检查过，出现即是缺陷）。
    pub fn open(url: &str, cluster: bool, timeout: Duration) -> Result<Self, RedisError> {
        let (client, addr) = if cluster {
            let nodes: Vec<&str> = url.split(CLUSTER_URL_SEPARATOR).map(str::trim).collect();
            let first = redis::Client::open(nodes.first().copied().unwrap_or_default())?;
            let client = ClusterClientBuilder::new(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(RETRIES)
                .build()?;
            (LinkClient::Cluster(Box::new(client)), address_of(&first))
        } else {
            let client = redis::Client::open(url)?;
            let addr = address_of(&client);
            (LinkClient::Single(client), addr)
        };
        Ok(RedisLink {
            client,
            conns: Mutex::new(Vec::new()),
            timeout,
            addr,
        })
    }

    /// Redis 地址（不含密码），用于日志与错误消息。
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// 是否为 Redis Cluster（集群中一个脚本的全部键必须在同一个槽，不同用途的键不能合进一个脚本）。
    pub fn is_cluster(&self) -> bool {
        matches!(self.client, LinkClient::Cluster(_))
    }

    /// 取得（必要时建立）当前运行时的连接；建立失败不缓存，下次再试。
    ///
    /// 错误：连接失败或超时。
    pub async fn connection(&self) -> Result<RedisConn, RedisFailure> {
        let cell = self.cell()?;
        let conn = cell
            .get_or_try_init(|| self.within(self.connect(), "连接"))
            .await?;
        Ok(conn.clone())
    }

    /// 当前运行时的连接槽（没有时添一个空的）：运行时只有寥寥几个，顺序查找。
    ///
    /// 错误：不在 tokio 运行时里（连接的驱动任务无处可去）。
    fn cell(&self) -> Result<Arc<OnceCell<RedisConn>>, RedisFailure> {
        let id = Handle::try_current()
            .map_err(|_| self.failure("不在 tokio 运行时里，无法建立连接".to_string()))?
            .id();
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, cell)) = conns.iter().find(|(runtime, _)| *runtime == id) {
            return Ok(Arc::clone(cell));
        }
        let cell = Arc::new(OnceCell::new());
        conns.push((id, Arc::clone(&cell)));
        Ok(cell)
    }

    /// 在超时内执行一个 Redis 操作（命令、管道或脚本）。
    ///
    /// 参数：操作；`what` 是出错时写进原因的操作名（如“命令”）。
    /// 错误：操作失败或超时。
    pub async fn within<T>(
        &self,
        op: impl Future<Output = RedisResult<T>>,
        what: &str,
    ) -> Result<T, RedisFailure> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.failure(format!("{what}失败（{}）", describe(&e)))),
            Err(_) => Err(self.failure(format!("{what}超时（{:?}）", self.timeout))),
        }
    }

    /// 取得连接并在超时内执行一条命令。
    ///
    /// 错误：连不上、命令失败或超时。
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisFailure> {
        let mut conn = self.connection().await?;
        self.within(cmd.query_async(&mut conn), "命令").await
    }

    /// 建立连接（调用方负责超时）。
    async fn connect(&self) -> RedisResult<RedisConn> {
        match &self.client {
            LinkClient::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(RETRIES as usize)
                    .set_min_delay(RETRY_MIN_DELAY)
                    .set_max_delay(self.timeout);
                let manager = client.get_connection_manager_with_config(config).await?;
                Ok(RedisConn::Single(manager))
            }
            LinkClient::Cluster(client) => {
                Ok(RedisConn::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// 这个连接上的一次失败（带地址，不含连接串）；限流的合批任务也用它报告自己发现的错误。
    ///
    /// 参数：中文原因。
    pub(crate) fn failure(&self, reason: String) -> RedisFailure {
        RedisFailure {
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// 客户端连接的地址（主机:端口），不含用户名与密码。
fn address_of(client: &redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}

/// 描述 Redis 错误：只用错误类别，不用可能带连接串的原文。
fn describe(e: &RedisError) -> String {
    if e.is_connection_refusal() {
        "连接被拒绝".to_string()
    } else if e.is_timeout() {
        "超时".to_string()
    } else {
        format!("{:?}", e.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 这台机器上的 Redis。
    const LOCAL_REDIS: &str = "redis://127.0.0.1:6379";
    /// 连接与命令超时。
    const TIMEOUT: Duration = Duration::from_secs(2);

    /// 在一个新的单线程运行时里先后两次问连接的 `CLIENT ID`。
    fn 两次的连接号(link: &RedisLink) -> (i64, i64) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("建立运行时");
        runtime.block_on(async {
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("ID");
            let first: i64 = link.query(&cmd).await.expect("CLIENT ID");
            let second: i64 = link.query(&cmd).await.expect("CLIENT ID");
            (first, second)
        })
    }

    #[test]
    fn 每个运行时各用一条连接_同一运行时里复用() {
        let link = RedisLink::open(LOCAL_REDIS, false, TIMEOUT).expect("连接串合法");
        let (a1, a2) = 两次的连接号(&link);
        let (b1, b2) = 两次的连接号(&link);
        assert_eq!(a1, a2, "同一个运行时复用同一条连接");
        assert_eq!(b1, b2, "同一个运行时复用同一条连接");
        assert_ne!(a1, b1, "另一个运行时建立自己的连接");
    }
}
