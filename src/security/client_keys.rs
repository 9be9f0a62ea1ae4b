//! 客户端密钥：配置里只存 SHA-256，鉴权时对全部条目做常量时间比对。

use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// SHA-256 摘要的字节数。
const HASH_LEN: usize = 32;

/// 一个客户端密钥的 SHA-256 摘要。
///
/// 用途：配置中的 `sha256` 字段反序列化为它（64 位十六进制），鉴权时与请求密钥的摘要比对。
///
/// ```
/// use chatnexus::security::KeyHash; // 密钥摘要
/// let h = KeyHash::of("sk-演示"); // 计算摘要
/// assert_eq!(KeyHash::try_from(h.to_hex()), Ok(h)); // 十六进制往返不变
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
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

/// 配置中的一个客户端密钥条目。
///
/// 用途：鉴权通过后，请求上下文记录它的 `name`（日志、后续的按密钥限流都用它）。
///
/// ```
/// use chatnexus::security::{ClientKey, KeyHash}; // 密钥条目与摘要
/// let k = ClientKey { name: "团队甲".into(), sha256: KeyHash::of("sk-甲"), disabled: false };
/// assert!(!k.disabled); // 启用中
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKey {
    /// 密钥名（出现在日志里，不是密钥本身）。
    pub name: String,
    /// 密钥明文的 SHA-256。
    pub sha256: KeyHash,
    /// 为真时该密钥被拒绝。
    #[serde(default)]
    pub disabled: bool,
}

/// 全部客户端密钥，负责鉴权。
///
/// 用途：`proxy` 从 `Authorization: Bearer <key>` 取出密钥交给 [`ClientKeys::authenticate`]。
///
/// ```
/// use chatnexus::security::{ClientKey, ClientKeys, KeyHash}; // 密钥表
/// let keys = ClientKeys::new(vec![ClientKey { name: "甲".into(), sha256: KeyHash::of("sk-甲"), disabled: false }]);
/// assert_eq!(keys.authenticate("sk-甲").map(|k| k.name.as_str()), Some("甲")); // 正确的密钥
/// assert!(keys.authenticate("sk-乙").is_none()); // 错误的密钥
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientKeys {
    keys: Vec<ClientKey>,
}

impl ClientKeys {
    /// 用配置中的条目建立密钥表。
    pub fn new(keys: Vec<ClientKey>) -> Self {
        ClientKeys { keys }
    }

    /// 密钥表是否为空。
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// 校验明文密钥，返回匹配且未禁用的条目。
    ///
    /// 与每个条目都比较一次且不提前退出，耗时与匹配位置无关，不给计时攻击留线索。
    pub fn authenticate(&self, presented: &str) -> Option<&ClientKey> {
        let digest = KeyHash::of(presented);
        let mut found: Option<&ClientKey> = None;
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

    fn 密钥表() -> ClientKeys {
        ClientKeys::new(vec![
            ClientKey {
                name: "团队甲".into(),
                sha256: KeyHash::of("sk-甲"),
                disabled: false,
            },
            ClientKey {
                name: "已停用".into(),
                sha256: KeyHash::of("sk-停用"),
                disabled: true,
            },
        ])
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
