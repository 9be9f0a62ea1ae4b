//! 优雅退出时提前结束：Pingora 在平滑升级或 SIGTERM 后无条件等满 `grace_period_seconds`，
//! 即使早已没有进行中的请求。本服务在关停开始后轮询进行中的请求数，降为 0 即退出进程，
//! 让 `systemctl stop` 与平滑升级不必空等十分钟；有长流时仍最多等到宽限期结束。
//! 独立运行的模拟器（`chatnexus mock`）用自己的进行中请求数，同样提前退出。
//!
//! 快速退出（SIGINT）也在这里：收到后写出攒着的访问日志、当场结束进程，不交给 Pingora 逐个关停运行时
//! （见 [`ShutdownSignals`]）。

use std::time::Duration;

use async_trait::async_trait;
use log::{error, info};
use pingora::server::{
    ShutdownSignal, ShutdownSignalWatch, ShutdownWatch, UnixShutdownSignalWatch,
};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::metrics::METRICS;

/// 关停开始后检查进行中请求数的间隔。
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// 进行中请求数需连续为 0 的检查次数（约 1 秒）：刚被接受、请求头还没读完的连接不计入进行中，
/// 多等一会儿让它们进入计数。
const QUIET_POLLS: u32 = 5;
/// 进程正常退出的状态码。
const EXIT_OK: i32 = 0;

/// 关停开始后、进行中的请求全部结束时退出进程的后台服务。
///
/// 用途：只在命令行运行网关或模拟器时加入（测试进程里不加，免得结束测试进程）。
///
/// ```
/// let _gateway = chatnexus::drain::DrainExit::gateway(); // 由 server::build 在命令行模式下加入
/// let _mock = chatnexus::drain::DrainExit::new(|| 0); // 模拟器传入自己的进行中请求数
/// ```
pub struct DrainExit {
    inflight: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl DrainExit {
    /// 按网关的进行中请求数（指标 `llm_inflight_requests`）判断何时退出。
    pub fn gateway() -> Self {
        Self::new(|| METRICS.inflight_requests.get())
    }

    /// 按给定的进行中请求数判断何时退出。
    pub fn new(inflight: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        DrainExit {
            inflight: Box::new(inflight),
        }
    }
}

#[async_trait]
impl BackgroundService for DrainExit {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        // 关停已开始：监听已停止接受新连接，只等进行中的请求
        let mut quiet = 0;
        loop {
            quiet = if (self.inflight)() <= 0 { quiet + 1 } else { 0 };
            if quiet >= QUIET_POLLS {
                exit_process("进行中的请求已全部结束，提前退出（不必等满宽限期）");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// 网关进程的关停信号：SIGQUIT（平滑升级）与 SIGTERM（优雅退出）照 Pingora 的处理，SIGINT（快速退出）当场结束进程。
///
/// 用途：Pingora 收到 SIGINT 时同时关停各服务的运行时；单线程运行时（Pingora 的 `work_stealing: false`）下，
/// 监听套接字注册在建它的线程上，accept 循环却可能在同一服务的另一个线程上。注册所在的线程先关停时，
/// 另一个线程上的 accept 立刻报“Tokio 上下文正在关停”并重试，从不让出，那个线程就收不到自己的关停通知，
/// 进程空转着不退出。快速退出本来就丢下进行中的请求，写出访问日志后直接结束进程，结果相同且不经过这一步。
///
/// ```
/// let signals = Box::new(chatnexus::drain::ShutdownSignals); // 交给 Pingora 的 Server::run
/// let _run = pingora::server::RunArgs { shutdown_signal: signals }; // SIGINT 时当场退出
/// ```
pub struct ShutdownSignals;

#[async_trait]
impl ShutdownSignalWatch for ShutdownSignals {
    async fn recv(&self) -> ShutdownSignal {
        let mut interrupt = match signal(SignalKind::interrupt()) {
            Ok(interrupt) => interrupt,
            Err(e) => {
                error!("无法监听 SIGINT：{e}；快速退出交给 Pingora 处理");
                return UnixShutdownSignalWatch.recv().await;
            }
        };
        // 同一个 SIGINT 也会送到 Pingora 自己的监听上：先看这里的，保证由这里退出
        tokio::select! {
            biased;
            _ = interrupt.recv() => exit_process("收到 SIGINT，快速退出：写出访问日志后立即结束进程"),
            other = UnixShutdownSignalWatch.recv() => other,
        }
    }
}

/// 记下原因、写出还攒着的访问日志后结束进程（`process::exit` 不会再给别的服务写日志的机会）。
fn exit_process(reason: &str) -> ! {
    info!("{reason}");
    log::logger().flush();
    std::process::exit(EXIT_OK)
}
