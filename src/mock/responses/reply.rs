//! Responses 回复的线上形状（参考文档 §R4）：完整的 response 对象、输出项（推理、消息、函数调用、
//! 自由格式工具调用）、请求字段的回显与用量。

use serde_json::{json, Map, Value};

use crate::mock::plan::{self, MockUsage, Reply};

/// 消息项 id 前缀。
const MESSAGE_ID_PREFIX: &str = "msg_mock_";
/// 函数调用项 id 前缀（与 `call_id` 不同）。
const FUNCTION_ITEM_PREFIX: &str = "fc_mock_";
/// 自由格式工具调用项 id 前缀。
const CUSTOM_ITEM_PREFIX: &str = "ctc_mock_";
/// 推理项 id 前缀。
const REASONING_ID_PREFIX: &str = "rs_mock_";
/// 工具调用 `call_id` 前缀（工具结果以它回应）。
const CALL_ID_PREFIX: &str = "call_mock_";
/// 推理摘要的文本。
pub(super) const REASONING_SUMMARY: &str = "先弄清用户要什么，再组织回答。";
/// 推理密文的前缀（形似真实 API 的不透明密文）。
pub(super) const ENCRYPTED_PREFIX: &str = "gAAAAABmock_";
/// 调用自由格式工具时给的输入文本。
pub(super) const CUSTOM_INPUT: &str = "模拟器给自由格式工具的输入";

/// 一次回复的公共信息。
pub(super) struct Meta {
    pub(super) id: String,
    pub(super) created_at: u64,
    pub(super) model: String,
    /// 回显的请求字段（缺省值已补齐）。
    pub(super) echo: Map<String, Value>,
    pub(super) usage: MockUsage,
}

/// 一个输出项的内容。
pub(super) enum Content {
    Reasoning {
        encrypted: Option<String>,
    },
    Message {
        pieces: Vec<String>,
    },
    Function {
        call_id: String,
        name: String,
        arguments: String,
    },
    Custom {
        call_id: String,
        name: String,
    },
}

/// 一个输出项：id 与内容。
pub(super) struct OutputItem {
    pub(super) id: String,
    pub(super) content: Content,
}

/// 回复的输出项：可选的推理项在前；文本回复一个消息项，工具回复每个调用一项
/// （名称在 `custom` 里的以自由格式调用，其余以 JSON 参数调用）。
pub(super) fn items_of(
    reply: &Reply,
    custom: &[String],
    reasoning: bool,
    encrypted: bool,
) -> Vec<OutputItem> {
    let mut items = Vec::new();
    if reasoning {
        let id = plan::next_id(REASONING_ID_PREFIX);
        let encrypted = encrypted.then(|| format!("{ENCRYPTED_PREFIX}{id}"));
        items.push(OutputItem {
            id,
            content: Content::Reasoning { encrypted },
        });
    }
    match reply {
        Reply::Text(pieces) => items.push(OutputItem {
            id: plan::next_id(MESSAGE_ID_PREFIX),
            content: Content::Message {
                pieces: pieces.clone(),
            },
        }),
        Reply::Tools(calls) => items.extend(calls.iter().map(|call| {
            let call_id = plan::next_id(CALL_ID_PREFIX);
            let name = call.name.clone();
            if custom.contains(&call.name) {
                let id = plan::next_id(CUSTOM_ITEM_PREFIX);
                return OutputItem {
                    id,
                    content: Content::Custom { call_id, name },
                };
            }
            let arguments = Value::Object(call.arguments.clone()).to_string();
            let id = plan::next_id(FUNCTION_ITEM_PREFIX);
            OutputItem {
                id,
                content: Content::Function {
                    call_id,
                    name,
                    arguments,
                },
            }
        })),
    }
    items
}

/// 补齐缺省值后的回显字段：请求里给了（且不是 null）就回显请求的值，`text` 与缺省值合并。
pub(super) fn echo_of(request: &Map<String, Value>) -> Map<String, Value> {
    let defaults = json!({
        "instructions": null, "max_output_tokens": null, "max_tool_calls": null,
        "parallel_tool_calls": true, "previous_response_id": null, "prompt_cache_key": null,
        "reasoning": { "effort": null, "summary": null }, "safety_identifier": null,
        "service_tier": "default", "store": true, "temperature": 1.0,
        "text": { "format": { "type": "text" }, "verbosity": "medium" },
        "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0,
        "truncation": "disabled", "user": null, "metadata": {},
    });
    let mut echo = defaults.as_object().cloned().unwrap_or_default();
    for (key, value) in echo.iter_mut() {
        match (request.get(key), value) {
            (Some(Value::Object(given)), Value::Object(default)) if key == "text" => {
                default.extend(given.clone());
            }
            // 真实 API 报告实际的服务等级，不回显请求的 auto
            _ if key == "service_tier" => {}
            (Some(given), value) if !given.is_null() => *value = given.clone(),
            _ => {}
        }
    }
    echo
}

/// 输出项的完整形状（`status` 为 completed）。
pub(super) fn full_item(item: &OutputItem) -> Value {
    let id = &item.id;
    match &item.content {
        Content::Reasoning { encrypted } => {
            let mut full = json!({ "id": id, "type": "reasoning", "summary": [ summary_part(REASONING_SUMMARY) ] });
            if let Some(encrypted) = encrypted {
                full["encrypted_content"] = json!(encrypted);
            }
            full["status"] = json!("completed");
            full
        }
        Content::Message { pieces } => json!({
            "id": id, "type": "message", "status": "completed",
            "content": [ text_part(&pieces.concat()) ], "role": "assistant",
        }),
        Content::Function {
            call_id,
            name,
            arguments,
        } => json!({
            "id": id, "type": "function_call", "status": "completed",
            "arguments": arguments, "call_id": call_id, "name": name,
        }),
        Content::Custom { call_id, name } => json!({
            "id": id, "type": "custom_tool_call", "status": "completed",
            "call_id": call_id, "input": CUSTOM_INPUT, "name": name,
        }),
    }
}

