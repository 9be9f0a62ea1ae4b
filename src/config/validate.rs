//! 跨字段校验：引用是否存在、名称是否重复、密钥来源是否冲突。每条问题都带 YAML 路径。

use std::collections::{HashMap, HashSet};

use super::{ConfigFile, ConfigIssue, HealthCheck, ProviderConfig, ProviderKind, TargetConfig};
use crate::redis_link::CLUSTER_URL_SEPARATOR;
use crate::security::crypto::parse_ciphertext;
use crate::security::KeyHash;

/// 名称的最大长度（提供方名会成为指标标签，必须短而规整）。
pub(super) const MAX_NAME_LEN: usize = 64;
/// 模型名的最大长度。
const MAX_MODEL_NAME_LEN: usize = 256;
/// 请求体上限的硬上限：1 GiB。
const MAX_BODY_CEILING: usize = 1024 * 1024 * 1024;
/// 签名时间窗口的上限（秒）：窗口越大，被截获的请求可重放的时间越长。
const MAX_SIGNATURE_WINDOW_SECS: u64 = 3600;
/// 进程内防重放存储条目数的上限（约 2 GB 内存）。
const MAX_MEMORY_NONCE_CAPACITY: usize = 10_000_000;
/// CORS 预检缓存时间的上限（秒）。
const MAX_CORS_MAX_AGE_SECS: u64 = 86_400;
/// Redis 超时的上限（毫秒）。
const MAX_REDIS_TIMEOUT_MS: u64 = 60_000;
/// 一个请求最多尝试的目标数的上限（再多只会拖长失败请求）。
const MAX_ATTEMPTS_CEILING: u32 = 10;
/// 目标权重的上限。
const MAX_WEIGHT: u32 = 10_000;
/// 公开的演示密钥 `sk-chatnexus-demo` 的 SHA-256：人人都知道它，只能用在只对本机开放的监听上。
const DEMO_KEY_SHA256: &str = "2e4c961d46e66a959b65e87302316f4e2f2ccf5c85d03c71d23011a5206b18d9";
/// 主动探测间隔的下限（毫秒），防止把上游探测成负载。
const MIN_PROBE_INTERVAL_MS: u64 = 100;

/// 校验整个配置，返回全部问题（空表示通过）。
pub(super) fn validate(file: &ConfigFile) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    validate_server(file, &mut issues);
    validate_auth(file, &mut issues);
    validate_providers(file, &mut issues);
    validate_models(file, &mut issues);
    validate_pricing(file, &mut issues);
    validate_security(file, &mut issues);
    validate_redis(file, &mut issues);
    validate_failover(file, &mut issues);
    super::limits::validate(file, &mut issues);
    issues
}

/// 重试、熔断与负载均衡参数的取值范围。
fn validate_failover(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let attempts = file.retry.max_attempts;
    if attempts == 0 || attempts > MAX_ATTEMPTS_CEILING {
        issues.push(ConfigIssue::new(
            "retry.max_attempts",
            format!("必须在 1 到 {MAX_ATTEMPTS_CEILING} 之间"),
        ));
    }
    let b = &file.circuit_breaker;
    let positive = [
        ("consecutive_failures", u64::from(b.consecutive_failures)),
        ("window_ms", b.window_ms),
        ("min_requests", u64::from(b.min_requests)),
        ("cooldown_ms", b.cooldown_ms),
    ];
    for (field, value) in positive {
        if value == 0 {
            let path = format!("circuit_breaker.{field}");
            issues.push(ConfigIssue::new(path, "必须大于 0"));
        }
    }
    if !(b.failure_ratio > 0.0 && b.failure_ratio <= 1.0) {
        issues.push(ConfigIssue::new(
            "circuit_breaker.failure_ratio",
            "必须大于 0 且不超过 1",
        ));
    }
    if b.max_cooldown_ms < b.cooldown_ms {
        issues.push(ConfigIssue::new(
            "circuit_breaker.max_cooldown_ms",
            "不能小于 cooldown_ms",
        ));
    }
    if file.load_balancing.latency_decay_ms == 0 {
        issues.push(ConfigIssue::new(
            "load_balancing.latency_decay_ms",
            "必须大于 0",
        ));
    }
}

