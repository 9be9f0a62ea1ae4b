//! 客户端密钥：配置里只存 SHA-256，鉴权时对全部条目做常量时间比对。

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::Secret;

/// 单个客户端密钥或模型对所在层上限的覆盖（`auth.keys[].limits`、`models[].limits`）。
///
/// 用途：给出的字段替换 `rate_limits.per_key` / `per_model` 中的对应字段；该层没有配置时，
/// 只有带覆盖的密钥或模型受这一层约束。
///
/// ```
/// let o: chatnexus::security::LimitOverride = serde_yaml::from_str("{ requests: 10 }").unwrap(); // 只改请求数
/// assert_eq!((o.requests, o.tokens_per_minute), (Some(10), None)); // token 上限沿用层的设置
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverride {
    /// 窗口内最多的请求数。
    #[serde(default)]
    pub requests: Option<u64>,
    /// 请求数窗口长度（毫秒）。
    #[serde(default)]
    pub window_ms: Option<u64>,
    /// 每分钟最多的 token 数。
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
}

/// 一个密钥的美元预算（按 UTC 的自然日与自然月）。
///
/// 用途：虚拟密钥的 `budgets` 字段；准入时按最坏情况预留费用，结束时按实际费用结算，用完返回 429。
///
/// ```
/// let b: chatnexus::security::Budgets = serde_json::from_str(r#"{"daily_usd": 1.5}"#).unwrap(); // 每天 1.5 美元
/// assert_eq!((b.daily_usd, b.monthly_usd), (Some(1.5), None)); // 不限每月
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// 每个 UTC 自然日的上限（美元）。
    #[serde(default)]
    pub daily_usd: Option<f64>,
    /// 每个 UTC 自然月的上限（美元）。
    #[serde(default)]
    pub monthly_usd: Option<f64>,
    /// 进行中的流按输出估算的花费要越过上限时切断它（写一个流中错误）；缺省不切，只在准入时按最坏费用预留。
    #[serde(default)]
    pub cut_streams: bool,
}

/// SHA-256 摘要的字节数。
const HASH_LEN: usize = 32;
/// Bearer 方案前缀（大小写不敏感）。
const BEARER: &str = "bearer ";

/// `Authorization` 头里 Bearer 方案的令牌（方案名大小写不敏感，去掉首尾空白，空的算没有）。
///
/// 参数：`Authorization` 头的值。返回：令牌；不是 Bearer 方案或为空时为 `None`。
pub fn bearer_token(value: &str) -> Option<&str> {
    let prefix = value.get(..BEARER.len())?;
    if !prefix.eq_ignore_ascii_case(BEARER) {
        return None;
    }
    Some(value[BEARER.len()..].trim()).filter(|k| !k.is_empty())
}

/// 一个客户端密钥的 SHA-256 摘要。
///
/// 用途：配置中的 `sha256` 字段反序列化为它（64 位十六进制），鉴权时与请求密钥的摘要比对。
///
/// ```
/// use chatnexus::security::KeyHash; // 密钥摘要
/// let h = KeyHash::of("sk-演示"); // 计算摘要
/// assert_eq!(KeyHash::try_from(h.to_hex()), Ok(h)); // 十六进制往返不变
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct KeyHash([u8; HASH_LEN]);

impl KeyHash {
    /// 计算一个明文密钥的摘要。
    pub fn of(key: &str) -> Self {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// 以小写十六进制输出摘要。
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// 明文令牌的摘要是否等于它（常量时间比较，不给计时攻击留线索）。
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.ct_eq(&KeyHash::of(presented).0))
    }
}

impl TryFrom<String> for KeyHash {
    type Error = String;

