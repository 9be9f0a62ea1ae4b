//! 限流判定的结果：准入时各层的剩余额度，拒绝时是哪一层、要等多久，以及对应的 429 错误。

use std::time::Duration;

use super::layer::{Kind, Layer, TOKEN_WINDOW};
use crate::error::{ApiError, TYPE_REQUESTS, TYPE_TOKENS};

/// 每秒的毫秒数。
const MILLIS_PER_SEC: u64 = 1000;

/// 准入后一层一种计数的额度。
///
/// 用途：选出最紧的一层写进 `x-ratelimit-*` 响应头。
///
/// ```
/// use chatnexus::limits::{Kind, Layer, Quota}; // 额度
/// let q = Quota { layer: Layer::Key, kind: Kind::Requests, limit: 60, remaining: 59, reset: std::time::Duration::from_secs(60) }; // 刚用掉一个
/// assert!(q.remaining < q.limit); // 还剩 59 个
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// 层。
    pub layer: Layer,
    /// 计数种类。
    pub kind: Kind,
    /// 上限。
    pub limit: u64,
    /// 计入本请求后还剩的额度。
    pub remaining: u64,
    /// 额度完全恢复（窗口内的计数全部过期）还要多久。
    pub reset: Duration,
}

/// 一次拒绝：哪一层的哪种计数超限、上限、本请求要计入的量、多久后可以重试。
///
/// 用途：本地与分布式阶段都用它描述拒绝，再转换成 429 错误。
///
/// ```
/// use chatnexus::limits::{Kind, Layer, Refusal}; // 拒绝
/// let r = Refusal { layer: Layer::Ip, kind: Kind::Requests, limit: 2, window: std::time::Duration::from_secs(60), requested: 1, retry_after: Some(std::time::Duration::from_millis(1500)) }; // IP 层超限
/// let e = r.to_error(); // 转换成 429 错误
/// assert_eq!((e.status, e.retry_after), (429, Some(2))); // 向上取整到秒
/// assert!(e.message.contains("客户端 IP")); // 消息点名是哪一层
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 层。
    pub layer: Layer,
    /// 计数种类。
    pub kind: Kind,
    /// 上限。
    pub limit: u64,
    /// 该种计数的窗口。
    pub window: Duration,
    /// 本请求要计入的量（请求数为 1，token 为预留数）。
    pub requested: u64,
    /// 多久后可以重试；`None` 表示本请求的量本身就超过上限，永远不会被接受。
    pub retry_after: Option<Duration>,
}

impl Refusal {
    /// 转换成 OpenAI 错误信封：429、`code: rate_limit_exceeded`、`type` 为 `requests` 或 `tokens`、
    /// 中文消息点名是哪一层，并带 `Retry-After`（秒，向上取整，至少 1）。
    pub fn to_error(&self) -> ApiError {
        let layer = self.layer.name();
        let (kind, message) = match (self.kind, self.retry_after) {
            (Kind::Requests, Some(wait)) => (
                TYPE_REQUESTS,
                format!(
                    "已超过「{layer}」层的请求数限制：每 {} 秒最多 {} 个请求，请 {} 秒后重试",
                    self.window.as_secs(),
                    self.limit,
                    seconds(wait)
                ),
            ),
            (Kind::Tokens, Some(wait)) => (
                TYPE_TOKENS,
                format!(
                    "已超过「{layer}」层的 token 限制：每分钟最多 {} 个 token，本请求预留 {} 个（输入估算加 max_tokens），请 {} 秒后重试",
                    self.limit,
                    self.requested,
                    seconds(wait)
                ),
            ),
            (kind, None) => (
                if kind == Kind::Tokens {
                    TYPE_TOKENS
                } else {
                    TYPE_REQUESTS
                },
                format!(
                    "本请求预留 {} 个 token（输入估算加 max_tokens），超过「{layer}」层每分钟 {} 个的上限，永远不会被接受：请减小 max_tokens 或缩短输入",
                    self.requested, self.limit
                ),
            ),
        };
        let wait = self.retry_after.unwrap_or(TOKEN_WINDOW);
        ApiError::rate_limited(kind, message, seconds(wait))
    }
}

/// 等待时长换算成 `Retry-After` 的秒数：向上取整，至少 1 秒。
pub fn seconds(wait: Duration) -> u64 {
    let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    millis.div_ceil(MILLIS_PER_SEC).max(1)
}
