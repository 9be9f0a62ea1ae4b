//! 分布式阶段：Redis 中的一个原子 Lua 脚本（`admit.lua`）检查全部层、全部通过才计数；
//! 结束时另一个脚本（`settle.lua`）把 token 预留改成实际用量。
//!
//! 脚本以 EVALSHA 调用（只传 40 字节的摘要，一次往返），同时在等的准入合成一批、一次调用（见 [`super::batch`]）；
//! Redis 重启或 `SCRIPT FLUSH` 后返回 NOSCRIPT 时，由 redis 客户端自动 `SCRIPT LOAD` 再重试（集群中 `SCRIPT LOAD` 发给全部主节点）。
//!
//! 两个脚本都先校验全部数值参数（整数、不超过 [`MAX_COUNT`]）再写入，越界时报错且不留下半截写入。
//!
//! 键：`{<前缀>rl}:<层>:<主体>`；哈希里记着计数时的桶宽，配置改了窗口时这一种计数从头开始。多键脚本在 Redis Cluster 中要求全部键在同一个槽，
//! 而全局层的键出现在每个请求里，所以全部限流键共用一个哈希标签 `{<前缀>rl}`：
//! 代价是限流只用得上集群中的一个节点（对 LLM 请求的速率绰绰有余），换来跨层的原子性。

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::batch::{Admit, Batcher, LayerArgs};
use super::layer::{Check, Kind, Layer, TOKEN_WINDOW};
use super::verdict::{Quota, Refusal};
use super::MAX_COUNT;
use crate::redis_link::{RedisFailure, RedisLink};

/// 准入脚本。
const ADMIT_LUA: &str = include_str!("admit.lua");
/// 结算脚本。
const SETTLE_LUA: &str = include_str!("settle.lua");
/// 每个窗口分成的桶数：桶越多越精确（边界上少放的量不超过一个桶），脚本清理过期桶的开销也越大。
pub const BUCKETS: u64 = 20;
/// 放行时的返回值里 token 桶号的位置（第 0 个是“是否放行”）。
const BUCKET_AT: usize = 1;
/// 放行时的返回值里最紧的请求层（层号、剩余、完全恢复的毫秒数）从这里开始。
const REQUESTS_AT: usize = 2;
/// 放行时的返回值里最紧的 token 层（同上）从这里开始。
const TOKENS_AT: usize = 5;
/// 脚本表示“不限”或“永远不行”的值。
const NONE: i64 = -1;
/// 操作名：准入（错误计数与日志用）。
pub const OP_ADMIT: &str = "admit";
/// 操作名：结算。
pub const OP_SETTLE: &str = "settle";

/// 分布式阶段的判定。
#[derive(Debug)]
pub enum RemoteVerdict {
    /// 全部通过：各层额度，以及 token 预留所在的桶号（结算用）。
    Admitted {
        /// 各层各种计数的额度。
        quotas: Vec<Quota>,
        /// token 预留所在的桶号。
        bucket: i64,
    },
    /// 被拒绝（没有计入任何一层）。
    Refused(Refusal),
}

/// 准入后结算要用的信息：有 token 上限的各层的键与预留所在的桶号。
#[derive(Debug, Clone)]
pub struct RemoteTicket {
    keys: Vec<String>,
    bucket: i64,
}

/// 分布式阶段。
///
/// 用途：`Limiter` 在配置了 `redis` 段时持有一个，与防重放存储共用同一个 [`RedisLink`]。
pub struct RemoteStage {
    link: Arc<RedisLink>,
    batcher: Batcher,
    settle: Script,
    tag: String,
}

impl RemoteStage {
    /// 用共享连接与键前缀创建（不连接、不加载脚本：第一次 EVALSHA 遇到 NOSCRIPT 时加载）。
    pub fn new(link: Arc<RedisLink>, prefix: &str) -> Self {
        RemoteStage {
            batcher: Batcher::new(link.clone(), Script::new(ADMIT_LUA)),
            link,
            settle: Script::new(SETTLE_LUA),
            tag: format!("{{{prefix}rl}}"),
        }
    }

    /// 一层的 Redis 键。
    pub fn key(&self, check: &Check) -> String {
        format!("{}:{}:{}", self.tag, check.layer.segment(), check.subject)
    }

    /// 共享连接。
    pub fn link(&self) -> &RedisLink {
        &self.link
    }

