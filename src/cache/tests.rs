//! 响应缓存的存取测试：进程内 LRU（过期、按字节淘汰、单条上限）与真实 Redis（存取、损坏、不可达）。

use serde_json::json;

use super::*;
use crate::config::CacheBackend;
use crate::streaming::Usage;

/// 测试用的 Redis 地址（tests/run.sh 保证它可用）。
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// 一条回复，内容为 `text`，保存于 `created_unix`。
fn entry(text: &str, created_unix: u64) -> Entry {
    let reply = json!({
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    });
    let usage = Usage {
        prompt: 3,
        completion: 5,
        ..Usage::default()
    };
    Entry::new(created_unix, Some(usage), &reply)
}

/// 条目序列化后的字节数。
fn size_of(e: &Entry) -> usize {
    e.encode().len()
}

/// 每个测试独有的 Redis 键前缀。
fn unique_prefix(line: u32) -> String {
    format!("chatnexus-unit-cache-{}-{line}:", std::process::id())
}

/// 连到测试 Redis 的缓存与 redis 后端设置。
fn redis_cache(prefix: &str) -> (ResponseCache, CacheSettings) {
    let link =
        RedisLink::open(&redis_url(), false, Duration::from_secs(2)).expect("REDIS_URL 合法");
    let settings = CacheSettings {
        backend: CacheBackend::Redis,
        ..CacheSettings::default()
    };
    (ResponseCache::new(Some(Arc::new(link)), prefix), settings)
}

#[tokio::test]
async fn 进程内_存入后命中_别的键未命中() {
    let cache = ResponseCache::new(None, "p:");
    let settings = CacheSettings::default();
    let saved = entry("你好，世界", unix_now());
    cache.put(&settings, "键甲", &saved).await;
    assert_eq!(cache.get(&settings, "键甲").await, Lookup::Hit(saved));
    assert_eq!(cache.get(&settings, "键乙").await, Lookup::Miss);
}

#[tokio::test]
async fn 进程内_过期条目未命中并被删除() {
    let cache = ResponseCache::new(None, "p:");
    let settings = CacheSettings {
        ttl_seconds: 5,
        ..CacheSettings::default()
    };
    cache
        .put(&settings, "旧", &entry("过期的回答", unix_now() - 10))
        .await;
    assert!(cache.lock().total_bytes() > 0, "已存入");
    assert_eq!(cache.get(&settings, "旧").await, Lookup::Miss);
    assert_eq!(cache.lock().total_bytes(), 0, "过期条目读到即删");
}

#[tokio::test]
async fn 进程内_超过总字节数时淘汰最久没用的() {
    let cache = ResponseCache::new(None, "p:");
    let now = unix_now();
    let one = size_of(&entry("回答一", now));
    let settings = CacheSettings {
        max_bytes: one * 2 + one / 2,
        ..CacheSettings::default()
    };
    cache.put(&settings, "一", &entry("回答一", now)).await;
    cache.put(&settings, "二", &entry("回答二", now)).await;
    // 读一次“一”，它变成最近使用，接下来被淘汰的应是“二”
    assert!(matches!(cache.get(&settings, "一").await, Lookup::Hit(_)));
    cache.put(&settings, "三", &entry("回答三", now)).await;
    assert!(matches!(cache.get(&settings, "一").await, Lookup::Hit(_)));
    assert_eq!(cache.get(&settings, "二").await, Lookup::Miss);
    assert!(matches!(cache.get(&settings, "三").await, Lookup::Hit(_)));
    assert!(cache.lock().total_bytes() <= settings.max_bytes);
}

#[tokio::test]
async fn 进程内_替换同一个键不重复计字节() {
    let cache = ResponseCache::new(None, "p:");
    let settings = CacheSettings::default();
    let now = unix_now();
    cache.put(&settings, "键", &entry("第一版", now)).await;
    cache.put(&settings, "键", &entry("第二版", now)).await;
    assert_eq!(cache.lock().total_bytes(), size_of(&entry("第二版", now)));
    assert_eq!(
        cache.get(&settings, "键").await,
        Lookup::Hit(entry("第二版", now))
    );
}

#[tokio::test]
async fn 超过单条上限的回复不缓存() {
    let cache = ResponseCache::new(None, "p:");
    let big = entry(&"长".repeat(200), unix_now());
    let settings = CacheSettings {
        max_entry_bytes: size_of(&big) - 1,
        ..CacheSettings::default()
    };
    cache.put(&settings, "大", &big).await;
    assert_eq!(cache.get(&settings, "大").await, Lookup::Miss);
    let fits = CacheSettings {
        max_entry_bytes: size_of(&big),
        ..CacheSettings::default()
    };
    cache.put(&fits, "大", &big).await;
    assert_eq!(cache.get(&fits, "大").await, Lookup::Hit(big));
}

#[tokio::test]
async fn redis_存入后命中并设置过期时间() {
    let prefix = unique_prefix(line!());
    let (cache, settings) = redis_cache(&prefix);
    let saved = entry("来自 Redis 的回答", unix_now());
    cache.put(&settings, "键甲", &saved).await;
    assert_eq!(cache.get(&settings, "键甲").await, Lookup::Hit(saved));
    assert_eq!(cache.get(&settings, "键乙").await, Lookup::Miss);
    let link = cache.redis.as_ref().expect("有 Redis");
    let mut cmd = Cmd::new();
    cmd.arg("TTL").arg(format!("{prefix}cache:键甲"));
    let ttl: i64 = link
        .query(&cmd)
        .await
        .expect("需要可用的 Redis（bash tests/run.sh 会自动启动）");
    assert!(ttl > 0 && ttl <= 300, "SET EX 设置了过期时间：{ttl}");
}

