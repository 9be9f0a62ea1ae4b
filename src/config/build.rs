//! 构建：把校验通过的 [`ConfigFile`] 变成运行时 [`Config`]。
//!
//! 解析上游密钥（环境变量、密文、明文）、客户端密钥摘要与签名密钥、Redis 连接串，
//! 再把模型的目标与提供方连接起来。缺失密钥的上游被停用并警告，其余问题一次全部返回。

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use zeroize::Zeroizing;

use super::{
    validate, AdminSection, Config, ConfigError, ConfigFile, ConfigIssue, Model, ModelConfig,
    Provider, ProviderConfig, RedisSettings, RedisTarget, Target, TargetConfig,
};
use crate::metrics::PriceTable;
use crate::security::crypto::{MasterKeys, MASTER_KEY_ENV};
use crate::security::{Client, ClientKeys, KeyHash, Secret};

/// 签名密钥解密后的最短字节数：再短就可能被离线穷举。
const MIN_SIGNING_SECRET_BYTES: usize = 32;

/// 校验 [`ConfigFile`] 并构建 [`Config`]。
///
/// 参数：`env` 按变量名取环境变量（便于测试注入），用于上游密钥、主密钥与 Redis 连接串。
/// 错误：一次返回全部校验问题；解密失败、主密钥不合法也在其中，并指出字段路径。
pub fn build(
    file: ConfigFile,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let issues = validate::validate(&file);
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    if file.auth.disabled {
        warn!("客户端鉴权已关闭（auth.disabled: true），任何人都能调用本网关");
    }
    let mut issues = Vec::new();
    let encrypted = file.providers.iter().any(|p| p.api_key_enc.is_some())
        || file
            .auth
            .keys
            .iter()
            .any(|k| k.signing_secret_enc.is_some());
    // 只在配置里有密文时才读取主密钥；读取时严格校验，长度或编码不对就是启动错误
    let master = if encrypted {
        master_keys(&env, &mut issues)
    } else {
        None
    };
    let mut secrets = Secrets {
        master: master.as_ref(),
        master_invalid: encrypted && master.is_none() && !issues.is_empty(),
        issues: &mut issues,
    };
    let providers: Vec<Arc<Provider>> = file
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| Arc::new(build_provider(p, i, &env, &mut secrets)))
        .collect();
    let clients = build_clients(&file, &env, &mut secrets);
    let redis = build_redis(file.redis.as_ref(), &env, &mut issues);
    let admin_token = admin_token(file.admin.as_ref(), &env, &mut issues);
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    let mut config = assemble(file, providers, clients, redis);
    config.admin_token = admin_token;
    Ok(config)
}

/// 用已解析的上游、客户端与 Redis 组装运行时配置，并建立模型索引。
fn assemble(
    file: ConfigFile,
    providers: Vec<Arc<Provider>>,
    clients: Vec<Client>,
    redis: Option<RedisTarget>,
) -> Config {
    let models = build_models(&file.models, &providers);
    let model_index = models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.clone(), i))
        .collect();
    Config {
        server: file.server,
        auth_disabled: file.auth.disabled,
        clients: ClientKeys::new(clients),
        admin_token: None,
        providers,
        models,
        mock: file.mock,
        pricing: PriceTable::new(file.pricing),
        access_log: file.access_log,
        responses: file.responses,
        budgets: file.budgets,
        cache: file.cache,
        security: file.security,
        redis,
        retry: file.retry,
        breaker: file.circuit_breaker,
        balancing: file.load_balancing,
        rate_limits: file.rate_limits,
        adaptive: file.adaptive_limits,
        model_index,
    }
}

/// 读取并严格校验主密钥；没设置返回 `None`（需要解密的字段各自报告缺少主密钥）。
fn master_keys(
    env: &impl Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<MasterKeys> {
    match MasterKeys::from_env(env) {
        Ok(keys) => {
            if keys.as_ref().is_some_and(MasterKeys::old_equals_current) {
                warn!("旧主密钥与当前主密钥相同，轮换没有生效");
            }
            keys
        }
        Err(e) => {
            issues.push(ConfigIssue::new(
                format!("环境变量 {MASTER_KEY_ENV}"),
                e.to_string(),
            ));
            None
        }
    }
}

/// 解密密文字段时共用的主密钥与问题列表。
struct Secrets<'a> {
    master: Option<&'a MasterKeys>,
    /// 主密钥设置了但不合法（已报告过，不再逐字段重复“缺少主密钥”）。
    master_invalid: bool,
    issues: &'a mut Vec<ConfigIssue>,
}

