//! 访问日志的缓冲：每个请求一行访问日志，逐行写出时每个请求都多一次 `write` 系统调用（压测中约占每个请求 CPU 的 2%，
//! 经 systemd 写进日志系统时还要唤醒 journald）。这里把访问日志行攒在内存里，满 [`FLUSH_BYTES`]
//! 或到了 `access_log.flush_ms` 的间隔才一次写出，做法同 nginx 的 `access_log … buffer= flush=`。
//!
//! 不会丢也不会乱序：访问日志以外的任何一行（告警、错误、调试）连同之前攒着的行立即写出；开始关停时停止攒、
//! 写出剩余的行，之后每行直接写出；进程正常结束前再写出一次。只有进程被强杀（SIGKILL）时会丢最后不到一个间隔的行。

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use log::{Level, Log, Metadata, Record};
use once_cell::sync::Lazy;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// 攒着的行达到这么多字节就立即写出。
const FLUSH_BYTES: usize = 64 * 1024;
/// 访问日志的日志目标（便于单独过滤或转发）：只有这个目标的 INFO 行会被攒着。
pub const ACCESS_TARGET: &str = "chatnexus::access";
/// 不攒（`flush_ms: 0`）时多久再看一次配置（热重载可能重新打开缓冲）。
const RECHECK: Duration = Duration::from_secs(1);

/// 进程的 stderr 行缓冲（[`super::init`] 让 env_logger 写进它）。
static STDERR_LINES: Lazy<LineBuffer<io::Stderr>> = Lazy::new(|| LineBuffer::new(io::stderr()));

/// 攒着日志行、按需一次写出的缓冲：进程里只有一个，包着 stderr；测试包一个 `Vec`。
///
/// 缺省不攒（每行立即写出），[`LineBuffer::hold`] 打开后只有 [`LineBuffer::settle`] 判为可以攒的行留在内存里。
struct LineBuffer<W: Write> {
    state: Mutex<Held<W>>,
    holding: AtomicBool,
}

/// 攒着的字节与输出。
struct Held<W> {
    pending: Vec<u8>,
    out: W,
}

impl<W: Write> LineBuffer<W> {
    /// 包装一个输出；开始时不攒。
    fn new(out: W) -> Self {
        LineBuffer {
            state: Mutex::new(Held {
                pending: Vec::new(),
                out,
            }),
            holding: AtomicBool::new(false),
        }
    }

    /// 打开或关闭攒行；关闭时立即写出攒着的行。
    fn hold(&self, on: bool) {
        self.holding.store(on, Ordering::Release);
        if !on {
            self.flush();
        }
    }

    /// 加入一段已经格式化好的日志（一行或几行）。
    fn push(&self, bytes: &[u8]) {
        self.lock().pending.extend_from_slice(bytes);
    }

    /// 一条日志加入之后：`keep` 为假（不是可以攒的行）、没有在攒或攒满了时写出全部。
    fn settle(&self, keep: bool) {
        let mut state = self.lock();
        let full = state.pending.len() >= FLUSH_BYTES;
        if !keep || full || !self.holding.load(Ordering::Acquire) {
            state.write_out();
        }
    }

    /// 写出攒着的全部行。
    fn flush(&self) {
        self.lock().write_out();
    }

    /// 锁住缓冲；持锁的线程 panic 过也继续用（缓冲里只有完整的行）。
    fn lock(&self) -> MutexGuard<'_, Held<W>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<W: Write> Held<W> {
    /// 写出并清空；写 stderr 失败时没有别处可报告，丢弃这些行（与 env_logger 直接写 stderr 失败时相同）。
    fn write_out(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let _ = self
            .out
            .write_all(&self.pending)
            .and_then(|()| self.out.flush());
        self.pending.clear();
    }
}

/// env_logger 的输出：把格式化好的日志交给进程的行缓冲（何时写出由 [`Holding`] 决定）。
pub(super) struct StderrLines;

impl Write for StderrLines {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        STDERR_LINES.push(bytes);
        Ok(bytes.len())
    }

    /// env_logger 每条日志之后都会调用；真正的写出由 [`Holding`] 按行的种类决定，这里什么也不做。
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// 日志器包装：内层写完一条之后，按这条的种类决定进程的行缓冲是否立即写出。
///
/// 用途：[`super::init`] 用它包住脱敏后的 env_logger；只有访问日志的 INFO 行可以攒着。
pub(super) struct Holding<L> {
    inner: L,
}