    /// 从 64 位十六进制解析；长度或字符不对时返回中文错误。
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let mut out = [0u8; HASH_LEN];
        hex::decode_to_slice(value.trim(), &mut out)
            .map_err(|_| format!("必须是 {} 位十六进制的 SHA-256 摘要", HASH_LEN * 2))?;
        Ok(KeyHash(out))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

/// 配置中的一个客户端密钥条目（`auth.keys[]`）。
///
/// 用途：反序列化 YAML；配置构建时解密签名密钥后变成运行时的 [`Client`]。
///
/// ```
/// let yaml = "{ name: 团队甲, sha256: 2e4c961d46e66a959b65e87302316f4e2f2ccf5c85d03c71d23011a5206b18d9, models: [demo] }";
/// let k: chatnexus::security::ClientKey = serde_yaml::from_str(yaml).unwrap(); // 只允许 demo 模型
/// assert!(!k.disabled && !k.require_signature); // 缺省启用、不要求签名
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKey {
    /// 密钥名（出现在日志里，不是密钥本身）。
    pub name: String,
    /// 密钥明文的 SHA-256（与 `sha256_env` 二选一）。
    #[serde(default)]
    pub sha256: Option<KeyHash>,
    /// 存放密钥 SHA-256 的环境变量名（容器部署时经 `.env` 传入；与 `sha256` 二选一）。
    #[serde(default)]
    pub sha256_env: Option<String>,
    /// 为真时该密钥被拒绝。
    #[serde(default)]
    pub disabled: bool,
    /// 允许使用的模型名；缺省不限制。
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// 为真时每个请求都必须带有效签名与未用过的 nonce。
    #[serde(default)]
    pub require_signature: bool,
    /// 加密保存的签名密钥（`v1:…`，附加数据是本条目的 `name`）。
    #[serde(default)]
    pub signing_secret_enc: Option<String>,
    /// 该密钥对 `rate_limits.per_key` 的覆盖。
    #[serde(default)]
    pub limits: Option<LimitOverride>,
    /// 该密钥的美元预算（需要 `redis` 段）。
    #[serde(default)]
    pub budgets: Option<Budgets>,
}

/// 运行时的一个客户端：鉴权通过后请求处理据此检查模型权限与签名。
///
/// 用途：[`ClientKeys::authenticate`] 返回它。
///
/// ```
/// use chatnexus::security::{Client, KeyHash}; // 客户端
/// let c = Client::new("团队甲", KeyHash::of("sk-甲")).with_models(vec!["demo".into()]); // 只允许 demo
/// assert!(c.allows_model("demo") && !c.allows_model("gpt-4o")); // 允许列表之外的模型被拒
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    /// 密钥名。
    pub name: String,
    sha256: KeyHash,
    /// 为真时该密钥被拒绝。
    pub disabled: bool,
    /// 允许使用的模型；`None` 表示不限制。
    pub models: Option<HashSet<String>>,
    /// 为真时必须签名。
    pub require_signature: bool,
    /// 解密后的签名密钥。
    pub signing_secret: Option<Secret>,
    /// 该密钥对每个密钥一层限流的覆盖。
    pub limits: Option<LimitOverride>,
    /// 该密钥的美元预算。
    pub budgets: Option<Budgets>,
    /// 所属团队与团队的美元预算（只有虚拟密钥能属于团队）。
    pub team: Option<(String, Option<Budgets>)>,
}

impl Client {
    /// 一个启用中、不限模型、不要求签名的客户端。
    pub fn new(name: impl Into<String>, sha256: KeyHash) -> Self {
        Client {
            name: name.into(),
            sha256,
            disabled: false,
            models: None,
            require_signature: false,
            signing_secret: None,
            limits: None,
            budgets: None,
            team: None,
        }
    }

    /// 由配置条目、（已从配置或环境变量取得的）密钥摘要与（已解密的）签名密钥构建。
    pub fn from_config(key: &ClientKey, sha256: KeyHash, signing_secret: Option<Secret>) -> Self {
        Client {
            name: key.name.clone(),
            sha256,
            disabled: key.disabled,
            models: key.models.as_ref().map(|m| m.iter().cloned().collect()),
            require_signature: key.require_signature,
            signing_secret,
            limits: key.limits,
            budgets: key.budgets,
            team: None,
        }
    }

    /// 限定允许的模型，返回新的客户端。
    pub fn with_models(mut self, models: Vec<String>) -> Self {
        self.models = Some(models.into_iter().collect());
        self
    }

    /// 设置该密钥的限流覆盖，返回新的客户端。
    pub fn with_limits(mut self, limits: LimitOverride) -> Self {
        self.limits = Some(limits);
        self
    }

    /// 是否有任何美元预算（自己的或团队的）。
    pub fn has_budgets(&self) -> bool {
        self.budgets.is_some() || self.team.as_ref().is_some_and(|(_, b)| b.is_some())
    }

    /// 该客户端能否使用这个模型。
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.contains(model))
    }
}

/// 全部客户端密钥，负责鉴权。
///
/// 用途：`proxy` 从 `Authorization: Bearer <key>` 取出密钥交给 [`ClientKeys::authenticate`]。
///
/// ```
/// use chatnexus::security::{Client, ClientKeys, KeyHash}; // 密钥表
/// let keys = ClientKeys::new(vec![Client::new("甲", KeyHash::of("sk-甲"))]);
/// assert_eq!(keys.authenticate("sk-甲").map(|k| k.name.as_str()), Some("甲")); // 正确的密钥
/// assert!(keys.authenticate("sk-乙").is_none()); // 错误的密钥
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientKeys {
    keys: Vec<Client>,
}

