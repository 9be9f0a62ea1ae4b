//! 多层限流：全局、每个客户端密钥、每个客户端 IP、每个模型，各有请求数（滑动窗口）与每分钟 token 上限。
//!
//! 每个聊天请求经过两个阶段（详见 docs/rate-limiting.md）：
//! 1. 本地阶段（[`LocalStage`]，`pingora-limits`，纳秒级、没有 I/O）：挡住明显超限的流量，Redis 不可用时
//!    按“上限 ÷ 实例数”独自限流，保护进程；
//! 2. 分布式阶段（[`RemoteStage`]，Redis 中一个原子 Lua 脚本）：先检查全部层、全部通过才计数，
//!    任意多个网关实例共享同一份精确的额度。
//!
//! token 在准入时按“输入估算 + max_tokens”预留，响应或流结束时（包括被取消的流）按实际用量结算。

mod auth_guard;
mod batch;
mod headers;
mod health;
mod ip;
mod layer;
mod local;
mod remote;
mod verdict;
mod window;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use pingora_proxy::Session;

use crate::config::{Cidr, FailureMode, RateLimitSettings};
use crate::error::ApiError;
use crate::metrics::{MAX_COUNT, METRICS};
use crate::redis_link::{Fetched, RedisFailure, RedisLink};
use crate::streaming::{estimate_tokens, Usage};
use health::RedisHealth;

pub use auth_guard::AuthGuard;
pub use headers::{rate_limit_headers, QuotaHeaders};
pub use ip::{client_ip, ip_subject, FORWARDED_FOR};
pub use layer::{checks, Check, Kind, Layer, Subjects, TOKEN_WINDOW};
pub use local::{LocalCharge, LocalStage, LocalVerdict};
pub use remote::{RemoteStage, RemoteTicket, RemoteVerdict, BUCKETS};
pub use verdict::{seconds, Quota, Refusal};

/// 客户端没有给出 `n` 时生成的回答数。
const DEFAULT_CHOICES: u64 = 1;
/// 输出上限的字段，按优先级排列（Chat 的新旧两种写法与 Responses 的写法）。
const OUTPUT_CAP_FIELDS: [&str; 3] = ["max_completion_tokens", "max_tokens", "max_output_tokens"];
/// 回答数的字段。
const CHOICES_FIELD: &str = "n";
/// 最小的错误状态码：不低于它的请求没有成功。
const FIRST_ERROR_STATUS: u16 = 400;

/// 一个准入的请求在限流器中的记录：结束时据此结算 token，并给响应加上额度头。
///
/// 用途：请求上下文持有它，`logging` 钩子在响应或流结束后交给 [`Limiter::settle`]。
#[derive(Debug)]
pub struct Ticket {
    local: Vec<LocalCharge>,
    remote: Option<RemoteTicket>,
    reserved: u64,
    /// 最紧一层的额度头。
    pub headers: QuotaHeaders,
}

/// 一次准入的结果：准入记录与探查读到的值。
///
/// 用途：[`Limiter::admit_probing`] 返回它，请求路径据 `fetched` 判断缓存是否命中。
///
/// ```
/// let a = chatnexus::limits::Admission { ticket: None, fetched: chatnexus::redis_link::Fetched::Missing }; // 没有层、键不存在
/// assert!(a.ticket.is_none()); // 没有准入记录
/// ```
#[derive(Debug)]
pub struct Admission {
    /// 准入记录；没有任何层约束这个请求时为 `None`。
    pub ticket: Option<Ticket>,
    /// 顺带读到的值。
    pub fetched: Fetched,
}

