//! 上游相关的校验：提供方（名称、密钥来源、探测、超时）、模型与目标、价目表、故障转移参数。

use std::collections::{HashMap, HashSet};

use super::{check_unique, is_valid_label, is_valid_name, name_issue};
use crate::config::{
    ConfigFile, ConfigIssue, HealthCheck, ModelKind, ProviderConfig, ProviderKind, TargetConfig,
};
use crate::security::crypto::parse_ciphertext;

/// 模型名的最大长度。
const MAX_MODEL_NAME_LEN: usize = 256;
/// 一个请求最多尝试的目标数的上限（再多只会拖长失败请求）。
const MAX_ATTEMPTS_CEILING: u32 = 10;
/// 目标权重的上限。
const MAX_WEIGHT: u32 = 10_000;
/// 主动探测间隔的下限（毫秒），防止把上游探测成负载。
const MIN_PROBE_INTERVAL_MS: u64 = 100;

/// 重试、熔断与负载均衡参数的取值范围。
pub(super) fn validate_failover(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
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

pub(super) fn validate_providers(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
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

pub(super) fn validate_models(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
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
            let path = format!("{path}.targets[{j}]");
            validate_target(&providers, t, path.clone(), issues);
            let kind = providers.get(t.provider.as_str());
            if m.kind == ModelKind::Embeddings && kind == Some(&ProviderKind::Anthropic) {
                issues.push(ConfigIssue::new(
                    format!("{path}.provider"),
                    "anthropic 类型的上游没有向量接口，不能做 embeddings 模型的目标",
                ));
            }
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
    if target.max_output_tokens == Some(0) {
        issues.push(ConfigIssue::new(
            format!("{path}.max_output_tokens"),
            "必须大于 0",
        ));
    }
    if target.weight == 0 || target.weight > MAX_WEIGHT {
        issues.push(ConfigIssue::new(
            format!("{path}.weight"),
            format!("必须在 1 到 {MAX_WEIGHT} 之间（不想用的目标请直接删除）"),
        ));
    }
}

pub(super) fn validate_pricing(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
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

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::问题路径;

    /// 故障转移参数全部越界的配置。
    const 越界配置: &str = "auth: { disabled: true }\nretry: { max_attempts: 0 }\ncircuit_breaker: { failure_ratio: 1.5, cooldown_ms: 1000, max_cooldown_ms: 10 }\nload_balancing: { latency_decay_ms: 0 }\nproviders:\n  - { name: p, kind: openai_compatible, base_url: 'http://127.0.0.1:1', timeouts: { total_ms: 0 }, health_check: { path: 健康, interval_ms: 50, timeout_ms: 60 } }\nmodels: [ { name: m, targets: [ { provider: p, weight: 0 } ] } ]\n";

    #[test]
    fn 校验_引用不存在的上游_指出路径() {
        let yaml =
            "auth: { disabled: true }\nmodels: [ { name: m, targets: [ { provider: 不存在 } ] } ]";
        assert_eq!(问题路径(yaml), vec!["models[0].targets[0].provider"]);
    }

    #[test]
    fn 校验_向量模型不能路由到_anthropic() {
        let yaml = "auth: { disabled: true }\nproviders:\n  - { name: a, kind: anthropic, api_key_env: 未设置, base_url: 'https://api.anthropic.com' }\n  - { name: o, kind: openai_compatible, base_url: 'http://127.0.0.1:1' }\nmodels:\n  - { name: 向量, kind: embeddings, targets: [ { provider: o }, { provider: a } ] }\n  - { name: 聊天, targets: [ { provider: a } ] }\n";
        assert_eq!(问题路径(yaml), vec!["models[0].targets[1].provider"]);
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
}
