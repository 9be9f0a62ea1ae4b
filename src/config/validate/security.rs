//! 安全相关的校验：客户端密钥（名称、摘要来源、演示密钥、模型允许列表、签名密钥）、
//! `security` 段（签名时间窗口、防重放存储上限、CORS 来源）与 `redis` 段。

use std::collections::HashSet;

use super::{check_unique, is_valid_label, MAX_NAME_LEN};
use crate::config::{ConfigFile, ConfigIssue};
use crate::redis_link::CLUSTER_URL_SEPARATOR;
use crate::security::crypto::parse_ciphertext;
use crate::security::KeyHash;

/// 签名时间窗口的上限（秒）：窗口越大，被截获的请求可重放的时间越长。
const MAX_SIGNATURE_WINDOW_SECS: u64 = 3600;
/// 进程内防重放存储条目数的上限（约 2 GB 内存）。
const MAX_MEMORY_NONCE_CAPACITY: usize = 10_000_000;
/// CORS 预检缓存时间的上限（秒）。
const MAX_CORS_MAX_AGE_SECS: u64 = 86_400;
/// Redis 超时的上限（毫秒）。
const MAX_REDIS_TIMEOUT_MS: u64 = 60_000;
/// 公开的演示密钥 `sk-chatnexus-demo` 的 SHA-256：人人都知道它，只能用在只对本机开放的监听上。
const DEMO_KEY_SHA256: &str = "2e4c961d46e66a959b65e87302316f4e2f2ccf5c85d03c71d23011a5206b18d9";

/// 没有任何客户端密钥又没显式关闭鉴权时拒绝启动：默认安全。
pub(super) fn validate_auth(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let auth = &file.auth;
    if auth.keys.is_empty() && !auth.disabled {
        issues.push(ConfigIssue::new(
            "auth.keys",
            "未配置任何客户端密钥；如确实不需要鉴权，请显式设置 auth.disabled: true",
        ));
    }
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    for (i, key) in auth.keys.iter().enumerate() {
        if !is_valid_label(&key.name, MAX_NAME_LEN) {
            issues.push(ConfigIssue::new(
                format!("auth.keys[{i}].name"),
                format!("名称不能为空、不能含空白，且不超过 {MAX_NAME_LEN} 个字符"),
            ));
        }
        check_unique(
            &mut names,
            &key.name,
            format!("auth.keys[{i}].name"),
            issues,
        );
        validate_key_hash(file, i, &mut hashes, issues);
        validate_client_models(file, i, issues);
        validate_key_budgets(file, i, issues);
        let path = format!("auth.keys[{i}].signing_secret_enc");
        match &key.signing_secret_enc {
            None if key.require_signature => issues.push(ConfigIssue::new(
                path,
                "require_signature: true 时必须配置 signing_secret_enc（用 `chatnexus keys gen-client --name 名称 --signing` 生成）",
            )),
            Some(enc) => {
                if let Err(e) = parse_ciphertext(enc) {
                    issues.push(ConfigIssue::new(path, e.to_string()));
                }
            }
            None => {}
        }
    }
}

/// 第 `i` 个客户端密钥的美元预算：金额必须是正数；预算记在 Redis 里（跨实例精确），必须配置 `redis` 段。
fn validate_key_budgets(file: &ConfigFile, i: usize, issues: &mut Vec<ConfigIssue>) {
    let Some(budgets) = &file.auth.keys[i].budgets else {
        return;
    };
    let path = format!("auth.keys[{i}].budgets");
    let amounts = [budgets.daily_usd, budgets.monthly_usd];
    if amounts
        .iter()
        .flatten()
        .any(|usd| !usd.is_finite() || *usd <= 0.0)
    {
        issues.push(ConfigIssue::new(&path, "预算必须是大于 0 的美元数"));
    }
    if file.redis.is_none() {
        issues.push(ConfigIssue::new(
            path,
            "美元预算记在 Redis 里，需要配置 redis 段",
        ));
    }
}

/// 第 `i` 个客户端密钥的摘要来源：`sha256` 与 `sha256_env` 二选一；直接写的摘要不能重复，
/// 也不能是用在非回环监听上的演示密钥（`sha256_env` 的值在构建时同样检查）。
fn validate_key_hash(
    file: &ConfigFile,
    i: usize,
    hashes: &mut HashSet<String>,
    issues: &mut Vec<ConfigIssue>,
) {
    let key = &file.auth.keys[i];
    let path = format!("auth.keys[{i}].sha256");
    match (&key.sha256, &key.sha256_env) {
        (Some(hash), None) => {
            if !key.disabled && exposes_demo_key(hash, file) {
                issues.push(demo_key_issue(&path, file));
            }
            if !hashes.insert(hash.to_hex()) {
                issues.push(ConfigIssue::new(path, "与前面的密钥摘要重复"));
            }
        }
        (None, Some(_)) => {}
        _ => issues.push(ConfigIssue::new(
            format!("auth.keys[{i}]"),
            "sha256 与 sha256_env 必须设置且只能设置一个",
        )),
    }
}

