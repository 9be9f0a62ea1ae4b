//! 静态加密：配置里的上游密钥（`api_key_enc`）与客户端签名密钥（`signing_secret_enc`）
//! 以 AES-256-GCM 加密保存，主密钥来自环境变量 `CHATNEXUS_MASTER_KEY`。
//!
//! 密文格式：`v1:<base64(随机 96 位 nonce ‖ 密文 ‖ 128 位认证标签)>`（标准 base64，带 `=` 填充）。
//! 附加数据（AAD）是密文所属对象的名字：上游密钥用上游名（`providers[].name`），签名密钥用客户端
//! 密钥名（`auth.keys[].name`）；把密文挪给别的名字，认证标签就对不上，解密失败。
//!
//! 轮换：`CHATNEXUS_MASTER_KEY_OLD` 中的旧主密钥只用于解密，加密永远用当前主密钥。

use std::fmt;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use zeroize::Zeroizing;

use super::Secret;

/// 当前主密钥所在的环境变量。
pub const MASTER_KEY_ENV: &str = "CHATNEXUS_MASTER_KEY";
/// 轮换期间的旧主密钥所在的环境变量（只用于解密）。
pub const MASTER_KEY_OLD_ENV: &str = "CHATNEXUS_MASTER_KEY_OLD";
/// 主密钥的字节数（AES-256）。
pub const MASTER_KEY_LEN: usize = 32;
/// 密文格式的版本前缀。
pub const CIPHERTEXT_PREFIX: &str = "v1:";
/// GCM nonce 的字节数（96 位）。
const NONCE_LEN: usize = 12;
/// GCM 认证标签的字节数（128 位）。
const TAG_LEN: usize = 16;
/// 生成随机令牌（客户端密钥、签名密钥）时的随机字节数（256 位）。
pub const TOKEN_BYTES: usize = 32;

/// 加解密与主密钥的错误；消息为中文，永远不含任何密钥或明文。
///
/// 用途：配置加载时转换成带 YAML 路径的问题，命令行直接打印。
///
/// ```
/// use chatnexus::security::crypto::{CryptoError, MasterKey}; // 主密钥解析
/// let e = MasterKey::parse("c2hvcnQ=", "CHATNEXUS_MASTER_KEY").unwrap_err(); // 只有 5 字节
/// assert!(matches!(e, CryptoError::MasterKeyLength { len: 5, .. })); // 不补零、不截断
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// 需要解密却没有主密钥。
    #[error("需要主密钥才能解密，但环境变量 {MASTER_KEY_ENV} 未设置（可写入 .env；用 `chatnexus keys gen-master` 生成）")]
    MissingMasterKey,
    /// 只设置了旧主密钥。
    #[error("设置了 {MASTER_KEY_OLD_ENV} 却没有设置 {MASTER_KEY_ENV}：旧主密钥只用于轮换期间解密，必须同时提供当前主密钥")]
    OldWithoutCurrent,
    /// 主密钥不是合法的标准 base64。
    #[error("环境变量 {var} 不是合法的标准 base64（字符 A-Z a-z 0-9 + /，以 = 填充）；请用 `chatnexus keys gen-master` 生成")]
    MasterKeyEncoding {
        /// 环境变量名。
        var: &'static str,
    },
    /// 主密钥长度不对。
    #[error("环境变量 {var} 解码后是 {len} 字节，主密钥必须正好 {MASTER_KEY_LEN} 字节（不会补零或截断）；请用 `chatnexus keys gen-master` 生成")]
    MasterKeyLength {
        /// 环境变量名。
        var: &'static str,
        /// 实际解码出的字节数。
        len: usize,
    },
    /// 密文格式不对。
    #[error("密文格式错误：{0}（应为 `v1:<base64>`，由 `chatnexus keys encrypt` 生成）")]
    Format(&'static str),
    /// 认证失败：主密钥不对、附加数据不对或密文被篡改。
    #[error("无法解密：当前主密钥{old}都解不开。可能是主密钥不对、密文被篡改，或密文不是为 `{aad}` 加密的（附加数据必须是这个名字，密文不能在条目之间挪用）")]
    Decrypt {
        /// 期望的附加数据（名字，不是秘密）。
        aad: String,
        /// 是否也试过旧主密钥（只影响消息措辞）。
        old: &'static str,
    },
    /// 解出的明文不是 UTF-8。
    #[error("解密结果不是 UTF-8 文本")]
    NotUtf8,
    /// 明文为空。
    #[error("明文不能为空")]
    EmptyPlaintext,
}

