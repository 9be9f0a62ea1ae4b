//! 每个请求一行访问日志（中文字段名的文本，或 JSON 行），并把同样的信息记入 Prometheus 指标。

use std::fmt;
use std::time::Duration;

use log::info;
use serde_json::json;

use super::context::RequestCtx;
use crate::config::{AccessLogFormat, Config};
use crate::error::ErrorCode;
use crate::logging::ACCESS_TARGET;
use crate::metrics::{record_request, RequestRecord, NO_PROVIDER_LABEL, UNKNOWN_LABEL};

/// 文本格式中空值的占位符。
const EMPTY: &str = "-";
/// 费用字段的名字（文本格式）。
const COST_LABEL: &str = " 费用美元=";
/// 一毫秒的微秒数。
const MICROS_PER_MILLI: u64 = 1_000;
/// 毫秒数的小数位数（微秒精度）。
const MILLI_DIGITS: usize = 3;
/// 一美元的纳美元数（费用保留九位小数）。
const NANOS_PER_DOLLAR: u64 = 1_000_000_000;
/// 费用的小数位数（纳美元精度）。
const NANO_DIGITS: usize = 9;
/// 一行访问日志预留的字节数（常见的一行三四百字节）。
const LINE_CAPACITY: usize = 512;

/// 请求结束：记指标并写一行访问日志。
///
/// 参数：请求方法与路径、请求上下文、当前配置（价目表、日志格式）。
/// 返回：按价目表算出的费用（没有用量或价目时为 `None`）。
pub fn finish_request(method: &str, path: &str, ctx: &RequestCtx, config: &Config) -> Option<f64> {
    let usage = ctx.report.usage;
    let cost = match (ctx.report.upstream_model.as_deref(), usage.as_ref()) {
        (Some(model), Some(usage)) => config.pricing.cost(model, usage),
        _ => None,
    };
    let duration = ctx.started.elapsed();
    let record = RequestRecord {
        provider: ctx.report.provider.as_deref().unwrap_or(NO_PROVIDER_LABEL),
        model: ctx.model_label.as_deref().unwrap_or(UNKNOWN_LABEL),
        status: ctx.status,
        duration,
        ttft: ctx
            .report
            .first_output
            .map(|t| t.duration_since(ctx.started)),
        overhead: ctx.report.overhead(duration),
        usage,
        estimated: ctx.report.estimated,
        cost,
        attempts: ctx.report.attempts,
        error_code: ctx.error_code,
        dialect: ctx.dialect.label(),
        endpoint: ctx.endpoint,
    };
    record_request(&record);
    match config.access_log.format {
        AccessLogFormat::Text => {
            let line = TextLine {
                method,
                path,
                ctx,
                record: &record,
            }
            .render();
            info!(target: ACCESS_TARGET, "{line}")
        }
        AccessLogFormat::Json => {
            info!(target: ACCESS_TARGET, "{}", json_line(method, path, ctx, &record))
        }
    }
    cost
}

/// 缓存结果的中文名（访问日志的 `缓存=` 字段）。
fn cache_label(result: &str) -> &'static str {
    match result {
        "hit" => "命中",
        "miss" => "未命中",
        _ => "绕过",
    }
}

fn millis(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

/// 文本格式的一行访问日志：先直接拼成一个字符串，再交给日志器（经脱敏包装）。
///
/// 每个请求都要写一行，所以只用整数格式化与字符串追加：浮点数的最短表示与定点格式化、
/// `{}` 对字符串的填充处理，以及经 `fmt::Formatter` 逐段动态分派的写出，在剖析中占了这一行的大半开销。
struct TextLine<'a> {
    method: &'a str,
    path: &'a str,
    ctx: &'a RequestCtx,
    record: &'a RequestRecord<'a>,
}

