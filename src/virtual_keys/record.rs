//! 虚拟密钥的记录：存在 Redis 里的形状、创建与修改请求的校验，以及变成运行时 [`Client`] 的规则。

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::security::{Budgets, Client, KeyHash, LimitOverride};

/// 密钥名的最大长度（会成为日志字段与限流键的一部分）。
const MAX_NAME_LEN: usize = 64;

/// 一个虚拟密钥：密钥本身只在创建与轮换时显示一次，这里只存它的 SHA-256。
///
/// 用途：管理接口创建、修改、列出它；每个实例把全部记录读进内存，鉴权时按摘要查找。
///
/// ```
/// let r = chatnexus::virtual_keys::KeyRecord::new("甲".into(), chatnexus::security::KeyHash::of("sk-甲"), 1);
/// assert!(r.usable(1) && !r.disabled); // 新建的密钥可用
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// 密钥名（日志与限流用，不是密钥本身）。
    pub name: String,
    /// 密钥明文的 SHA-256（十六进制）。
    pub sha256: String,
    /// 允许使用的模型；`None` 表示不限制。
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// 对每个密钥一层限流的覆盖。
    #[serde(default)]
    pub limits: Option<LimitOverride>,
    /// 过期时刻（Unix 秒）；`None` 表示不过期。
    #[serde(default)]
    pub expires_unix: Option<u64>,
    /// 美元预算；`None` 表示不限。
    #[serde(default)]
    pub budgets: Option<Budgets>,
    /// 所属团队（最多一个）。
    #[serde(default)]
    pub team: Option<String>,
    /// 为真时该密钥被拒绝。
    #[serde(default)]
    pub disabled: bool,
    /// 创建时刻（Unix 秒）。
    pub created_unix: u64,
}

/// 创建或修改密钥的请求体（管理接口的 JSON）；修改时只改给出的字段。
///
/// ```
/// let s: chatnexus::virtual_keys::KeySpec = serde_json::from_str(r#"{"name":"甲","models":["demo"]}"#).unwrap();
/// assert_eq!(s.models, Some(Some(vec!["demo".to_string()]))); // 给了模型列表
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// 密钥名（创建时必填，修改时不能改）。
    #[serde(default)]
    pub name: Option<String>,
    /// 允许的模型：给出 `null` 表示取消限制。
    #[serde(default, with = "serde_with_null")]
    pub models: Option<Option<Vec<String>>>,
    /// 限流覆盖：给出 `null` 表示取消覆盖。
    #[serde(default, with = "serde_with_null")]
    pub limits: Option<Option<LimitOverride>>,
    /// 过期时刻：给出 `null` 表示不过期。
    #[serde(default, with = "serde_with_null")]
    pub expires_unix: Option<Option<u64>>,
    /// 美元预算：给出 `null` 表示取消预算。
    #[serde(default, with = "serde_with_null")]
    pub budgets: Option<Option<Budgets>>,
    /// 所属团队：给出 `null` 表示移出团队（只对密钥有效）。
    #[serde(default, with = "serde_with_null")]
    pub team: Option<Option<String>>,
    /// 停用或启用。
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// 区分“没给这个字段”（外层 `None`）与“给了 null”（`Some(None)`）。
mod serde_with_null {
    use serde::{Deserialize, Deserializer};

    /// 字段出现时总是 `Some`，其值可以是 null。
    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

impl KeyRecord {
    /// 一个新建的、不限模型、不过期的密钥记录。
    ///
    /// 参数：密钥名、密钥摘要、创建时刻（Unix 秒）。
    pub fn new(name: String, hash: KeyHash, created_unix: u64) -> Self {
        KeyRecord {
            name,
            sha256: hash.to_hex(),
            models: None,
            limits: None,
            expires_unix: None,
            budgets: None,
            team: None,
            disabled: false,
            created_unix,
        }
    }

