//! 配置中与安全相关的构建与校验：密文字段、主密钥、签名密钥、模型允许列表、Redis、CORS。

use super::{build, parse, Config, ConfigError};
use crate::security::crypto::{MasterKey, MASTER_KEY_ENV, MASTER_KEY_OLD_ENV};
use crate::security::KeyHash;

const 上游明文: &str = "sk-upstream-明文-不得外泄";
const 签名明文: &str = "cnxs-0123456789abcdef0123456789abcdef";
/// 测试用的上游地址与连接串（放在函数外，便于阅读与复用）。
const OPENAI_URL: &str = "https://api.openai.com";
/// Anthropic 的地址。
const ANTHROPIC_URL: &str = "https://api.anthropic.com";
/// 本机的兼容上游。
const LOCAL_URL: &str = "http://127.0.0.1:1";
/// 指定了库号的 Redis 连接串。
const REDIS_DB2: &str = "redis://127.0.0.1:6379/2";
/// 不是 Redis 的连接串。
const HTTP_URL: &str = "http://x";
/// Redis 连接串的协议前缀。
const REDIS_SCHEME: &str = "redis://";
/// TLS 的 Redis 连接串（暂不支持）。
const TLS_REDIS: &str = "rediss://h:6380";
/// 普通的 Redis 连接串。
const PLAIN_REDIS: &str = "redis://h";
/// 含合法与各种非法来源的 CORS 配置。
const CORS_YAML: &str = "auth: { disabled: true }\nsecurity: { cors: { allowed_origins: ['https://app.example.com', 'http://localhost:3000', '*', 'https://a.example.com/', 'https://b.example.com/path', 'ftp://c.example.com', 'https://app.example.com'] } }";

fn 客户端摘要() -> String {
    KeyHash::of("sk-client").to_hex()
}

/// 只认主密钥（及可选的旧主密钥、Redis 变量）的环境。
fn 环境(current: Option<&MasterKey>, old: Option<&MasterKey>) -> impl Fn(&str) -> Option<String> {
    let current = current.map(|k| k.to_base64().to_string());
    let old = old.map(|k| k.to_base64().to_string());
    move |var| match var {
        MASTER_KEY_ENV => current.clone(),
        MASTER_KEY_OLD_ENV => old.clone(),
        _ => None,
    }
}

fn 上游配置(api_key_enc: &str) -> String {
    format!(
        "auth: {{ disabled: true }}\nproviders: [ {{ name: openai, kind: openai, base_url: '{OPENAI_URL}', api_key_enc: '{api_key_enc}' }} ]\nmodels: [ {{ name: m, targets: [ {{ provider: openai }} ] }} ]"
    )
}

fn 构建(yaml: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    build(parse(yaml).expect("YAML 应能解析"), env)
}

fn 问题(result: Result<Config, ConfigError>) -> Vec<(String, String)> {
    match result {
        Err(ConfigError::Invalid(issues)) => {
            issues.into_iter().map(|i| (i.path, i.message)).collect()
        }
        Err(other) => panic!("应当是校验失败，实际：{other}"),
        Ok(_) => panic!("应当失败"),
    }
}

#[test]
fn 加密的上游密钥_启动时解密() {
    let key = MasterKey::generate();
    let enc = key.encrypt("openai", 上游明文.as_bytes());
    let cfg = 构建(&上游配置(&enc), 环境(Some(&key), None)).expect("应能构建");
    let provider = &cfg.providers[0];
    assert!(provider.enabled);
    assert_eq!(
        provider.api_key.as_ref().map(|k| k.expose()),
        Some(上游明文)
    );
    assert!(
        !format!("{cfg:?}").contains(上游明文),
        "整个配置的 Debug 输出不得含明文"
    );
}

