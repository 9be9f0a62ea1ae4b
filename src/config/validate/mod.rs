//! 跨字段校验：引用是否存在、名称是否重复、密钥来源是否冲突。每条问题都带 YAML 路径。
//!
//! 按被校验的内容分文件：监听（`listeners`）、上游与模型（`upstreams`）、客户端密钥与安全设置（`security`）。

mod cache;
mod listeners;
mod security;
mod upstreams;

use std::collections::HashSet;

use super::{ConfigFile, ConfigIssue};

pub(super) use security::{check_redis_url, demo_key_issue, exposes_demo_key};

/// 名称的最大长度（提供方名会成为指标标签，必须短而规整）。
pub(super) const MAX_NAME_LEN: usize = 64;

/// 校验整个配置，返回全部问题（空表示通过）。
pub(super) fn validate(file: &ConfigFile) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    listeners::validate_server(file, &mut issues);
    listeners::validate_admin(file, &mut issues);
    security::validate_auth(file, &mut issues);
    upstreams::validate_providers(file, &mut issues);
    upstreams::validate_models(file, &mut issues);
    upstreams::validate_pricing(file, &mut issues);
    security::validate_security(file, &mut issues);
    security::validate_redis(file, &mut issues);
    cache::validate_cache(file, &mut issues);
    upstreams::validate_failover(file, &mut issues);
    super::limits::validate(file, &mut issues);
    issues
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

    /// 构建应当校验失败的配置，返回全部问题的字段路径。
    pub(super) fn 问题路径(yaml: &str) -> Vec<String> {
        match build(parse(yaml).expect("YAML 应能解析"), |_| None) {
            Err(ConfigError::Invalid(issues)) => issues.into_iter().map(|i| i.path).collect(),
            other => panic!("应当校验失败，实际：{other:?}"),
        }
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
