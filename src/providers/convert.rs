//! 各翻译器共用的 OpenAI 形状处理：读取消息内容、工具参数、data URL，构造完整补全响应。

use std::collections::HashMap;

use bytes::Bytes;
use log::debug;
use serde_json::{json, Map, Value};

use crate::config::Target;
use crate::dialects::ChatRequest;
use crate::error::{ApiError, ErrorCode};
use crate::streaming::{FinishReason, Usage};

/// 完整响应的 `object` 字段。
const COMPLETION_OBJECT: &str = "chat.completion";
/// data URL 的前缀。
const DATA_URL_PREFIX: &str = "data:";
/// data URL 中 base64 编码的标记。
const BASE64_MARKER: &str = ";base64";

/// 客户端请求的全部消息（校验已保证是数组）。
pub fn messages(req: &ChatRequest) -> &[Value] {
    req.body
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// 取出消息内容中的全部文本：字符串原样返回，数组取所有 `text` 部分按顺序拼接；没有文本时为 `None`。
pub fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect();
            (!texts.is_empty()).then(|| texts.concat())
        }
        _ => None,
    }
}

/// 解析 `data:<mime>;base64,<data>`，返回 (MIME, base64 数据)；不是 base64 data URL 时为 `None`。
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix(DATA_URL_PREFIX)?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(BASE64_MARKER)?;
    Some((mime, data))
}

/// 解析历史中 `tool_calls[].function.arguments`（JSON 字符串）为对象。
///
/// 空串或 null 视为无参数 `{}`；不是合法 JSON 或不是对象时返回 400，`param` 指向该字段，
/// 而不是让上游报一个难懂的错误或让网关崩溃。
pub fn tool_arguments(arguments: &Value, param: &str) -> Result<Map<String, Value>, ApiError> {
    let text = match arguments {
        Value::Null => return Ok(Map::new()),
        Value::String(s) if s.trim().is_empty() => return Ok(Map::new()),
        Value::String(s) => s,
        Value::Object(map) => return Ok(map.clone()),
        _ => return Err(bad_arguments(param, "应为 JSON 字符串")),
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_arguments(param, "必须是 JSON 对象")),
        Err(e) => Err(bad_arguments(param, &format!("不是合法的 JSON：{e}"))),
    }
}

fn bad_arguments(param: &str, reason: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidToolArguments,
        format!("工具调用参数 `{param}` {reason}"),
    )
    .with_param(param)
}

/// 历史中所有助手工具调用的 id → 函数名（OpenAI 的 tool 消息不带函数名，Gemini 需要它）。
pub fn tool_names_by_id(messages: &[Value]) -> HashMap<String, String> {
    messages
        .iter()
        .filter_map(|m| m["tool_calls"].as_array())
        .flatten()
        .filter_map(|call| {
            let id = call["id"].as_str()?;
            let name = call["function"]["name"].as_str()?;
            Some((id.to_string(), name.to_string()))
        })
        .collect()
}

/// 客户端要求的输出上限：`max_completion_tokens` 优先于已弃用的 `max_tokens`。
pub fn max_tokens(req: &ChatRequest) -> Option<u64> {
    req.body
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.body.get("max_tokens").and_then(Value::as_u64))
}

/// 发给上游的输出上限：客户端给的（或目标的缺省值），超过目标的输出上限时截到上限。
pub fn output_limit(req: &ChatRequest, target: &Target) -> Option<u64> {
    let wanted = max_tokens(req).or(target.max_tokens)?;
    Some(
        target
            .max_output_tokens
            .map_or(wanted, |cap| wanted.min(cap)),
    )
}