impl TextLine<'_> {
    /// 写成一行文本（不含换行）。
    fn render(&self) -> String {
        let mut line = String::with_capacity(LINE_CAPACITY);
        // 写进 String 不会失败
        let _ = self.write_to(&mut line);
        line
    }

    /// 逐字段写出：写进 `String` 时每段都是内联的追加，不经 `fmt::Formatter` 的动态分派。
    fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        let (ctx, r) = (self.ctx, self.record);
        write_text(f, "访问 请求ID=", Some(&ctx.request_id))?;
        write_text(f, " ", Some(self.method))?;
        write_text(f, " ", Some(self.path))?;
        write_number(f, " 状态=", u64::from(r.status))?;
        write_text(f, " 客户端=", ctx.client.as_deref())?;
        write_text(f, " 方言=", Some(r.dialect))?;
        write_text(f, " 模型=", ctx.model.as_deref())?;
        write_text(f, " 上游=", ctx.report.provider.as_deref())?;
        write_number(f, " 尝试=", u64::from(ctx.report.attempts))?;
        write_millis(f, " 耗时毫秒=", Some(r.duration))?;
        write_millis(f, " 首字毫秒=", r.ttft)?;
        let u = r.usage.unwrap_or_default();
        write_number(f, " 输入=", u.prompt)?;
        write_number(f, " 输出=", u.completion)?;
        write_number(f, " 缓存输入=", u.cached)?;
        write_number(f, " 推理=", u.reasoning)?;
        write_cost(f, r.cost)?;
        f.write_str(if r.estimated {
            " 用量估算=是"
        } else {
            " 用量估算=否"
        })?;
        write_text(f, " 错误码=", r.error_code.map(ErrorCode::as_str))?;
        write_text(f, " 错误=", ctx.error.as_deref())?;
        if let Some(dropped) = &ctx.dropped {
            write_text(f, " 丢弃=", Some(dropped))?;
        }
        if let Some(cache) = ctx.cache {
            write_text(f, " 缓存=", Some(cache_label(cache)))?;
        }
        match &ctx.prompt {
            Some(prompt) => write_text(f, " 提示词=", Some(prompt)),
            None => Ok(()),
        }
    }
}

/// 写出 ` 名=值`，没有值时写占位符；值经 [`write_escaped`] 转义。
fn write_text(f: &mut impl fmt::Write, label: &str, value: Option<&str>) -> fmt::Result {
    f.write_str(label)?;
    write_escaped(f, value.unwrap_or(EMPTY))
}

/// 写进文本日志前必须转义的字符：控制字符（含换行）、Unicode 行与段分隔符，以及转义符本身。
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\\' | '\u{2028}' | '\u{2029}')
}

/// 字节粗筛：这个字节可能属于需要转义的字符（ASCII 控制字符与 DEL、反斜杠，U+0080–U+009F 的前导字节 0xC2，
/// U+2028/U+2029 的前导字节 0xE2）。
fn may_need_escape(b: u8) -> bool {
    b < b' ' || matches!(b, b'\\' | 0x7f | 0xc2 | 0xe2)
}

/// 写出转义后的值：客户端给出的模型名、提示词、错误消息里的字段值都可能含换行，原样写出就能在日志里
/// 伪造一整行访问记录。换行、回车、制表符写成 `\n`、`\r`、`\t`，反斜杠写成 `\\`，其余写成 `\u{…}`；
/// 不含这些字符的值（绝大多数）原样一次写出。
fn write_escaped(f: &mut impl fmt::Write, value: &str) -> fmt::Result {
    // 先按字节粗筛（可向量化）：没有控制字节、反斜杠与可能组成行分隔符或 C1 控制字符的前导字节时原样写出
    if !value.bytes().any(may_need_escape) {
        return f.write_str(value);
    }
    let mut start = 0;
    for (i, c) in value.char_indices().filter(|(_, c)| needs_escape(*c)) {
        f.write_str(&value[start..i])?;
        match c {
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\\' => f.write_str("\\\\")?,
            other => write!(f, "\\u{{{:x}}}", u32::from(other))?,
        }
        start = i + c.len_utf8();
    }
    f.write_str(&value[start..])
}

