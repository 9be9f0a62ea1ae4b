//! 跨字段校验：引用是否存在、名称是否重复、密钥来源是否冲突。每条问题都带 YAML 路径。

use std::collections::{HashMap, HashSet};

use super::{ConfigFile, ConfigIssue, ProviderKind, TargetConfig};

/// 名称的最大长度（提供方名会成为指标标签，必须短而规整）。
const MAX_NAME_LEN: usize = 64;
/// 模型名的最大长度。
const MAX_MODEL_NAME_LEN: usize = 256;
/// 请求体上限的硬上限：1 GiB。
const MAX_BODY_CEILING: usize = 1024 * 1024 * 1024;

/// 校验整个配置，返回全部问题（空表示通过）。
pub(super) fn validate(file: &ConfigFile) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    validate_server(file, &mut issues);
    validate_auth(file, &mut issues);
    validate_providers(file, &mut issues);
    validate_models(file, &mut issues);
    validate_pricing(file, &mut issues);
    issues
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
        if !hashes.insert(key.sha256.to_hex()) {
            issues.push(ConfigIssue::new(
                format!("auth.keys[{i}].sha256"),
                "与前面的密钥摘要重复",
            ));
        }
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
        if p.api_key_env.is_some() && p.api_key.is_some() {
            issues.push(ConfigIssue::new(
                path.clone(),
                "api_key_env 与 api_key 只能配置其一",
            ));
        }
        if p.kind.requires_key() && p.api_key_env.is_none() && p.api_key.is_none() {
            issues.push(ConfigIssue::new(
                path.clone(),
                "该类型的上游必须配置 api_key_env（推荐）或 api_key",
            ));
        }
        if p.kind == ProviderKind::Azure && p.api_version.is_none() {
            issues.push(ConfigIssue::new(
                format!("{path}.api_version"),
                "azure 类型的上游必须配置 api_version（如 2024-10-21）",
            ));
        }
        let t = &p.timeouts;
        if t.connect_ms == 0 || t.first_byte_ms == 0 || t.idle_ms == 0 {
            issues.push(ConfigIssue::new(
                format!("{path}.timeouts"),
                "超时必须大于 0",
            ));
        }
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
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// 客户端可见的名称（模型名、密钥名）：允许中文，但不能为空、含空白或控制字符。
fn is_valid_label(name: &str, max_chars: usize) -> bool {
    !name.is_empty()
        && name.chars().count() <= max_chars
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use crate::config::{build, parse, ConfigError};
    use crate::security::KeyHash;

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
    fn 校验_引用不存在的上游_指出路径() {
        let yaml =
            "auth: { disabled: true }\nmodels: [ { name: m, targets: [ { provider: 不存在 } ] } ]";
        assert_eq!(问题路径(yaml), vec!["models[0].targets[0].provider"]);
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