#[test]
fn 加密的上游密钥_缺少主密钥时指出字段() {
    let enc = MasterKey::generate().encrypt("openai", b"sk-x");
    let issues = 问题(构建(&上游配置(&enc), |_| None));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].0, "providers[0].api_key_enc");
    assert!(issues[0].1.contains("CHATNEXUS_MASTER_KEY"), "{issues:?}");
}

#[test]
fn 加密的上游密钥_主密钥长度不对是启动错误() {
    let enc = MasterKey::generate().encrypt("openai", b"sk-x");
    let short = "c2hvcnQta2V5LTE2Ynl0ZQ=="; // 16 字节
    let issues = 问题(构建(&上游配置(&enc), |v| {
        (v == MASTER_KEY_ENV).then(|| short.to_string())
    }));
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].0, "环境变量 CHATNEXUS_MASTER_KEY");
    assert!(
        issues[0].1.contains("16 字节") && issues[0].1.contains("32 字节"),
        "{issues:?}"
    );
}

#[test]
fn 加密的上游密钥_挪给别的上游或主密钥不对都解不开() {
    let key = MasterKey::generate();
    let moved = key.encrypt("claude", b"sk-x");
    let issues = 问题(构建(&上游配置(&moved), 环境(Some(&key), None)));
    assert_eq!(issues[0].0, "providers[0].api_key_enc");
    assert!(
        issues[0].1.contains("无法解密") && issues[0].1.contains("`openai`"),
        "{issues:?}"
    );
    let enc = key.encrypt("openai", b"sk-x");
    let other = MasterKey::generate();
    let issues = 问题(构建(&上游配置(&enc), 环境(Some(&other), None)));
    assert_eq!(issues[0].0, "providers[0].api_key_enc");
}

#[test]
fn 加密的上游密钥_轮换期间旧主密钥可解密() {
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    let enc = old.encrypt("openai", 上游明文.as_bytes());
    let cfg = 构建(&上游配置(&enc), 环境(Some(&new), Some(&old))).expect("旧主密钥可解密");
    assert_eq!(
        cfg.providers[0].api_key.as_ref().map(|k| k.expose()),
        Some(上游明文)
    );
    assert!(构建(&上游配置(&enc), 环境(Some(&new), None)).is_err());
    let only_old = 问题(构建(&上游配置(&enc), 环境(None, Some(&old))));
    assert!(
        only_old[0].1.contains("CHATNEXUS_MASTER_KEY_OLD"),
        "{only_old:?}"
    );
}

#[test]
fn 密文格式错误_校验阶段指出字段() {
    let issues = 问题(构建(&上游配置("sk-明文误填"), |_| None));
    assert_eq!(issues[0].0, "providers[0].api_key_enc");
    assert!(issues[0].1.contains("v1:"), "{issues:?}");
}

#[test]
fn 三种密钥来源_只能配置其一() {
    let yaml = &format!("auth: {{ disabled: true }}\nproviders: [ {{ name: o, kind: openai, base_url: '{OPENAI_URL}', api_key: a, api_key_enc: 'v1:AAAA' }} ]");
    let issues = 问题(构建(yaml, |_| None));
    assert!(
        issues
            .iter()
            .any(|(p, m)| p == "providers[0]" && m.contains("只能配置其一")),
        "{issues:?}"
    );
    let none = &format!("auth: {{ disabled: true }}\nproviders: [ {{ name: o, kind: anthropic, base_url: '{ANTHROPIC_URL}' }} ]");
    let issues = 问题(构建(none, |_| None));
    assert!(issues[0].1.contains("api_key_enc"), "{issues:?}");
}

fn 客户端配置(extra: &str) -> String {
    let hash = 客户端摘要();
    format!(
        "auth: {{ keys: [ {{ name: 团队甲, sha256: {hash}{extra} }} ] }}\nproviders: [ {{ name: local, kind: openai_compatible, base_url: '{LOCAL_URL}' }} ]\nmodels: [ {{ name: 甲, targets: [ {{ provider: local }} ] }}, {{ name: 乙, targets: [ {{ provider: local }} ] }} ]"
    )
}

