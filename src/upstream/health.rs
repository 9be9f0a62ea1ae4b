//! 上游的健康详情：模型、上游与每个目标的运行时状态（指标端口的 `/health/details` 与管理接口的 `/admin/health` 共用）。

use std::time::Instant;

use serde_json::{json, Value};

use super::Balancer;
use crate::config::Config;

/// 生成健康详情（指标端口的 `/health/details`、管理接口的 `/admin/health`）：状态、版本、运行时长、每个上游的状态与主动探测结果、
/// 每个目标的运行时状态。
///
/// 有模型此刻没有任何可用目标（停用、熔断、限流或探测失败）时状态为 `degraded`，否则为 `ok`。
pub fn health_details(config: &Config, balancer: &Balancer, started: Instant) -> Value {
    let providers: Vec<Value> = config
        .providers
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "kind": p.kind,
                "state": if p.enabled { "enabled" } else { "disabled" },
                "probe": balancer.probe_report(p),
            })
        })
        .collect();
    let report = balancer.report(config);
    let degraded = !report.degraded_models.is_empty();
    json!({
        "status": if degraded { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": started.elapsed().as_secs(),
        "providers": providers,
        "targets": report.targets,
        "degraded_models": report.degraded_models,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{build, parse};

    /// 两个上游（一个停用）、各一个模型的配置（`proxy::local` 的测试也用它）。
    pub(crate) fn 配置() -> Config {
        let yaml = r#"
auth: { disabled: true }
providers:
  - name: local
    kind: openai_compatible
    base_url: 'http://127.0.0.1:1'
  - name: o
    kind: openai
    api_key_env: 未设置
    base_url: 'https://api.openai.com'
models:
  - { name: 甲, targets: [ { provider: local } ] }
  - { name: 乙, targets: [ { provider: o } ] }
"#;
        build(parse(yaml).expect("可解析"), |_| None).expect("可构建")
    }

    #[test]
    fn 健康详情_有模型无可用上游时降级() {
        let balancer = Balancer::default();
        let v = health_details(&配置(), &balancer, Instant::now());
        assert_eq!(v["status"], "degraded");
        assert_eq!(v["providers"][1]["state"], "disabled");
        assert_eq!(v["degraded_models"], json!(["乙"]));
        assert_eq!(v["targets"][1]["state"], "disabled");
        assert_eq!(v["targets"][0]["state"], "healthy");
        assert_eq!(v["providers"][0]["kind"], "openai_compatible");
    }
}
