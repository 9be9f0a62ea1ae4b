//! 超时预算：把连接、首字节、块间隔三个阶段的超时与请求总时长上限合成每次等待的时长，
//! 超时时的错误消息说清是哪一个超时、对应哪个配置字段。

use std::time::{Duration, Instant};

use crate::config::{Provider, ServerSettings};
use crate::error::ApiError;

/// 等待的阶段。
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// TCP 连接加 TLS 握手。
    Connect,
    /// 写出请求并等待响应头。
    FirstByte,
    /// 响应体两块之间。
    Idle,
}

/// 上游流的大小上限（来自 `server.max_stream_event_bytes` 与 `server.max_stream_bytes`）。
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamCaps {
    /// 单个事件（含未完成的一行）的字节上限。
    pub event_bytes: usize,
    /// 整个流的字节上限。
    pub stream_bytes: u64,
    /// 翻译的流里上游沉默多久就补一个保活事件。
    pub keepalive: Duration,
}

impl StreamCaps {
    /// 取配置中的上限。
    pub(super) fn of(server: &ServerSettings) -> Self {
        StreamCaps {
            event_bytes: server.max_stream_event_bytes,
            stream_bytes: server.max_stream_bytes,
            keepalive: server.stream_keepalive(),
        }
    }
}

/// 一次尝试的预算：超时（阶段超时来自该目标的上游配置，总时长从请求开始与上游交换时算起，含之前的尝试）
/// 与上游流的大小上限。
pub(super) struct Budget<'a> {
    provider: &'a Provider,
    deadline: Instant,
    caps: StreamCaps,
}

impl<'a> Budget<'a> {
    /// 参数：请求开始与上游交换的时间、本次尝试的上游、流的大小上限。
    pub(super) fn new(started: Instant, provider: &'a Provider, caps: StreamCaps) -> Self {
        Budget {
            provider,
            deadline: started + provider.timeouts.total(),
            caps,
        }
    }

    /// 上游流的大小上限。
    pub(super) fn caps(&self) -> StreamCaps {
        self.caps
    }

    /// 剩余的总时长。
    pub(super) fn remaining(&self) -> Duration {
        self.remaining_at(Instant::now())
    }

    /// 到 `now` 为止剩余的总时长。
    fn remaining_at(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// 总时长是否已经用完。
    pub(super) fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// 本次等待的时长：阶段超时与剩余总时长中较短者，并记住是哪一个。
    pub(super) fn wait(&self, phase: Phase) -> Wait<'a> {
        let t = &self.provider.timeouts;
        let (limit, field) = match phase {
            Phase::Connect => (t.connect(), "timeouts.connect_ms"),
            Phase::FirstByte => (t.first_byte(), "timeouts.first_byte_ms"),
            Phase::Idle => (t.idle(), "timeouts.idle_ms"),
        };
        let now = Instant::now();
        let remaining = self.remaining_at(now);
        let (duration, cause) = if remaining < limit {
            (remaining, Cause::Total(t.total()))
        } else {
            (limit, Cause::Phase(phase, field))
        };
        Wait {
            duration,
            until: now + duration,
            cause,
            provider: self.provider_label(),
        }
    }

    /// 本次尝试的上游类型名（写进错误消息）。
    pub(super) fn provider_label(&self) -> &'static str {
        self.provider.kind.label()
    }

    /// 总时长用完时的 504。
    pub(super) fn total_error(&self) -> ApiError {
        total_timeout(self.provider.timeouts.total(), self.provider_label())
    }
}

/// 超时的原因。
#[derive(Debug, Clone, Copy)]
enum Cause {
    /// 阶段超时及其配置字段。
    Phase(Phase, &'static str),
    /// 请求总时长上限。
    Total(Duration),
}

/// 一次等待：时长与超时后的说明。
///
/// 一个等待可以跨几步共用一个时限：首字节超时从开始写请求算起，写完后等响应头只剩 [`Wait::left`]。
pub(super) struct Wait<'a> {
    /// 最多等待多久（从建立这个等待时算起）。
    pub duration: Duration,
    /// 时限到期的时刻。
    until: Instant,
    cause: Cause,
    provider: &'a str,
}

