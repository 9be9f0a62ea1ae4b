//! 合成 id：响应、消息、工具调用与请求的 id。

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// 合成 id 时混入的进程内计数器，保证同一进程内不重复。
static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// 生成一个随机 id（如工具调用 id `call_…`）。
///
/// `RandomState` 的种子来自操作系统随机数，再混入进程内计数器，同一进程内不会重复；
/// 这些 id 只需唯一，不用于安全用途。
pub fn random_id(prefix: &str) -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(ID_COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{prefix}{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 随机_id_不重复() {
        assert_ne!(random_id("call_"), random_id("call_"));
        assert!(random_id("call_").starts_with("call_"));
    }
}