/// 主动探测：路径必须是绝对路径，间隔不能太短，超时必须大于 0 且不超过间隔。
fn validate_health_check(check: &HealthCheck, path: String, issues: &mut Vec<ConfigIssue>) {
    if !check.path.starts_with('/') || check.path.chars().any(char::is_whitespace) {
        issues.push(ConfigIssue::new(
            format!("{path}.path"),
            "必须以 / 开头且不能含空白",
        ));
    }
    if check.interval_ms < MIN_PROBE_INTERVAL_MS {
        issues.push(ConfigIssue::new(
            format!("{path}.interval_ms"),
            format!("不能小于 {MIN_PROBE_INTERVAL_MS}"),
        ));
    }
    if check.timeout_ms == 0 || check.timeout_ms > check.interval_ms {
        issues.push(ConfigIssue::new(
            format!("{path}.timeout_ms"),
            "必须大于 0 且不超过 interval_ms",
        ));
    }
}

fn validate_server(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let max = file.server.max_body_bytes;
    if max == 0 || max > MAX_BODY_CEILING {
        issues.push(ConfigIssue::new(
            "server.max_body_bytes",
            format!("必须在 1 到 {MAX_BODY_CEILING} 之间"),
        ));
    }
    if let Some(path) = &file.server.ca_file {
        if let Err(e) = std::fs::read(path) {
            issues.push(ConfigIssue::new(
                "server.ca_file",
                format!("无法读取 CA 文件 {}：{e}", path.display()),
            ));
        }
    }
    if file.server.threads == Some(0) {
        issues.push(ConfigIssue::new("server.threads", "必须至少为 1"));
    }
    if file.server.metrics_listen == Some(file.server.listen) {
        issues.push(ConfigIssue::new(
            "server.metrics_listen",
            "不能与 server.listen 相同",
        ));
    }
    if let Some(mock) = &file.mock {
        if Some(mock.listen) == file.server.metrics_listen {
            issues.push(ConfigIssue::new(
                "mock.listen",
                "不能与 server.metrics_listen 相同",
            ));
        }
        if mock.listen == file.server.listen {
            issues.push(ConfigIssue::new("mock.listen", "不能与 server.listen 相同"));
        }
    }
}