/// 写出 ` 名=整数`。
fn write_number(f: &mut impl fmt::Write, label: &str, value: u64) -> fmt::Result {
    f.write_str(label)?;
    f.write_str(itoa::Buffer::new().format(value))
}

/// 写出 ` 名=整数部分.小数部分`，小数部分补零到 `width` 位。
fn write_decimal(
    f: &mut impl fmt::Write,
    label: &str,
    (whole, frac): (u64, u64),
    width: usize,
) -> fmt::Result {
    write_number(f, label, whole)?;
    f.write_str(".")?;
    let mut digits = itoa::Buffer::new();
    let text = digits.format(frac);
    for _ in text.len()..width {
        f.write_str("0")?;
    }
    f.write_str(text)
}

/// 写出 ` 名=毫秒数`（保留三位小数，即微秒精度），没有值时写占位符。
fn write_millis(f: &mut impl fmt::Write, label: &str, value: Option<Duration>) -> fmt::Result {
    let Some(d) = value else {
        return write_text(f, label, None);
    };
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let parts = (micros / MICROS_PER_MILLI, micros % MICROS_PER_MILLI);
    write_decimal(f, label, parts, MILLI_DIGITS)
}

/// 写出 ` 费用美元=金额`（九位小数，即十亿分之一美元），没有费用时写占位符。
fn write_cost(f: &mut impl fmt::Write, cost: Option<f64>) -> fmt::Result {
    let Some(cost) = cost else {
        return write_text(f, COST_LABEL, None);
    };
    // 价目与用量都非负，换算成整数纳美元后只做整数格式化
    let nanos = (cost * NANOS_PER_DOLLAR as f64).round() as u64;
    let parts = (nanos / NANOS_PER_DOLLAR, nanos % NANOS_PER_DOLLAR);
    write_decimal(f, COST_LABEL, parts, NANO_DIGITS)
}