/// 限流器：鉴权失败的限流、本地阶段、可选的分布式阶段，以及限流用 Redis 的健康状况。
///
/// 用途：网关创建时建立一个，跨配置热替换保留（计数不丢）；每个聊天请求鉴权前后用 [`Limiter::auth_guard`]，
/// 鉴权之后调用 [`Limiter::admit`]。
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async { // 在运行时里执行
/// use chatnexus::limits::{Limiter, Subjects}; // 限流器
/// let settings: chatnexus::config::RateLimitSettings = serde_yaml::from_str("{ global: { requests: 1 } }").unwrap(); // 全局每分钟 1 次
/// let model = chatnexus::config::Model { name: "演示".into(), kind: Default::default(), targets: vec![], limits: None }; // 模型
/// let subjects = Subjects { client: None, ip: None, model: &model }; // 主体
/// let limiter = Limiter::new(None, ""); // 没有 Redis：只有本地阶段
/// assert!(limiter.admit(&settings, &subjects, 10).await.is_ok()); // 第一次放行
/// assert_eq!(limiter.admit(&settings, &subjects, 10).await.unwrap_err().status, 429); // 第二次 429
/// # });
/// ```
pub struct Limiter {
    auth: AuthGuard,
    local: LocalStage,
    remote: Option<RemoteStage>,
    health: RedisHealth,
}

impl Limiter {
    /// 创建限流器；给出 Redis 连接时启用分布式阶段（键前缀取 `redis.key_prefix`）。
    pub fn new(link: Option<Arc<RedisLink>>, prefix: &str) -> Self {
        Limiter {
            auth: AuthGuard::default(),
            local: LocalStage::default(),
            remote: link.map(|link| RemoteStage::new(link, prefix)),
            health: RedisHealth::default(),
        }
    }

    /// 鉴权失败的限流（在鉴权与读请求体之前使用）。
    pub fn auth_guard(&self) -> &AuthGuard {
        &self.auth
    }

    /// 准入一个请求：先本地、再分布式；任何一层超限返回 429 并且不消耗任何一层的额度。
    ///
    /// 参数：`rate_limits` 段、请求的主体、预留的 token 数。
    /// 返回：没有任何层约束这个请求时为 `None`，否则为准入记录。
    /// 错误：429（超限，带 `Retry-After`）；Redis 不可用且某层配置为故障时关闭时 503。
    pub async fn admit(
        &self,
        settings: &RateLimitSettings,
        subjects: &Subjects<'_>,
        tokens: u64,
    ) -> Result<Option<Ticket>, ApiError> {
        let checks = checks(settings, subjects);
        let admission = self.admit_with(settings, &checks, tokens, None).await?;
        Ok(admission.ticket)
    }

    /// 能否在准入时顺带读一个键（[`Limiter::admit_probing`]）：有分布式阶段且 Redis 不是集群
    /// （集群里限流键与别的键不在同一个槽，合不进一个脚本）。
    pub fn probes(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| !r.link().is_cluster())
    }

    /// 准入并在同一次 Redis 往返里读一个键（响应缓存的条目）；键存在时本请求只计请求数、不预留 token
    /// （命中缓存不占 token 额度），否则照常预留。
    ///
    /// 参数：同 [`Limiter::admit`]，外加要读的键（完整的 Redis 键）。
    /// 返回：准入记录与读到的值；Redis 不可用时值为 [`Fetched::Unavailable`]（按本地份额照常预留）；
    /// 不能探查（见 [`Limiter::probes`]）或没有任何层约束这个请求时不跑脚本，值为 [`Fetched::Unread`]。
    /// 错误：同 [`Limiter::admit`]。
    pub async fn admit_probing(
        &self,
        settings: &RateLimitSettings,
        subjects: &Subjects<'_>,
        tokens: u64,
        key: &str,
    ) -> Result<Admission, ApiError> {
        let probe = self.probes().then_some(key);
        let checks = checks(settings, subjects);
        self.admit_with(settings, &checks, tokens, probe).await
    }

    /// 补一次 token 准入：探查读到的条目最后没有用上（按当前的过期时间已过期，或已损坏）时，
    /// 只对有 token 上限的层按 `tokens` 检查并预留（请求数已在探查时计过），并换下准入记录里的 token 部分，
    /// 结束时照常按实际用量结算。
    ///
    /// 错误：token 超限 429（这个请求的请求数已经计入）；Redis 不可用且某层故障时关闭时 503。
    pub async fn reserve(
        &self,
        settings: &RateLimitSettings,
        subjects: &Subjects<'_>,
        (ticket, tokens): (&mut Ticket, u64),
    ) -> Result<(), ApiError> {
        let token_only: Vec<Check> = checks(settings, subjects)
            .into_iter()
            .filter(|c| c.tokens.is_some())
            .map(|c| Check {
                requests: None,
                ..c
            })
            .collect();
        let admission = self.admit_with(settings, &token_only, tokens, None).await?;
        if let Some(topped) = admission.ticket {
            ticket.local = topped.local;
            ticket.remote = topped.remote;
            ticket.reserved = topped.reserved;
        }
        Ok(())
    }

    /// 准入；给出 `probe` 时在同一次往返里读这个键。
    async fn admit_with(
        &self,
        settings: &RateLimitSettings,
        checks: &[Check],
        tokens: u64,
        probe: Option<&str>,
    ) -> Result<Admission, ApiError> {
        // 调用方不一定经过 `reservation`：超过上限的量 Redis 脚本会拒绝，这里先封顶
        let tokens = tokens.min(MAX_COUNT);
        let remote = match &self.remote {
            Some(remote) if !checks.is_empty() => remote,
            // 没有 Redis：本地阶段就是全部，各实例按份额分摊；没有要检查的层时不跑脚本，键留给调用方自己读
            _ => {
                let ticket = (!checks.is_empty())
                    .then(|| self.local_only(checks, tokens, settings.instances))
                    .transpose()?;
                let fetched = Fetched::Unread;
                return Ok(Admission { ticket, fetched });
            }
        };
        if !self.health.should_try(settings.redis_retry()) {
            let ticket = Some(self.fallback(checks, tokens, settings)?);
            let fetched = unreached(probe);
            return Ok(Admission { ticket, fetched });
        }
        self.admit_remote(remote, (checks, tokens, probe), settings)
            .await
    }

    /// 分布式准入（Redis 可用时）：本地阶段先挡，再一次往返问 Redis；Redis 出错时按本地份额降级。
    async fn admit_remote(
        &self,
        remote: &RemoteStage,
        (checks, tokens, probe): (&[Check], u64, Option<&str>),
        settings: &RateLimitSettings,
    ) -> Result<Admission, ApiError> {
        // 本地阶段先挡一道（完整上限、只计本实例放行的请求）：它拒绝的请求 Redis 也一定会拒绝，省下一次往返。
        // 探查时先不计 token：命中不预留，未命中再补上
        let local_tokens = if probe.is_some() { 0 } else { tokens };
        let charges = match self.local.admit(checks, local_tokens, 1) {
            LocalVerdict::Admitted { charges, .. } => charges,
            LocalVerdict::Refused(refusal) => return Err(refuse(&refusal)),
        };
        match remote.admit(checks, tokens, probe).await {
            Ok((RemoteVerdict::Admitted { quotas, bucket }, probed)) => {
                self.health.succeeded(remote.link().addr());
                let reserved = if probed.is_some() { 0 } else { tokens };
                let (delta, now) = (adjustment(reserved, local_tokens), Instant::now());
                charges
                    .iter()
                    .filter(|c| c.is_tokens())
                    .for_each(|c| c.adjust(delta, now));
                let remote_ticket = remote.ticket(checks, bucket);
                let ticket = Some(ticket_of(charges, remote_ticket, reserved, &quotas));
                Ok(Admission {
                    ticket,
                    fetched: probed.map_or(Fetched::Missing, Fetched::Value),
                })
            }
            Ok((RemoteVerdict::Refused(refusal), _)) => {
                self.health.succeeded(remote.link().addr());
                LocalStage::revert(&charges);
                Err(refuse(&refusal))
            }
            Err(failure) => {
                LocalStage::revert(&charges);
                self.redis_failed(&failure, remote::OP_ADMIT, settings);
                let ticket = Some(self.fallback(checks, tokens, settings)?);
                let fetched = unreached(probe);
                Ok(Admission { ticket, fetched })
            }
        }
    }

    /// 请求结束：按实际用量结算 token 预留（退还没用完的，补记超出的）。
    ///
    /// 参数：`rate_limits` 段、准入记录、实际用量（`None` 表示不知道，保留预留不动）。
    /// 上游报告的用量不可信（可能荒谬地大），先封顶到 [`MAX_COUNT`] 再结算。
    /// 本地计数当场调整；返回还要在 Redis 上调整的那一步（没有 Redis 层或 Redis 暂不可用时为 `None`），
    /// 调用方 `await` 它。常见的只有本地层的请求因此不必为用不到的 Redis 调用准备一个大 future。
    /// Redis 出错时只告警（按间隔），本地计数已经结算。
    #[must_use = "返回的是还要在 Redis 上结算的一步，不 await 它就不会结算"]
    pub fn settle<'a>(
        &'a self,
        settings: &'a RateLimitSettings,
        ticket: Ticket,
        used: Option<u64>,
    ) -> Option<impl Future<Output = ()> + Send + 'a> {
        let delta = adjustment(used?, ticket.reserved);
        if delta == 0 {
            return None;
        }
        let now = Instant::now();
        ticket.local.iter().for_each(|c| c.adjust(delta, now));
        let remote = self.remote.as_ref()?;
        let remote_ticket = ticket.remote?;
        if !self.health.should_try(settings.redis_retry()) {
            return None;
        }
        Some(async move {
            match remote.settle(&remote_ticket, delta).await {
                Ok(()) => self.health.succeeded(remote.link().addr()),
                Err(failure) => self.redis_failed(&failure, remote::OP_SETTLE, settings),
            }
        })
    }

    /// 只按本地阶段判定（没有 Redis，或 Redis 不可用时的份额）。
    fn local_only(&self, checks: &[Check], tokens: u64, share: u32) -> Result<Ticket, ApiError> {
        match self.local.admit(checks, tokens, share) {
            LocalVerdict::Admitted { quotas, charges } => {
                Ok(ticket_of(charges, None, tokens, &quotas))
            }
            LocalVerdict::Refused(refusal) => Err(refuse(&refusal)),
        }
    }

    /// Redis 不可用：故障时关闭的层拒绝请求（503），其余按本实例的份额在本地限流。
    fn fallback(
        &self,
        checks: &[Check],
        tokens: u64,
        settings: &RateLimitSettings,
    ) -> Result<Ticket, ApiError> {
        if let Some(closed) = checks.iter().find(|c| c.on_failure == FailureMode::Closed) {
            METRICS
                .limiter_refusals
                .with_label_values(&[closed.layer.label()])
                .inc();
            let message = format!(
                "限流存储（Redis）暂时不可用，「{}」层配置为故障时关闭（on_redis_failure: closed），请求被拒绝",
                closed.layer.name()
            );
            return Err(ApiError::limiter_unavailable(
                message,
                seconds(settings.redis_retry()),
            ));
        }
        METRICS.limiter_fallback.inc();
        self.local_only(checks, tokens, settings.instances)
    }

    fn redis_failed(&self, failure: &RedisFailure, op: &str, settings: &RateLimitSettings) {
        let (retry, interval) = (settings.redis_retry(), settings.warn_interval());
        self.health
            .failed(failure, op, retry, interval, settings.instances);
    }
}

