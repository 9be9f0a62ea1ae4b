//! 目标注册表与一个请求的选择计划。
//!
//! 注册表按目标键（`提供方名/部署名`）保存每个目标的运行时状态，配置重载重建 `Config` 后，
//! 键相同的目标沿用原有的延迟估计、熔断与限流状态；不再出现在配置中的键由 [`Balancer::retain`] 清理。

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::select::{choose, Choice};
use super::state::{Health, Lease, LeaseSettings, ProbeState, TargetState};
use crate::config::{Config, Model, Provider, Target};
use crate::error::ApiError;
use crate::metrics::{METRICS, UPSTREAM_LAYER_LABEL};

/// 一秒的毫秒数（JSON 中的延迟以毫秒表示）。
const MILLIS_PER_SEC: f64 = 1000.0;
/// 延迟保留一位小数。
const LATENCY_ROUNDING: f64 = 10.0;
/// 全部目标只是并发已满时建议客户端等待的秒数（有请求结束就能腾出位置）。
const SATURATED_RETRY_SECS: u64 = 1;

/// 一个候选：目标与它的共享状态。
type Candidate<'a> = (&'a Target, Arc<TargetState>);

/// 全部目标的运行时状态注册表。
///
/// 用途：网关启动时创建一个，所有请求与主动探测服务共享；每个请求用 [`Balancer::plan`] 得到选择计划。
///
/// ```
/// let yaml = "auth: { disabled: true }\nproviders: [ { name: local, kind: openai_compatible, base_url: 'http://127.0.0.1:1' } ]\nmodels: [ { name: 演示, targets: [ { provider: local } ] } ]"; // 一个目标
/// let cfg = chatnexus::config::build(chatnexus::config::parse(yaml).unwrap(), |_| None).unwrap(); // 运行时配置
/// let balancer = chatnexus::upstream::Balancer::default(); // 空注册表
/// let mut plan = balancer.plan(cfg.model("演示").unwrap(), &cfg); // 为一个请求制定计划
/// let lease = plan.next().unwrap(); // 选中唯一的目标
/// assert_eq!(lease.target().provider.name, "local"); // 就是它
/// ```
#[derive(Debug, Default)]
pub struct Balancer {
    targets: RwLock<HashMap<Arc<str>, Arc<TargetState>>>,
    probes: RwLock<HashMap<String, Arc<ProbeState>>>,
}

impl Balancer {
    /// 为一个请求制定选择计划：列出模型的全部目标及其状态（新目标在此登记）。
    pub fn plan<'a>(&self, model: &'a Model, config: &Config) -> Plan<'a> {
        let now = Instant::now();
        let remaining = model
            .targets
            .iter()
            .map(|t| (t, self.state(t, now)))
            .collect();
        Plan {
            model: &model.name,
            remaining,
            contended: Vec::new(),
            settings: LeaseSettings {
                breaker: config.breaker,
                decay: config.balancing.latency_decay(),
                adaptive: config.adaptive,
            },
        }
    }

    /// 取得（没有时登记）一个上游的主动探测状态。
    pub fn probe(&self, provider: &str) -> Arc<ProbeState> {
        if let Some(probe) = read(&self.probes).get(provider) {
            return Arc::clone(probe);
        }
        let mut probes = write(&self.probes);
        Arc::clone(probes.entry(provider.to_string()).or_default())
    }

    /// 清理不再出现在配置中的目标与上游的状态（配置重载后由后台服务调用）。
    pub fn retain(&self, config: &Config) {
        let keys: HashSet<&str> = config
            .models
            .iter()
            .flat_map(|m| m.targets.iter().map(|t| &*t.key))
            .collect();
        write(&self.targets).retain(|key, _| {
            let keep = keys.contains(&**key);
            if !keep {
                // 目标已从配置中删除：它的自适应上限指标也不再导出（删除不存在的标签组合会报错，忽略即可）
                let _ = METRICS.adaptive_limit.remove_label_values(&[&**key]);
            }
            keep
        });
        let providers: HashSet<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        write(&self.probes).retain(|name, _| providers.contains(name.as_str()));
    }

    /// 生成 `/health` 中每个目标的状态（按配置顺序，同一键只列一次）与没有可用目标的模型。
    pub fn report(&self, config: &Config) -> HealthReport {
        let now = Instant::now();
        let decay = config.balancing.latency_decay();
        let mut rows: Vec<Value> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut degraded = Vec::new();
        for model in &config.models {
            let mut servable = false;
            for target in &model.targets {
                let state = self.state(target, now);
                let health = state.health(target, now);
                servable |= health.is_usable()
                    || matches!(health, Health::Probing | Health::Saturated { .. });
                match index.get(&*target.key) {
                    Some(&i) => push_model(&mut rows[i], &model.name),
                    None => {
                        index.insert(&target.key, rows.len());
                        rows.push(target_row(target, &state, health, &model.name, now, decay));
                    }
                }
            }
            if !servable {
                degraded.push(model.name.clone());
            }
        }
        HealthReport {
            targets: rows,
            degraded_models: degraded,
        }
    }

    /// 一个上游的主动探测结果（没有配置探测时为 `null`）。
    pub fn probe_report(&self, provider: &Provider) -> Value {
        let Some(check) = &provider.health_check else {
            return Value::Null;
        };
        let probe = self.probe(&provider.name);
        let status = match probe.status() {
            None => "unknown",
            Some(true) => "up",
            Some(false) => "down",
        };
        json!({ "status": status, "path": check.path, "detail": probe.detail() })
    }

    /// 取得（没有时登记）一个目标的状态。
    fn state(&self, target: &Target, now: Instant) -> Arc<TargetState> {
        if let Some(state) = read(&self.targets).get(&*target.key) {
            return Arc::clone(state);
        }
        let probe = self.probe(&target.provider.name);
        let mut targets = write(&self.targets);
        let state = targets
            .entry(Arc::clone(&target.key))
            .or_insert_with(|| Arc::new(TargetState::new(probe, now)));
        Arc::clone(state)
    }
}

