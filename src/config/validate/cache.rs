//! `cache` 段：过期时间与大小上限的范围、`redis` 后端需要 `redis` 段、列出的模型必须存在。

use crate::config::{CacheBackend, CacheSettings, ConfigFile, ConfigIssue};

/// 校验 `cache` 段（不写时不校验）。
pub(super) fn validate_cache(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let Some(cache) = &file.cache else {
        return;
    };
    if cache.ttl_seconds == 0 {
        issues.push(ConfigIssue::new("cache.ttl_seconds", "必须大于 0"));
    }
    if cache.max_entry_bytes == 0 {
        issues.push(ConfigIssue::new("cache.max_entry_bytes", "必须大于 0"));
    }
    if cache.backend == CacheBackend::Local && cache.max_bytes < cache.max_entry_bytes {
        issues.push(ConfigIssue::new(
            "cache.max_bytes",
            "不能小于 max_entry_bytes（进程内缓存连一条最大的条目都放不下）",
        ));
    }
    if cache.backend == CacheBackend::Redis && file.redis.is_none() {
        issues.push(ConfigIssue::new(
            "cache.backend",
            "backend: redis 需要配置 redis 段（连接串等）；没有 Redis 时请用 backend: local",
        ));
    }
    validate_models(cache, file, issues);
}

/// 列出的每个模型都必须是配置里客户端可见的模型。
fn validate_models(cache: &CacheSettings, file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let Some(models) = &cache.models else {
        return;
    };
    for (i, name) in models.iter().enumerate() {
        if !file.models.iter().any(|m| &m.name == name) {
            issues.push(ConfigIssue::new(
                format!("cache.models[{i}]"),
                format!("模型 `{name}` 不在 models 段里"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, validate::validate};

    /// 校验一段 YAML，返回全部问题的路径。
    fn issue_paths(yaml: &str) -> Vec<String> {
        let file = parse(yaml).expect("YAML 应能解析");
        validate(&file).into_iter().map(|i| i.path).collect()
    }

    #[test]
    fn 缓存_redis_后端没有_redis_段时报错() {
        let paths = issue_paths("auth: { disabled: true }\ncache: { backend: redis }");
        assert_eq!(paths, vec!["cache.backend".to_string()]);
        let ok = issue_paths(
            "auth: { disabled: true }\nredis: { url_env: REDIS_URL }\ncache: { backend: redis }",
        );
        assert!(ok.is_empty(), "有 redis 段时通过：{ok:?}");
    }

    #[test]
    fn 缓存_过期时间为零与未知模型都报错() {
        let paths = issue_paths(
            "auth: { disabled: true }\ncache: { ttl_seconds: 0, models: [不存在的模型] }",
        );
        assert_eq!(paths, vec!["cache.ttl_seconds", "cache.models[0]"]);
    }

    #[test]
    fn 缓存_段传到运行时配置_不写时为空() {
        let yaml = "auth: { disabled: true }\ncache: { ttl_seconds: 60, scope: global }";
        let cfg = crate::config::build(parse(yaml).expect("可解析"), |_| None).expect("可构建");
        let cache = cfg.cache.expect("写了 cache 段");
        assert_eq!(cache.ttl_seconds, 60);
        assert_eq!(cache.scope, crate::config::CacheScope::Global);
        let off =
            crate::config::build(parse("auth: { disabled: true }").expect("可解析"), |_| None)
                .expect("可构建");
        assert!(off.cache.is_none(), "不写 cache 段即不缓存");
    }

    #[test]
    fn 缓存_未知字段被拒绝() {
        assert!(parse("cache: { 过期: 1 }").is_err(), "deny_unknown_fields");
    }
}