/// 结算量：实际用量减预留，两者都先封顶到 [`MAX_COUNT`]（结果因此总在 ±`MAX_COUNT` 之内）。
///
/// ```
/// use chatnexus::{limits::adjustment, metrics::MAX_COUNT}; // 结算量
/// assert_eq!(adjustment(30, 100), -70); // 退还没用完的
/// assert_eq!(adjustment(u64::MAX, 100), (MAX_COUNT - 100) as i64); // 荒谬的用量被封顶
/// ```
pub fn adjustment(used: u64, reserved: u64) -> i64 {
    let capped = |value: u64| i64::try_from(value.min(MAX_COUNT)).unwrap_or(i64::MAX);
    capped(used) - capped(reserved)
}

/// Redis 不可用时探查的结果：要探查的键没读到（Redis 不可用）；没有要探查的键时留给调用方自己读。
fn unreached(probe: Option<&str>) -> Fetched {
    match probe {
        Some(_) => Fetched::Unavailable,
        None => Fetched::Unread,
    }
}

/// 组装准入记录：只保留 token 的本地计数（请求数不需要结算）。
fn ticket_of(
    charges: Vec<LocalCharge>,
    remote: Option<RemoteTicket>,
    tokens: u64,
    quotas: &[Quota],
) -> Ticket {
    Ticket {
        local: charges.into_iter().filter(LocalCharge::is_tokens).collect(),
        remote,
        reserved: tokens,
        headers: rate_limit_headers(quotas),
    }
}