/// `/health` 的目标部分。
///
/// 用途：`proxy` 把它写进 `/health` 的响应体。
///
/// ```
/// let r = chatnexus::upstream::HealthReport { targets: vec![], degraded_models: vec!["演示".into()] }; // 一个模型没有可用目标
/// assert_eq!(r.degraded_models.len(), 1); // 网关整体状态应为 degraded
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// 每个目标一行：状态、恢复时间、延迟估计、在途数等。
    pub targets: Vec<Value>,
    /// 此刻没有任何可用目标的模型。
    pub degraded_models: Vec<String>,
}

/// 一个目标在 `/health` 中的一行。
fn target_row(
    target: &Target,
    state: &TargetState,
    health: Health,
    model: &str,
    now: Instant,
    decay: Duration,
) -> Value {
    let remaining = health
        .until()
        .map(|until| until.saturating_duration_since(now));
    let latency = state.latency(now, decay).as_secs_f64() * MILLIS_PER_SEC * LATENCY_ROUNDING;
    json!({
        "key": &*target.key,
        "provider": target.provider.name,
        "upstream_model": target.deployment,
        "models": [model],
        "priority": target.priority,
        "weight": target.weight,
        "state": health.name(),
        "until_unix_ms": remaining.map(unix_ms_after),
        "remaining_ms": remaining.map(|d| d.as_millis() as u64),
        "latency_ms": latency.round() / LATENCY_ROUNDING,
        "inflight": state.inflight(),
        "adaptive_limit": state.concurrency_limit(target),
        "consecutive_failures": state.consecutive_failures(),
    })
}

/// 把另一个使用同一目标的模型名加到该行的 `models` 中。
fn push_model(row: &mut Value, model: &str) {
    if let Some(models) = row.get_mut("models").and_then(Value::as_array_mut) {
        models.push(json!(model));
    }
}

/// 从现在起经过 `after` 之后的 Unix 毫秒时间戳。
fn unix_ms_after(after: Duration) -> u64 {
    (SystemTime::now() + after)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// 一个请求的选择计划：作为迭代器，每次 `next` 选出一个还没试过的可用目标并占用它。
///
/// 用途：`exchange` 的故障转移循环逐个取目标；每个目标在一个请求内至多尝试一次。
pub struct Plan<'a> {
    model: &'a str,
    remaining: Vec<Candidate<'a>>,
    /// 选中后占用失败的目标（并发请求抢先占满了并发上限或试探名额）：本请求不再选它们，
    /// 但全部不可用时仍要在 503 里说明它们的状况。
    contended: Vec<Candidate<'a>>,
    settings: LeaseSettings,
}

impl<'a> Iterator for Plan<'a> {
    type Item = Lease<'a>;

    /// 选出下一个目标并占用它；没有可用目标时返回 `None`。
    ///
    /// 选中的目标可能刚被并发请求改变了状态（例如试探名额被抢走），此时把它移出计划再选。
    fn next(&mut self) -> Option<Lease<'a>> {
        let mut rng = rand::thread_rng();
        loop {
            let now = Instant::now();
            let choices: Vec<Choice> = self
                .remaining
                .iter()
                .enumerate()
                .filter_map(|(index, (target, state))| {
                    Some(Choice {
                        index,
                        priority: target.priority,
                        weight: target.weight,
                        cost: state.cost(target, now, self.settings.decay)?,
                    })
                })
                .collect();
            let picked = choose(&choices, &mut rng)?;
            let (target, state) = self.remaining.swap_remove(picked);
            if let Some(trial) = state.admit(target, now) {
                return Some(Lease::new(target, state, trial, self.settings));
            }
            self.contended.push((target, state));
        }
    }
}