#[test]
fn 签名密钥_以客户端名为附加数据解密() {
    let key = MasterKey::generate();
    let enc = key.encrypt("团队甲", 签名明文.as_bytes());
    let yaml = 客户端配置(&format!(
        ", require_signature: true, signing_secret_enc: '{enc}', models: [甲]"
    ));
    let cfg = 构建(&yaml, 环境(Some(&key), None)).expect("应能构建");
    let client = cfg.clients.authenticate("sk-client").expect("密钥有效");
    assert!(client.require_signature);
    assert_eq!(
        client.signing_secret.as_ref().map(|s| s.expose()),
        Some(签名明文)
    );
    assert!(client.allows_model("甲") && !client.allows_model("乙"));
    assert!(!format!("{cfg:?}").contains(签名明文));

    let moved = key.encrypt("团队乙", 签名明文.as_bytes());
    let yaml = 客户端配置(&format!(", signing_secret_enc: '{moved}'"));
    let issues = 问题(构建(&yaml, 环境(Some(&key), None)));
    assert_eq!(issues[0].0, "auth.keys[0].signing_secret_enc");
}

#[test]
fn 签名密钥_必需时不能缺_太短也不行() {
    let issues = 问题(构建(&客户端配置(", require_signature: true"), |_| {
        None
    }));
    assert_eq!(issues[0].0, "auth.keys[0].signing_secret_enc");
    assert!(issues[0].1.contains("gen-client"), "{issues:?}");
    let key = MasterKey::generate();
    let enc = key.encrypt("团队甲", b"short-secret");
    let yaml = 客户端配置(&format!(", signing_secret_enc: '{enc}'"));
    let issues = 问题(构建(&yaml, 环境(Some(&key), None)));
    assert!(issues[0].1.contains("至少 32 字节"), "{issues:?}");
}

#[test]
fn 模型允许列表_只能引用存在的模型且不能为空() {
    let issues = 问题(构建(&客户端配置(", models: [甲, 不存在, 甲]"), |_| None));
    let paths: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec!["auth.keys[0].models[1]", "auth.keys[0].models[2]"]
    );
    let issues = 问题(构建(&客户端配置(", models: []"), |_| None));
    assert_eq!(issues[0].0, "auth.keys[0].models");
}

#[test]
fn redis_连接串来自配置或环境变量() {
    let base = "auth: { disabled: true }\n";
    let cfg = 构建(
        &format!("{base}redis: {{ url: '{REDIS_DB2}', key_prefix: 'gw:', timeout_ms: 250 }}"),
        |_| None,
    )
    .expect("合法");
    let redis = cfg.redis.expect("已配置 Redis");
    assert_eq!(redis.url.expose(), REDIS_DB2);
    assert_eq!(redis.key_prefix, "gw:");
    assert_eq!(redis.timeout.as_millis(), 250);
    assert!(
        构建(base, |_| None).expect("合法").redis.is_none(),
        "不配置就用进程内存储"
    );

    let issues = 问题(构建(
        &format!("{base}redis: {{ url_env: MY_REDIS }}"),
        |_| None,
    ));
    assert_eq!(issues[0].0, "redis.url_env");
    assert!(issues[0].1.contains("MY_REDIS"), "{issues:?}");
    let issues = 问题(构建(
        &format!("{base}redis: {{ url_env: MY_REDIS }}"),
        |_| Some(HTTP_URL.into()),
    ));
    assert!(issues[0].1.contains(REDIS_SCHEME), "{issues:?}");
    let issues = 问题(构建(
        &format!("{base}redis: {{ url: '{TLS_REDIS}' }}"),
        |_| None,
    ));
    assert_eq!(issues[0].0, "redis.url");
    let issues = 问题(构建(
        &format!("{base}redis: {{ url: '{PLAIN_REDIS}', url_env: R }}"),
        |_| None,
    ));
    assert_eq!(issues[0].0, "redis");
    let issues = 问题(构建(
        &format!("{base}redis: {{ timeout_ms: 0 }}"),
        |_| None,
    ));
    let paths: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, vec!["redis", "redis.timeout_ms"]);
}

