//! 同一进程里相同请求的合并：第一个未命中的请求去上游，之后到达的相同请求等它的结果（有上限地等），
//! 等到后再查一次缓存；领头的请求失败或超过等待上限时，它们各自去上游。

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// 进行中的请求：缓存键 → 领头请求结束时会关闭的通知。
type InFlight = Arc<Mutex<HashMap<String, watch::Receiver<()>>>>;

/// 一个相同请求的角色。
///
/// 用途：领头的去上游并在成功后保存；跟随的先等领头的结束。
pub enum Flight {
    /// 领头：持有守卫，守卫释放（请求结束）时唤醒跟随者。
    Leader(FlightGuard),
    /// 跟随：等这个通知（或等到上限）后再查缓存。
    Follower(watch::Receiver<()>),
}

/// 领头请求的守卫：释放时把自己从进行中的表里拿掉，并唤醒全部跟随者。
pub struct FlightGuard {
    flights: InFlight,
    key: String,
    _done: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        lock(&self.flights).remove(&self.key);
    }
}

/// 进行中的请求表。
#[derive(Default)]
pub(super) struct Flights {
    inner: InFlight,
}

impl Flights {
    /// 加入 `key` 的请求：没有进行中的相同请求时领头，否则跟随。
    pub(super) fn join(&self, key: &str) -> Flight {
        let mut flights = lock(&self.inner);
        if let Some(done) = flights.get(key) {
            return Flight::Follower(done.clone());
        }
        let (tx, rx) = watch::channel(());
        flights.insert(key.to_string(), rx);
        Flight::Leader(FlightGuard {
            flights: Arc::clone(&self.inner),
            key: key.to_string(),
            _done: tx,
        })
    }
}

/// 跟随者等领头的请求结束，最多等 `limit`（领头的发送端释放时 `changed` 立即返回）。
pub async fn wait(mut done: watch::Receiver<()>, limit: Duration) {
    let _ = tokio::time::timeout(limit, done.changed()).await;
}

/// 取表的锁；持锁的线程恐慌过也照常使用（表里只有通知，不会处于半改状态）。
fn lock(flights: &InFlight) -> MutexGuard<'_, HashMap<String, watch::Receiver<()>>> {
    flights.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn 合并_第一个领头_之后跟随_领头结束时唤醒并离表() {
        let flights = Flights::default();
        let Flight::Leader(guard) = flights.join("键") else {
            panic!("第一个请求应当领头");
        };
        let Flight::Follower(done) = flights.join("键") else {
            panic!("第二个请求应当跟随");
        };
        assert!(
            matches!(flights.join("别的键"), Flight::Leader(_)),
            "不同的键互不影响"
        );
        let waiter = tokio::spawn(wait(done, Duration::from_secs(30)));
        drop(guard);
        waiter.await.expect("跟随者被唤醒");
        assert!(
            matches!(flights.join("键"), Flight::Leader(_)),
            "领头结束后表里没有它"
        );
    }
}
