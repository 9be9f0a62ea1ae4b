//! 安全相关：上游密钥的内存保护、客户端密钥的哈希与常量时间比对。

/// 客户端密钥摘要与鉴权。
pub mod client_keys;
/// 内存中隐藏且释放时清零的密钥。
pub mod secret;

pub use client_keys::{ClientKey, ClientKeys, KeyHash};
pub use secret::Secret;