impl Wait<'_> {
    /// 到期前还剩多久。
    pub(super) fn left(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }

    /// 等待超时时返回给客户端的 504，消息指明是哪一个超时。
    pub(super) fn timeout_error(&self) -> ApiError {
        match self.cause {
            Cause::Phase(phase, field) => phase_timeout(phase, field, self.duration, self.provider),
            Cause::Total(total) => total_timeout(total, self.provider),
        }
    }
}

/// 阶段超时的 504。
fn phase_timeout(phase: Phase, field: &str, wait: Duration, provider: &str) -> ApiError {
    let ms = wait.as_millis();
    let message = match phase {
        Phase::Connect => format!("连接 {provider} 类型的上游超过 {ms} 毫秒（连接超时 {field}）"),
        Phase::FirstByte => {
            format!("{provider} 类型的上游在 {ms} 毫秒内没有返回响应头（首字节超时 {field}）")
        }
        Phase::Idle => {
            format!("{provider} 类型的上游超过 {ms} 毫秒没有发来新数据（块间隔超时 {field}）")
        }
    };
    ApiError::gateway_timeout(message)
}

/// 总时长超时的 504。
fn total_timeout(total: Duration, provider: &str) -> ApiError {
    ApiError::gateway_timeout(format!(
        "请求总时长超过 {} 毫秒（总超时 timeouts.total_ms），{provider} 类型的上游未能在此之前完成",
        total.as_millis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, parse};

    /// 测试上游的地址（不会真的连接）。
    const UPSTREAM_URL: &str = "http://127.0.0.1:1";

    fn 上游(timeouts: &str) -> std::sync::Arc<Provider> {
        let yaml = format!("auth: {{ disabled: true }}\nproviders: [ {{ name: p, kind: openai_compatible, base_url: \"{UPSTREAM_URL}\", timeouts: {timeouts} }} ]");
        let cfg = build(parse(&yaml).expect("可解析"), |_| None).expect("可构建");
        std::sync::Arc::clone(&cfg.providers[0])
    }

    #[test]
    fn 等待_取阶段超时_消息指明字段() {
        let p = 上游("{ connect_ms: 100, first_byte_ms: 200, idle_ms: 300, total_ms: 60000 }");
        let budget = Budget::new(Instant::now(), &p, StreamCaps::of(&Default::default()));
        let wait = budget.wait(Phase::FirstByte);
        assert_eq!(wait.duration, Duration::from_millis(200));
        let e = wait.timeout_error();
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (504, Some("upstream_timeout"))
        );
        assert!(
            e.message.contains("首字节超时 timeouts.first_byte_ms"),
            "{}",
            e.message
        );
        let idle = budget.wait(Phase::Idle).timeout_error();
        assert!(idle.message.contains("块间隔超时"), "{}", idle.message);
    }

    #[test]
    fn 等待_跨几步共用一个时限_后一步只剩余下的部分_消息仍说整个时限() {
        let p = 上游("{ first_byte_ms: 1000, total_ms: 60000 }");
        let budget = Budget::new(Instant::now(), &p, StreamCaps::of(&Default::default()));
        let wait = budget.wait(Phase::FirstByte);
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            wait.left() <= wait.duration - Duration::from_millis(20),
            "写请求用掉的时间要从等响应头的时限里扣掉：还剩 {:?}",
            wait.left()
        );
        assert!(
            wait.timeout_error().message.contains("1000 毫秒"),
            "超时消息说的是整个首字节时限"
        );
    }

    #[test]
    fn 等待_剩余总时长更短时以总超时为准() {
        let p = 上游("{ first_byte_ms: 60000, total_ms: 50 }");
        let budget = Budget::new(Instant::now(), &p, StreamCaps::of(&Default::default()));
        let wait = budget.wait(Phase::FirstByte);
        assert!(wait.duration <= Duration::from_millis(50));
        assert!(wait
            .timeout_error()
            .message
            .contains("总超时 timeouts.total_ms"));
        let started = Instant::now() - Duration::from_millis(51);
        let expired = Budget::new(started, &p, StreamCaps::of(&Default::default()));
        assert!(expired.expired());
        assert!(expired.total_error().message.contains("50 毫秒"));
    }
}