    /// 按请求体修改记录（只改给出的字段）。
    ///
    /// 错误：请求体试图改名、预算不是正数时返回 400。
    pub fn apply(&mut self, spec: KeySpec) -> Result<(), ApiError> {
        if spec.name.as_deref().is_some_and(|n| n != self.name) {
            return Err(invalid("不能修改密钥名；请新建一个密钥"));
        }
        if let Some(budgets) = spec.budgets {
            budgets.as_ref().map_or(Ok(()), check_budgets)?;
            self.budgets = budgets;
        }
        if let Some(models) = spec.models {
            self.models = models;
        }
        if let Some(team) = spec.team {
            self.team = team;
        }
        if let Some(limits) = spec.limits {
            self.limits = limits;
        }
        if let Some(expires) = spec.expires_unix {
            self.expires_unix = expires;
        }
        if let Some(disabled) = spec.disabled {
            self.disabled = disabled;
        }
        Ok(())
    }

    /// 在 `now` 时刻能否用于鉴权：没有停用且没有过期。
    pub fn usable(&self, now: u64) -> bool {
        !self.disabled && self.expires_unix.is_none_or(|e| e > now)
    }

    /// 运行时的客户端：所属团队存在时模型取两者的交集（更严的），并带上团队的预算。
    ///
    /// 返回：摘要格式不对（记录被人手工改坏了）时为 `None`。
    pub fn client(&self, team: Option<&TeamRecord>) -> Option<(KeyHash, Client)> {
        let hash = KeyHash::try_from(self.sha256.clone()).ok()?;
        let mut client = Client::new(self.name.clone(), hash);
        let team_models = team.and_then(|t| t.models.as_ref());
        let models = match (&self.models, team_models) {
            (Some(own), Some(theirs)) => {
                Some(own.iter().filter(|m| theirs.contains(m)).cloned().collect())
            }
            (own, theirs) => own.clone().or_else(|| theirs.cloned()),
        };
        if let Some(models) = models {
            client = client.with_models(models);
        }
        if let Some(limits) = self.limits {
            client = client.with_limits(limits);
        }
        client.budgets = self.budgets;
        client.team = team.map(|t| (t.name.clone(), t.budgets));
        Some((hash, client))
    }
}

/// 一个团队：一组虚拟密钥共用的模型列表与美元预算（密钥与团队的限制取更严的）。
///
/// 用途：管理接口的 `/admin/teams` 创建、修改、列出它；密钥的 `team` 字段引用它的名字。
///
/// ```
/// let t: chatnexus::virtual_keys::TeamRecord = serde_json::from_str(r#"{"name":"数据组","created_unix":1}"#).unwrap();
/// assert!(t.models.is_none() && t.budgets.is_none()); // 不限模型、没有预算
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRecord {
    /// 团队名。
    pub name: String,
    /// 团队允许的模型；`None` 表示不限制。
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// 团队的美元预算（全体成员共用）；`None` 表示不限。
    #[serde(default)]
    pub budgets: Option<Budgets>,
    /// 创建时刻（Unix 秒）。
    pub created_unix: u64,
}

impl TeamRecord {
    /// 一个新建的、不限模型、没有预算的团队。
    pub fn new(name: String, created_unix: u64) -> Self {
        TeamRecord {
            name,
            models: None,
            budgets: None,
            created_unix,
        }
    }

    /// 按请求体修改（只有 `models` 与 `budgets` 对团队有效）。
    ///
    /// 错误：试图改名、给了只对密钥有效的字段、预算不是正数时返回 400。
    pub fn apply(&mut self, spec: KeySpec) -> Result<(), ApiError> {
        if spec.name.as_deref().is_some_and(|n| n != self.name) {
            return Err(invalid("不能修改团队名；请新建一个团队"));
        }
        if spec.limits.is_some()
            || spec.expires_unix.is_some()
            || spec.disabled.is_some()
            || spec.team.is_some()
        {
            return Err(invalid("团队只有 `models` 与 `budgets` 两个可改的字段"));
        }
        if let Some(models) = spec.models {
            self.models = models;
        }
        if let Some(budgets) = spec.budgets {
            budgets.as_ref().map_or(Ok(()), check_budgets)?;
            self.budgets = budgets;
        }
        Ok(())
    }
}

/// 校验新密钥的名字：1–64 个字符，不含空白与控制字符，不含 `:`（它是 Redis 键的分隔符）。
///
/// 错误：不符合时返回 400。
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let bad = name.is_empty()
        || name.chars().count() > MAX_NAME_LEN
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':' || c == '/');
    if bad {
        return Err(invalid(format!(
            "密钥名必须是 1 到 {MAX_NAME_LEN} 个字符，不能含空白、控制字符、`:` 或 `/`"
        )));
    }
    Ok(())
}

