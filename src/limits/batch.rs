//! 准入的批量提交：同时在等 Redis 的准入合成一次脚本调用（`admit.lua` 一次判定一批）。
//!
//! 为什么：Redis 在单线程里逐个执行脚本。并发时每个准入各跑一遍三层的读写（本机每次约 30 µs），
//! 16 个并发请求就在 Redis 里排约 0.5 ms 的队；合成一批后同一个键在一批里只读一次、写一次，
//! 全局层、同一个密钥或 IP 的层不随请求数增加 Redis 的工作，判定结果与逐个调用完全相同（批内按顺序判定）。
//!
//! 做法：一个后台任务从队列里取出第一个准入，再不等待地取出已经排着的（最多 [`MAX_BATCH`] 个），
//! 一次 EVALSHA 发出、回复逐个交回。同一时刻只有一批在 Redis 里：低负载时每批一个请求（与逐个调用相同，一次往返），
//! 负载越高一批越大，不为凑批等待。任务在第一次准入时启动，所在的运行时结束后下一次准入重新启动。

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use redis::{RedisError, Script, ScriptInvocation};
use tokio::sync::{mpsc, oneshot};

use super::layer::TOKEN_WINDOW;
use super::remote::{width, BUCKETS};
use crate::metrics::MAX_COUNT;
use crate::redis_link::{RedisFailure, RedisLink};

/// 一批最多的准入数：再大一次脚本在 Redis 里占用单线程太久（批内每个请求约 6 µs，64 个约 0.4 ms）。
const MAX_BATCH: usize = 64;
/// 脚本参数里“没有”的序号（不探查）；序号从 1 起，层参数组序号是它时脚本报错。
const NONE: usize = 0;
/// 出错时写进原因的操作名。
const SCRIPT_NAME: &str = "限流脚本";

/// 一层的脚本参数。
///
/// 用途：[`super::RemoteStage`] 按一个请求的检查填写，交给 [`Batcher::submit`]。
pub(super) struct LayerArgs {
    /// 这一层的哈希键。
    pub(super) key: String,
    /// 请求数上限（0 表示不限）。
    pub(super) requests: u64,
    /// 请求桶宽（毫秒）。
    pub(super) width: u64,
    /// token 上限（0 表示不限）。
    pub(super) tokens: u64,
}

/// 一个请求的准入参数。
///
/// 用途：[`Batcher::submit`] 的输入；一批里的每个请求各一个。
pub(super) struct Admit {
    /// 各层（按检查的顺序，判定里的层号从 1 起对应它们）。
    pub(super) layers: Vec<LayerArgs>,
    /// 预留的 token 数。
    pub(super) tokens: u64,
    /// 要顺带读的键（响应缓存的条目）。
    pub(super) probe: Option<String>,
}

/// 脚本给一个请求的回复：判定与探查读到的值（没有探查或键不存在时为 `None`）。
pub(super) type Reply = (Vec<i64>, Option<Vec<u8>>);
/// 一个请求等到的结果。
pub(super) type Answer = Result<Reply, RedisFailure>;

/// 排队中的一个准入。
struct Job {
    admit: Admit,
    reply: oneshot::Sender<Answer>,
}

/// 准入的批量提交器。
///
/// 用途：[`super::RemoteStage`] 持有一个，每个准入经它排队、合批、交回各自的判定。
pub(super) struct Batcher {
    link: Arc<RedisLink>,
    script: Script,
    queue: Mutex<Option<mpsc::UnboundedSender<Job>>>,
}

impl Batcher {
    /// 用共享连接与准入脚本创建（不启动任务，第一次准入时启动）。
    pub(super) fn new(link: Arc<RedisLink>, script: Script) -> Self {
        Batcher {
            link,
            script,
            queue: Mutex::new(None),
        }
    }

    /// 排队等待判定。
    ///
    /// 返回：脚本给这个请求的判定与探查读到的值。
    /// 错误：Redis 连不上、出错，或在 `redis.timeout_ms` 内没有等到（含排队的时间）。
    pub(super) async fn submit(&self, admit: Admit) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.enqueue(Job { admit, reply });
        // 排队也算进同一个超时：超时的写法与单条操作的相同
        let waited = async { Ok::<_, RedisError>(answer.await) };
        self.link
            .within(waited, SCRIPT_NAME)
            .await?
            .unwrap_or_else(|_| {
                let reason = format!("{SCRIPT_NAME}没有执行（批量任务已结束）");
                Err(self.link.failure(reason))
            })
    }

    /// 放进队列；任务还没有启动或已随它的运行时结束时启动一个新的。
    fn enqueue(&self, job: Job) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let job = match queue.as_ref() {
            Some(sender) => match sender.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(drive(self.link.clone(), self.script.clone(), receiver));
        // 刚建的接收端还在，发送不会失败；万一失败，任务收不到它，调用方等到超时按 Redis 不可用处理
        let _ = sender.send(job);
        *queue = Some(sender);
    }
}

