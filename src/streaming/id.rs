//! 合成 id：响应、消息、工具调用与请求的 id。

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// 合成 id 时混入的进程内计数器，保证同一进程内不重复。
static ID_COUNTER: AtomicU64 = AtomicU64::new(0);
/// id 随机部分的十六进制位数（64 位）。
const HEX_DIGITS: usize = 16;

/// 生成一个随机 id（如工具调用 id `call_…`）。
///
/// `RandomState` 的种子来自操作系统随机数，再混入进程内计数器，同一进程内不会重复；
/// 这些 id 只需唯一，不用于安全用途。
pub fn random_id(prefix: &str) -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(ID_COUNTER.fetch_add(1, Ordering::Relaxed));
    // 每个请求都要生成请求 id：按字节编码成十六进制，不经 `format!` 的格式化机制
    let mut digits = [0u8; HEX_DIGITS];
    // 8 个字节正好编码成 16 个字符，缓冲长度相符时不会出错
    let _ = hex::encode_to_slice(hasher.finish().to_be_bytes(), &mut digits);
    let mut id = String::with_capacity(prefix.len() + HEX_DIGITS);
    id.push_str(prefix);
    id.extend(digits.iter().copied().map(char::from));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 随机_id_不重复() {
        assert_ne!(random_id("call_"), random_id("call_"));
        let id = random_id("call_");
        assert!(id.starts_with("call_"));
        assert_eq!(id.len(), "call_".len() + HEX_DIGITS);
        assert!(id["call_".len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
