//! 安全相关：密钥的内存保护与静态加密、客户端密钥的哈希与常量时间比对、请求签名与防重放。

/// 客户端密钥摘要与鉴权。
pub mod client_keys;
/// 配置中密钥的 AES-256-GCM 加密与主密钥。
pub mod crypto;
/// 防重放的 nonce 存储（Redis 或进程内）。
pub mod nonce;
/// 内存中隐藏且释放时清零的密钥。
pub mod secret;
/// 请求签名的规范串与 HMAC-SHA256 校验。
pub mod signing;

pub use client_keys::{
    bearer_token, Budgets, Client, ClientKey, ClientKeys, KeyHash, LimitOverride,
};
pub use secret::Secret;