#[test]
fn cors_来源必须是精确的_origin() {
    let yaml = CORS_YAML;
    let issues = 问题(构建(yaml, |_| None));
    let paths: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "security.cors.allowed_origins[2]",
            "security.cors.allowed_origins[3]",
            "security.cors.allowed_origins[4]",
            "security.cors.allowed_origins[5]",
            "security.cors.allowed_origins[6]",
        ]
    );
    assert!(issues[0].1.contains("通配符"));
}

#[test]
fn 安全设置_范围校验() {
    let yaml = "auth: { disabled: true }\nsecurity: { signature_window_secs: 0, memory_nonce_capacity: 0, cors: { max_age_secs: 999999 } }";
    let issues = 问题(构建(yaml, |_| None));
    let paths: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "security.signature_window_secs",
            "security.memory_nonce_capacity",
            "security.cors.max_age_secs",
        ]
    );
}

/// 管理接口配置的公共部分：鉴权关闭、公开端口 8080。
const ADMIN_BASE: &str = "auth: { disabled: true }\nserver: { listen: '127.0.0.1:8080'";

#[test]
fn 管理接口_令牌来自环境变量_与公开端口相同或缺令牌缺_redis_都是启动错误() {
    let token = KeyHash::of("管理令牌").to_hex();
    let good = format!(
        "{ADMIN_BASE}, admin_listen: '127.0.0.1:9092' }}\nadmin: {{ token_sha256_env: ADMIN_SHA }}\nredis: {{ url: '{PLAIN_REDIS}' }}"
    );
    let env = |var: &str| (var == "ADMIN_SHA").then(|| token.clone());
    let cfg = 构建(&good, env).expect("合法的管理接口配置");
    assert_eq!(cfg.admin_token, Some(KeyHash::of("管理令牌")));
    let public = format!(
        "{ADMIN_BASE}, admin_listen: '127.0.0.1:8080' }}\nadmin: {{ token_sha256: {token} }}\nredis: {{ url: '{PLAIN_REDIS}' }}"
    );
    let paths: Vec<String> = 问题(构建(&public, |_| None))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(paths, ["server.admin_listen"], "管理接口不能开在公开端口上");
    let bare = format!("{ADMIN_BASE}, admin_listen: '127.0.0.1:9092' }}");
    let paths: Vec<String> = 问题(构建(&bare, |_| None))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        paths,
        ["admin", "server.admin_listen"],
        "缺令牌与缺 redis 各报一条"
    );
    let unset = 问题(构建(&good, |_| None));
    assert_eq!(unset[0].0, "admin.token_sha256_env", "环境变量没设置");
}

#[test]
fn 配置文件的密钥_美元预算需要_redis_且金额为正() {
    let hash = 客户端摘要();
    let key = |budgets: &str| {
        format!("auth: {{ keys: [ {{ name: 甲, sha256: {hash}, budgets: {budgets} }} ] }}")
    };
    let with_redis = format!(
        "{}\nredis: {{ url: '{PLAIN_REDIS}' }}",
        key("{ daily_usd: 2.5 }")
    );
    let cfg = 构建(&with_redis, |_| None).expect("合法");
    let client = cfg.clients.authenticate("sk-client").expect("密钥有效");
    assert_eq!(client.budgets.and_then(|b| b.daily_usd), Some(2.5));
    let paths: Vec<String> = 问题(构建(&key("{ monthly_usd: 0 }"), |_| None))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        paths,
        ["auth.keys[0].budgets", "auth.keys[0].budgets"],
        "金额为零与缺 redis 各报一条"
    );
}
