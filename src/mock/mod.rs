//! 上游模拟器：说各家提供方的真实线上格式（OpenAI Chat Completions、Responses 与向量、Azure、Anthropic、Gemini），
//! 用于离线演示、测试和压测。
//!
//! 可随网关一起启动（配置 `mock` 段），也可单独运行（`chatnexus mock --listen 127.0.0.1:PORT`）。
//! 可配置分块数、块间延迟、响应头之前的延迟、用量数字和故障模式（状态码、挂起、流中断开、乱码），
//! 故障可在运行时暂停与恢复；并记录收到的请求和流的结局，供测试断言上游实际收到了什么。

mod anthropic;
mod embeddings;
mod gemini;
mod io;
mod openai;
mod plan;
mod responses;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::Method;
use log::debug;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// 默认分块数。
const DEFAULT_CHUNKS: usize = 8;
/// 默认回复内容。
const DEFAULT_REPLY: &str = "你好！我是 ChatNexus 内置的模拟上游，这条回复没有调用任何真实模型。";
/// 模拟器接受的请求体上限。
const MAX_MOCK_BODY: usize = 64 * 1024 * 1024;
/// 保留的最近请求条数。
const RECORD_CAPACITY: usize = 16;
/// 客户端连接保活秒数。
const KEEPALIVE_SECS: u64 = 60;
/// 429 与 503 故障缺省建议的重试秒数。
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;
/// 流中错误故障报告的消息。
const STREAM_ERROR_MESSAGE: &str = "模拟的流中错误";
/// 故障模式选项的说明。
const FAULT_CHOICES: &str =
    "fault 必须在 status、hang: true、drop_after、error_after、garbage: true 中恰好选一种";
/// 乱码故障写出的字节：不是 HTTP 响应，也不是任何协议。
const GARBAGE: &[u8] = b"\x00\xff\xfe garbage \x13\x37 not-http \r\n\r\n\x00";

/// 故障模式。
///
/// 用途：让测试与演示复现上游的各种坏行为。YAML 写法：`{ status: 503 }`、`{ hang: true }`、
/// `{ drop_after: 2 }`、`{ error_after: 2 }`、`{ garbage: true }`，只能选一种。
///
/// ```
/// use chatnexus::mock::Fault; // 故障模式
/// let f: Fault = serde_yaml::from_str("{ status: 503 }").unwrap(); // 以 503 应答
/// assert_eq!(f, Fault::Status(503)); // 状态码故障
/// assert!(serde_yaml::from_str::<Fault>("{ hang: true, status: 500 }").is_err()); // 只能选一种故障
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "FaultOptions")]
pub enum Fault {
    /// 以该状态码返回 OpenAI 错误信封。
    Status(u16),
    /// 读完请求后不回任何字节，直到关闭。
    Hang,
    /// 流式时发出这么多个内容块后直接断开连接（不发 `[DONE]`）。
    DropAfter(usize),
    /// 流式时发出这么多个内容块后，按各家格式在流中报告一个错误，然后断开连接。
    ErrorAfter(usize),
    /// 读完请求后写出一串不是 HTTP 的乱码字节并关闭连接。
    Garbage,
}

/// 故障模式的各个选项（配置文件的 `fault` 段与 `chatnexus mock` 的命令行参数共用），至多设置一个。
///
/// ```
/// let options = chatnexus::mock::FaultOptions { error_after: Some(1), ..Default::default() }; // 一块之后报错
/// assert_eq!(options.fault(), Ok(Some(chatnexus::mock::Fault::ErrorAfter(1)))); // 流中错误故障
/// ```
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct FaultOptions {
    /// 故障：以该状态码返回错误
    #[arg(long = "fault-status")]
    pub status: Option<u16>,
    /// 故障：读完请求后不应答
    #[arg(long)]
    #[serde(default)]
    pub hang: bool,
    /// 故障：流式发出 N 块后断开
    #[arg(long)]
    pub drop_after: Option<usize>,
    /// 故障：流式发出 N 块后在流中报告错误再断开
    #[arg(long)]
    pub error_after: Option<usize>,
    /// 故障：回一串不是 HTTP 的乱码后断开
    #[arg(long)]
    #[serde(default)]
    pub garbage: bool,
}