/// 后台任务：每次取出已经排着的准入（至少一个），合成一次脚本调用，逐个交回判定。
async fn drive(link: Arc<RedisLink>, script: Script, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // 调用方已经放弃（超时、客户端断开）的不再发给 Redis，也就不计数
        jobs.retain(|job| !job.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let answers = run(&link, &script, &jobs).await;
        deliver(jobs.drain(..), answers);
    }
}

/// 执行一批：一次 EVALSHA（NOSCRIPT 时由客户端加载后重试）。
///
/// 错误：Redis 不可用、超时、脚本出错，或回复的判定个数与请求数不符。
async fn run(link: &RedisLink, script: &Script, jobs: &[Job]) -> Result<Vec<Reply>, RedisFailure> {
    let call = invocation(script, jobs);
    let mut conn = link.connection().await?;
    let replies: Vec<Reply> = link
        .within(call.invoke_async(&mut conn), SCRIPT_NAME)
        .await?;
    if replies.len() != jobs.len() {
        return Err(link.failure(format!(
            "{SCRIPT_NAME}返回了 {} 个判定，本批有 {} 个请求",
            replies.len(),
            jobs.len()
        )));
    }
    Ok(replies)
}

/// 把一批的结果交回各个请求（调用方已经放弃的忽略）。
fn deliver(jobs: impl Iterator<Item = Job>, answers: Result<Vec<Reply>, RedisFailure>) {
    match answers {
        Ok(replies) => jobs.zip(replies).for_each(|(job, reply)| {
            let _ = job.reply.send(Ok(reply));
        }),
        Err(failure) => jobs.for_each(|job| {
            let _ = job.reply.send(Err(failure.clone()));
        }),
    }
}

/// 按 `admit.lua` 的参数布局写出一批：全局参数、去重后的层参数组，再逐个请求写预留、探查的键序号、层数与各层的
/// 键序号与层参数组序号。键与层参数组都按第一次出现的顺序编号（从 1 起），同一个在一批里只传一次。
fn invocation<'a>(script: &'a Script, jobs: &'a [Job]) -> ScriptInvocation<'a> {
    let (specs, mut spec_numbers) = number_specs(jobs);
    let mut call = script.prepare_invoke();
    call.arg(MAX_COUNT)
        .arg(BUCKETS)
        .arg(width(TOKEN_WINDOW))
        .arg(specs.len())
        .arg(jobs.len());
    for spec in &specs {
        call.arg(spec);
    }
    let mut keys: HashMap<&str, usize> = HashMap::new();
    let mut key_number = |call: &mut ScriptInvocation<'a>, key: &'a str| {
        number(&mut keys, key, || {
            call.key(key);
        })
    };
    for Job { admit, .. } in jobs {
        let probe = admit
            .probe
            .as_deref()
            .map_or(NONE, |key| key_number(&mut call, key));
        call.arg(admit.tokens).arg(probe).arg(admit.layers.len());
        for layer in &admit.layers {
            let key = key_number(&mut call, &layer.key);
            call.arg(key).arg(spec_numbers.next().unwrap_or(NONE));
        }
    }
    call
}

/// 按第一次出现的顺序给值编号（从 1 起）：已经编过号的返回原号，新的编下一个号并调用 `first`。
fn number<K: Hash + Eq>(numbers: &mut HashMap<K, usize>, value: K, first: impl FnOnce()) -> usize {
    let next = numbers.len() + 1;
    *numbers.entry(value).or_insert_with(|| {
        first();
        next
    })
}

/// 一批里各层的参数组（请求数上限、请求桶宽、token 上限）去重编号：返回各组，以及按层的顺序每层的组号。
fn number_specs(jobs: &[Job]) -> (Vec<[u64; 3]>, impl Iterator<Item = usize>) {
    let mut specs: Vec<[u64; 3]> = Vec::new();
    let mut numbers: HashMap<[u64; 3], usize> = HashMap::new();
    let mut order = Vec::new();
    for layer in jobs.iter().flat_map(|job| &job.admit.layers) {
        let spec = [layer.requests, layer.width, layer.tokens];
        order.push(number(&mut numbers, spec, || specs.push(spec)));
    }
    (specs, order.into_iter())
}