/// 一个 256 位主密钥：内存中清零、调试输出隐藏。
///
/// 用途：加密配置里的密钥（命令行）与启动时解密（配置加载）。
///
/// ```
/// use chatnexus::security::crypto::MasterKey; // 主密钥
/// let key = MasterKey::generate(); // 随机生成
/// let again = MasterKey::parse(&key.to_base64(), "CHATNEXUS_MASTER_KEY").unwrap(); // base64 往返
/// let enc = key.encrypt("openai", b"sk-live"); // 以上游名为附加数据
/// assert_eq!(again.decrypt("openai", &enc).unwrap().as_slice(), b"sk-live"); // 同名解密成功
/// assert!(again.decrypt("claude", &enc).is_err()); // 挪到别的上游就解不开
/// ```
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl MasterKey {
    /// 用操作系统的密码学安全随机数生成一个新主密钥。
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut());
        MasterKey(bytes)
    }

    /// 严格解析 base64 主密钥：标准字母表、规范填充、解码后正好 32 字节；首尾空白被忽略。
    ///
    /// 参数：文本与它来自的环境变量名（写进错误消息）。
    /// 错误：编码不合法或长度不对——绝不补零或截断。
    pub fn parse(text: &str, var: &'static str) -> Result<Self, CryptoError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| CryptoError::MasterKeyEncoding { var })?,
        );
        if decoded.len() != MASTER_KEY_LEN {
            return Err(CryptoError::MasterKeyLength {
                var,
                len: decoded.len(),
            });
        }
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        bytes.copy_from_slice(&decoded);
        Ok(MasterKey(bytes))
    }

    /// 以标准 base64 输出（只用于 `keys gen-master` 打印一次）。
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_ref()))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.as_ref()))
    }

    /// 加密：每次一个新的随机 96 位 nonce，`aad` 作为附加数据；返回 `v1:<base64>`。
    pub fn encrypt(&self, aad: &str, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext,
            aad: aad.as_bytes(),
        };
        // 输入长度远小于 GCM 的上限（约 64 GiB），加密不会失败
        let sealed = self
            .cipher()
            .encrypt(&nonce, payload)
            .unwrap_or_else(|_| unreachable!("AES-GCM 加密只在明文超过约 64 GiB 时失败"));
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{CIPHERTEXT_PREFIX}{}", STANDARD.encode(&blob))
    }

    /// 解密 `v1:<base64>`；失败（格式或认证）返回 `Err`，错误不区分是密钥还是附加数据不对。
    pub fn decrypt(&self, aad: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let blob = parse_ciphertext(text)?;
        self.open(aad, &blob).ok_or_else(|| CryptoError::Decrypt {
            aad: aad.to_string(),
            old: "",
        })
    }

    fn open(&self, aad: &str, blob: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let payload = Payload {
            msg: sealed,
            aad: aad.as_bytes(),
        };
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), payload)
            .ok()
            .map(Zeroizing::new)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([已隐藏])")
    }
}

/// 检查密文格式并解出 `nonce ‖ 密文 ‖ 标签`。
///
/// 错误：缺少 `v1:` 前缀、base64 不合法（严格、规范填充），或长度不足以容纳 nonce、标签和至少 1 字节明文。
pub fn parse_ciphertext(text: &str) -> Result<Vec<u8>, CryptoError> {
    let body = text
        .trim()
        .strip_prefix(CIPHERTEXT_PREFIX)
        .ok_or(CryptoError::Format("缺少版本前缀 v1:"))?;
    let blob = STANDARD
        .decode(body)
        .map_err(|_| CryptoError::Format("base64 不合法"))?;
    if blob.len() <= NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Format("长度太短"));
    }
    Ok(blob)
}