impl ClientKeys {
    /// 用运行时客户端建立密钥表。
    pub fn new(keys: Vec<Client>) -> Self {
        ClientKeys { keys }
    }

    /// 密钥表是否为空。
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// 全部密钥名（管理接口列出用量时用）。
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.name.as_str())
    }

    /// 是否有这个名字的密钥（管理接口新建虚拟密钥时不许与它们重名）。
    pub fn contains(&self, name: &str) -> bool {
        self.keys.iter().any(|k| k.name == name)
    }

    /// 配置了签名密钥的客户端数（进程内防重放存储按它平分上限）。
    pub fn signing_count(&self) -> usize {
        self.keys
            .iter()
            .filter(|k| k.signing_secret.is_some())
            .count()
    }

    /// 是否有客户端配置了签名密钥（决定是否提醒防重放存储的部署方式）。
    pub fn any_signing(&self) -> bool {
        self.keys.iter().any(|k| k.signing_secret.is_some())
    }

    /// 校验明文密钥，返回匹配且未禁用的客户端。
    ///
    /// 与每个条目都比较一次且不提前退出，耗时与匹配位置无关，不给计时攻击留线索。
    pub fn authenticate(&self, presented: &str) -> Option<&Client> {
        let digest = KeyHash::of(presented);
        let mut found: Option<&Client> = None;
        for key in &self.keys {
            let same: Choice = key.sha256.0.ct_eq(&digest.0);
            if bool::from(same) {
                found = Some(key);
            }
        }
        found.filter(|k| !k.disabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_方案名大小写不敏感_空密钥算没有() {
        assert_eq!(bearer_token("Bearer sk-密钥"), Some("sk-密钥"));
        assert_eq!(bearer_token("bearer   sk-1  "), Some("sk-1"));
        assert_eq!(bearer_token("Bearer   "), None);
        assert_eq!(bearer_token("Basic abc"), None);
    }

    #[test]
    fn 令牌摘要_只认同一个令牌() {
        let hash = KeyHash::of("管理令牌");
        assert!(hash.matches("管理令牌") && !hash.matches("管理令牌2"));
    }

    fn 密钥表() -> ClientKeys {
        let mut disabled = Client::new("已停用", KeyHash::of("sk-停用"));
        disabled.disabled = true;
        ClientKeys::new(vec![Client::new("团队甲", KeyHash::of("sk-甲")), disabled])
    }

    #[test]
    fn 鉴权_正确密钥通过() {
        let keys = 密钥表();
        assert_eq!(
            keys.authenticate("sk-甲").map(|k| k.name.as_str()),
            Some("团队甲")
        );
    }

    #[test]
    fn 鉴权_错误或停用的密钥被拒() {
        let keys = 密钥表();
        assert!(keys.authenticate("sk-乙").is_none(), "未知密钥必须被拒");
        assert!(keys.authenticate("sk-停用").is_none(), "停用的密钥必须被拒");
        assert!(keys.authenticate("").is_none(), "空密钥必须被拒");
    }

    #[test]
    fn 模型允许列表_缺省不限制() {
        let all = Client::new("甲", KeyHash::of("sk-甲"));
        assert!(all.allows_model("任何模型"));
        let some = all.with_models(vec!["demo".into()]);
        assert!(some.allows_model("demo"));
        assert!(!some.allows_model("gpt-4o"));
    }

    #[test]
    fn 客户端_调试输出不含签名密钥() {
        let yaml = "{ name: 甲, sha256: 2e4c961d46e66a959b65e87302316f4e2f2ccf5c85d03c71d23011a5206b18d9 }";
        let key: ClientKey = serde_yaml::from_str(yaml).expect("合法");
        let hash = key.sha256.expect("配置了摘要");
        let c = Client::from_config(&key, hash, Some(Secret::new("cnxs-绝密签名密钥".into())));
        assert!(!format!("{c:?}").contains("绝密"));
    }

    #[test]
    fn 摘要_十六进制解析与长度校验() {
        let h = KeyHash::of("sk-甲");
        assert_eq!(KeyHash::try_from(h.to_hex().to_uppercase()), Ok(h));
        assert!(
            KeyHash::try_from("abcd".to_string()).is_err(),
            "过短必须报错"
        );
        assert!(
            KeyHash::try_from("z".repeat(64)).is_err(),
            "非十六进制必须报错"
        );
    }
}
