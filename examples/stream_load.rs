//! 流式压测客户端：以固定并发发出流式聊天请求，测量首字时间与总时间，并确认每个流都完整结束。
//!
//! 首字时间 = 发出请求到收到第一块响应体；总时间 = 发出请求到响应体结束。每个流都必须是 200
//! 且含 `data: [DONE]`（`--messages` 时为 `event: message_stop`），否则计为错误。只应访问 127.0.0.1。结果是一行 JSON（时间单位微秒），
//! 供 `bench/harness.py` 汇总；`peak_open` 是同时处于“已收到首块、尚未结束”的流的最大数目。
//!
//! 压 5 秒：`stream_load --url http://127.0.0.1:8080/v1/chat/completions --key sk-x --concurrency 16 --seconds 5`；
//! 一万个并发流：`stream_load --url … --concurrency 10000 --requests 10000 --ramp-ms 5000`。

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::{Stream, StreamExt};

/// Chat Completions 流的结束标记。
const DONE_MARKER: &[u8] = b"data: [DONE]";
/// Anthropic Messages 流的结束事件。
const MESSAGE_STOP_MARKER: &[u8] = b"event: message_stop";
/// OpenAI Responses 流的结束事件。
const RESPONSE_COMPLETED_MARKER: &[u8] = b"event: response.completed";
/// Messages 请求的 `max_tokens`（Anthropic 必填）。
const MESSAGES_MAX_TOKENS: u32 = 256;
/// 请求体的内容类型。
const JSON_CONTENT_TYPE: &str = "application/json";
/// 报告里最多保留的错误说明条数。
const MAX_ERROR_SAMPLES: usize = 3;
/// 微秒与秒的换算。
const MICROS_PER_SEC: f64 = 1e6;
/// 百分位：中位数、p99、p99.9。
const PERCENTILES: [(&str, f64); 3] = [("p50", 0.50), ("p99", 0.99), ("p999", 0.999)];

/// 命令行参数。
#[derive(Parser, Clone)]
#[command(about = "流式压测客户端：首字时间与总时间")]
struct Args {
    /// 聊天接口的完整地址
    #[arg(long)]
    url: String,
    /// 客户端密钥（Bearer），直连模拟器时可省略
    #[arg(long)]
    key: Option<String>,
    /// 请求的模型名
    #[arg(long, default_value = "demo")]
    model: String,
    /// 并发流数
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// 请求总数上限
    #[arg(long, default_value_t = usize::MAX)]
    requests: usize,
    /// 开始新请求的时间上限（秒）；与请求总数先到者为准
    #[arg(long)]
    seconds: Option<f64>,
    /// 把各并发流的启动均匀分散在这么多毫秒里（大量并发时避免瞬间建连风暴）
    #[arg(long, default_value_t = 0)]
    ramp_ms: u64,
    /// 单个请求的超时（秒）
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// 客户端的工作线程数
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// 按 Anthropic Messages 方言请求（请求体带 max_tokens，流以 message_stop 事件结束）
    #[arg(long)]
    messages: bool,
    /// 按 OpenAI Responses 方言请求（请求体用 input，流以 response.completed 事件结束）
    #[arg(long)]
    responses: bool,
}

/// 一个成功的流的时间。
struct Sample {
    ttft: Duration,
    total: Duration,
}

/// 所有并发任务共享的状态：已发出的请求数、正在进行的流数与其峰值。
#[derive(Default)]
struct Shared {
    issued: AtomicUsize,
    open: AtomicUsize,
    peak_open: AtomicUsize,
}

impl Shared {
    /// 流收到首块：正在进行的流数加一并更新峰值。
    fn opened(&self) {
        let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_open.fetch_max(now, Ordering::SeqCst);
    }