impl FaultOptions {
    /// 选定的故障模式。
    ///
    /// 返回：都未设置时为 `None`。错误：设置了多于一种。
    pub fn fault(&self) -> Result<Option<Fault>, String> {
        let chosen: Vec<Fault> = [
            self.status.map(Fault::Status),
            self.hang.then_some(Fault::Hang),
            self.drop_after.map(Fault::DropAfter),
            self.error_after.map(Fault::ErrorAfter),
            self.garbage.then_some(Fault::Garbage),
        ]
        .into_iter()
        .flatten()
        .collect();
        match chosen.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(FAULT_CHOICES.to_string()),
        }
    }
}

impl TryFrom<FaultOptions> for Fault {
    type Error = String;

    /// 恰好选一种故障，否则返回中文错误。
    fn try_from(options: FaultOptions) -> Result<Self, Self::Error> {
        options.fault()?.ok_or_else(|| FAULT_CHOICES.to_string())
    }
}

/// 模拟器行为设置。
///
/// 用途：配置文件的 `mock.behavior` 段与 `chatnexus mock` 的命令行参数都映射到它。
///
/// ```
/// let s = chatnexus::mock::MockSettings::default(); // 缺省行为
/// assert!(s.chunks == 8 && s.fault.is_none()); // 8 块、无故障
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockSettings {
    /// 流式回复的内容块数。
    pub chunks: usize,
    /// 相邻两块之间的延迟（毫秒）。
    pub chunk_delay_ms: u64,
    /// 写响应头之前的延迟（毫秒），模拟“思考”很久才回首字节的上游。
    pub first_byte_delay_ms: u64,
    /// 429 与 503 故障响应的 `Retry-After` 秒数。
    pub retry_after_secs: u64,
    /// 回复文本。
    pub reply: String,
    /// 报告的输入 token 数；缺省按请求体长度估算。
    pub prompt_tokens: Option<u64>,
    /// 报告的输出 token 数；缺省等于块数。
    pub completion_tokens: Option<u64>,
    /// 输入中命中缓存的 token 数（按各家格式报告，如 Anthropic 的 cache_read_input_tokens）。
    pub cached_tokens: u64,
    /// 输出中推理（思考）的 token 数（如 Gemini 的 thoughtsTokenCount）。
    pub reasoning_tokens: u64,
    /// 故障模式。
    pub fault: Option<Fault>,
    /// 请求里有工具时是否调用它们；为 false 时总是回复文本（给会真的执行工具的 Claude Code 等客户端用）。
    pub call_tools: bool,
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            chunks: DEFAULT_CHUNKS,
            chunk_delay_ms: 0,
            first_byte_delay_ms: 0,
            retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
            reply: DEFAULT_REPLY.to_string(),
            prompt_tokens: None,
            completion_tokens: None,
            cached_tokens: 0,
            reasoning_tokens: 0,
            fault: None,
            call_tools: true,
        }
    }
}

/// 模拟器收到的一个请求。
///
/// 用途：测试检查上游实际收到的方法、路径、头和请求体。
///
/// ```
/// let headers = vec![("host".to_string(), "127.0.0.1".to_string())]; // 一个请求头
/// let r = chatnexus::mock::Recorded { method: "POST".into(), path: "/".into(), headers, body: "{}".into() }; // 一条记录
/// assert_eq!(r.header("Host"), Some("127.0.0.1")); // 名称不区分大小写
/// ```
#[derive(Debug, Clone)]
pub struct Recorded {
    /// 请求方法。
    pub method: String,
    /// 路径与查询串。
    pub path: String,
    /// 全部请求头（名称小写）。
    pub headers: Vec<(String, String)>,
    /// 请求体。
    pub body: Bytes,
}

