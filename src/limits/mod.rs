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
mod headers;
mod health;
mod ip;
mod layer;
mod local;
mod remote;
mod verdict;

use std::net::IpAddr;
use std::sync::Arc;

use pingora_proxy::Session;

use crate::config::{Cidr, FailureMode, RateLimitSettings};
use crate::error::ApiError;
use crate::metrics::{MAX_COUNT, METRICS};
use crate::redis_link::{RedisFailure, RedisLink};
use crate::streaming::{estimate_tokens, Usage};
use health::RedisHealth;

pub use auth_guard::AuthGuard;
pub use headers::{go_duration, rate_limit_headers, QuotaHeaders};
pub use ip::{client_ip, ip_subject, FORWARDED_FOR};
pub use layer::{checks, Check, Kind, Layer, Subjects, TOKEN_WINDOW};
pub use local::{LocalCharge, LocalStage, LocalVerdict};
pub use remote::{RemoteStage, RemoteTicket, RemoteVerdict, BUCKETS};
pub use verdict::{seconds, Quota, Refusal};

/// 客户端没有给出 `n` 时生成的回答数。
const DEFAULT_CHOICES: u64 = 1;
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
        // 调用方不一定经过 `reservation`：超过上限的量 Redis 脚本会拒绝，这里先封顶
        let tokens = tokens.min(MAX_COUNT);
        let checks = checks(settings, subjects);
        if checks.is_empty() {
            return Ok(None);
        }
        let Some(remote) = &self.remote else {
            // 没有 Redis：本地阶段就是全部，各实例按份额分摊
            return self
                .local_only(&checks, tokens, settings.instances)
                .map(Some);
        };
        if !self.health.should_try(settings.redis_retry()) {
            return self.fallback(&checks, tokens, settings).map(Some);
        }
        // 本地阶段先挡一道（完整上限、只计本实例放行的请求）：它拒绝的请求 Redis 也一定会拒绝，省下一次往返
        let charges = match self.local.admit(&checks, tokens, 1) {
            LocalVerdict::Admitted { charges, .. } => charges,
            LocalVerdict::Refused(refusal) => return Err(refuse(&refusal)),
        };
        match remote.admit(&checks, tokens).await {
            Ok(RemoteVerdict::Admitted { quotas, bucket }) => {
                self.health.succeeded(remote.link().addr());
                let ticket = remote.ticket(&checks, bucket);
                Ok(Some(ticket_of(charges, ticket, tokens, &quotas)))
            }
            Ok(RemoteVerdict::Refused(refusal)) => {
                self.health.succeeded(remote.link().addr());
                LocalStage::revert(&charges);
                Err(refuse(&refusal))
            }
            Err(failure) => {
                LocalStage::revert(&charges);
                self.redis_failed(&failure, remote::OP_ADMIT, settings);
                self.fallback(&checks, tokens, settings).map(Some)
            }
        }
    }

    /// 请求结束：按实际用量结算 token 预留（退还没用完的，补记超出的）。
    ///
    /// 参数：`rate_limits` 段、准入记录、实际用量（`None` 表示不知道，保留预留不动）。
    /// 上游报告的用量不可信（可能荒谬地大），先封顶到 [`MAX_COUNT`] 再结算。
    /// Redis 不可用时只结算本地计数，并按间隔告警。
    pub async fn settle(&self, settings: &RateLimitSettings, ticket: Ticket, used: Option<u64>) {
        let Some(used) = used else {
            return;
        };
        let delta = adjustment(used, ticket.reserved);
        if delta == 0 {
            return;
        }
        ticket.local.iter().for_each(|c| c.adjust(delta));
        let (Some(remote), Some(remote_ticket)) = (&self.remote, &ticket.remote) else {
            return;
        };
        if !self.health.should_try(settings.redis_retry()) {
            return;
        }
        match remote.settle(remote_ticket, delta).await {
            Ok(()) => self.health.succeeded(remote.link().addr()),
            Err(failure) => self.redis_failed(&failure, remote::OP_SETTLE, settings),
        }
    }

    /// 没有配置 Redis：只按本地阶段判定。
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
    let field = |name: &str| body.get(name).and_then(serde_json::Value::as_u64);
    let output = field("max_completion_tokens")
        .or_else(|| field("max_tokens"))
        .or_else(|| field("max_output_tokens"))
        .unwrap_or(default_max_tokens);
    let choices = field("n").unwrap_or(DEFAULT_CHOICES).max(1);
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
        let model = Model {
            name: "演示".into(),
            kind: ModelKind::Chat,
            targets: vec![],
            limits: None,
        };
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
