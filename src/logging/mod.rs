//! 日志：在 env_logger 外面包一层脱敏。
//!
//! Pingora（以及网关自己向 HTTP/1.1 上游写请求时）在 TRACE 级别会把写给上游的整个请求头原样打进日志
//! （`Writing request header: b"…authorization: Bearer sk-…"`），内置模拟器也会打印收到的请求头。
//! 运维为排查问题设 `RUST_LOG=trace` 时，上游密钥就会进日志。所以每条日志在写出之前都经过
//! [`scrub`]：认证类请求头（`authorization`、`x-api-key`、`api-key`、`x-goog-api-key`、
//! `x-chatnexus-signature`、Cookie 等）的值一律替换为 `[已隐藏]`，与日志级别和来源无关。
//!
//! 访问日志的行先攒在内存里、按间隔或攒满时一次写出（见 [`LogFlusher`]），其余日志立即写出。

mod held;
mod line;

pub use held::{LogFlusher, ACCESS_TARGET};

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::{Log, Metadata, Record};

/// 替换敏感值的占位符。
pub const REDACTED: &str = "[已隐藏]";
/// 格式化一条日志时预留的字节数（一行访问日志约三四百字节）。
const LINE_CAPACITY: usize = 512;
/// 告警闸门“从没告警过”的标记（见 [`WarnGate`]）。
const NEVER: u64 = u64::MAX;

/// 值需要隐藏的请求头（小写）。
const SENSITIVE_HEADERS: &[&str] = &[
    "proxy-authorization",
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-chatnexus-signature",
    "set-cookie",
    "cookie",
];

/// 隐藏文本中敏感请求头的值；没有需要隐藏的内容时原样借用。
///
/// 认得三种写法：原始报文 `authorization: Bearer x\r\n`、字节串调试输出里转义的 `\r\n`，
/// 以及 `HeaderMap` 调试输出 `"authorization": "Bearer x"`。
///
/// ```
/// use chatnexus::logging::scrub; // 日志脱敏
/// let line = r#"Writing request header: b"POST / HTTP/1.1\r\nx-api-key: sk-ant-123\r\nHost: a\r\n""#; // Pingora 的 TRACE 日志
/// assert_eq!(scrub(line), r#"Writing request header: b"POST / HTTP/1.1\r\nx-api-key: [已隐藏]\r\nHost: a\r\n""#);
/// assert_eq!(scrub("请在 Authorization 头中以 Bearer 方式提供"), "请在 Authorization 头中以 Bearer 方式提供"); // 普通文字不受影响
/// ```
pub fn scrub(text: &str) -> Cow<'_, str> {
    // 每个敏感值都紧跟在 `名字:` 之后；没有冒号的文本（如文本格式的访问日志）不必逐个查找
    if memchr::memchr(b':', text.as_bytes()).is_none() {
        return Cow::Borrowed(text);
    }
    let lower = text.to_ascii_lowercase();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for name in SENSITIVE_HEADERS {
        let mut from = 0;
        while let Some(found) = lower[from..].find(name) {
            let start = from + found;
            from = start + name.len();
            if !is_name_boundary(lower.as_bytes(), start) {
                continue;
            }
            if let Some(span) = value_span(text.as_bytes(), start + name.len()) {
                spans.push(span);
            }
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for (start, end) in spans {
        if start < cursor {
            continue;
        }
        out.push_str(&text[cursor..start]);
        out.push_str(REDACTED);
        cursor = end;
    }
    out.push_str(&text[cursor..]);
    Cow::Owned(out)
}

/// 名字前面不能紧挨着字母、数字或 `-`/`_`（避免把 `x-api-key` 里的 `api-key` 当成另一个头，
/// 它会由 `x-api-key` 自己匹配）；调试输出里转义的换行 `\r`、`\n` 算作边界。
fn is_name_boundary(bytes: &[u8], start: usize) -> bool {
    if start == 0 {
        return true;
    }
    let escaped_newline = start >= 2 && matches!(&bytes[start - 2..start], b"\\n" | b"\\r");
    let prev = bytes[start - 1];
    escaped_newline || !(prev.is_ascii_alphanumeric() || prev == b'-' || prev == b'_')
}

/// 名字之后是 `:`（可带引号与空格）时，返回值的字节范围。
fn value_span(bytes: &[u8], mut i: usize) -> Option<(usize, usize)> {
    if bytes.get(i) == Some(&b'"') {
        i += 1;
    }
    if bytes.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    if bytes.get(i) == Some(&b'"') {
        i += 1;
    }
    let start = i;
    while let Some(&b) = bytes.get(i) {
        if matches!(b, b'"' | b'\\' | b'\r' | b'\n' | b',' | b'}') {
            break;
        }
        i += 1;
    }
    (i > start).then_some((start, i))
}

/// 把日志参数格式化成文本：先按一行访问日志的长度预留，免得逐步翻倍扩容（`to_string` 从空串开始，
/// 一行三四百字节要重新分配七次）。
fn format_args_text(args: &fmt::Arguments<'_>) -> String {
    let mut text = String::with_capacity(LINE_CAPACITY);
    // 写进 String 不会失败（除非某个 Display 实现自己报错，那时保留已写出的部分）
    let _ = fmt::write(&mut text, *args);
    text
}

/// 多行日志的续行缩进（与 env_logger 缺省的缩进相同）。
const CONTINUATION_INDENT: &str = "    ";

/// 写出时给续行加上缩进的日志文本：续行不会顶格，看起来不像另一条日志。
///
/// env_logger 自己缩进时逐字节找换行，每行日志要多花上千条指令；这里按 `str::split` 用 memchr 找，
/// 网关自己的行格式（`line::write_line`）因此不做缩进，写出的文本与 env_logger 缩进的完全相同。
struct Indented<'a>(&'a str);