    /// 流结束（成功或失败）。
    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// 一个并发任务的结果：成功样本与错误说明。
#[derive(Default)]
struct Tally {
    samples: Vec<Sample>,
    errors: usize,
    messages: Vec<String>,
}

impl Tally {
    fn record(&mut self, outcome: Result<Sample, String>) {
        match outcome {
            Ok(sample) => self.samples.push(sample),
            Err(message) => {
                self.errors += 1;
                if self.messages.len() < MAX_ERROR_SAMPLES {
                    self.messages.push(message);
                }
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.samples.extend(other.samples);
        self.errors += other.errors;
        for message in other.messages {
            if self.messages.len() < MAX_ERROR_SAMPLES {
                self.messages.push(message);
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("无法创建 tokio 运行时");
    let started = Instant::now();
    let (tally, peak_open) = runtime.block_on(run(args));
    println!("{}", report(tally, peak_open, started.elapsed()));
}

/// 启动全部并发任务并汇总。
async fn run(args: Args) -> (Tally, usize) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()
        .expect("无法创建 HTTP 客户端");
    let max_tokens = if args.messages {
        format!(r#","max_tokens":{MESSAGES_MAX_TOKENS}"#)
    } else {
        String::new()
    };
    let body = if args.responses {
        format!(
            r#"{{"model":"{}","stream":true,"input":"你好，请介绍一下你自己"}}"#,
            args.model
        )
    } else {
        format!(
            r#"{{"model":"{}","stream":true{max_tokens},"messages":[{{"role":"user","content":"你好，请介绍一下你自己"}}]}}"#,
            args.model
        )
    };
    let shared = Arc::new(Shared::default());
    let deadline = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut tasks = Vec::with_capacity(args.concurrency);
    for index in 0..args.concurrency {
        let delay = ramp_delay(args.ramp_ms, index, args.concurrency);
        let worker = Worker {
            client: client.clone(),
            args: args.clone(),
            body: body.clone(),
            shared: Arc::clone(&shared),
            deadline,
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            worker.work().await
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.expect("压测任务不应 panic"));
    }
    (tally, shared.peak_open.load(Ordering::SeqCst))
}

/// 第 `index` 个任务的启动延迟：均匀分布在 `ramp_ms` 毫秒内。
fn ramp_delay(ramp_ms: u64, index: usize, count: usize) -> Duration {
    let step = ramp_ms as f64 / count.max(1) as f64;
    Duration::from_secs_f64(step * index as f64 / 1e3)
}

/// 一个并发任务：不断领取请求名额，直到总数或时间用完。
struct Worker {
    client: reqwest::Client,
    args: Args,
    body: String,
    shared: Arc<Shared>,
    deadline: Option<Instant>,
}

impl Worker {
    async fn work(self) -> Tally {
        let mut tally = Tally::default();
        loop {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if self.shared.issued.fetch_add(1, Ordering::SeqCst) >= self.args.requests {
                break;
            }
            tally.record(self.one().await);
        }
        tally
    }

    /// 发出一个流式请求并读完响应。
    async fn one(&self) -> Result<Sample, String> {
        let started = Instant::now();
        let response = self.send().await?;
        let mut body = response.bytes_stream();
        let first = body.next().await;
        let ttft = started.elapsed();
        let Some(first) = first else {
            return Err("响应体为空".to_string());
        };
        self.shared.opened();
        let read = read_rest(first, &mut body).await;
        self.shared.closed();
        let seen = read?;
        let marker = if self.args.messages {
            MESSAGE_STOP_MARKER
        } else if self.args.responses {
            RESPONSE_COMPLETED_MARKER
        } else {
            DONE_MARKER
        };
        if memchr::memmem::find(&seen, marker).is_none() {
            return Err("流没有正常结束（缺少 data: [DONE] 或 message_stop 事件）".to_string());
        }
        Ok(Sample {
            ttft,
            total: started.elapsed(),
        })
    }

    /// 发出请求并确认状态码是 200。
    async fn send(&self) -> Result<reqwest::Response, String> {
        let mut request = self.client.post(&self.args.url).body(self.body.clone());
        request = request.header(reqwest::header::CONTENT_TYPE, JSON_CONTENT_TYPE);
        if let Some(key) = &self.args.key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| format!("请求失败：{e}"))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("状态码 {}", response.status()));
        }
        Ok(response)
    }
}

/// 读完响应体的其余部分，返回全部字节。
async fn read_rest(
    first: reqwest::Result<Bytes>,
    body: &mut (impl Stream<Item = reqwest::Result<Bytes>> + Unpin),
) -> Result<Vec<u8>, String> {
    let failed = |e: reqwest::Error| format!("读取响应体失败：{e}");
    let mut seen = first.map_err(failed)?.to_vec();
    while let Some(chunk) = body.next().await {
        seen.extend_from_slice(&chunk.map_err(failed)?);
    }
    Ok(seen)
}

/// 排好序的样本中第 `q` 分位的值（微秒）。
fn percentile(sorted: &[Duration], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    u64::try_from(sorted[rank - 1].as_micros()).unwrap_or(u64::MAX)
}

/// 生成一行 JSON 报告。
fn report(tally: Tally, peak_open: usize, elapsed: Duration) -> String {
    let mut ttft: Vec<Duration> = tally.samples.iter().map(|s| s.ttft).collect();
    let mut total: Vec<Duration> = tally.samples.iter().map(|s| s.total).collect();
    ttft.sort_unstable();
    total.sort_unstable();
    let mut fields = serde_json::Map::new();
    fields.insert("ok".into(), tally.samples.len().into());
    fields.insert("errors".into(), tally.errors.into());
    fields.insert("peak_open".into(), peak_open.into());
    let elapsed_us = (elapsed.as_secs_f64() * MICROS_PER_SEC) as u64;
    fields.insert("elapsed_us".into(), elapsed_us.into());
    for (name, q) in PERCENTILES {
        fields.insert(format!("ttft_{name}_us"), percentile(&ttft, q).into());
        fields.insert(format!("total_{name}_us"), percentile(&total, q).into());
    }
    fields.insert("error_samples".into(), tally.messages.into());
    serde_json::Value::Object(fields).to_string()
}