/// 当前主密钥加上可选的旧主密钥（轮换期间只用于解密）。
///
/// 用途：配置加载解密 `api_key_enc` 与 `signing_secret_enc`；命令行加密。
///
/// ```
/// use chatnexus::security::crypto::{MasterKey, MasterKeys}; // 主密钥组
/// let (old, new) = (MasterKey::generate(), MasterKey::generate()); // 轮换前后两把
/// let enc = old.encrypt("openai", b"sk-live"); // 旧密文
/// let (old_b64, new_b64) = (old.to_base64(), new.to_base64()); // 新旧两把主密钥
/// let keys = MasterKeys::from_env(|v| match v { // 模拟环境变量
///     "CHATNEXUS_MASTER_KEY" => Some(new_b64.to_string()), // 当前主密钥
///     "CHATNEXUS_MASTER_KEY_OLD" => Some(old_b64.to_string()), // 只用于解密的旧主密钥
///     _ => None, // 其余变量未设置
/// }).unwrap().unwrap(); // 两把都在
/// let opened = keys.decrypt("openai", &enc).unwrap(); // 旧密文仍可解密
/// assert!(opened.used_old_key && opened.secret.expose() == "sk-live"); // 并提示需要重新加密
/// ```
#[derive(Debug)]
pub struct MasterKeys {
    current: MasterKey,
    old: Option<MasterKey>,
}

/// 一次解密的结果。
#[derive(Debug)]
pub struct Decrypted {
    /// 解出的明文（清零容器）。
    pub secret: Secret,
    /// 是否由旧主密钥解开（应尽快用当前主密钥重新加密）。
    pub used_old_key: bool,
}

impl MasterKeys {
    /// 由当前主密钥和可选的旧主密钥组成。
    pub fn new(current: MasterKey, old: Option<MasterKey>) -> Self {
        MasterKeys { current, old }
    }

    /// 从环境变量读取主密钥。
    ///
    /// 返回：两个变量都未设置（或为空）时为 `Ok(None)`。
    /// 错误：只设置了旧主密钥，或任一主密钥编码、长度不对。
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, CryptoError> {
        let read = |var: &'static str| -> Result<Option<MasterKey>, CryptoError> {
            let value = env(var).map(Zeroizing::new);
            match value {
                Some(text) if !text.trim().is_empty() => MasterKey::parse(&text, var).map(Some),
                _ => Ok(None),
            }
        };
        let current = read(MASTER_KEY_ENV)?;
        let old = read(MASTER_KEY_OLD_ENV)?;
        match (current, old) {
            (Some(current), old) => Ok(Some(MasterKeys { current, old })),
            (None, Some(_)) => Err(CryptoError::OldWithoutCurrent),
            (None, None) => Ok(None),
        }
    }

    /// 是否配置了旧主密钥。
    pub fn has_old(&self) -> bool {
        self.old.is_some()
    }

    /// 旧主密钥是否与当前主密钥相同（配置失误，值得警告）。
    pub fn old_equals_current(&self) -> bool {
        use subtle::ConstantTimeEq;
        self.old
            .as_ref()
            .is_some_and(|old| bool::from(old.0.as_ref().ct_eq(self.current.0.as_ref())))
    }

    /// 用当前主密钥加密。
    pub fn encrypt(&self, aad: &str, plaintext: &[u8]) -> String {
        self.current.encrypt(aad, plaintext)
    }

    /// 先用当前主密钥、再用旧主密钥解密，得到非空 UTF-8 明文。
    ///
    /// 错误：格式不对、两把主密钥都解不开、明文为空或不是 UTF-8。
    pub fn decrypt(&self, aad: &str, text: &str) -> Result<Decrypted, CryptoError> {
        let blob = parse_ciphertext(text)?;
        let (plain, used_old_key) = match self.current.open(aad, &blob) {
            Some(plain) => (plain, false),
            None => match self.old.as_ref().and_then(|old| old.open(aad, &blob)) {
                Some(plain) => (plain, true),
                None => {
                    return Err(CryptoError::Decrypt {
                        aad: aad.to_string(),
                        old: if self.old.is_some() {
                            "与旧主密钥"
                        } else {
                            ""
                        },
                    })
                }
            },
        };
        let secret = secret_from_bytes(plain)?;
        if secret.expose().is_empty() {
            return Err(CryptoError::EmptyPlaintext);
        }
        Ok(Decrypted {
            secret,
            used_old_key,
        })
    }
}