impl Recorded {
    /// 取一个请求头的值（名称不区分大小写）。
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// 模拟器的计数、最近请求记录与故障开关，可在多个线程间共享。
///
/// 用途：测试用它断言流是被完整发完还是被中途断开，并在运行时暂停故障（模拟上游恢复）。
///
/// ```
/// let s = chatnexus::mock::MockStats::default(); // 新的统计
/// assert_eq!(s.requests() + s.streams_aborted(), 0); // 全部从零开始
/// s.suspend_fault(true); // 上游“恢复”：配置的故障暂不生效
/// assert!(s.fault_suspended()); // 开关已打开
/// ```
#[derive(Debug, Default)]
pub struct MockStats {
    requests: AtomicU64,
    streams_completed: AtomicU64,
    streams_aborted: AtomicU64,
    inflight: AtomicI64,
    fault_suspended: AtomicBool,
    recent: Mutex<VecDeque<Recorded>>,
}

impl MockStats {
    /// 暂停（`true`）或恢复（`false`）配置的故障；暂停期间模拟器表现正常。
    pub fn suspend_fault(&self, suspended: bool) {
        self.fault_suspended.store(suspended, Ordering::SeqCst);
    }

    /// 故障是否被暂停。
    pub fn fault_suspended(&self) -> bool {
        self.fault_suspended.load(Ordering::SeqCst)
    }

    /// 收到的请求数。
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// 完整发完的流数。
    pub fn streams_completed(&self) -> u64 {
        self.streams_completed.load(Ordering::SeqCst)
    }

    /// 因对端断开而没发完的流数。
    pub fn streams_aborted(&self) -> u64 {
        self.streams_aborted.load(Ordering::SeqCst)
    }

    /// 正在处理的请求数（独立运行时据此在关停后提前退出）。
    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::SeqCst)
    }

    /// 最近收到的请求（最多 16 条，最新的在最后）。
    pub fn recent(&self) -> Vec<Recorded> {
        self.lock().iter().cloned().collect()
    }

    fn record(&self, request: Recorded) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut recent = self.lock();
        if recent.len() == RECORD_CAPACITY {
            recent.pop_front();
        }
        recent.push_back(request);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Recorded>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 在作用域结束时（包括提前返回）把进行中请求数减一。
struct Busy<'a>(&'a AtomicI64);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// 模拟器应用（Pingora 的 `HttpServerApp`）。
///
/// 用途：[`mock_service`] 把它包装成可加入 `Server` 的监听服务。
pub struct MockApp {
    settings: MockSettings,
    stats: Arc<MockStats>,
}

/// 创建模拟器服务（尚无监听地址，调用方用 `add_tcp` 或 `add_tls` 添加），并返回共享的统计。
///
/// ```
/// let (mut service, stats) = chatnexus::mock::mock_service(Default::default()); // 尚未运行
/// service.add_tcp("127.0.0.1:18081"); // 只监听回环地址
/// assert_eq!(stats.requests(), 0); // 服务与测试共享这份统计
/// ```
pub fn mock_service(settings: MockSettings) -> (Service<MockApp>, Arc<MockStats>) {
    let stats = Arc::new(MockStats::default());
    let app = MockApp {
        settings,
        stats: Arc::clone(&stats),
    };
    (Service::new("ChatNexus 模拟上游".to_string(), app), stats)
}

#[async_trait]
impl HttpServerApp for MockApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(session.read_request().await, Ok(true)) {
            return None;
        }
        self.stats.inflight.fetch_add(1, Ordering::SeqCst);
        let _busy = Busy(&self.stats.inflight);
        session.set_keepalive(Some(KEEPALIVE_SECS));
        let body = read_body(&mut session).await?;
        let header = session.req_header();
        let recorded = Recorded {
            method: header.method.to_string(),
            path: header.uri.to_string(),
            headers: header
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
        };
        self.stats.record(recorded);
        if self.fault() == Some(Fault::Garbage) {
            write_garbage(session).await;
            return None;
        }
        let completed = self.respond(&mut session, body, shutdown).await;
        if !completed {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(stream) => stream.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(_) => None,
        }
    }
}