impl Plan<'_> {
    /// 一个目标都没法尝试时返回给客户端的错误。
    ///
    /// 每个目标都只是上游要求等待（`Retry-After`）时返回 429 `rate_limit_exceeded`，`Retry-After` 取最短的剩余等待
    /// （向上取整），SDK 据此退避；其余情况（熔断、探测失败、停用、并发已满）返回 503，`Retry-After` 取最早恢复的时间
    /// （有目标只是并发已满时为 1 秒）。给客户端的消息只说每个目标的状况，不含目标名；带目标名的说明作为原因只进日志。
    /// 因并发上限而拒绝时计入 `llm_limiter_refusals_total{layer="upstream"}`。
    pub fn unavailable(&self) -> ApiError {
        let now = Instant::now();
        let health: Vec<(&Target, Health)> = self
            .remaining
            .iter()
            .chain(&self.contended)
            .map(|(target, state)| (*target, state.health(target, now)))
            .collect();
        let saturated = health
            .iter()
            .any(|(_, h)| matches!(h, Health::Saturated { .. }));
        if saturated {
            METRICS
                .limiter_refusals
                .with_label_values(&[UPSTREAM_LAYER_LABEL])
                .inc();
        }
        let earliest = health.iter().filter_map(|(_, h)| h.until()).min();
        let retry_after = earliest
            .map(|until| ceil_secs(until, now).max(1))
            .or((saturated || !self.contended.is_empty()).then_some(SATURATED_RETRY_SECS));
        let all_throttled = !health.is_empty()
            && self.contended.is_empty()
            && health
                .iter()
                .all(|(_, h)| matches!(h, Health::RateLimited { .. }));
        let error = if all_throttled {
            ApiError::upstream_throttled(self.model, retry_after.unwrap_or(SATURATED_RETRY_SECS))
        } else {
            ApiError::no_available_upstream(self.model).with_retry_after(retry_after)
        };
        explain(error, &health, now)
    }
}

/// 给错误补上每个目标的状况：消息里只有状况，带目标名的完整说明作为原因（只进日志）。
fn explain(mut error: ApiError, health: &[(&Target, Health)], now: Instant) -> ApiError {
    if health.is_empty() {
        return error;
    }
    // 客户端只看到去重后的状况（熔断、限流、并发已满），目标名只进日志
    let mut states: Vec<String> = health.iter().map(|(_, h)| describe(*h, now)).collect();
    states.sort();
    states.dedup();
    let details: Vec<String> = health
        .iter()
        .map(|(target, h)| format!("`{}` {}", target.key, describe(*h, now)))
        .collect();
    error.message = format!("{}：{}", error.message, states.join("；"));
    error.with_detail(details.join("；"))
}