impl fmt::Display for Indented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = self.0.split('\n');
        f.write_str(lines.next().unwrap_or_default())?;
        for line in lines {
            f.write_str("\n")?;
            f.write_str(CONTINUATION_INDENT)?;
            f.write_str(line)?;
        }
        Ok(())
    }
}

/// 给任意日志器加上脱敏的包装。
///
/// 用途：`chatnexus` 进程用它包住 env_logger；测试用它包住捕获日志的日志器。
pub struct Redacting<L> {
    inner: L,
}

impl<L: Log> Redacting<L> {
    /// 包装一个日志器。
    pub fn new(inner: L) -> Self {
        Redacting { inner }
    }
}

impl<L: Log> Log for Redacting<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        // 只格式化一次：脱敏检查与真正写出用同一份文本
        let formatted;
        let text = match record.args().as_str() {
            Some(plain) => plain,
            None => {
                formatted = format_args_text(record.args());
                &formatted
            }
        };
        let clean = scrub(text);
        self.inner.log(
            &Record::builder()
                .args(format_args!("{}", Indented(&clean)))
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// 安装进程的日志器：env_logger（`RUST_LOG`，缺省 `default_level`）外包脱敏，写进进程的 stderr 行缓冲
/// （[`LogFlusher`] 开始运行之前不攒，每行立即写出）。
///
/// 错误：已经安装过日志器。
pub fn init(default_level: &str) -> Result<(), log::SetLoggerError> {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
            .target(env_logger::Target::Pipe(Box::new(held::StderrLines)))
            // 与缺省格式相同、时间戳按秒缓存的格式；续行缩进由脱敏包装做（见 [`Indented`]）
            .format(line::write_line)
            .build();
    let max = logger.filter();
    log::set_boxed_logger(Box::new(held::Holding::new(Redacting::new(logger))))?;
    log::set_max_level(max);
    Ok(())
}

/// 按间隔限频的告警闸门：间隔内只放行一条（无锁，并发调用只有一个得到放行）。
///
/// 用途：Redis 长时间不可用时，限流器与用量累计各用一个，告警不会每个请求一条地刷屏。
///
/// ```
/// let gate = chatnexus::logging::WarnGate::default(); // 从没告警过
/// let interval = std::time::Duration::from_secs(60); // 每分钟至多一条
/// assert!(gate.due(interval)); // 第一条放行
/// assert!(!gate.due(interval)); // 间隔内不再放行
/// ```
pub struct WarnGate {
    epoch: Instant,
    /// 上次放行的时刻（自 `epoch` 起的毫秒数）。
    last: AtomicU64,
}

impl Default for WarnGate {
    fn default() -> Self {
        WarnGate {
            epoch: Instant::now(),
            last: AtomicU64::new(NEVER),
        }
    }
}

impl WarnGate {
    /// 现在该不该告警：从没告警过，或距上次放行已满 `interval` 时为真（并记下此刻）。
    pub fn due(&self, interval: Duration) -> bool {
        let now = whole_millis(self.epoch.elapsed());
        let last = self.last.load(Ordering::Acquire);
        let due = last == NEVER || now.saturating_sub(last) >= whole_millis(interval);
        due && self
            .last
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// 时长的整毫秒数（超出 `u64` 时取最大值）。
fn whole_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 脱敏_原始报文与调试输出() {
        let raw = "POST /v1 HTTP/1.1\r\nAuthorization: Bearer sk-1\r\napi-key: az-2\r\nx-goog-api-key: g-3\r\n\r\n";
        let clean = scrub(raw);
        assert!(!clean.contains("sk-1") && !clean.contains("az-2") && !clean.contains("g-3"));
        assert!(clean.contains("Authorization: [已隐藏]\r\n"), "{clean}");
        let map = r#"headers: {"host": "a", "x-api-key": "sk-ant-9", "authorization": Sensitive}"#;
        let clean = scrub(map);
        assert_eq!(
            clean,
            r#"headers: {"host": "a", "x-api-key": "[已隐藏]", "authorization": [已隐藏]}"#
        );
    }

    #[test]
    fn 脱敏_不误伤普通文字() {
        for text in [
            "缺少 API 密钥：请在 Authorization 头中以 Bearer 方式提供",
            "code=invalid_api_key",
            "my-authorization: x",
            "authorization:",
        ] {
            assert!(matches!(scrub(text), Cow::Borrowed(_)), "{text}");
        }
    }

    struct 收集(std::sync::Mutex<Vec<String>>);

    impl Log for 收集 {
        fn enabled(&self, _: &Metadata) -> bool {
            true
        }
        fn log(&self, record: &Record) {
            self.0
                .lock()
                .expect("锁")
                .push(format!("{} {}", record.target(), record.args()));
        }
        fn flush(&self) {}
    }

    #[test]
    fn 包装_写出前脱敏且保留来源() {
        let logger = Redacting::new(收集(Default::default()));
        let secret = "sk-绝密";
        logger.log(
            &Record::builder()
                .args(format_args!("authorization: Bearer {secret}\r\n"))
                .target("pingora_core::x")
                .build(),
        );
        logger.log(&Record::builder().args(format_args!("普通日志")).build());
        let lines = logger.inner.0.lock().expect("锁").clone();
        // 结尾的换行之后是一个空的续行，照样缩进（env_logger 自己缩进时也是这样）
        assert_eq!(lines[0], "pingora_core::x authorization: [已隐藏]\r\n    ");
        assert_eq!(lines[1], " 普通日志");
    }

    /// 几个 env_logger 共用的输出缓冲。
    #[derive(Clone, Default)]
    struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuf {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("锁").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// 写到缓冲里、不带时间戳的 env_logger（缩进由参数决定）。
    fn 写进缓冲(out: &SharedBuf, indent: Option<usize>) -> env_logger::Logger {
        env_logger::Builder::new()
            .filter_level(log::LevelFilter::Trace)
            .format_timestamp(None)
            .format_indent(indent)
            .target(env_logger::Target::Pipe(Box::new(out.clone())))
            .build()
    }

    #[test]
    fn 多行日志_续行缩进与_env_logger_自己缩进的逐字节相同() {
        let write = |logger: &dyn Log| {
            logger.log(
                &Record::builder()
                    .args(format_args!("第一行\n第二行\n\n第四行\n"))
                    .level(log::Level::Warn)
                    .target("chatnexus::x")
                    .build(),
            )
        };
        let (theirs, ours) = (SharedBuf::default(), SharedBuf::default());
        write(&写进缓冲(&theirs, Some(CONTINUATION_INDENT.len())));
        write(&Redacting::new(写进缓冲(&ours, None)));
        let text =
            |b: &SharedBuf| String::from_utf8(b.0.lock().expect("锁").clone()).expect("UTF-8");
        assert_eq!(text(&ours), text(&theirs));
        assert!(
            text(&ours).contains("第一行\n    第二行\n    \n    第四行"),
            "续行要缩进：{}",
            text(&ours)
        );
    }
}
