//! 监听相关的校验：请求体上限、CA 文件、线程数、访问日志的写出间隔，网关、指标、管理、模拟器四个监听地址互不相同，
//! 以及管理接口需要令牌与 Redis。

use crate::config::{ConfigFile, ConfigIssue};

/// 请求体上限的硬上限：1 GiB。
const MAX_BODY_CEILING: usize = 1024 * 1024 * 1024;
/// 访问日志最多攒一分钟：再长，进程被强杀时丢的行太多，运维也看不到实时的日志。
const MAX_ACCESS_FLUSH_MS: u64 = 60_000;

pub(super) fn validate_server(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
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
    if file.access_log.flush_ms > MAX_ACCESS_FLUSH_MS {
        issues.push(ConfigIssue::new(
            "access_log.flush_ms",
            format!("必须在 0 到 {MAX_ACCESS_FLUSH_MS} 之间（0 表示每行立即写出）"),
        ));
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

/// 管理接口：监听地址不能与网关、指标、模拟器的相同；必须有恰好一个令牌来源；虚拟密钥存在 Redis 里，必须配置 `redis` 段。
pub(super) fn validate_admin(file: &ConfigFile, issues: &mut Vec<ConfigIssue>) {
    let Some(admin) = file.server.admin_listen else {
        if file.admin.is_some() {
            issues.push(ConfigIssue::new(
                "admin",
                "没有配置 server.admin_listen，管理令牌不起作用",
            ));
        }
        return;
    };
    let others = [
        Some(file.server.listen),
        file.server.metrics_listen,
        file.mock.as_ref().map(|m| m.listen),
    ];
    if others.contains(&Some(admin)) {
        issues.push(ConfigIssue::new(
            "server.admin_listen",
            "不能与 server.listen、server.metrics_listen 或 mock.listen 相同（管理接口绝不能开在公开端口上）",
        ));
    }
    let sources = file.admin.as_ref().map_or(0, |a| {
        usize::from(a.token_sha256.is_some()) + usize::from(a.token_sha256_env.is_some())
    });
    if sources != 1 {
        issues.push(ConfigIssue::new(
            "admin",
            "配置了 server.admin_listen 时必须给出管理令牌的摘要：token_sha256 与 token_sha256_env 二选一",
        ));
    }
    if file.redis.is_none() {
        issues.push(ConfigIssue::new(
            "server.admin_listen",
            "管理接口的虚拟密钥保存在 Redis 里，需要配置 redis 段",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::问题路径;
    use crate::config::{build, parse};

    #[test]
    fn 访问日志写出间隔_超过一分钟拒绝_零表示逐行写出() {
        let base = "auth: { disabled: true }\n";
        assert_eq!(
            问题路径(&format!("{base}access_log: {{ flush_ms: 60001 }}")),
            vec!["access_log.flush_ms"]
        );
        let yaml = format!("{base}access_log: {{ flush_ms: 0 }}");
        let config = build(parse(&yaml).expect("应能解析"), |_| None).expect("0 是合法的间隔");
        assert!(config.access_log.flush_interval().is_zero(), "0 表示不攒");
    }
}
