//! 进程内后端：按总字节数淘汰最久没用的条目（LRU），过期的条目读到即删。
//!
//! 每次读写给条目一个递增的“代”：`order` 按代排序，最小的就是最久没用的；
//! 查找、插入、淘汰都是 O(log n)。

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::Entry;

/// 一条缓存：内容（回复是共享的字节，复制只增加引用计数）、序列化后的字节数（计入总量）、
/// 最近一次使用的代与键（`order` 共用它，刷新时不再分配）。
struct Slot {
    entry: Entry,
    bytes: usize,
    generation: u64,
    key: Arc<str>,
}

/// 进程内 LRU（调用方负责加锁）。
#[derive(Default)]
pub(super) struct LocalStore {
    slots: HashMap<Arc<str>, Slot>,
    /// 代 → 键；最小的代是最久没用的条目。
    order: BTreeMap<u64, Arc<str>>,
    /// 全部条目的字节数之和。
    total: usize,
    next_generation: u64,
}

impl LocalStore {
    /// 读出 `key`；`created_unix + ttl <= now` 的条目已过期，删除并返回 `None`。命中时刷新为最近使用。
    pub(super) fn get(&mut self, key: &str, ttl: u64, now: u64) -> Option<Entry> {
        let slot = self.slots.get(key)?;
        if slot.entry.created_unix.saturating_add(ttl) <= now {
            self.remove(key);
            return None;
        }
        let generation = self.bump();
        let slot = self.slots.get_mut(key)?;
        self.order.remove(&slot.generation);
        slot.generation = generation;
        self.order.insert(generation, Arc::clone(&slot.key));
        Some(slot.entry.clone())
    }

    /// 保存 `key`（替换旧条目），再按 `max_bytes` 淘汰最久没用的条目。
    pub(super) fn put(&mut self, key: &str, entry: Entry, bytes: usize, max_bytes: usize) {
        self.remove(key);
        let generation = self.bump();
        let key: Arc<str> = Arc::from(key);
        self.order.insert(generation, Arc::clone(&key));
        self.slots.insert(
            Arc::clone(&key),
            Slot {
                entry,
                bytes,
                generation,
                key,
            },
        );
        self.total += bytes;
        while self.total > max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.remove(&oldest);
        }
    }

    /// 全部条目的字节数之和（测试用）。
    #[cfg(test)]
    pub(super) fn total_bytes(&self) -> usize {
        self.total
    }

    /// 删除 `key`（不存在时什么也不做）。
    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.slots.remove(key) {
            self.order.remove(&slot.generation);
            self.total -= slot.bytes;
        }
    }

    /// 取下一个代。
    fn bump(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }
}
