//! 限流层与一个请求要经过的检查：每层的主体（谁的额度）、请求数与 token 上限。

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{FailureMode, LayerSettings, Model, RateLimitSettings};
use crate::metrics::UPSTREAM_LAYER_LABEL;
use crate::security::{Client, LimitOverride};

use super::ip::ip_subject;

/// 一个限流层。
///
/// 用途：决定额度归谁（全局共享、每个密钥、每个 IP、每个模型），也是指标 `llm_limiter_refusals_total` 的 `layer` 标签。
///
/// ```
/// use chatnexus::limits::Layer; // 限流层
/// assert_eq!((Layer::Key.label(), Layer::Key.name()), ("key", "客户端密钥")); // 标签与中文名
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// 全部请求共享一份额度。
    Global,
    /// 每个客户端密钥一份。
    Key,
    /// 每个客户端 IP 一份。
    Ip,
    /// 每个模型一份。
    Model,
    /// 上游的自适应并发上限（只出现在拒绝计数里）。
    Upstream,
}

impl Layer {
    /// 指标标签值。
    pub fn label(self) -> &'static str {
        match self {
            Layer::Global => "global",
            Layer::Key => "key",
            Layer::Ip => "ip",
            Layer::Model => "model",
            Layer::Upstream => UPSTREAM_LAYER_LABEL,
        }
    }

    /// 写进拒绝消息的中文名。
    pub fn name(self) -> &'static str {
        match self {
            Layer::Global => "全局",
            Layer::Key => "客户端密钥",
            Layer::Ip => "客户端 IP",
            Layer::Model => "模型",
            Layer::Upstream => "上游并发",
        }
    }

    /// Redis 键中代表该层的一段。
    pub(super) fn segment(self) -> &'static str {
        match self {
            Layer::Global => "g",
            Layer::Key => "k",
            Layer::Ip => "ip",
            Layer::Model => "m",
            Layer::Upstream => "u",
        }
    }
}

/// 计数的种类：请求数或 token 数。
///
/// 用途：拒绝消息、`x-ratelimit-*-requests` 与 `-tokens` 响应头据此区分。
///
/// ```
/// assert_ne!(chatnexus::limits::Kind::Requests, chatnexus::limits::Kind::Tokens); // 两种计数
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 请求数（按层的窗口）。
    Requests,
    /// token 数（每分钟）。
    Tokens,
}

/// token 上限的窗口：一分钟。
pub const TOKEN_WINDOW: Duration = Duration::from_secs(60);

/// 一个请求在一层上的检查。
///
/// 用途：本地阶段与分布式阶段都按同一组检查计数，保证两者看到同样的层与上限。
///
/// ```
/// use chatnexus::limits::{Check, Layer}; // 检查
/// let c = Check { layer: Layer::Global, subject: String::new(), requests: Some(500), window: std::time::Duration::from_secs(60), tokens: None, on_failure: Default::default() }; // 全局每分钟 500 次
/// assert_eq!(c.limits(100).count(), 1); // 只有请求数一种上限
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// 层。
    pub layer: Layer,
    /// 额度的主体：全局为空串，其余为密钥名、IP（IPv6 为 /64 网段）或模型名。
    pub subject: String,
    /// 窗口内的请求数上限。
    pub requests: Option<u64>,
    /// 请求数窗口。
    pub window: Duration,
    /// 每分钟的 token 上限。
    pub tokens: Option<u64>,
    /// Redis 不可用时的处理方式。
    pub on_failure: FailureMode,
}

impl Check {
    /// 本层的各种上限：（种类、上限、窗口、本请求要计入的量）。
    ///
    /// 参数：本请求预留的 token 数。
    pub fn limits(&self, tokens: u64) -> impl Iterator<Item = (Kind, u64, Duration, u64)> {
        let requests = self.requests.map(|l| (Kind::Requests, l, self.window, 1));
        let token = self.tokens.map(|l| (Kind::Tokens, l, TOKEN_WINDOW, tokens));
        requests.into_iter().chain(token)
    }
}