/// 预算必须是有限的正数（美元）。
///
/// 错误：不是时返回 400。
fn check_budgets(budgets: &Budgets) -> Result<(), ApiError> {
    let amounts = [
        ("daily_usd", budgets.daily_usd),
        ("monthly_usd", budgets.monthly_usd),
    ];
    for (field, amount) in amounts {
        if amount.is_some_and(|usd| !usd.is_finite() || usd <= 0.0) {
            return Err(invalid(format!("预算 `{field}` 必须是大于 0 的美元数")));
        }
    }
    Ok(())
}

/// 请求体不合法（400）。
fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidValue, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 修改_只改给出的字段_null_取消限制() {
        let mut r = KeyRecord::new("甲".into(), KeyHash::of("sk-甲"), 10);
        r.models = Some(vec!["demo".into()]);
        let spec: KeySpec = serde_json::from_str(r#"{"disabled":true}"#).expect("合法");
        r.apply(spec).expect("可以修改");
        assert!(r.disabled);
        assert_eq!(r.models, Some(vec!["demo".into()]), "没给的字段不变");
        let spec: KeySpec = serde_json::from_str(r#"{"models":null}"#).expect("合法");
        r.apply(spec).expect("可以修改");
        assert_eq!(r.models, None, "null 取消模型限制");
        let rename: KeySpec = serde_json::from_str(r#"{"name":"乙"}"#).expect("合法");
        assert_eq!(r.apply(rename).map_err(|e| e.status), Err(400));
    }

    #[test]
    fn 可用_停用或过期都不可用() {
        let mut r = KeyRecord::new("甲".into(), KeyHash::of("sk-甲"), 10);
        assert!(r.usable(100));
        r.expires_unix = Some(100);
        assert!(r.usable(99) && !r.usable(100), "到期时刻起不可用");
        r.expires_unix = None;
        r.disabled = true;
        assert!(!r.usable(0));
    }

    #[test]
    fn 团队_模型取交集_带上团队预算() {
        let mut r = KeyRecord::new("甲".into(), KeyHash::of("sk-甲"), 10);
        r.models = Some(vec!["demo".into(), "gpt-4o".into()]);
        let mut team = TeamRecord::new("数据组".into(), 10);
        team.models = Some(vec!["gpt-4o".into(), "claude".into()]);
        team.budgets = Some(Budgets {
            daily_usd: Some(1.0),
            monthly_usd: None,
            cut_streams: false,
        });
        let (_, client) = r.client(Some(&team)).expect("摘要合法");
        assert!(client.allows_model("gpt-4o"), "两者都允许的模型");
        assert!(
            !client.allows_model("demo") && !client.allows_model("claude"),
            "只有一方允许的都不行"
        );
        assert!(client.has_budgets(), "团队的预算也算");
        r.models = None;
        let (_, client) = r.client(Some(&team)).expect("摘要合法");
        assert!(
            client.allows_model("claude") && !client.allows_model("demo"),
            "密钥不限时用团队的"
        );
    }

    #[test]
    fn 名字_拒绝空白冒号与过长() {
        assert!(check_name("团队甲-服务1").is_ok());
        for bad in ["", "有 空格", "a:b", "a/b", &"长".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn 运行时客户端_带模型与限流覆盖() {
        let mut r = KeyRecord::new("甲".into(), KeyHash::of("sk-甲"), 10);
        r.models = Some(vec!["demo".into()]);
        let (hash, client) = r.client(None).expect("摘要合法");
        assert_eq!(hash, KeyHash::of("sk-甲"));
        assert!(client.allows_model("demo") && !client.allows_model("gpt-4o"));
        r.sha256 = "坏的".into();
        assert!(r.client(None).is_none());
    }
}