impl Secrets<'_> {
    /// 解密 `path` 处的密文，附加数据为 `aad`；失败时记一条带路径的问题。
    fn decrypt(&mut self, path: String, aad: &str, text: &str) -> Option<Secret> {
        let Some(master) = self.master else {
            if self.master_invalid {
                return None;
            }
            self.issues.push(ConfigIssue::new(
                path,
                format!("该字段是密文，需要主密钥：请设置环境变量 {MASTER_KEY_ENV}（或写入 .env）"),
            ));
            return None;
        };
        match master.decrypt(aad, text) {
            Ok(opened) => {
                if opened.used_old_key {
                    warn!("{path} 由旧主密钥解密；请用 `chatnexus keys reencrypt` 改用当前主密钥加密，然后移除旧主密钥");
                }
                Some(opened.secret)
            }
            Err(e) => {
                self.issues.push(ConfigIssue::new(path, e.to_string()));
                None
            }
        }
    }
}

/// 解析一个提供方的密钥；密钥环境变量未设置时停用它并警告，而不是让进程崩溃。
fn build_provider(
    p: &ProviderConfig,
    index: usize,
    env: &impl Fn(&str) -> Option<String>,
    secrets: &mut Secrets<'_>,
) -> Provider {
    let mut enabled = true;
    let api_key = if let Some(var) = &p.api_key_env {
        let value = env(var).map(Zeroizing::new);
        match value.as_deref().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            Some(value) => Some(Secret::new(value.to_string())),
            None => {
                warn!(
                    "上游 `{}` 的密钥环境变量 {var} 未设置，已停用该上游",
                    p.name
                );
                enabled = false;
                None
            }
        }
    } else if let Some(enc) = &p.api_key_enc {
        let path = format!("providers[{index}].api_key_enc");
        secrets.decrypt(path, &p.name, enc)
    } else if let Some(secret) = &p.api_key {
        warn!(
            "上游 `{}` 在配置文件中使用明文 api_key，建议改用 api_key_env 或 api_key_enc",
            p.name
        );
        Some(secret.clone())
    } else {
        None
    };
    Provider {
        name: p.name.clone(),
        kind: p.kind,
        base_url: p.base_url.clone(),
        api_key,
        timeouts: p.timeouts,
        enabled,
        api_version: p.api_version.clone(),
        health_check: p.health_check.clone(),
        concurrency: p.concurrency,
        responses: p.responses || p.kind == crate::config::ProviderKind::OpenAi,
    }
}

/// 构建运行时客户端：取得密钥摘要，解密签名密钥（附加数据为密钥名）并检查长度。
fn build_clients(
    file: &ConfigFile,
    env: &impl Fn(&str) -> Option<String>,
    secrets: &mut Secrets<'_>,
) -> Vec<Client> {
    file.auth
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, key)| {
            let hash = client_hash(file, i, env, secrets.issues)?;
            let signing = key.signing_secret_enc.as_ref().and_then(|enc| {
                let path = format!("auth.keys[{i}].signing_secret_enc");
                let secret = secrets.decrypt(path.clone(), &key.name, enc)?;
                if secret.expose().len() < MIN_SIGNING_SECRET_BYTES {
                    secrets.issues.push(ConfigIssue::new(
                        path,
                        format!("签名密钥太短，至少 {MIN_SIGNING_SECRET_BYTES} 字节（用 `chatnexus keys gen-client --signing` 生成）"),
                    ));
                    return None;
                }
                Some(secret)
            });
            Some(Client::from_config(key, hash, signing))
        })
        .collect()
}