/// 把清零容器里的字节转成 [`Secret`]，不留下未清零的副本。
fn secret_from_bytes(mut plain: Zeroizing<Vec<u8>>) -> Result<Secret, CryptoError> {
    let bytes = std::mem::take(&mut *plain);
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Secret::new(text)),
        Err(e) => {
            // 转换失败时字节在错误里：取回并清零
            drop(Zeroizing::new(e.into_bytes()));
            Err(CryptoError::NotUtf8)
        }
    }
}

/// 生成一个带前缀的随机令牌：`前缀` + base64url(32 字节 CSPRNG 随机数)，共 256 位熵。
///
/// 用途：`keys gen-client` 生成客户端密钥与签名密钥。
///
/// ```
/// let t = chatnexus::security::crypto::random_token("sk-cnx-"); // 新的客户端密钥
/// assert!(t.starts_with("sk-cnx-") && t.len() == "sk-cnx-".len() + 43); // 32 字节 → 43 个字符
/// ```
pub fn random_token(prefix: &str) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 环境(current: Option<String>, old: Option<String>) -> impl Fn(&str) -> Option<String> {
        move |var| match var {
            MASTER_KEY_ENV => current.clone(),
            MASTER_KEY_OLD_ENV => old.clone(),
            _ => None,
        }
    }

    #[test]
    fn 加密_往返成功且每次密文不同() {
        let key = MasterKey::generate();
        let a = key.encrypt("openai", "sk-测试密钥".as_bytes());
        let b = key.encrypt("openai", "sk-测试密钥".as_bytes());
        assert!(a.starts_with("v1:"), "{a}");
        assert_ne!(a, b, "每次加密必须用新的随机 nonce");
        assert_eq!(
            key.decrypt("openai", &a).expect("同名可解密").as_slice(),
            "sk-测试密钥".as_bytes()
        );
        let blob = parse_ciphertext(&a).expect("格式合法");
        assert_eq!(blob.len(), NONCE_LEN + "sk-测试密钥".len() + TAG_LEN);
    }

    #[test]
    fn 加密_附加数据不同则解密失败() {
        let key = MasterKey::generate();
        let enc = key.encrypt("openai", b"sk-live");
        let err = key
            .decrypt("claude", &enc)
            .expect_err("挪给别的上游必须失败");
        assert!(err.to_string().contains("`claude`"), "{err}");
        assert!(!err.to_string().contains("sk-live"), "错误不得含明文");
    }

    #[test]
    fn 加密_错误的主密钥或被篡改的密文解密失败() {
        let key = MasterKey::generate();
        let enc = key.encrypt("openai", b"sk-live");
        assert!(MasterKey::generate().decrypt("openai", &enc).is_err());
        let mut blob = parse_ciphertext(&enc).expect("格式合法");
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let tampered = format!("v1:{}", STANDARD.encode(&blob));
        assert!(key.decrypt("openai", &tampered).is_err(), "篡改必须被发现");
    }

    #[test]
    fn 密文_格式错误各有说明() {
        let key = MasterKey::generate();
        for (text, needle) in [
            ("sk-plain", "v1:"),
            ("v2:AAAA", "v1:"),
            ("v1:不是base64", "base64"),
            ("v1:QUFB", "长度太短"),
            ("v1:QUFBQQ", "base64"),
        ] {
            let err = key.decrypt("p", text).expect_err(text);
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn 主密钥_长度或编码不对时报错而不补零截断() {
        let short = STANDARD.encode([7u8; 16]);
        let long = STANDARD.encode([7u8; 33]);
        let exact = STANDARD.encode([7u8; 32]);
        assert_eq!(
            MasterKey::parse(&short, MASTER_KEY_ENV).unwrap_err(),
            CryptoError::MasterKeyLength {
                var: MASTER_KEY_ENV,
                len: 16
            }
        );
        assert_eq!(
            MasterKey::parse(&long, MASTER_KEY_ENV).unwrap_err(),
            CryptoError::MasterKeyLength {
                var: MASTER_KEY_ENV,
                len: 33
            }
        );
        for bad in ["不是base64", "####", &exact[..43], &exact.replace('=', "")] {
            assert!(
                matches!(
                    MasterKey::parse(bad, MASTER_KEY_ENV),
                    Err(CryptoError::MasterKeyEncoding { .. })
                ),
                "{bad} 必须被拒"
            );
        }
        let url_safe = URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert!(
            MasterKey::parse(&url_safe, MASTER_KEY_ENV).is_err(),
            "只接受标准 base64"
        );
        assert!(MasterKey::parse(&format!(" {exact}\n"), MASTER_KEY_ENV).is_ok());
        let msg = MasterKey::parse(&short, MASTER_KEY_ENV)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("CHATNEXUS_MASTER_KEY") && msg.contains("32 字节"),
            "{msg}"
        );
    }

    #[test]
    fn 轮换_旧主密钥只用于解密() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let old_enc = old.encrypt("openai", b"sk-old");
        let keys = MasterKeys::from_env(环境(
            Some(new.to_base64().to_string()),
            Some(old.to_base64().to_string()),
        ))
        .expect("合法")
        .expect("已设置");
        let opened = keys.decrypt("openai", &old_enc).expect("旧密文可解");
        assert!(opened.used_old_key);
        assert_eq!(opened.secret.expose(), "sk-old");
        let fresh = keys.encrypt("openai", b"sk-old");
        assert!(
            new.decrypt("openai", &fresh).is_ok(),
            "加密必须用当前主密钥"
        );
        assert!(old.decrypt("openai", &fresh).is_err());
        let reopened = keys.decrypt("openai", &fresh).expect("新密文可解");
        assert!(!reopened.used_old_key);

        let without_old = MasterKeys::from_env(环境(Some(new.to_base64().to_string()), None))
            .expect("合法")
            .expect("已设置");
        let err = without_old
            .decrypt("openai", &old_enc)
            .expect_err("没有旧主密钥就解不开");
        assert!(matches!(err, CryptoError::Decrypt { .. }));
    }

    #[test]
    fn 主密钥组_环境变量组合() {
        assert!(MasterKeys::from_env(环境(None, None))
            .expect("合法")
            .is_none());
        assert_eq!(
            MasterKeys::from_env(环境(
                None,
                Some(MasterKey::generate().to_base64().to_string())
            ))
            .unwrap_err(),
            CryptoError::OldWithoutCurrent
        );
        assert!(matches!(
            MasterKeys::from_env(环境(Some("abc".into()), None)),
            Err(CryptoError::MasterKeyEncoding {
                var: MASTER_KEY_ENV
            })
        ));
        assert!(matches!(
            MasterKeys::from_env(环境(
                Some(MasterKey::generate().to_base64().to_string()),
                Some(STANDARD.encode([1u8; 31]))
            )),
            Err(CryptoError::MasterKeyLength {
                var: MASTER_KEY_OLD_ENV,
                len: 31
            })
        ));
        let same = MasterKey::generate().to_base64().to_string();
        let keys = MasterKeys::from_env(环境(Some(same.clone()), Some(same)))
            .expect("合法")
            .expect("已设置");
        assert!(keys.old_equals_current());
    }

    #[test]
    fn 主密钥_调试输出不含密钥() {
        let key = MasterKey::generate();
        let b64 = key.to_base64();
        assert!(!format!("{key:?}").contains(b64.as_str()));
        let keys = MasterKeys::new(key, None);
        assert!(!format!("{keys:?}").contains(b64.as_str()));
    }

    #[test]
    fn 解密_空明文被拒() {
        let key = MasterKey::generate();
        // 手工构造空明文的密文（encrypt 不拒绝空输入，但解密端必须拒绝）
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = key
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: b"",
                    aad: b"p",
                },
            )
            .expect("加密");
        assert_eq!(sealed.len(), TAG_LEN);
        let keys = MasterKeys::new(key, None);
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        let text = format!("v1:{}", STANDARD.encode(&blob));
        assert!(keys.decrypt("p", &text).is_err(), "空明文的密文也不合法");
    }

    #[test]
    fn 令牌_随机且长度固定() {
        let a = random_token("sk-cnx-");
        let b = random_token("sk-cnx-");
        assert_ne!(a, b);
        assert_eq!(a.len(), 7 + 43);
        assert!(a[7..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