/// 是否把公开的演示密钥配置在了非回环监听上（网关会成为任何人都能用的开放中转）。
pub(in crate::config) fn exposes_demo_key(hash: &KeyHash, file: &ConfigFile) -> bool {
    hash.to_hex() == DEMO_KEY_SHA256 && !file.server.listen.0.ip().is_loopback()
}

/// 演示密钥出现在非回环监听上：拒绝启动并说明如何换成自己的密钥。
pub(in crate::config) fn demo_key_issue(path: &str, file: &ConfigFile) -> ConfigIssue {
    ConfigIssue::new(
        path,
        format!(
            "这是公开的演示密钥 sk-chatnexus-demo，不能用在非回环监听地址 {} 上（任何人都能用它调用网关）；\
             请删除这一条，用 `chatnexus keys gen-client --name 名称` 生成自己的密钥，把它打印的配置行写进 auth.keys",
            file.server.listen.0
        ),
    )
}

/// 客户端的模型允许列表：不能为空，且只能引用 `models[]` 中存在的模型。
fn validate_client_models(file: &ConfigFile, i: usize, issues: &mut Vec<ConfigIssue>) {
    let Some(models) = &file.auth.keys[i].models else {
        return;
    };
    if models.is_empty() {
        issues.push(ConfigIssue::new(
            format!("auth.keys[{i}].models"),
            "允许列表不能为空：不限制请删除该字段，停用密钥请设置 disabled: true",
        ));
    }
    let known: HashSet<&str> = file.models.iter().map(|m| m.name.as_str()).collect();
    let mut seen = HashSet::new();
    for (j, model) in models.iter().enumerate() {
        let path = format!("auth.keys[{i}].models[{j}]");
        if !known.contains(model.as_str()) {
            issues.push(ConfigIssue::new(
                path.clone(),
                format!("引用了不存在的模型 `{model}`"),
            ));
        }
        check_unique(&mut seen, model, path, issues);
    }
}