impl<L: Log> Holding<L> {
    /// 包装一个写进进程行缓冲的日志器。
    pub(super) fn new(inner: L) -> Self {
        Holding { inner }
    }
}

impl<L: Log> Log for Holding<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        self.inner.log(record);
        STDERR_LINES.settle(keeps(record.metadata()));
    }

    fn flush(&self) {
        self.inner.flush();
        STDERR_LINES.flush();
    }
}

/// 这条日志可以攒着：访问日志目标、INFO 或更低的级别。
fn keeps(metadata: &Metadata) -> bool {
    metadata.target() == ACCESS_TARGET && metadata.level() >= Level::Info
}

/// 按间隔写出攒着的访问日志的后台服务；开始关停时停止攒并写出剩余的行。
///
/// 用途：只在命令行运行网关时加入（它在 Pingora 可能的 fork 之后才开始，攒行也从那时才打开）；
/// 间隔每次从配置读取，热重载改 `access_log.flush_ms` 立即生效，设为 0 时不攒。
///
/// ```
/// let _flusher = chatnexus::logging::LogFlusher::new(|| std::time::Duration::from_secs(1)); // 每秒写出一次
/// ```
pub struct LogFlusher {
    interval: Box<dyn Fn() -> Duration + Send + Sync>,
}

impl LogFlusher {
    /// 用“当前的写出间隔”（0 表示不攒）创建。
    pub fn new(interval: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        LogFlusher {
            interval: Box::new(interval),
        }
    }
}

#[async_trait]
impl BackgroundService for LogFlusher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            let interval = (self.interval)();
            STDERR_LINES.hold(!interval.is_zero());
            let wait = if interval.is_zero() {
                RECHECK
            } else {
                interval
            };
            tokio::select! {
                changed = shutdown.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(wait) => STDERR_LINES.flush(),
            }
        }
        // 关停开始：之后的每行（排空中的请求）立即写出，进程随时退出都不丢
        STDERR_LINES.hold(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 已经写到输出里的字节。
    fn 输出(lines: &LineBuffer<Vec<u8>>) -> Vec<u8> {
        lines.lock().out.clone()
    }

    fn 访问(level: Level) -> Metadata<'static> {
        Metadata::builder()
            .target(ACCESS_TARGET)
            .level(level)
            .build()
    }

    #[test]
    fn 只攒访问日志的_info_行() {
        assert!(keeps(&访问(Level::Info)));
        assert!(keeps(&访问(Level::Debug)));
        assert!(!keeps(&访问(Level::Warn)), "访问目标的告警也立即写出");
        let other = Metadata::builder()
            .target("chatnexus::proxy")
            .level(Level::Info)
            .build();
        assert!(!keeps(&other), "其他目标的 INFO 立即写出");
    }

    #[test]
    fn 攒着的行_遇到告警时按原顺序一起写出() {
        let lines = LineBuffer::new(Vec::new());
        lines.hold(true);
        lines.push("访问 甲\n".as_bytes());
        lines.settle(true);
        lines.push("访问 乙\n".as_bytes());
        lines.settle(true);
        assert!(输出(&lines).is_empty(), "访问日志先攒着");
        lines.push("告警 丙\n".as_bytes());
        lines.settle(false);
        let out = String::from_utf8(输出(&lines)).expect("UTF-8");
        assert_eq!(out, "访问 甲\n访问 乙\n告警 丙\n");
    }

    #[test]
    fn 攒满上限时立即写出() {
        let lines = LineBuffer::new(Vec::new());
        lines.hold(true);
        let line = vec![b'x'; FLUSH_BYTES / 2];
        lines.push(&line);
        lines.settle(true);
        assert!(输出(&lines).is_empty(), "没满时不写");
        lines.push(&line);
        lines.settle(true);
        assert_eq!(输出(&lines).len(), FLUSH_BYTES, "满了一次写出全部");
    }

    #[test]
    fn 不攒时每行立即写出_关闭攒行时写出剩余() {
        let lines = LineBuffer::new(Vec::new());
        lines.push("访问 甲\n".as_bytes());
        lines.settle(true);
        assert_eq!(输出(&lines).len(), "访问 甲\n".len(), "缺省不攒");
        lines.hold(true);
        lines.push("访问 乙\n".as_bytes());
        lines.settle(true);
        lines.hold(false);
        let out = String::from_utf8(输出(&lines)).expect("UTF-8");
        assert_eq!(out, "访问 甲\n访问 乙\n", "关闭攒行时写出剩余的行");
    }
}
