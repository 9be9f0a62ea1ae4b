//! 配置文件的 `models` 段：客户端可见的模型名及其上游目标。

use serde::Deserialize;

use crate::security::LimitOverride;

/// 目标的缺省权重。
const DEFAULT_WEIGHT: u32 = 1;

/// 模型的种类：聊天（缺省）或向量；向量模型只能用于 `/v1/embeddings`，聊天模型不能用于它。
///
/// 用途：路由时核对接口与模型的种类，配置校验时拒绝把向量模型路由到没有向量接口的上游（Anthropic）。
///
/// ```
/// let k: chatnexus::config::ModelKind = serde_yaml::from_str("embeddings").unwrap(); // 向量模型
/// assert_eq!(k, chatnexus::config::ModelKind::Embeddings); // 解析为向量种类
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// 聊天模型（Chat Completions、Messages、Responses）。
    #[default]
    Chat,
    /// 向量模型（`/v1/embeddings`）。
    Embeddings,
}

impl ModelKind {
    /// 配置与错误消息里的名字。
    pub fn label(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embeddings => "embeddings",
        }
    }
}

/// `models` 中的一项：客户端可见的模型名及其上游目标（按优先级分层、层内按权重与延迟选择）。
///
/// 用途：请求里的 `model` 据此映射到上游。
///
/// ```
/// let yaml = "{ name: 演示, targets: [ { provider: mock } ] }"; // 一个目标
/// let m: chatnexus::config::ModelConfig = serde_yaml::from_str(yaml).unwrap(); // 解析一项
/// assert_eq!(m.targets[0].model, None); // 未写上游模型名时沿用“演示”
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// 客户端请求里使用的模型名。
    pub name: String,
    /// 模型的种类（缺省 `chat`）。
    #[serde(default)]
    pub kind: ModelKind,
    /// 上游目标。
    pub targets: Vec<TargetConfig>,
    /// 该模型对 `rate_limits.per_model` 的覆盖。
    #[serde(default)]
    pub limits: Option<LimitOverride>,
}

/// 一个上游目标。
///
/// 用途：指明由哪个 provider 服务、向上游发送的模型名。
///
/// ```
/// let yaml = "{ provider: openai, model: gpt-4o-mini }"; // 指定上游模型名
/// let t: chatnexus::config::TargetConfig = serde_yaml::from_str(yaml).unwrap(); // 解析一项
/// assert_eq!(t.model.as_deref(), Some("gpt-4o-mini")); // 发给上游的名字
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// 引用的上游名（`providers[].name`）。
    pub provider: String,
    /// 发给上游的模型名，缺省与客户端可见名相同。
    #[serde(default)]
    pub model: Option<String>,
    /// 客户端没给 `max_tokens` 时使用的值（Anthropic 必须有；缺省 4096）。
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// 该目标的输出上限：客户端要的 `max_tokens` 超过它时截到它（如 Claude Code 要 32000，
    /// gpt-4o 最多输出 16384，不截会被上游 400 拒绝）；缺省不截。
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Azure 部署名（只用于 `azure` 类型，缺省等于上游模型名）。
    #[serde(default)]
    pub deployment: Option<String>,
    /// 同一优先级内的相对权重（缺省 1）。
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// 优先级层，0 最优先（缺省 0）；只有更优先的层全部不可用时才使用下一层。
    #[serde(default)]
    pub priority: u32,
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}