fn json_line(method: &str, path: &str, ctx: &RequestCtx, r: &RequestRecord<'_>) -> String {
    let u = r.usage.unwrap_or_default();
    json!({
        "request_id": ctx.request_id, "method": method, "path": path, "status": r.status,
        "client": ctx.client, "dialect": r.dialect, "endpoint": r.endpoint, "model": ctx.model, "provider": ctx.report.provider, "attempts": ctx.report.attempts,
        "latency_ms": millis(Some(r.duration)), "ttft_ms": millis(r.ttft),
        "tokens": { "input": u.prompt, "output": u.completion, "cached": u.cached, "reasoning": u.reasoning },
        "cost_usd": r.cost, "usage_estimated": r.estimated, "error_code": r.error_code.map(ErrorCode::as_str),
        "error": ctx.error, "dropped": ctx.dropped, "cache": ctx.cache, "prompt": ctx.prompt,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::Usage;

    fn 记录<'a>(cost: Option<f64>, ttft: Option<Duration>) -> RequestRecord<'a> {
        RequestRecord {
            provider: "openai",
            model: "演示",
            status: 200,
            duration: Duration::from_micros(251_300),
            ttft,
            overhead: None,
            usage: Some(Usage {
                prompt: 17,
                completion: 8,
                cached: 2,
                reasoning: 1,
            }),
            estimated: false,
            cost,
            attempts: 1,
            error_code: None,
            dialect: "chat",
            endpoint: "chat_completions",
        }
    }

    #[test]
    fn 文本访问日志_字段齐全且数值精确() {
        let mut ctx = RequestCtx {
            request_id: "req_1".into(),
            client: Some("演示客户端".into()),
            model: Some("演示".into()),
            prompt: Some("你好".into()),
            ..RequestCtx::default()
        };
        ctx.report.provider = Some("openai".into());
        let record = 记录(Some(0.000_012_345), Some(Duration::from_micros(2_105)));
        let line = TextLine {
            method: "POST",
            path: "/v1/chat/completions",
            ctx: &ctx,
            record: &record,
        }
        .render();
        assert_eq!(
            line,
            "访问 请求ID=req_1 POST /v1/chat/completions 状态=200 客户端=演示客户端 方言=chat 模型=演示 上游=openai \
             尝试=0 耗时毫秒=251.300 首字毫秒=2.105 输入=17 输出=8 缓存输入=2 推理=1 费用美元=0.000012345 \
             用量估算=否 错误码=- 错误=- 提示词=你好"
        );
    }

    #[test]
    fn 文本访问日志_响应缓存结果与提示词缓存用量各有各的字段() {
        let ctx = RequestCtx {
            cache: Some(crate::cache::RESULT_HIT),
            ..RequestCtx::default()
        };
        let record = 记录(None, None);
        let line = TextLine {
            method: "POST",
            path: "/v1/chat/completions",
            ctx: &ctx,
            record: &record,
        }
        .render();
        assert!(line.contains(" 缓存输入=2 "), "{line}");
        assert!(line.ends_with(" 缓存=命中"), "{line}");
        assert_eq!(
            line.matches(" 缓存=").count(),
            1,
            "同名字段只能有一个：{line}"
        );
    }

    #[test]
    fn 文本访问日志_缺失的值写占位符() {
        let ctx = RequestCtx::default();
        let record = 记录(None, None);
        let line = TextLine {
            method: "GET",
            path: "/v1/models",
            ctx: &ctx,
            record: &record,
        }
        .render();
        assert!(line.contains(" 客户端=- "), "{line}");
        assert!(line.contains(" 首字毫秒=- "), "{line}");
        assert!(line.contains(" 费用美元=- "), "{line}");
        assert!(
            !line.contains("提示词"),
            "没有记录提示词时不应出现该字段：{line}"
        );
    }

    fn 伪造的上下文() -> RequestCtx {
        let forged = "x\n访问 请求ID=伪造 POST /v1/chat/completions 状态=200\r\u{2028}\\";
        RequestCtx {
            request_id: "req_1".into(),
            client: Some(forged.into()),
            model: Some(forged.into()),
            prompt: Some(forged.into()),
            error: Some(forged.into()),
            ..RequestCtx::default()
        }
    }

    #[test]
    fn 文本访问日志_转义客户端给出的换行_不能伪造日志行() {
        let ctx = 伪造的上下文();
        let record = 记录(None, None);
        let line = TextLine {
            method: "POST",
            path: "/v1/chat/completions",
            ctx: &ctx,
            record: &record,
        }
        .render();
        assert!(
            !line.contains(['\n', '\r', '\u{2028}']),
            "一个请求只能写出一行：{line}"
        );
        assert!(
            line.contains(
                " 模型=x\\n访问 请求ID=伪造 POST /v1/chat/completions 状态=200\\r\\u{2028}\\\\ "
            ),
            "{line}"
        );
    }

    #[test]
    fn 访问日志_json_格式同样只有一行() {
        let ctx = 伪造的上下文();
        let line = json_line("POST", "/v1/chat/completions", &ctx, &记录(None, None));
        assert!(!line.contains(['\n', '\r']), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON 行");
        assert_eq!(
            v["model"],
            ctx.model.as_deref().unwrap_or_default(),
            "解析后还原原值"
        );
    }

    #[test]
    fn 文本访问日志_整美元费用进位正确() {
        let ctx = RequestCtx::default();
        let record = 记录(Some(12.5), None);
        let line = TextLine {
            method: "POST",
            path: "/",
            ctx: &ctx,
            record: &record,
        }
        .render();
        assert!(line.contains(" 费用美元=12.500000000 "), "{line}");
    }
}