/// 输出项刚打开时的形状：`status` 为 in_progress，内容为空。
pub(super) fn opened_item(item: &OutputItem) -> Value {
    let mut opened = full_item(item);
    opened["status"] = json!("in_progress");
    match &item.content {
        Content::Reasoning { .. } => {
            opened["summary"] = json!([]);
            if let Some(o) = opened.as_object_mut() {
                o.remove("encrypted_content");
            }
        }
        Content::Message { .. } => opened["content"] = json!([]),
        Content::Function { .. } => opened["arguments"] = json!(""),
        Content::Custom { .. } => opened["input"] = json!(""),
    }
    opened
}

/// `output_text` 内容片段。
pub(super) fn text_part(text: &str) -> Value {
    json!({ "type": "output_text", "annotations": [], "logprobs": [], "text": text })
}

/// `summary_text` 摘要片段。
pub(super) fn summary_part(text: &str) -> Value {
    json!({ "type": "summary_text", "text": text })
}

/// 用量（OpenAI 语义：输入含缓存、输出含推理），两个 details 对象总是给出。
fn usage_of(u: &MockUsage) -> Value {
    json!({
        "input_tokens": u.prompt,
        "input_tokens_details": { "cached_tokens": u.cached, "cache_write_tokens": 0 },
        "output_tokens": u.completion,
        "output_tokens_details": { "reasoning_tokens": u.reasoning },
        "total_tokens": u.prompt + u.completion,
    })
}

/// response 对象：给定状态、输出、用量与错误，其余字段为回显。
pub(super) fn response_object(
    m: &Meta,
    status: &str,
    output: Vec<Value>,
    usage: Value,
    error: Value,
) -> Value {
    let mut body = json!({
        "id": m.id, "object": "response", "created_at": m.created_at, "status": status,
        "background": false, "error": error, "incomplete_details": null, "model": m.model,
        "output": output,
    });
    if let Some(b) = body.as_object_mut() {
        b.extend(m.echo.clone());
        b.insert("usage".into(), usage);
    }
    body
}

/// 非流式响应体：status completed、全部输出项与用量。
pub(super) fn full_response(m: &Meta, items: &[OutputItem]) -> Value {
    let output = items.iter().map(full_item).collect();
    response_object(m, "completed", output, usage_of(&m.usage), Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::responses::tests::{信息, 工具回复};

    #[test]
    fn 完整响应_文本回复_用量与回显字段齐全() {
        let items = items_of(
            &Reply::Text(vec!["你".into(), "好".into()]),
            &[],
            false,
            false,
        );
        let body = full_response(&信息(), &items);
        assert_eq!(
            (
                body["object"].clone(),
                body["status"].clone(),
                body["model"].clone()
            ),
            (json!("response"), json!("completed"), json!("gpt-5"))
        );
        assert_eq!(body["output"][0]["content"][0], text_part("你好"));
        assert!(body["output"][0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with(MESSAGE_ID_PREFIX)));
        assert_eq!(
            body["usage"],
            json!({ "input_tokens": 30, "input_tokens_details": { "cached_tokens": 10, "cache_write_tokens": 0 }, "output_tokens": 12, "output_tokens_details": { "reasoning_tokens": 5 }, "total_tokens": 42 })
        );
        assert_eq!(body["text"]["format"]["type"], "text");
        assert_eq!(
            (
                body["tool_choice"].clone(),
                body["parallel_tool_calls"].clone()
            ),
            (json!("auto"), json!(true))
        );
        assert!(body["error"].is_null() && body["instructions"].is_null());
    }

    #[test]
    fn 回显_请求的值优先_text_合并_null_用缺省值() {
        let request = json!({ "instructions": "你是助手", "store": false, "reasoning": null, "text": { "verbosity": "low" }, "tools": [ { "type": "web_search" } ], "service_tier": "auto" });
        let echo = echo_of(request.as_object().expect("对象"));
        assert_eq!(echo["instructions"], "你是助手");
        assert_eq!(echo["store"], false);
        assert_eq!(
            echo["reasoning"],
            json!({ "effort": null, "summary": null })
        );
        assert_eq!(
            echo["text"],
            json!({ "format": { "type": "text" }, "verbosity": "low" })
        );
        assert_eq!(echo["tools"][0]["type"], "web_search");
        assert_eq!(echo["service_tier"], "default");
    }

    #[test]
    fn 工具回复_函数与自由格式调用各一项_call_id_与项_id_不同() {
        let items = items_of(&工具回复(), &["apply_patch".to_string()], false, false);
        let body = full_response(&信息(), &items);
        let function = &body["output"][0];
        assert_eq!(function["type"], "function_call");
        assert_eq!(function["arguments"], "{\"城市\":\"巴黎\"}");
        assert!(function["id"]
            .as_str()
            .is_some_and(|id| id.starts_with(FUNCTION_ITEM_PREFIX)));
        assert!(function["call_id"]
            .as_str()
            .is_some_and(|id| id.starts_with(CALL_ID_PREFIX)));
        let custom = &body["output"][1];
        assert_eq!(
            (custom["type"].clone(), custom["input"].clone()),
            (json!("custom_tool_call"), json!(CUSTOM_INPUT))
        );
        assert_eq!(
            body["output"].as_array().map(Vec::len),
            Some(2),
            "工具回复没有消息项"
        );
    }
}