    /// 一次往返完成全部层的检查与计数（可能与同时在等的准入同批）；给出 `probe` 时顺带读这个键
    /// （单机 Redis 才行，见 [`RedisLink::is_cluster`]），键存在时本请求不预留 token。
    ///
    /// 参数：检查（至少一个）、本请求预留的 token 数、要顺带读的键。
    /// 返回：判定，以及探查读到的值（键不存在或没有探查时为 `None`）。
    /// 错误：Redis 连不上、超时或脚本出错。
    pub async fn admit(
        &self,
        checks: &[Check],
        tokens: u64,
        probe: Option<&str>,
    ) -> Result<(RemoteVerdict, Option<Vec<u8>>), RedisFailure> {
        let layers = checks
            .iter()
            .map(|check| LayerArgs {
                key: self.key(check),
                requests: check.requests.unwrap_or(0),
                width: width(check.window),
                tokens: check.tokens.unwrap_or(0),
            })
            .collect();
        let probe = probe.map(str::to_owned);
        let admit = Admit {
            layers,
            tokens,
            probe,
        };
        let (reply, probed) = self.batcher.submit(admit).await?;
        let reserved = if probed.is_some() { 0 } else { tokens };
        Ok((parse(&reply, checks, reserved), probed))
    }

    /// 准入后结算用的信息（只含有 token 上限的层）；没有这样的层时为 `None`。
    pub fn ticket(&self, checks: &[Check], bucket: i64) -> Option<RemoteTicket> {
        let keys: Vec<String> = checks
            .iter()
            .filter(|c| c.tokens.is_some())
            .map(|c| self.key(c))
            .collect();
        (!keys.is_empty()).then_some(RemoteTicket { keys, bucket })
    }

    /// 把 token 预留改成实际用量（`delta` 为实际减预留）。
    ///
    /// 错误：Redis 连不上、超时或脚本出错。
    pub async fn settle(&self, ticket: &RemoteTicket, delta: i64) -> Result<(), RedisFailure> {
        let mut call = self.settle.prepare_invoke();
        for key in &ticket.keys {
            call.key(key);
        }
        call.arg(BUCKETS)
            .arg(width(TOKEN_WINDOW))
            .arg(ticket.bucket)
            .arg(delta)
            .arg(MAX_COUNT);
        let mut conn = self.link.connection().await?;
        self.link
            .within(call.invoke_async::<i64>(&mut conn), "结算脚本")
            .await
            .map(drop)
    }
}

/// 窗口长度对应的桶宽（毫秒，向上取整：窗口只会略长、不会变短）。
pub fn width(window: Duration) -> u64 {
    let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    millis.div_ceil(BUCKETS).max(1)
}

/// 解析脚本的返回值：放行时脚本只给出每种计数最紧的一层（响应头只用它），返回值短、解析也少。
fn parse(reply: &[i64], checks: &[Check], tokens: u64) -> RemoteVerdict {
    let field = |i: usize| reply.get(i).copied().unwrap_or(NONE);
    if field(0) != 1 {
        return RemoteVerdict::Refused(refusal(reply, checks, tokens));
    }
    let tightest = |at: usize, kind: Kind| {
        let check = numbered(checks, field(at))?;
        let limit = match kind {
            Kind::Requests => check.requests,
            Kind::Tokens => check.tokens,
        }?;
        Some(quota(
            check.layer,
            kind,
            limit,
            field(at + 1),
            field(at + 2),
        ))
    };
    let quotas = [
        tightest(REQUESTS_AT, Kind::Requests),
        tightest(TOKENS_AT, Kind::Tokens),
    ]
    .into_iter()
    .flatten()
    .collect();
    RemoteVerdict::Admitted {
        quotas,
        bucket: field(BUCKET_AT),
    }
}

/// 脚本里的层号（从 1 起，0 表示没有）对应的检查。
fn numbered(checks: &[Check], number: i64) -> Option<&Check> {
    usize::try_from(number - 1).ok().and_then(|i| checks.get(i))
}

/// 解析拒绝：脚本给出层号（从 1 起）、种类与可重试的毫秒数，上限与窗口取自对应的检查。
fn refusal(reply: &[i64], checks: &[Check], tokens: u64) -> Refusal {
    let field = |i: usize| reply.get(i).copied().unwrap_or(NONE);
    let check = numbered(checks, field(1));
    let kind = if field(2) == 1 {
        Kind::Tokens
    } else {
        Kind::Requests
    };
    let (limit, window, requested) = match kind {
        Kind::Tokens => (check.and_then(|c| c.tokens), TOKEN_WINDOW, tokens),
        Kind::Requests => (
            check.and_then(|c| c.requests),
            check.map_or(TOKEN_WINDOW, |c| c.window),
            1,
        ),
    };
    let wait = field(3);
    Refusal {
        layer: check.map_or(Layer::Global, |c| c.layer),
        kind,
        limit: limit.unwrap_or(0),
        window,
        requested,
        retry_after: (wait >= 0).then(|| millis(wait)),
    }
}

fn quota(layer: Layer, kind: Kind, limit: u64, remaining: i64, reset: i64) -> Quota {
    Quota {
        layer,
        kind,
        limit,
        remaining: u64::try_from(remaining).unwrap_or(0),
        reset: millis(reset),
    }
}

/// 脚本给出的毫秒数（负数按 0）。
fn millis(value: i64) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}
