//! 模拟器的“模型”：根据请求决定回复文本还是调用工具，以及报告多少 token。
//!
//! 各家格式的模拟器先把请求解析成中立的 [`Turn`]，再由 [`plan`] 决定 [`Reply`]，最后按自家格式写出。

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use super::MockSettings;
use crate::streaming::estimate_tokens;

/// 一轮最多并行调用的工具数。
pub(super) const MAX_PARALLEL_CALLS: usize = 2;
/// 字符串参数的示例值。
const SAMPLE_TEXT: &str = "巴黎";

/// 生成 id 的计数器。
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// 一个可调用的工具：名称与参数的 JSON Schema。
pub(super) struct ToolSpec {
    pub name: String,
    pub schema: Value,
}

/// 从各家请求中抽取出的、与格式无关的一轮对话信息。
#[derive(Default)]
pub(super) struct Turn {
    /// 请求里声明的工具。
    pub tools: Vec<ToolSpec>,
    /// 是否允许调用工具（`tool_choice` 不是 none）。
    pub tools_allowed: bool,
    /// 最后一条消息是否是工具结果（此时回复文本，结束工具循环）。
    pub after_tool_result: bool,
    /// 请求体字节数（估算输入 token）。
    pub body_len: usize,
}

/// 一个计划中的工具调用。
pub(super) struct PlannedCall {
    pub name: String,
    pub arguments: Map<String, Value>,
}

/// 模拟器的回复。
pub(super) enum Reply {
    /// 分块的文本。
    Text(Vec<String>),
    /// 并行的工具调用。
    Tools(Vec<PlannedCall>),
}

/// 用 OpenAI 语义表示的用量：`prompt` 含 `cached`，`completion` 含 `reasoning`。
#[derive(Clone, Copy)]
pub(super) struct MockUsage {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub reasoning: u64,
}

/// 决定回复：有可用工具且上一条不是工具结果时调用工具（最多两个并行），否则回复文本。
pub(super) fn plan(settings: &MockSettings, turn: &Turn) -> Reply {
    if settings.call_tools
        && turn.tools_allowed
        && !turn.after_tool_result
        && !turn.tools.is_empty()
    {
        let calls = turn
            .tools
            .iter()
            .take(MAX_PARALLEL_CALLS)
            .map(|t| PlannedCall {
                name: t.name.clone(),
                arguments: sample_arguments(&t.schema),
            })
            .collect();
        return Reply::Tools(calls);
    }
    Reply::Text(split_reply(&settings.reply, settings.chunks))
}

/// 本轮报告的用量。
pub(super) fn usage(settings: &MockSettings, turn: &Turn) -> MockUsage {
    let estimated = estimate_tokens(turn.body_len).max(1);
    let prompt = settings
        .prompt_tokens
        .unwrap_or(estimated)
        .max(settings.cached_tokens);
    let completion = settings
        .completion_tokens
        .unwrap_or(settings.chunks as u64)
        .max(settings.reasoning_tokens);
    MockUsage {
        prompt,
        completion,
        cached: settings.cached_tokens,
        reasoning: settings.reasoning_tokens,
    }
}

/// 按参数 Schema 生成示例参数：必填的每个属性给一个合乎类型的值。
fn sample_arguments(schema: &Value) -> Map<String, Value> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut args = Map::new();
    if let Some(properties) = schema["properties"].as_object() {
        for (name, prop) in properties
            .iter()
            .filter(|(n, _)| required.contains(&n.as_str()))
        {
            let value = match prop["type"].as_str() {
                Some("integer") | Some("number") => json!(1),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => json!(SAMPLE_TEXT),
            };
            args.insert(name.clone(), value);
        }
    }
    args
}

/// 把回复按字符大致均分为 `n` 块（至少一块）。
pub(super) fn split_reply(reply: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = reply.chars().collect();
    let n = n.max(1);
    let per = chars.len().div_ceil(n).max(1);
    let mut pieces: Vec<String> = chars.chunks(per).map(|c| c.iter().collect()).collect();
    pieces.resize(n, String::new());
    pieces
}

/// 生成带前缀的递增 id（如 `msg_mock_3`）。
pub(super) fn next_id(prefix: &str) -> String {
    format!("{prefix}{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 工具(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            schema: json!({ "type": "object", "properties": { "城市": { "type": "string" }, "天数": { "type": "integer" }, "可选": { "type": "string" } }, "required": ["城市", "天数"] }),
        }
    }

    #[test]
    fn 分块_均分且块数准确() {
        assert_eq!(
            split_reply("你好世界啊", 2),
            vec!["你好世".to_string(), "界啊".to_string()]
        );
        assert_eq!(split_reply("短", 3).len(), 3, "块数多于字符时以空块补齐");
        assert_eq!(split_reply("短", 3).concat(), "短");
    }

    #[test]
    fn 计划_有工具时并行调用_工具结果之后回复文本() {
        let settings = MockSettings::default();
        let mut turn = Turn {
            tools: vec![工具("甲"), 工具("乙"), 工具("丙")],
            tools_allowed: true,
            ..Turn::default()
        };
        let Reply::Tools(calls) = plan(&settings, &turn) else {
            panic!("应调用工具")
        };
        assert_eq!(calls.len(), MAX_PARALLEL_CALLS);
        assert_eq!(
            Value::Object(calls[0].arguments.clone()),
            json!({ "城市": "巴黎", "天数": 1 })
        );
        turn.after_tool_result = true;
        assert!(
            matches!(plan(&settings, &turn), Reply::Text(_)),
            "工具结果之后应回复文本"
        );
    }

    #[test]
    fn 用量_输入含缓存_输出含推理() {
        let settings = MockSettings {
            prompt_tokens: Some(10),
            completion_tokens: Some(5),
            cached_tokens: 4,
            reasoning_tokens: 2,
            ..MockSettings::default()
        };
        let u = usage(&settings, &Turn::default());
        assert_eq!(
            (u.prompt, u.completion, u.cached, u.reasoning),
            (10, 5, 4, 2)
        );
    }
}
