//! 墙上时钟：当前 Unix 秒（响应的 `created`、签名时间戳、模型列表都用它）。

use std::time::{SystemTime, UNIX_EPOCH};

/// 当前 Unix 秒；系统时钟早于 1970 年时为 0（不 panic）。
///
/// ```
/// assert!(chatnexus::clock::unix_now() > 1_700_000_000); // 2023 年之后
/// ```
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