/// 距 `until` 还有多少秒（向上取整）。
fn ceil_secs(until: Instant, now: Instant) -> u64 {
    let left = until.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

/// 不可用原因的中文说明。
fn describe(health: Health, now: Instant) -> String {
    let seconds = |until: Instant| ceil_secs(until, now);
    match health {
        // 计划用尽时仍可用的只有“选中后被并发请求抢先占用”的目标
        Health::Healthy | Health::HalfOpen => "刚被并发的请求占用，稍后可重试".to_string(),
        Health::Probing => "熔断后的试探请求进行中".to_string(),
        Health::Ejected { until } => format!("连续失败已被熔断，约 {} 秒后试探", seconds(until)),
        Health::RateLimited { until } => format!("上游要求等待，约 {} 秒后可用", seconds(until)),
        Health::Saturated { limit } => format!("在途请求已达自适应并发上限 {limit}"),
        Health::ProbeFailed => "主动健康检查失败".to_string(),
        Health::Disabled => "上游已停用（缺少密钥）".to_string(),
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, parse};
    use crate::upstream::Verdict;

    /// 测试配置：a、b 两个首选目标，c 为备用层，d 的上游缺少密钥。
    const 配置文本: &str = "auth: { disabled: true }\ncircuit_breaker: { consecutive_failures: 1, cooldown_ms: 60000 }\nproviders:\n  - { name: a, kind: openai_compatible, base_url: 'http://127.0.0.1:1' }\n  - { name: b, kind: openai_compatible, base_url: 'http://127.0.0.1:2' }\n  - { name: c, kind: openai_compatible, base_url: 'http://127.0.0.1:3' }\n  - { name: d, kind: openai, base_url: 'https://api.openai.com', api_key_env: 未设置 }\nmodels:\n  - { name: m, targets: [ { provider: a }, { provider: b }, { provider: c, priority: 1 }, { provider: d } ] }\n  - { name: 别名, targets: [ { provider: a, model: m } ] }\n";

    fn 配置() -> Config {
        build(parse(配置文本).expect("可解析"), |_| None).expect("可构建")
    }

    fn 依次选择(balancer: &Balancer, cfg: &Config, verdict: Verdict) -> Vec<String> {
        let model = cfg.model("m").expect("模型存在");
        let plan = balancer.plan(model, cfg);
        let mut order = Vec::new();
        for lease in plan {
            order.push(lease.target().provider.name.clone());
            lease.settle(verdict);
        }
        order
    }

    #[test]
    fn 计划_先用完首选层再用备用层_跳过停用的上游_每个目标只试一次() {
        let cfg = 配置();
        let order = 依次选择(&Balancer::default(), &cfg, Verdict::Unknown);
        assert_eq!(order.len(), 3, "停用的 d 不参与：{order:?}");
        let mut first_tier = order[..2].to_vec();
        first_tier.sort();
        assert_eq!(first_tier, vec!["a", "b"]);
        assert_eq!(order[2], "c", "备用层最后才用");
    }

    #[test]
    fn 计划_全部熔断后返回_503_并给出最早恢复时间() {
        let cfg = 配置();
        let balancer = Balancer::default();
        依次选择(&balancer, &cfg, Verdict::Failed { retry_after: None });
        let model = cfg.model("m").expect("模型存在");
        let mut plan = balancer.plan(model, &cfg);
        assert!(plan.next().is_none(), "全部熔断后没有可选目标");
        let error = plan.unavailable();
        assert_eq!(
            (error.status, Some(error.envelope_code())),
            (503, Some("no_available_upstream"))
        );
        assert_eq!(error.retry_after, Some(60), "冷却 60 秒");
        let detail = error.detail().unwrap_or_default();
        assert!(
            detail.contains("熔断") && detail.contains("停用"),
            "每个目标的状况应进日志细节：{detail}"
        );
        assert!(
            error.message.contains("熔断") && !error.message.contains("a/m"),
            "客户端消息只给原因、不列目标键：{}",
            error.message
        );
    }

    #[test]
    fn 限流_按_retry_after_暂停_不影响其他目标() {
        let cfg = 配置();
        let balancer = Balancer::default();
        let model = cfg.model("m").expect("模型存在");
        let mut plan = balancer.plan(model, &cfg);
        let lease = plan.next().expect("有目标");
        let throttled = lease.target().key.to_string();
        lease.settle(Verdict::Throttled {
            retry_after: Some(Duration::from_secs(30)),
        });
        let report = balancer.report(&cfg);
        let row = report
            .targets
            .iter()
            .find(|r| r.get("key") == Some(&json!(throttled)))
            .expect("有这一行");
        assert_eq!(row.get("state"), Some(&json!("rate_limited")));
        assert_eq!(
            row.get("consecutive_failures"),
            Some(&json!(0)),
            "限流不计入熔断"
        );
        assert!(
            !report.degraded_models.contains(&"m".to_string()),
            "模型 m 的其他目标仍可用：{:?}",
            report.degraded_models
        );
    }

    #[test]
    fn 注册表_同一上游部署只列一次_在途数随租约释放() {
        let cfg = 配置();
        let balancer = Balancer::default();
        let alias = cfg.model("别名").expect("模型存在");
        let mut plan = balancer.plan(alias, &cfg);
        let lease = plan.next().expect("有目标");
        let row = |b: &Balancer| {
            b.report(&cfg)
                .targets
                .into_iter()
                .find(|r| r.get("key") == Some(&json!("a/m")))
                .expect("a/m")
        };
        assert_eq!(row(&balancer).get("inflight"), Some(&json!(1)));
        assert_eq!(
            row(&balancer).get("models"),
            Some(&json!(["m", "别名"])),
            "两个模型共享同一目标状态"
        );
        drop(lease);
        assert_eq!(row(&balancer).get("inflight"), Some(&json!(0)));
    }

    #[test]
    fn 重载_键相同的目标沿用状态_删除的目标被清理() {
        let cfg = 配置();
        let balancer = Balancer::default();
        依次选择(&balancer, &cfg, Verdict::Failed { retry_after: None });
        let reloaded = 配置();
        let model = reloaded.model("m").expect("模型存在");
        assert!(
            balancer.plan(model, &reloaded).next().is_none(),
            "重载后熔断状态仍在"
        );
        let smaller =
            build(parse("auth: { disabled: true }").expect("可解析"), |_| None).expect("可构建");
        balancer.retain(&smaller);
        assert!(read(&balancer.targets).is_empty() && read(&balancer.probes).is_empty());
    }
}