#[tokio::test]
async fn redis_损坏的条目当作未命中并删除() {
    let prefix = unique_prefix(line!());
    let (cache, settings) = redis_cache(&prefix);
    let link = cache.redis.clone().expect("有 Redis");
    let redis_key = format!("{prefix}cache:坏");
    let mut set = Cmd::new();
    set.arg("SET")
        .arg(&redis_key)
        .arg("不是 JSON")
        .arg("EX")
        .arg(60);
    link.query::<()>(&set)
        .await
        .expect("需要可用的 Redis（bash tests/run.sh 会自动启动）");
    assert_eq!(cache.get(&settings, "坏").await, Lookup::Miss);
    let mut exists = Cmd::new();
    exists.arg("EXISTS").arg(&redis_key);
    let left: i64 = link.query(&exists).await.expect("查询 Redis");
    assert_eq!(left, 0, "损坏的条目已删除");
}

#[tokio::test]
async fn redis_不可达时绕过且保存不报错() {
    // 端口 1 在本机没有服务：连接立即被拒绝
    let link = RedisLink::open("redis://127.0.0.1:1", false, Duration::from_millis(200))
        .expect("连接串合法");
    let cache = ResponseCache::new(Some(Arc::new(link)), "p:");
    let settings = CacheSettings {
        backend: CacheBackend::Redis,
        ..CacheSettings::default()
    };
    let before = METRICS
        .cache
        .requests
        .with_label_values(&[RESULT_BYPASS])
        .get();
    cache.put(&settings, "键", &entry("回答", unix_now())).await;
    assert_eq!(cache.get(&settings, "键").await, Lookup::Bypass);
    let after = METRICS
        .cache
        .requests
        .with_label_values(&[RESULT_BYPASS])
        .get();
    assert!(after > before, "绕过计入指标");
}

#[tokio::test]
async fn redis_后端没有连接时绕过() {
    let cache = ResponseCache::new(None, "p:");
    let settings = CacheSettings {
        backend: CacheBackend::Redis,
        ..CacheSettings::default()
    };
    assert_eq!(cache.get(&settings, "键").await, Lookup::Bypass);
}

#[test]
fn 存储格式_往返后相同_有无用量都保留() {
    let with_usage = entry("你好，世界", 1_700_000_000);
    assert_eq!(Entry::decode(with_usage.encode()), Ok(with_usage.clone()));
    let without = Entry {
        usage: None,
        ..with_usage
    };
    assert_eq!(Entry::decode(without.encode()), Ok(without));
}

#[test]
fn 存储格式_截断_旧格式_缺字段都当作损坏() {
    let mut truncated = entry("会被截断的回答", 1).encode();
    truncated.pop();
    let old_json = br#"{"created_unix":1,"usage":null,"completion":{}}"#.to_vec();
    let short_header = b"cnx1 1 0 0\n{}".to_vec();
    let negative = b"cnx1 1 0 0 0 0 0 -2\n{}".to_vec();
    for raw in [truncated, old_json, short_header, negative] {
        let text = String::from_utf8_lossy(&raw).to_string();
        assert!(Entry::decode(raw).is_err(), "应当作损坏：{text}");
    }
}

#[tokio::test]
async fn 顺带读出的值_按同样的规则得出命中_未命中_绕过() {
    let prefix = unique_prefix(line!());
    let (cache, settings) = redis_cache(&prefix);
    let storage = cache
        .storage_key(&settings, "顺带")
        .expect("redis 后端且有连接");
    assert_eq!(storage, format!("{prefix}cache:顺带"));
    let fresh = entry("顺带读出的回答", unix_now());
    let found = Fetched::Value(fresh.encode());
    assert_eq!(
        cache.resolve(&settings, &storage, found).await,
        Lookup::Hit(fresh)
    );
    let stale = Fetched::Value(entry("过期的回答", 1).encode());
    assert_eq!(
        cache.resolve(&settings, &storage, stale).await,
        Lookup::Miss,
        "按当前的过期时间已过期"
    );
    assert_eq!(
        cache.resolve(&settings, &storage, Fetched::Missing).await,
        Lookup::Miss
    );
    assert_eq!(
        cache
            .resolve(&settings, &storage, Fetched::Unavailable)
            .await,
        Lookup::Bypass
    );
    let saved = entry("自己读出的回答", unix_now());
    cache.put(&settings, "顺带", &saved).await;
    assert_eq!(
        cache.resolve(&settings, &storage, Fetched::Unread).await,
        Lookup::Hit(saved),
        "对方没有去读时自己 GET"
    );
}

#[tokio::test]
async fn 进程内后端或没有_redis_连接时_没有可顺带读的键() {
    let local = ResponseCache::new(None, "p:");
    let redis = CacheSettings {
        backend: CacheBackend::Redis,
        ..CacheSettings::default()
    };
    assert_eq!(local.storage_key(&redis, "键"), None, "没有 Redis 连接");
    let (cache, _) = redis_cache("p:");
    assert_eq!(
        cache.storage_key(&CacheSettings::default(), "键"),
        None,
        "local 后端"
    );
}