/// 记一次拒绝并转换成 429。
fn refuse(refusal: &Refusal) -> ApiError {
    METRICS
        .limiter_refusals
        .with_label_values(&[refusal.layer.label()])
        .inc();
    refusal.to_error()
}

/// 本请求要预留的 token 数：输入按请求体字节数 ÷ 4 估算（与被取消的流估算用量的规则相同），
/// 加上输出上限（`max_completion_tokens`、`max_tokens`（Chat 与 Messages）、`max_output_tokens`（Responses），
/// 都没有时取 `default_max_tokens`）乘以回答数 `n`；
/// 饱和运算，结果不超过 [`MAX_COUNT`]。
///
/// 参数：请求体的 JSON 对象、请求体字节数、没有输出上限时的缺省值。
///
/// ```
/// let body = serde_json::json!({"model":"m","max_tokens":100,"n":2}); // 两个回答
/// assert_eq!(chatnexus::limits::reservation(body.as_object().unwrap(), 4000, 1024), 1000 + 200); // 输入估算 + 100 × 2
/// let responses = serde_json::json!({"model":"m","max_output_tokens":300}); // Responses 的输出上限
/// assert_eq!(chatnexus::limits::reservation(responses.as_object().unwrap(), 400, 1024), 100 + 300); // 输入估算 + 输出上限
/// ```
pub fn reservation(
    body: &serde_json::Map<String, serde_json::Value>,
    body_bytes: usize,
    default_max_tokens: u64,
) -> u64 {
    reserved_total(&reserved_usage(body, body_bytes, default_max_tokens))
}