/// 第 `i` 个客户端密钥的摘要：`sha256` 直接使用；`sha256_env` 从环境变量读取（未设置或格式不对是启动
/// 错误），并同样不允许把演示密钥用在非回环监听上。
fn client_hash(
    file: &ConfigFile,
    i: usize,
    env: &impl Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<KeyHash> {
    let key = &file.auth.keys[i];
    if let Some(hash) = key.sha256 {
        return Some(hash);
    }
    let var = key.sha256_env.as_deref()?;
    let path = format!("auth.keys[{i}].sha256_env");
    let parsed = match env(var) {
        Some(text) => KeyHash::try_from(text).map_err(|e| format!("环境变量 {var}：{e}")),
        None => Err(format!(
            "环境变量 {var} 未设置（或写入 .env）；用 `chatnexus keys gen-client --name 名称` 生成密钥与摘要"
        )),
    };
    match parsed {
        Ok(hash) if !key.disabled && validate::exposes_demo_key(&hash, file) => {
            issues.push(validate::demo_key_issue(&path, file));
            None
        }
        Ok(hash) => Some(hash),
        Err(message) => {
            issues.push(ConfigIssue::new(path, message));
            None
        }
    }
}

/// 管理令牌的摘要：`token_sha256` 直接使用，`token_sha256_env` 从环境变量读取（未设置或格式不对是启动错误）。
fn admin_token(
    admin: Option<&AdminSection>,
    env: &impl Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<KeyHash> {
    let admin = admin?;
    if let Some(hash) = admin.token_sha256 {
        return Some(hash);
    }
    let var = admin.token_sha256_env.as_deref()?;
    let parsed = match env(var) {
        Some(text) => KeyHash::try_from(text).map_err(|e| format!("环境变量 {var}：{e}")),
        None => Err(format!("环境变量 {var} 未设置（或写入 .env）")),
    };
    parsed
        .map_err(|message| issues.push(ConfigIssue::new("admin.token_sha256_env", message)))
        .ok()
}

/// 取出 Redis 连接串：`url` 直接使用，`url_env` 从环境变量读取（未设置是启动错误）。
fn build_redis(
    redis: Option<&RedisSettings>,
    env: &impl Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<RedisTarget> {
    let redis = redis?;
    let url = match (&redis.url, &redis.url_env) {
        (Some(url), _) => {
            if url.expose().contains('@') {
                warn!("redis.url 在配置文件中带有凭据，建议改用 redis.url_env");
            }
            url.clone()
        }
        (None, Some(var)) => {
            let value = env(var).map(Zeroizing::new);
            let Some(value) = value.as_deref().map(|v| v.trim()).filter(|v| !v.is_empty()) else {
                issues.push(ConfigIssue::new(
                    "redis.url_env",
                    format!("环境变量 {var} 未设置：配置了 redis 段就必须能连上 Redis（不需要时删除整个 redis 段）"),
                ));
                return None;
            };
            if let Err(message) = validate::check_redis_url(value, redis.cluster) {
                issues.push(ConfigIssue::new(
                    "redis.url_env",
                    format!("环境变量 {var}：{message}"),
                ));
                return None;
            }
            Secret::new(value.to_string())
        }
        (None, None) => return None,
    };
    info!(
        "防重放与分布式限流使用 Redis{}（键前缀 `{}`）",
        if redis.cluster { " 集群" } else { "" },
        redis.key_prefix
    );
    Some(RedisTarget {
        url,
        key_prefix: redis.key_prefix.clone(),
        timeout: Duration::from_millis(redis.timeout_ms),
        cluster: redis.cluster,
    })
}

/// 把模型的目标与提供方连接起来（校验已保证提供方存在）。
fn build_models(models: &[ModelConfig], providers: &[Arc<Provider>]) -> Vec<Model> {
    let by_name: HashMap<&str, &Arc<Provider>> =
        providers.iter().map(|p| (p.name.as_str(), p)).collect();
    let build_target = |model: &ModelConfig, t: &TargetConfig| {
        let provider = by_name.get(t.provider.as_str())?;
        let upstream_model = t.model.clone().unwrap_or_else(|| model.name.clone());
        let deployment = t
            .deployment
            .clone()
            .unwrap_or_else(|| upstream_model.clone());
        Some(Target {
            provider: Arc::clone(provider),
            key: Arc::from(format!("{}/{deployment}", provider.name)),
            deployment,
            model_header: http::HeaderValue::from_str(&upstream_model).ok(),
            model: upstream_model,
            max_tokens: t.max_tokens,
            max_output_tokens: t.max_output_tokens,
            weight: t.weight,
            priority: t.priority,
        })
    };
    models
        .iter()
        .map(|m| Model {
            name: m.name.clone(),
            kind: m.kind,
            limits: m.limits,
            targets: m
                .targets
                .iter()
                .filter_map(|t| build_target(m, t))
                .collect(),
        })
        .collect()
}
