//! 监听相关的校验：请求体上限、CA 文件、线程数，以及网关、指标、模拟器三个监听地址互不相同。

use crate::config::{ConfigFile, ConfigIssue};

/// 请求体上限的硬上限：1 GiB。
const MAX_BODY_CEILING: usize = 1024 * 1024 * 1024;

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
