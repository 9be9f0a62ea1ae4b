//! 内存中的密钥：释放时清零，调试输出和格式化输出都只显示占位符。

use std::fmt;

use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

/// 调试与显示输出中代替密钥明文的占位符。
const REDACTED: &str = "[已隐藏]";

/// 一个不会出现在日志里的密钥（如上游 API key、客户端签名密钥）。
///
/// 用途：上游密钥从环境变量、配置或 `api_key_enc` 解密后只以此类型存在；`Debug`/`Display`
/// 输出占位符，值在释放时被清零。配置热替换时旧的运行时配置被释放，其中的全部 `Secret` 随之清零。
///
/// ```
/// use chatnexus::security::Secret; // 密钥类型
/// let s = Secret::new("sk-真实密钥".to_string());
/// assert_eq!(format!("{s:?}"), "Secret([已隐藏])");
/// assert_eq!(s.expose(), "sk-真实密钥");
/// ```
#[derive(Clone, Deserialize)]
#[serde(from = "String")]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// 接管一个明文字符串，之后由本类型负责清零。
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// 取出明文，只应在写上游请求头时调用。
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Zeroize for Secret {
    /// 立即清零并清空（不等到释放）。
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 密钥_调试和显示输出不含明文() {
        let s = Secret::new("sk-绝密-123".to_string());
        assert!(!format!("{s:?}").contains("绝密"), "Debug 不得泄露明文");
        assert!(!format!("{s}").contains("绝密"), "Display 不得泄露明文");
        assert_eq!(s.expose(), "sk-绝密-123");
    }

    #[test]
    fn 密钥_清零后为空() {
        let mut s = Secret::new("sk-绝密-123".to_string());
        s.zeroize();
        assert_eq!(s.expose(), "", "清零后不得残留明文");
    }
}