/// 本请求要预留的用量，分成输入与输出两部分（美元预算按各自的单价估算最坏费用）；规则同 [`reservation`]。
///
/// ```
/// let body = serde_json::json!({"model":"m","max_tokens":100}); // 输出上限 100
/// let u = chatnexus::limits::reserved_usage(body.as_object().unwrap(), 400, 1024); // 输入估算 100
/// assert_eq!((u.prompt, u.completion), (100, 100)); // 输入与输出分开
/// ```
pub fn reserved_usage(
    body: &serde_json::Map<String, serde_json::Value>,
    body_bytes: usize,
    default_max_tokens: u64,
) -> Usage {
    // 请求体只有几个顶层字段：逐个看一遍比按名字查四次哈希表（每次 SipHash）便宜；
    // 输出上限按 max_completion_tokens、max_tokens、max_output_tokens 的优先级取
    let mut caps = [None; OUTPUT_CAP_FIELDS.len()];
    let mut choices = None;
    for (name, value) in body {
        if let Some(i) = OUTPUT_CAP_FIELDS.iter().position(|f| f == name) {
            caps[i] = value.as_u64();
        } else if name == CHOICES_FIELD {
            choices = value.as_u64();
        }
    }
    let output = caps
        .into_iter()
        .flatten()
        .next()
        .unwrap_or(default_max_tokens);
    let choices = choices.unwrap_or(DEFAULT_CHOICES).max(1);
    Usage {
        prompt: estimate_tokens(body_bytes).min(MAX_COUNT),
        completion: output.saturating_mul(choices).min(MAX_COUNT),
        ..Usage::default()
    }
}

/// 预留用量的 token 总数（不超过 [`MAX_COUNT`]）。
pub fn reserved_total(usage: &Usage) -> u64 {
    usage.prompt.saturating_add(usage.completion).min(MAX_COUNT)
}

/// 请求实际消耗的 token：有用量（真实或估算）就用它；没有用量时，失败的请求算 0（全部退还），
/// 成功却不知道用量的请求返回 `None`（保留预留）。
///
/// ```
/// assert_eq!(chatnexus::limits::consumed(None, 502), Some(0)); // 上游失败：全部退还
/// assert_eq!(chatnexus::limits::consumed(None, 200), None); // 成功但不知道用量：不动
/// ```
pub fn consumed(usage: Option<Usage>, status: u16) -> Option<u64> {
    match usage {
        Some(usage) => Some(usage.prompt.saturating_add(usage.completion)),
        None if status >= FIRST_ERROR_STATUS => Some(0),
        None => None,
    }
}