/// `stop` 为字符串或字符串数组，统一成数组；没有时为 `None`。
pub fn stop_sequences(req: &ChatRequest) -> Option<Vec<String>> {
    match req.body.get("stop")? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(list) => Some(
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

/// 客户端是否要求流末尾的用量块（`stream_options.include_usage`）。
pub fn include_usage(req: &ChatRequest) -> bool {
    req.body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// 对上游不支持、因而被丢弃的参数各记一条 DEBUG 日志（不是错误）。
pub fn log_dropped(req: &ChatRequest, unsupported: &[&str], provider: &str) {
    for name in unsupported
        .iter()
        .filter(|n| req.body.get(**n).is_some_and(|v| !v.is_null()))
    {
        debug!("上游 `{provider}` 不支持参数 `{name}`，已忽略");
    }
}

/// 一个完整补全中的工具调用。
///
/// 用途：非流式翻译把上游的工具调用收集成它，再写进 `message.tool_calls`。
///
/// ```
/// let c = chatnexus::providers::ToolCall { id: "call_1".into(), name: "查天气".into(), arguments: "{}".into() }; // 一次调用
/// assert_eq!(c.to_json()["type"], "function"); // OpenAI 只有 function 类型
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// 调用 id（客户端回传结果时引用）。
    pub id: String,
    /// 函数名。
    pub name: String,
    /// 参数（JSON 字符串）。
    pub arguments: String,
}

impl ToolCall {
    /// 序列化为 OpenAI 的 `tool_calls[]` 条目。
    pub fn to_json(&self) -> Value {
        json!({ "id": self.id, "type": "function", "function": { "name": self.name, "arguments": self.arguments } })
    }
}

/// 一个完整（非流式）补全，序列化为 OpenAI `chat.completion`。
///
/// 用途：Anthropic、Gemini 的非流式翻译先填好它再输出。
///
/// ```
/// use chatnexus::providers::Completion; // 完整补全
/// use chatnexus::streaming::{FinishReason, Usage}; // 结束原因与用量
/// let c = Completion { id: "msg_1".into(), created: 1, model: "演示".into(), content: Some("你好".into()),
///     tool_calls: vec![], finish: FinishReason::Stop, usage: Usage::default() }; // 一条纯文本回复
/// let v: serde_json::Value = serde_json::from_slice(&c.to_bytes()).unwrap(); // 序列化后再解析
/// assert_eq!(v["choices"][0]["message"]["content"], "你好"); // 文本放在 message.content
/// ```
#[derive(Debug, Clone)]
pub struct Completion {
    /// 补全 id。
    pub id: String,
    /// 创建时间（Unix 秒）。
    pub created: u64,
    /// 客户端可见的模型名。
    pub model: String,
    /// 文本（只有工具调用时为 `None`，序列化为 null）。
    pub content: Option<String>,
    /// 工具调用。
    pub tool_calls: Vec<ToolCall>,
    /// 结束原因。
    pub finish: FinishReason,
    /// 用量。
    pub usage: Usage,
}

impl Completion {
    /// 序列化为响应体。
    pub fn to_bytes(&self) -> Bytes {
        let mut message = json!({ "role": "assistant", "content": self.content, "refusal": null });
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = self.tool_calls.iter().map(ToolCall::to_json).collect();
        }
        let body = json!({
            "id": self.id, "object": COMPLETION_OBJECT, "created": self.created, "model": self.model,
            "choices": [ { "index": 0, "message": message, "logprobs": null, "finish_reason": self.finish.as_str() } ],
            "usage": self.usage.to_json(),
        });
        Bytes::from(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 文本_字符串与多段内容都能取出() {
        assert_eq!(text_of(&json!("你好")), Some("你好".into()));
        let parts = json!([{ "type": "text", "text": "甲" }, { "type": "image_url", "image_url": { "url": "x" } }, { "type": "text", "text": "乙" }]);
        assert_eq!(text_of(&parts), Some("甲乙".into()));
        assert_eq!(text_of(&Value::Null), None);
    }

    #[test]
    fn data_url_拆出类型与数据() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBOR"),
            Some(("image/png", "iVBOR"))
        );
        assert_eq!(parse_data_url("https://例子.com/a.png"), None);
        assert_eq!(
            parse_data_url("data:text/plain,你好"),
            None,
            "非 base64 的 data URL 不接受"
        );
    }

    #[test]
    fn 工具参数_空串为空对象_非法内容返回_400() {
        assert_eq!(tool_arguments(&json!(""), "p"), Ok(Map::new()));
        let ok = tool_arguments(&json!("{\"城市\":\"巴黎\"}"), "p").expect("合法");
        assert_eq!(ok["城市"], "巴黎");
        for bad in [json!("{\"a\":"), json!("[1]"), json!(3)] {
            let e = tool_arguments(&bad, "messages[1].tool_calls[0].function.arguments")
                .expect_err("应失败");
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("messages[1].tool_calls[0].function.arguments"))
            );
        }
    }

    #[test]
    fn 工具名_按调用_id_查找() {
        let history = vec![
            json!({ "role": "assistant", "tool_calls": [ { "id": "call_甲", "type": "function", "function": { "name": "查天气", "arguments": "{}" } } ] }),
        ];
        assert_eq!(
            tool_names_by_id(&history)
                .get("call_甲")
                .map(String::as_str),
            Some("查天气")
        );
    }

    #[test]
    fn 完整补全_只有工具调用时内容为_null() {
        let c = Completion {
            id: "msg_1".into(),
            created: 1,
            model: "演示".into(),
            content: None,
            tool_calls: vec![ToolCall {
                id: "toolu_1".into(),
                name: "查天气".into(),
                arguments: "{}".into(),
            }],
            finish: FinishReason::ToolCalls,
            usage: Usage {
                prompt: 3,
                completion: 4,
                cached: 1,
                reasoning: 0,
            },
        };
        let v: Value = serde_json::from_slice(&c.to_bytes()).expect("JSON");
        assert!(v["choices"][0]["message"]["content"].is_null());
        assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(v["usage"]["total_tokens"], 7);
    }
}
