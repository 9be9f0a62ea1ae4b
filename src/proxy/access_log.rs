//! 每个请求一行访问日志（中文字段名的文本，或 JSON 行），并把同样的信息记入 Prometheus 指标。

use log::info;
use serde_json::json;

use super::context::RequestCtx;
use crate::config::{AccessLogFormat, Config};
use crate::metrics::{record_request, RequestRecord, NO_PROVIDER_LABEL, UNKNOWN_LABEL};

/// 访问日志使用的日志目标，便于单独过滤或转发。
const ACCESS_TARGET: &str = "chatnexus::access";
/// 文本格式中空值的占位符。
const EMPTY: &str = "-";

/// 请求结束：记指标并写一行访问日志。
///
/// 参数：请求方法与路径、请求上下文、当前配置（价目表、日志格式）。
/// 返回：按价目表算出的费用（没有用量或价目时为 `None`）。
pub fn finish_request(method: &str, path: &str, ctx: &RequestCtx, config: &Config) -> Option<f64> {
    let usage = ctx.report.usage;
    let cost = match (ctx.upstream_model.as_deref(), usage.as_ref()) {
        (Some(model), Some(usage)) => config.pricing.cost(model, usage),
        _ => None,
    };
    let record = RequestRecord {
        provider: ctx.provider.as_deref().unwrap_or(NO_PROVIDER_LABEL),
        model: ctx.model_label.as_deref().unwrap_or(UNKNOWN_LABEL),
        status: ctx.status,
        duration: ctx.started.elapsed(),
        ttft: ctx
            .report
            .first_output
            .map(|t| t.duration_since(ctx.started)),
        overhead: ctx.report.overhead(ctx.started.elapsed()),
        usage,
        estimated: ctx.report.estimated,
        cost,
        attempts: ctx.report.attempts,
    };
    record_request(&record);
    match config.access_log.format {
        AccessLogFormat::Text => {
            info!(target: ACCESS_TARGET, "{}", text_line(method, path, ctx, &record))
        }
        AccessLogFormat::Json => {
            info!(target: ACCESS_TARGET, "{}", json_line(method, path, ctx, &record))
        }
    }
    cost
}

fn millis(d: Option<std::time::Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

fn text_line(method: &str, path: &str, ctx: &RequestCtx, r: &RequestRecord<'_>) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| EMPTY.to_string());
    let u = r.usage.unwrap_or_default();
    format!(
        "访问 请求ID={} {method} {path} 状态={} 客户端={} 模型={} 上游={} 尝试={} 耗时毫秒={} 首字毫秒={} 输入={} 输出={} 缓存={} 推理={} 费用美元={} 用量估算={} 错误={}{}",
        ctx.request_id,
        r.status,
        ctx.client.as_deref().unwrap_or(EMPTY),
        ctx.model.as_deref().unwrap_or(EMPTY),
        ctx.provider.as_deref().unwrap_or(EMPTY),
        ctx.report.attempts,
        opt(millis(Some(r.duration)).map(|m| m.to_string())),
        opt(millis(r.ttft).map(|m| m.to_string())),
        u.prompt,
        u.completion,
        u.cached,
        u.reasoning,
        opt(r.cost.map(|c| format!("{c:.9}"))),
        if r.estimated { "是" } else { "否" },
        ctx.error.as_deref().unwrap_or(EMPTY),
        ctx.prompt.as_deref().map(|p| format!(" 提示词={p}")).unwrap_or_default(),
    )
}

fn json_line(method: &str, path: &str, ctx: &RequestCtx, r: &RequestRecord<'_>) -> String {
    let u = r.usage.unwrap_or_default();
    json!({
        "request_id": ctx.request_id, "method": method, "path": path, "status": r.status,
        "client": ctx.client, "model": ctx.model, "provider": ctx.provider, "attempts": ctx.report.attempts,
        "latency_ms": millis(Some(r.duration)), "ttft_ms": millis(r.ttft),
        "tokens": { "input": u.prompt, "output": u.completion, "cached": u.cached, "reasoning": u.reasoning },
        "cost_usd": r.cost, "usage_estimated": r.estimated, "error": ctx.error, "prompt": ctx.prompt,
    })
    .to_string()
}