pub(super) fn validate_security(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let security = &file.security;
    if security.signature_window_secs == 0
        || security.signature_window_secs > MAX_SIGNATURE_WINDOW_SECS
    {
        issues.push(ConfigIssue::new(
            "security.signature_window_secs",
            format!("必须在 1 到 {MAX_SIGNATURE_WINDOW_SECS} 之间"),
        ));
    }
    if security.memory_nonce_capacity == 0
        || security.memory_nonce_capacity > MAX_MEMORY_NONCE_CAPACITY
    {
        issues.push(ConfigIssue::new(
            "security.memory_nonce_capacity",
            format!("必须在 1 到 {MAX_MEMORY_NONCE_CAPACITY} 之间"),
        ));
    }
    if security.cors.max_age_secs > MAX_CORS_MAX_AGE_SECS {
        issues.push(ConfigIssue::new(
            "security.cors.max_age_secs",
            format!("不能超过 {MAX_CORS_MAX_AGE_SECS}"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, origin) in security.cors.allowed_origins.iter().enumerate() {
        let path = format!("security.cors.allowed_origins[{i}]");
        if let Err(message) = check_origin(origin) {
            issues.push(ConfigIssue::new(path.clone(), message));
        }
        check_unique(&mut seen, origin, path, issues);
    }
}

/// 来源必须是 `http(s)://主机[:端口]`：没有路径、查询串、通配符。
fn check_origin(origin: &str) -> Result<(), String> {
    if origin.contains('*') {
        return Err("不支持通配符：请逐个列出允许的来源（如 https://app.example.com）".into());
    }
    let bad =
        || format!("`{origin}` 不是合法的来源，应为 http(s)://主机[:端口]，不带路径和结尾的 /");
    let uri: http::Uri = origin.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let has_host = uri.authority().is_some_and(|a| !a.host().is_empty());
    let no_userinfo = uri.authority().is_some_and(|a| !a.as_str().contains('@'));
    let bare = origin.matches('/').count() == 2 && uri.query().is_none();
    if scheme_ok && has_host && no_userinfo && bare {
        Ok(())
    } else {
        Err(bad())
    }
}

pub(super) fn validate_redis(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let Some(redis) = &file.redis else {
        return;
    };
    match (&redis.url, &redis.url_env) {
        (Some(_), Some(_)) => issues.push(ConfigIssue::new("redis", "url 与 url_env 只能配置其一")),
        (None, None) => issues.push(ConfigIssue::new(
            "redis",
            "必须配置 url_env（推荐，如 REDIS_URL）或 url；不需要 Redis 时删除整个 redis 段",
        )),
        (Some(url), None) => {
            if let Err(message) = check_redis_url(url.expose(), redis.cluster) {
                issues.push(ConfigIssue::new("redis.url", message));
            }
        }
        (None, Some(var)) if var.trim().is_empty() => {
            issues.push(ConfigIssue::new("redis.url_env", "环境变量名不能为空"))
        }
        (None, Some(_)) => {}
    }
    let prefix = &redis.key_prefix;
    if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        issues.push(ConfigIssue::new(
            "redis.key_prefix",
            "不能为空，也不能含空白或控制字符",
        ));
    }
    if redis.timeout_ms == 0 || redis.timeout_ms > MAX_REDIS_TIMEOUT_MS {
        issues.push(ConfigIssue::new(
            "redis.timeout_ms",
            format!("必须在 1 到 {MAX_REDIS_TIMEOUT_MS} 之间"),
        ));
    }
}

/// 检查连接串；集群时逐个检查逗号分隔的节点。错误信息不含连接串本身（其中可能有密码）。
pub(in crate::config) fn check_redis_url(url: &str, cluster: bool) -> Result<(), String> {
    if !cluster {
        return check_one_redis_url(url);
    }
    let nodes: Vec<&str> = url.split(CLUSTER_URL_SEPARATOR).map(str::trim).collect();
    if nodes.iter().any(|n| n.is_empty()) {
        return Err("集群节点列表中有空项（应为逗号分隔的 redis://主机:端口）".to_string());
    }
    nodes.into_iter().try_for_each(check_one_redis_url)
}

/// 用 redis 客户端自己的解析器检查一个连接串。
fn check_one_redis_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") {
        return Err(
            "暂不支持 rediss://（TLS）：请在可信内网使用 redis://，或经本机 TLS 隧道（如 stunnel）连接"
                .to_string(),
        );
    }
    let scheme_ok = ["redis://", "redis+unix://", "unix://"]
        .iter()
        .any(|s| url.starts_with(s));
    if !scheme_ok {
        return Err("必须以 redis:// 开头（如 redis://127.0.0.1:6379/0）".to_string());
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("不是合法的 Redis 连接串（{:?}）", e.kind()))
}

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::问题路径;
    use crate::config::{build, parse, ConfigError};

    #[test]
    fn 校验_没有客户端密钥且未关闭鉴权_拒绝启动() {
        assert_eq!(问题路径("providers: []"), vec!["auth.keys"]);
    }

    #[test]
    fn 校验_演示密钥在非回环监听上_拒绝启动并说明如何生成密钥() {
        let yaml = |listen: &str| {
            format!("server: {{ listen: '{listen}' }}\nauth: {{ keys: [ {{ name: demo, sha256: {} }} ] }}", super::DEMO_KEY_SHA256)
        };
        for listen in ["0.0.0.0:8080", "[::]:8080", "192.0.2.7:8080"] {
            let Err(ConfigError::Invalid(issues)) =
                build(parse(&yaml(listen)).expect("可解析"), |_| None)
            else {
                panic!("{listen} 上的演示密钥必须拒绝启动");
            };
            assert_eq!(issues.len(), 1, "{issues:?}");
            assert_eq!(issues[0].path, "auth.keys[0].sha256");
            assert!(
                issues[0].message.contains("chatnexus keys gen-client"),
                "{}",
                issues[0].message
            );
        }
        for listen in ["127.0.0.1:8080", "[::1]:8080"] {
            assert!(
                build(parse(&yaml(listen)).expect("可解析"), |_| None).is_ok(),
                "回环监听上可以试用演示密钥"
            );
        }
    }

    #[test]
    fn 校验_随仓库发布的配置_本机配置可用演示密钥_容器配置不含演示密钥() {
        let local = std::fs::read_to_string("conf/chatnexus.yaml").expect("读取默认配置");
        assert!(
            build(parse(&local).expect("可解析"), |_| None).is_ok(),
            "README 的启动命令必须能离线运行"
        );
        let docker = std::fs::read_to_string("conf/docker.yaml").expect("读取容器配置");
        assert!(
            !docker.contains(super::DEMO_KEY_SHA256),
            "容器配置监听所有地址，不能带演示密钥"
        );
    }
}