/// 一个请求的限流主体。
///
/// 用途：由 `proxy` 在鉴权、解析与模型查找之后填写，交给 [`super::Limiter::admit`]。
///
/// ```
/// let model = chatnexus::config::Model { name: "演示".into(), kind: Default::default(), targets: vec![], limits: None }; // 模型
/// let s = chatnexus::limits::Subjects { client: None, ip: None, model: &model }; // 鉴权关闭、无 IP
/// assert!(s.client.is_none()); // 没有密钥层
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Subjects<'a> {
    /// 通过鉴权的客户端（鉴权关闭时没有）。
    pub client: Option<&'a Client>,
    /// 客户端 IP（按可信代理处理过 `X-Forwarded-For`）。
    pub ip: Option<IpAddr>,
    /// 请求的（已配置的）模型。
    pub model: &'a Model,
}

/// 列出一个请求要经过的全部检查（没有任何上限的层不列出）。
///
/// 参数：`rate_limits` 段；请求的主体。
pub fn checks(settings: &RateLimitSettings, subjects: &Subjects<'_>) -> Vec<Check> {
    let key = subjects.client.and_then(|client| {
        let layer = layered(settings.per_key, client.limits.as_ref())?;
        Some(check(Layer::Key, client.name.clone(), layer))
    });
    let model = layered(settings.per_model, subjects.model.limits.as_ref())
        .map(|layer| check(Layer::Model, subjects.model.name.clone(), layer));
    let ip = settings
        .per_ip
        .zip(subjects.ip)
        .map(|(layer, ip)| check(Layer::Ip, ip_subject(ip), layer));
    let global = settings
        .global
        .map(|layer| check(Layer::Global, String::new(), layer));
    [global, key, ip, model]
        .into_iter()
        .flatten()
        .filter(|c| c.requests.is_some() || c.tokens.is_some())
        .collect()
}

/// 层的设置套上覆盖；两者都没有时这一层不参与。
fn layered(layer: Option<LayerSettings>, over: Option<&LimitOverride>) -> Option<LayerSettings> {
    match (layer, over) {
        (Some(layer), Some(over)) => Some(layer.with(over)),
        (None, Some(over)) => Some(LayerSettings::default().with(over)),
        (layer, None) => layer,
    }
}

fn check(layer: Layer, subject: String, settings: LayerSettings) -> Check {
    Check {
        layer,
        subject,
        requests: settings.requests,
        window: settings.window(),
        tokens: settings.tokens_per_minute,
        on_failure: settings.on_redis_failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelKind;
    use crate::security::KeyHash;

    #[test]
    fn 检查_密钥覆盖替换对应字段_没有上限的层不列出() {
        let settings: RateLimitSettings = serde_yaml::from_str(
            "{ global: { requests: 1000 }, per_key: { requests: 60, tokens_per_minute: 9000 } }",
        )
        .expect("可解析");
        let over = LimitOverride {
            requests: Some(5),
            ..LimitOverride::default()
        };
        let client = Client::new("团队甲", KeyHash::of("sk-甲")).with_limits(over);
        let model = Model {
            name: "演示".into(),
            kind: ModelKind::Chat,
            targets: vec![],
            limits: None,
        };
        let ip = Some("192.0.2.1".parse().expect("地址"));
        let subjects = Subjects {
            client: Some(&client),
            ip,
            model: &model,
        };
        let all = checks(&settings, &subjects);
        let layers: Vec<Layer> = all.iter().map(|c| c.layer).collect();
        assert_eq!(
            layers,
            vec![Layer::Global, Layer::Key],
            "没有配置 IP 与模型层"
        );
        assert_eq!((all[1].requests, all[1].tokens), (Some(5), Some(9000)));
        assert_eq!(all[1].subject, "团队甲");
    }

    #[test]
    fn 检查_只有覆盖也会启用该层() {
        let settings = RateLimitSettings::default();
        let model = Model {
            name: "贵的模型".into(),
            kind: ModelKind::Chat,
            targets: vec![],
            limits: Some(LimitOverride {
                tokens_per_minute: Some(100),
                ..LimitOverride::default()
            }),
        };
        let subjects = Subjects {
            client: None,
            ip: None,
            model: &model,
        };
        let all = checks(&settings, &subjects);
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].layer, all[0].tokens), (Layer::Model, Some(100)));
    }
}
