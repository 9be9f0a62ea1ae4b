//! 每个请求一行访问日志（中文字段名的文本，或 JSON 行），并把同样的信息记入 Prometheus 指标。

use std::fmt;

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
            let line = TextLine {
                method,
                path,
                ctx,
                record: &record,
            };
            info!(target: ACCESS_TARGET, "{line}")
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

/// 文本格式的一行访问日志：字段直接写进日志器的缓冲区，不先拼出一串中间字符串。
struct TextLine<'a> {
    method: &'a str,
    path: &'a str,
    ctx: &'a RequestCtx,
    record: &'a RequestRecord<'a>,
}

impl fmt::Display for TextLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ctx, r) = (self.ctx, self.record);
        write!(
            f,
            "访问 请求ID={} {} {} 状态={} 客户端={} 模型={} 上游={} 尝试={} 耗时毫秒=",
            ctx.request_id,
            self.method,
            self.path,
            r.status,
            ctx.client.as_deref().unwrap_or(EMPTY),
            ctx.model.as_deref().unwrap_or(EMPTY),
            ctx.provider.as_deref().unwrap_or(EMPTY),
            ctx.report.attempts,
        )?;
        write_or_empty(f, millis(Some(r.duration)))?;
        f.write_str(" 首字毫秒=")?;
        write_or_empty(f, millis(r.ttft))?;
        let u = r.usage.unwrap_or_default();
        write!(
            f,
            " 输入={} 输出={} 缓存={} 推理={} 费用美元=",
            u.prompt, u.completion, u.cached, u.reasoning
        )?;
        match r.cost {
            Some(cost) => write!(f, "{cost:.9}")?,
            None => f.write_str(EMPTY)?,
        }
        let estimated = if r.estimated { "是" } else { "否" };
        let error = ctx.error.as_deref().unwrap_or(EMPTY);
        write!(f, " 用量估算={estimated} 错误={error}")?;
        match &ctx.prompt {
            Some(prompt) => write!(f, " 提示词={prompt}"),
            None => Ok(()),
        }
    }
}

/// 写出一个可选的数值，没有时写占位符。
fn write_or_empty(f: &mut fmt::Formatter<'_>, value: Option<f64>) -> fmt::Result {
    match value {
        Some(v) => write!(f, "{v}"),
        None => f.write_str(EMPTY),
    }
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