/// 请求的客户端 IP：直连对端；对端是可信代理时按 `X-Forwarded-For`（多个头按出现顺序拼接）。
pub fn request_ip(session: &Session, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let forwarded: Vec<&str> = session
        .req_header()
        .headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    client_ip(peer, forwarded.as_deref(), trusted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Model, ModelKind};
    use crate::security::{Client, KeyHash};

    #[test]
    fn 预留_输出上限按字段优先级取_null_跳过_回答数相乘() {
        let 预留 = |body: serde_json::Value| {
            let u = reserved_usage(body.as_object().expect("对象"), 40, 1024);
            (u.prompt, u.completion)
        };
        let all = serde_json::json!({"max_output_tokens": 7, "max_tokens": 20, "max_completion_tokens": 30, "n": 2});
        assert_eq!(预留(all), (10, 60), "max_completion_tokens 最优先，乘以 n");
        let null = serde_json::json!({"max_completion_tokens": null, "max_tokens": 20});
        assert_eq!(预留(null), (10, 20), "null 不算给出");
        let responses = serde_json::json!({"max_output_tokens": 7, "n": 0});
        assert_eq!(预留(responses), (10, 7), "n 为 0 按 1 算");
        assert_eq!(
            预留(serde_json::json!({})),
            (10, 1024),
            "都没有时用缺省上限"
        );
    }

    /// 测试用的 Redis 地址（tests/run.sh 保证它可用）。
    fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
    }

    /// 一层一个哈希字段的整数值（没有时为 0）。
    async fn 字段(link: &RedisLink, key: &str, field: &str) -> i64 {
        let mut cmd = redis::Cmd::new();
        cmd.arg("HGET").arg(key).arg(field);
        let value: Option<i64> = link.query(&cmd).await.expect("查询 Redis");
        value.unwrap_or(0)
    }

    /// 没有目标的演示模型（限流只用它的名字）。
    fn 演示模型() -> Model {
        Model {
            name: "演示".into(),
            kind: ModelKind::Chat,
            targets: vec![],
            limits: None,
        }
    }

    /// 不带密钥与 IP 的主体（只有全局层与模型层适用）。
    fn 匿名(model: &Model) -> Subjects<'_> {
        Subjects {
            client: None,
            ip: None,
            model,
        }
    }

    /// 写入一个 60 秒后过期的字符串键。
    async fn 写入(link: &RedisLink, key: &str, value: &str) {
        let mut set = redis::Cmd::new();
        set.arg("SET").arg(key).arg(value).arg("EX").arg(60);
        link.query::<()>(&set)
            .await
            .expect("需要可用的 Redis（bash tests/run.sh 会自动启动）");
    }

    #[tokio::test]
    async fn 探查读到条目时不预留_条目没用上时补一次_token_准入_结束时按实际用量结算() {
        let prefix = format!("chatnexus-unit-limits-{}-{}:", std::process::id(), line!());
        let timeout = std::time::Duration::from_secs(2);
        let link = Arc::new(RedisLink::open(&redis_url(), false, timeout).expect("连接串合法"));
        let settings: RateLimitSettings =
            serde_yaml::from_str("{ global: { tokens_per_minute: 100000 } }").expect("可解析");
        let limiter = Limiter::new(Some(Arc::clone(&link)), &prefix);
        let model = 演示模型();
        let subjects = 匿名(&model);
        let entry = format!("{prefix}cache:条目");
        写入(&link, &entry, "缓存的回答").await;
        assert!(limiter.probes(), "单机 Redis 可以探查");
        let counter =
            RemoteStage::new(Arc::clone(&link), &prefix).key(&checks(&settings, &subjects)[0]);
        let admission = limiter
            .admit_probing(&settings, &subjects, 100, &entry)
            .await
            .expect("放行");
        assert_eq!(
            admission.fetched,
            Fetched::Value("缓存的回答".as_bytes().to_vec())
        );
        assert_eq!(字段(&link, &counter, "t").await, 0, "读到条目：不预留");
        let mut ticket = admission.ticket.expect("有全局层");
        limiter
            .reserve(&settings, &subjects, (&mut ticket, 100))
            .await
            .expect("token 额度足够");
        assert_eq!(
            字段(&link, &counter, "t").await,
            100,
            "条目没用上：补一次 token 准入"
        );
        limiter
            .settle(&settings, ticket, Some(30))
            .expect("有 Redis 层且用量变了：要在 Redis 上结算")
            .await;
        assert_eq!(字段(&link, &counter, "t").await, 30, "结束时按实际用量结算");
        let missing = format!("{prefix}cache:没有");
        let admission = limiter
            .admit_probing(&settings, &subjects, 100, &missing)
            .await
            .expect("放行");
        assert_eq!(admission.fetched, Fetched::Missing);
        assert_eq!(字段(&link, &counter, "t").await, 130, "没有条目：照常预留");
    }

    #[tokio::test]
    async fn 只有本地层时_结算当场退还没用完的_不留要等的一步() {
        let settings: RateLimitSettings =
            serde_yaml::from_str("{ global: { tokens_per_minute: 100 } }").expect("可解析");
        let limiter = Limiter::new(None, "");
        let model = 演示模型();
        let subjects = 匿名(&model);
        let first = limiter
            .admit(&settings, &subjects, 80)
            .await
            .expect("80 个 token 在额度内")
            .expect("有全局层");
        assert!(
            limiter.settle(&settings, first, Some(10)).is_none(),
            "没有 Redis：结算当场完成，没有要等的一步"
        );
        let second = limiter.admit(&settings, &subjects, 80).await;
        assert!(second.is_ok(), "退还 70 之后 10 + 80 仍在 100 以内");
        let third = limiter.admit(&settings, &subjects, 80).await;
        assert!(
            third.is_err(),
            "不结算的第二次预留占着额度：90 + 80 超过 100"
        );
    }

    #[tokio::test]
    async fn 没有任何层约束时不跑脚本_键留给调用方自己读() {
        let timeout = std::time::Duration::from_secs(2);
        let link = Arc::new(RedisLink::open(&redis_url(), false, timeout).expect("连接串合法"));
        let limiter = Limiter::new(Some(link), "无层:");
        let model = 演示模型();
        let subjects = 匿名(&model);
        let admission = limiter
            .admit_probing(
                &RateLimitSettings::default(),
                &subjects,
                100,
                "无层:cache:键",
            )
            .await
            .expect("没有层：放行");
        assert!(admission.ticket.is_none());
        assert_eq!(admission.fetched, Fetched::Unread);
    }

    /// 指向一个没人监听的端口的 Redis 连接（连接被拒绝）。
    fn 不可达的_redis() -> Arc<RedisLink> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("空闲端口")
            .port();
        let url = format!("redis://127.0.0.1:{port}");
        let timeout = std::time::Duration::from_millis(300);
        Arc::new(RedisLink::open(&url, false, timeout).expect("连接串合法"))
    }

    #[tokio::test]
    async fn redis_不可用时_故障关闭的层拒绝_故障放行的层按本地份额放行() {
        let settings: RateLimitSettings = serde_yaml::from_str(
            "{ instances: 2, global: { requests: 4 }, per_key: { requests: 100, on_redis_failure: closed } }",
        )
        .expect("可解析");
        let limiter = Limiter::new(Some(不可达的_redis()), "故障:");
        let model = 演示模型();
        let client = Client::new("团队甲", KeyHash::of("sk-甲"));
        let keyed = Subjects {
            client: Some(&client),
            ip: None,
            model: &model,
        };
        let error = limiter
            .admit(&settings, &keyed, 1)
            .await
            .expect_err("密钥层故障时关闭");
        assert_eq!(
            (error.status, Some(error.envelope_code())),
            (503, Some("rate_limiter_unavailable"))
        );
        assert!(
            error.message.contains("客户端密钥") && error.retry_after.is_some(),
            "{}",
            error.message
        );
        let anonymous = Subjects {
            client: None,
            ..keyed
        };
        for _ in 0..2 {
            let ticket = limiter
                .admit(&settings, &anonymous, 1)
                .await
                .expect("全局层故障时放行");
            assert!(ticket.is_some());
        }
        let error = limiter
            .admit(&settings, &anonymous, 1)
            .await
            .expect_err("本地份额 4 ÷ 2 = 2 已用完");
        assert_eq!(error.status, 429);
    }
}
