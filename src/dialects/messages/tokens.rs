//! 输入 token 的估算（count_tokens 在上游没有计数接口时使用，参考文档 §M7）。
//!
//! Claude Code 按这个数决定何时压缩对话：少算会让对话超出上游的上下文窗口，之后连压缩请求都会因为太长而失败；
//! 多算只是提早压缩。所以估算刻意偏高：遍历模型能看到的一切（system、每种块、工具调用的参数、工具结果、
//! 思考、工具的名字、说明与参数结构），ASCII 按每 3 字节一个 token、其余字符每个算一个 token，
//! 再乘以安全系数；图片与文档的 base64 数据不按字节算，而按固定的每张图片 token 数计。

use serde_json::{Map, Value};

/// ASCII 文本每个 token 的字节数（英文与 JSON 的真实比值约为 3.5 到 4，取小值让估算偏高）。
const ASCII_BYTES_PER_TOKEN: u64 = 3;
/// 安全系数的分子与分母：估算再乘以 1.2（1.15 倍的估算仍曾少算 Claude 的提示词）。
const SAFETY_NUMERATOR: u64 = 6;
/// 安全系数的分母。
const SAFETY_DENOMINATOR: u64 = 5;
/// 每张图片按多少 token 计（Claude 对约 1.15 百万像素的图片约计 1600 token）。
const IMAGE_TOKENS: u64 = 1600;
/// 每条消息与每个工具定义的固定开销（角色标记、分隔符）。
const PER_ITEM_TOKENS: u64 = 8;
/// 不计文本、只计固定数的字段：图片与文档来源里的 base64 数据。
const BINARY_FIELD: &str = "data";

/// 估算请求的输入 token（只会偏高，不会系统性偏低）。
///
/// 参数：Messages 或 count_tokens 的请求对象。返回：估算的输入 token 数。
///
/// ```
/// let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "你好，世界"}]});
/// let n = chatnexus::dialects::messages::estimate_input_tokens(body.as_object().unwrap()); // 估算
/// assert!(n >= 5); // 五个汉字至少五个 token
/// ```
pub fn estimate_input_tokens(body: &Map<String, Value>) -> u64 {
    let mut total = 0;
    for field in ["system", "messages", "tools", "tool_choice"] {
        if let Some(value) = body.get(field) {
            total += count_value(value);
        }
    }
    let items = ["messages", "tools"]
        .iter()
        .filter_map(|f| body.get(*f).and_then(Value::as_array))
        .map(|list| list.len() as u64)
        .sum::<u64>();
    (total + items * PER_ITEM_TOKENS).saturating_mul(SAFETY_NUMERATOR) / SAFETY_DENOMINATOR
}

/// 一个 JSON 值里全部文本的 token 估算（键名也算：工具参数结构的键名模型同样看得到）。
fn count_value(value: &Value) -> u64 {
    match value {
        Value::String(text) => count_text(text),
        Value::Array(items) => items.iter().map(count_value).sum(),
        Value::Object(map) => count_object(map),
        Value::Number(n) => count_text(&n.to_string()),
        Value::Bool(_) | Value::Null => 1,
    }
}

/// 对象：图片与文档的 base64 数据按固定数计，其余键与值逐个计。
fn count_object(map: &Map<String, Value>) -> u64 {
    let binary = map.get("type").and_then(Value::as_str) == Some("base64");
    map.iter()
        .map(|(key, value)| {
            if binary && key == BINARY_FIELD {
                IMAGE_TOKENS
            } else {
                count_text(key) + count_value(value)
            }
        })
        .sum()
}

/// 一段文本：ASCII 每 3 字节一个 token（向上取整），其余字符每个一个 token。
fn count_text(text: &str) -> u64 {
    let (ascii, other) = text.chars().fold((0u64, 0u64), |(a, o), c| {
        if c.is_ascii() {
            (a + 1, o)
        } else {
            (a, o + 1)
        }
    });
    ascii.div_ceil(ASCII_BYTES_PER_TOKEN) + other
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn 估算(body: Value) -> u64 {
        estimate_input_tokens(body.as_object().expect("对象"))
    }

    #[test]
    fn 估算_系统提示与工具都计入() {
        let 只有消息 = 估算(json!({"messages": [{"role": "user", "content": "hi"}]}));
        let 带系统与工具 = 估算(json!({
            "system": [{"type": "text", "text": "你是一个严谨的编程助手。".repeat(20)}],
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "Bash", "description": "运行命令", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        }));
        assert!(
            带系统与工具 > 只有消息 + 200,
            "{带系统与工具} 应远大于 {只有消息}"
        );
    }

    #[test]
    fn 估算_不低于按字节四分之一的粗估() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(100);
        let n = 估算(json!({"messages": [{"role": "user", "content": text}]}));
        assert!(n as usize >= text.len() / 4, "{n} 低于 {}", text.len() / 4);
    }

    #[test]
    fn 估算_图片按固定数计_不按_base64_字节() {
        let data = "A".repeat(1_000_000);
        let n = 估算(json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
        ]}]}));
        assert!((IMAGE_TOKENS..IMAGE_TOKENS * 2).contains(&n), "{n}");
    }

    #[test]
    fn 估算_工具调用参数与工具结果都计入() {
        let n = 估算(json!({"messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"path": "长长的路径/".repeat(50)}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "文件内容".repeat(100)}]},
        ]}));
        assert!(n >= 650, "{n}");
    }
}