/// 没有任何客户端密钥又没显式关闭鉴权时拒绝启动：默认安全。
fn validate_auth(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
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
pub(super) fn exposes_demo_key(hash: &KeyHash, file: &ConfigFile) -> bool {
    hash.to_hex() == DEMO_KEY_SHA256 && !file.server.listen.0.ip().is_loopback()
}

/// 演示密钥出现在非回环监听上：拒绝启动并说明如何换成自己的密钥。
pub(super) fn demo_key_issue(path: &str, file: &ConfigFile) -> ConfigIssue {
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

fn validate_providers(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let mut names = HashSet::new();
    for (i, p) in file.providers.iter().enumerate() {
        let path = format!("providers[{i}]");
        if !is_valid_name(&p.name) {
            issues.push(name_issue(format!("{path}.name")));
        }
        check_unique(&mut names, &p.name, format!("{path}.name"), issues);
        validate_key_source(p, &path, issues);
        if p.kind == ProviderKind::Azure && p.api_version.is_none() {
            issues.push(ConfigIssue::new(
                format!("{path}.api_version"),
                "azure 类型的上游必须配置 api_version（如 2024-10-21）",
            ));
        }
        if let Some(check) = &p.health_check {
            validate_health_check(check, format!("{path}.health_check"), issues);
        }
        let t = &p.timeouts;
        if t.connect_ms == 0 || t.first_byte_ms == 0 || t.idle_ms == 0 || t.total_ms == 0 {
            issues.push(ConfigIssue::new(
                format!("{path}.timeouts"),
                "超时必须大于 0",
            ));
        }
    }
}

/// 上游密钥来源：三种（环境变量、密文、明文）最多一种，需要密钥的类型至少一种，密文格式正确。
fn validate_key_source(p: &ProviderConfig, path: &str, issues: &mut Vec<ConfigIssue>) {
    let sources = [
        p.api_key_env.is_some(),
        p.api_key.is_some(),
        p.api_key_enc.is_some(),
    ]
    .iter()
    .filter(|&&set| set)
    .count();
    if sources > 1 {
        issues.push(ConfigIssue::new(
            path,
            "api_key_env、api_key_enc、api_key 只能配置其一",
        ));
    }
    if p.kind.requires_key() && sources == 0 {
        issues.push(ConfigIssue::new(
            path,
            "该类型的上游必须配置 api_key_env（推荐）、api_key_enc 或 api_key 之一",
        ));
    }
    if let Some(Err(e)) = p.api_key_enc.as_deref().map(parse_ciphertext) {
        issues.push(ConfigIssue::new(
            format!("{path}.api_key_enc"),
            e.to_string(),
        ));
    }
}

fn validate_models(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let providers: HashMap<&str, ProviderKind> = file
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    let mut names = HashSet::new();
    for (i, m) in file.models.iter().enumerate() {
        let path = format!("models[{i}]");
        if !is_valid_label(&m.name, MAX_MODEL_NAME_LEN) {
            issues.push(ConfigIssue::new(
                format!("{path}.name"),
                format!("模型名不能为空、不能含空白，且不超过 {MAX_MODEL_NAME_LEN} 个字符"),
            ));
        }
        check_unique(&mut names, &m.name, format!("{path}.name"), issues);
        if m.targets.is_empty() {
            issues.push(ConfigIssue::new(
                format!("{path}.targets"),
                "至少需要一个目标",
            ));
        }
        for (j, t) in m.targets.iter().enumerate() {
            validate_target(&providers, t, format!("{path}.targets[{j}]"), issues);
        }
    }
}

fn validate_target(
    providers: &HashMap<&str, ProviderKind>,
    target: &TargetConfig,
    path: String,
    issues: &mut Vec<ConfigIssue>,
) {
    match providers.get(target.provider.as_str()) {
        None => issues.push(ConfigIssue::new(
            format!("{path}.provider"),
            format!("引用了不存在的上游 `{}`", target.provider),
        )),
        Some(kind) if *kind != ProviderKind::Azure && target.deployment.is_some() => {
            issues.push(ConfigIssue::new(
                format!("{path}.deployment"),
                "deployment 只适用于 azure 类型的上游",
            ))
        }
        Some(_) => {}
    }
    if target.max_tokens == Some(0) {
        issues.push(ConfigIssue::new(format!("{path}.max_tokens"), "必须大于 0"));
    }
    if target.weight == 0 || target.weight > MAX_WEIGHT {
        issues.push(ConfigIssue::new(
            format!("{path}.weight"),
            format!("必须在 1 到 {MAX_WEIGHT} 之间（不想用的目标请直接删除）"),
        ));
    }
}

fn validate_pricing(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let mut models = HashSet::new();
    for (i, price) in file.pricing.iter().enumerate() {
        check_unique(
            &mut models,
            &price.model,
            format!("pricing[{i}].model"),
            issues,
        );
        let prices = [Some(price.input), Some(price.output), price.cached];
        if prices.iter().flatten().any(|p| !p.is_finite() || *p < 0.0) {
            issues.push(ConfigIssue::new(
                format!("pricing[{i}]"),
                "单价必须是非负数",
            ));
        }
    }
}

fn validate_security(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
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

fn validate_redis(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
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
pub(super) fn check_redis_url(url: &str, cluster: bool) -> Result<(), String> {
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

/// 名称已出现过时记一条“重复”问题。
fn check_unique<'a>(
    seen: &mut HashSet<&'a str>,
    name: &'a str,
    path: String,
    issues: &mut Vec<ConfigIssue>,
) {
    if !seen.insert(name) {
        issues.push(ConfigIssue::new(path, format!("名称 `{name}` 重复")));
    }
}

fn name_issue(path: String) -> ConfigIssue {
    ConfigIssue::new(
        path,
        format!("名称只能由字母、数字、`.`、`_`、`-` 组成，长度 1 到 {MAX_NAME_LEN}"),
    )
}

/// 提供方名会成为指标标签与日志字段，只允许 ASCII 字母数字与 `._-`。
pub(super) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// 客户端可见的名称（模型名、密钥名）：允许中文，但不能为空、含空白或控制字符。
pub(super) fn is_valid_label(name: &str, max_chars: usize) -> bool {
    !name.is_empty()
        && name.chars().count() <= max_chars
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use crate::config::{build, parse, ConfigError};
    use crate::security::KeyHash;

    /// 故障转移参数全部越界的配置。
    const 越界配置: &str = "auth: { disabled: true }\nretry: { max_attempts: 0 }\ncircuit_breaker: { failure_ratio: 1.5, cooldown_ms: 1000, max_cooldown_ms: 10 }\nload_balancing: { latency_decay_ms: 0 }\nproviders:\n  - { name: p, kind: openai_compatible, base_url: 'http://127.0.0.1:1', timeouts: { total_ms: 0 }, health_check: { path: 健康, interval_ms: 50, timeout_ms: 60 } }\nmodels: [ { name: m, targets: [ { provider: p, weight: 0 } ] } ]\n";

    fn 问题路径(yaml: &str) -> Vec<String> {
        match build(parse(yaml).expect("YAML 应能解析"), |_| None) {
            Err(ConfigError::Invalid(issues)) => issues.into_iter().map(|i| i.path).collect(),
            other => panic!("应当校验失败，实际：{other:?}"),
        }
    }

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

    #[test]
    fn 校验_引用不存在的上游_指出路径() {
        let yaml =
            "auth: { disabled: true }\nmodels: [ { name: m, targets: [ { provider: 不存在 } ] } ]";
        assert_eq!(问题路径(yaml), vec!["models[0].targets[0].provider"]);
    }

    #[test]
    fn 校验_故障转移参数越界_逐项指出路径() {
        assert_eq!(
            问题路径(越界配置),
            vec![
                "providers[0].health_check.path",
                "providers[0].health_check.interval_ms",
                "providers[0].health_check.timeout_ms",
                "providers[0].timeouts",
                "models[0].targets[0].weight",
                "retry.max_attempts",
                "circuit_breaker.failure_ratio",
                "circuit_breaker.max_cooldown_ms",
                "load_balancing.latency_decay_ms",
            ]
        );
    }

    #[test]
    fn 校验_重复名称与冲突的密钥来源_全部列出() {
        let yaml = "auth: { disabled: true }\nproviders:\n  - { name: p, kind: openai_compatible, base_url: 'http://127.0.0.1:1', api_key_env: K, api_key: v }\n  - { name: p, kind: openai, base_url: 'https://api.openai.com' }\n";
        let paths = 问题路径(yaml);
        assert_eq!(
            paths,
            vec!["providers[0]", "providers[1].name", "providers[1]"]
        );
    }

    #[test]
    fn 解析_字段类型错误_带_yaml_路径() {
        let err = parse("server: { max_body_bytes: 很大 }").expect_err("类型错误必须失败");
        assert!(err.to_string().contains("server.max_body_bytes"), "{err}");
        let err = parse("providers: [ { name: p, kind: openai, base_url: 'ftp://x' } ]")
            .expect_err("错误协议必须失败");
        assert!(err.to_string().contains("providers[0].base_url"), "{err}");
        assert!(err.to_string().contains("http://"), "{err}");
    }

    #[test]
    fn 构建_密钥环境变量未设置_停用上游而不报错() {
        let key = KeyHash::of("sk-测试").to_hex();
        let yaml = format!("auth: {{ keys: [ {{ name: a, sha256: {key} }} ] }}\nproviders: [ {{ name: o, kind: openai, base_url: 'https://api.openai.com', api_key_env: 不存在的变量 }} ]\nmodels: [ {{ name: m, targets: [ {{ provider: o, model: gpt-4o-mini }} ] }} ]");
        let cfg = build(parse(&yaml).expect("应能解析"), |_| None).expect("应能构建");
        assert!(!cfg.providers[0].enabled, "缺少密钥的上游必须被停用");
        let with_key =
            build(parse(&yaml).expect("应能解析"), |_| Some("sk-x".into())).expect("应能构建");
        assert!(with_key.providers[0].enabled);
        assert_eq!(
            with_key.model("m").map(|m| m.targets[0].model.as_str()),
            Some("gpt-4o-mini")
        );
    }
}