impl MockApp {
    /// 按路径分派到各家格式；返回连接是否仍可复用。
    async fn respond(
        &self,
        session: &mut ServerSession,
        body: Bytes,
        shutdown: &ShutdownWatch,
    ) -> bool {
        let header = session.req_header();
        let path = header.uri.path().to_string();
        let is_post = header.method == Method::POST;
        let delay = Duration::from_millis(self.settings.first_byte_delay_ms);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(Fault::Hang) = self.fault() {
            let mut shutdown = shutdown.clone();
            let _ = shutdown.changed().await;
            return false;
        }
        if is_post && path.ends_with(anthropic::COUNT_TOKENS_PATH) {
            return anthropic::count_tokens(self, session, body).await;
        }
        if is_post && path.ends_with(anthropic::MESSAGES_PATH) {
            return anthropic::messages(self, session, body).await;
        }
        if is_post && path.contains(gemini::MODELS_SEGMENT) && path.contains(':') {
            return gemini::generate(self, session, body).await;
        }
        if is_post && path.ends_with(responses::RESPONSES_PATH) {
            return responses::responses(self, session, body).await;
        }
        if is_post && path.ends_with(embeddings::EMBEDDINGS_PATH) {
            return embeddings::openai(self, session, body).await;
        }
        if is_post && path.ends_with(openai::CHAT_PATH) {
            return openai::chat(self, session, body).await;
        }
        if path.ends_with(openai::MODELS_PATH) {
            return openai::models(session).await;
        }
        openai::error(session, 404, &format!("模拟器没有接口 {path}")).await
    }

    /// 当前生效的故障（被暂停时为 `None`）。
    fn fault(&self) -> Option<Fault> {
        self.settings
            .fault
            .filter(|_| !self.stats.fault_suspended())
    }

    /// 429 与 503 故障响应的 `Retry-After` 秒数（其余状态码不带）。
    fn retry_after(&self, status: u16) -> Option<String> {
        matches!(status, 429 | 503).then(|| self.settings.retry_after_secs.to_string())
    }

    /// 流式发第 `index` 块之前调用：按设置延迟；返回 `false` 表示按故障设置应在此断开
    /// （`ErrorAfter` 时调用方先用 [`MockApp::error_due`] 发出流中错误）。
    async fn before_piece(&self, index: usize) -> bool {
        if matches!(self.fault(), Some(Fault::DropAfter(n) | Fault::ErrorAfter(n)) if n == index) {
            return false;
        }
        let delay = Duration::from_millis(self.settings.chunk_delay_ms);
        if index > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        true
    }

    /// 按故障设置，发第 `index` 块之前是否应在流中报告错误。
    fn error_due(&self, index: usize) -> bool {
        self.fault() == Some(Fault::ErrorAfter(index))
    }

    /// 记录一个流的结局：写完为完成，写失败（对端断开）为中断。
    fn count_stream(&self, completed: bool) {
        let counter = if completed {
            &self.stats.streams_completed
        } else {
            &self.stats.streams_aborted
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// 乱码故障：绕过 HTTP 层直接往连接里写乱码，然后关闭。
async fn write_garbage(session: ServerSession) {
    if let ServerSession::H1(h1) = session {
        let mut stream = h1.into_inner();
        let _ = stream.write_all(GARBAGE).await;
        let _ = stream.shutdown().await;
    }
}

async fn read_body(session: &mut ServerSession) -> Option<Bytes> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_MOCK_BODY => {
                body.extend_from_slice(&chunk)
            }
            Ok(Some(_)) | Err(_) => {
                debug!("模拟器读取请求体失败或超过上限");
                return None;
            }
            Ok(None) => return Some(body.freeze()),
        }
    }
}
