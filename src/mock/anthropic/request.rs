//! 检查网关发来的 Anthropic 请求：认证与版本头、max_tokens、采样参数、消息结构与工具调用配对。

use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};

use crate::mock::plan::{ToolSpec, Turn};

/// 携带密钥的请求头。
const API_KEY_HEADER: &str = "x-api-key";
/// API 版本请求头。
const VERSION_HEADER: &str = "anthropic-version";
/// API 版本的写法：`YYYY-MM-DD`（真实 API 接受多个日期版本，新 SDK 发送更新的日期）。
const VERSION_PATTERN: &str = "0000-00-00";
/// 消息允许的角色。
const MESSAGE_ROLES: &[&str] = &["user", "assistant", "system"];
/// 允许的最大 temperature。
const MAX_TEMPERATURE: f64 = 1.0;
/// 空文本块的错误（真实 API 原文）。
const EMPTY_TEXT_ERROR: &str =
    "messages: text content blocks must be non-empty（文本内容块不能为空）";

/// 版本是否为 `YYYY-MM-DD` 形式的日期。
fn is_dated_version(version: &str) -> bool {
    version.len() == VERSION_PATTERN.len()
        && version.bytes().zip(VERSION_PATTERN.bytes()).all(|(b, p)| {
            if p == b'-' {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// 检查 `x-api-key`（缺失为 401）与 `anthropic-version`（缺失或不对为 400）。
pub(super) fn check_headers(session: &ServerSession) -> Result<(), (u16, String)> {
    let headers = &session.req_header().headers;
    if headers.get(API_KEY_HEADER).is_none_or(|v| v.is_empty()) {
        return Err((
            401,
            "x-api-key header is required（缺少 x-api-key 头）".to_string(),
        ));
    }
    match headers.get(VERSION_HEADER).map(|v| v.to_str()) {
        Some(Ok(version)) if is_dated_version(version) => Ok(()),
        Some(_) => Err((
            400,
            format!("{VERSION_HEADER}: invalid version（模拟器只接受 {VERSION_PATTERN} 形式的日期版本）"),
        )),
        None => Err((
            400,
            format!("{VERSION_HEADER}: header is required（缺少 {VERSION_HEADER} 头）"),
        )),
    }
}

/// 解析并校验请求体；错误为真实 API 风格的消息。
pub(super) fn parse_request(body: &[u8]) -> Result<Map<String, Value>, String> {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return Err(
            "invalid request: body must be a JSON object（请求体不是 JSON 对象）".to_string(),
        );
    };
    validate(&request)?;
    Ok(request)
}

/// 解析并校验 count_tokens 请求体（没有 `max_tokens`，其余与 Messages 相同）。
///
/// 错误：与 [`parse_request`] 相同（真实 API 的英文原文，附中文说明）。
pub(super) fn parse_count_request(body: &[u8]) -> Result<Map<String, Value>, String> {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return Err(
            "invalid request: body must be a JSON object（请求体不是 JSON 对象）".to_string(),
        );
    };
    validate_content(&request)?;
    Ok(request)
}

/// 校验请求：max_tokens 必填、采样参数、system 与 messages 的结构。
fn validate(request: &Map<String, Value>) -> Result<(), String> {
    if !request.get("max_tokens").is_some_and(Value::is_u64) {
        return Err("max_tokens: Field required（max_tokens 必填）".to_string());
    }
    validate_content(request)
}

/// 校验采样参数、system 与 messages 的结构。
fn validate_content(request: &Map<String, Value>) -> Result<(), String> {
    validate_sampling(request)?;
    if let Some(system) = request.get("system") {
        let blocks = normalized_blocks(system)
            .ok_or("system: Input should be a valid string or list（system 格式不对）")?;
        check_text_blocks(&blocks)?;
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("messages: at least one message is required（messages 不能为空）")?;
    validate_messages(messages)
}

/// temperature 不能超过 1，且不能与 top_p 同时给出（较新的 Claude 模型的规则）。
fn validate_sampling(request: &Map<String, Value>) -> Result<(), String> {
    let temperature = request.get("temperature").and_then(Value::as_f64);
    if temperature.is_some_and(|t| !(0.0..=MAX_TEMPERATURE).contains(&t)) {
        return Err(
            "temperature: Input should be less than or equal to 1（temperature 超出 0–1）"
                .to_string(),
        );
    }
    if temperature.is_some() && request.get("top_p").is_some() {
        return Err("`temperature` and `top_p` cannot both be specified for this model. Please use only one.（两者不能同时指定）".to_string());
    }
    Ok(())
}

/// 内容统一成块数组：字符串为一个文本块；既不是字符串也不是数组时为 `None`。
fn normalized_blocks(content: &Value) -> Option<Vec<Value>> {
    match content {
        Value::String(text) => Some(vec![json!({ "type": "text", "text": text })]),
        Value::Array(blocks) => Some(blocks.clone()),
        _ => None,
    }
}

/// 文本块的文本不能为空。
fn check_text_blocks(blocks: &[Value]) -> Result<(), String> {
    let empty = blocks
        .iter()
        .any(|b| b["type"] == "text" && b["text"].as_str().is_none_or(str::is_empty));
    if empty {
        return Err(EMPTY_TEXT_ERROR.to_string());
    }
    Ok(())
}

/// 逐条检查角色、内容与工具调用配对：含 tool_use 的助手消息之后，下一条必须是以对应
/// tool_result 块开头的用户消息；tool_result 必须对应上一条助手消息里的 tool_use。
fn validate_messages(messages: &[Value]) -> Result<(), String> {
    let mut pending: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        // 对话中间的 system 消息是较新的 API 接受的（anthropic SDK 2.14 有这种消息类型，Claude Code 也会发）
        if !MESSAGE_ROLES.contains(&role) {
            return Err(format!("messages.{i}.role: Input should be 'user', 'assistant' or 'system'（角色只能是 user、assistant 或 system）"));
        }
        let blocks = normalized_blocks(&message["content"])
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                format!(
                    "messages.{i}: all messages must have non-empty content（消息内容不能为空）"
                )
            })?;
        check_text_blocks(&blocks)?;
        check_tool_results(role, &blocks, &pending, i)?;
        pending = match role {
            "assistant" => tool_use_ids(&blocks),
            _ => Vec::new(),
        };
    }
    match pending.is_empty() {
        true => Ok(()),
        false => Err(missing_results(&pending, messages.len())),
    }
}

/// 块中全部 tool_use 的 id。
fn tool_use_ids(blocks: &[Value]) -> Vec<String> {
    blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .filter_map(|b| b["id"].as_str().map(str::to_string))
        .collect()
}

/// 检查第 `i` 条消息的 tool_result：必须回应 `pending`（上一条助手消息的 tool_use），且全部在开头。
fn check_tool_results(
    role: &str,
    blocks: &[Value],
    pending: &[String],
    i: usize,
) -> Result<(), String> {
    let leading: Vec<&str> = blocks
        .iter()
        .take_while(|b| b["type"] == "tool_result")
        .filter_map(|b| b["tool_use_id"].as_str())
        .collect();
    let answered = pending.is_empty()
        || (role == "user" && pending.iter().all(|id| leading.contains(&id.as_str())));
    if !answered {
        return Err(missing_results(pending, i));
    }
    for (j, block) in blocks
        .iter()
        .enumerate()
        .filter(|(_, b)| b["type"] == "tool_result")
    {
        let id = block["tool_use_id"].as_str().unwrap_or_default();
        if !pending.iter().any(|p| p == id) {
            return Err(format!("messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.（工具结果没有对应的工具调用）"));
        }
    }
    Ok(())
}

/// tool_use 之后缺少对应 tool_result 的错误（真实 API 原文）。
fn missing_results(pending: &[String], i: usize) -> String {
    format!("messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.（工具调用之后缺少工具结果）", pending.join(", "))
}

/// 从请求中抽取与格式无关的一轮信息：工具来自 `tools[].input_schema`，tool_choice 为 none 时不调用，
/// 最后一条用户消息含 tool_result 时回复文本。
pub(super) fn turn_of(request: &Map<String, Value>, body_len: usize) -> Turn {
    let tools = request
        .get("tools")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|t| {
                    let name = t["name"].as_str()?.to_string();
                    Some(ToolSpec {
                        name,
                        schema: t["input_schema"].clone(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let last_user = messages.iter().rev().find(|m| m["role"] == "user");
    let after_tool_result = last_user
        .and_then(|m| m["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
    Turn {
        tools,
        tools_allowed: request
            .get("tool_choice")
            .is_none_or(|c| c["type"] != "none"),
        after_tool_result,
        body_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::anthropic::tests::对象;

    /// 带必填字段的请求，消息由参数给出。
    fn 请求(messages: Value) -> Map<String, Value> {
        对象(json!({ "model": "claude-sonnet-4-5", "max_tokens": 64, "messages": messages }))
    }

    #[test]
    fn 校验_缺少_max_tokens_空消息与未知角色被拒绝() {
        let mut no_limit = 请求(json!([ { "role": "user", "content": "你好" } ]));
        no_limit.remove("max_tokens");
        assert!(validate(&no_limit).is_err_and(|e| e.contains("max_tokens")));
        assert!(validate(&请求(json!([]))).is_err());
        let tool = 请求(json!([ { "role": "tool", "content": "结果" } ]));
        assert!(validate(&tool).is_err_and(|e| e.contains("role")));
        let system = 请求(
            json!([ { "role": "user", "content": "你好" }, { "role": "system", "content": "规则" } ]),
        );
        assert!(validate(&system).is_ok(), "对话中间的 system 消息是合法的");
        assert!(validate(&请求(json!([ { "role": "user", "content": "你好" } ]))).is_ok());
    }

    #[test]
    fn 校验_空文本块被拒绝() {
        let empty =
            请求(json!([ { "role": "user", "content": [ { "type": "text", "text": "" } ] } ]));
        assert_eq!(validate(&empty), Err(EMPTY_TEXT_ERROR.to_string()));
        let mut system = 请求(json!([ { "role": "user", "content": "你好" } ]));
        system.insert("system".into(), json!([ { "type": "text", "text": "" } ]));
        assert_eq!(validate(&system), Err(EMPTY_TEXT_ERROR.to_string()));
        let no_content = 请求(json!([ { "role": "user", "content": [] } ]));
        assert!(validate(&no_content).is_err());
    }

    #[test]
    fn 校验_工具调用之后必须紧跟以对应工具结果开头的用户消息() {
        let call = json!({ "role": "assistant", "content": [ { "type": "tool_use", "id": "t1", "name": "查", "input": {} } ] });
        let result =
            |id: &str| json!({ "type": "tool_result", "tool_use_id": id, "content": "晴" });
        let question = json!({ "role": "user", "content": "查" });
        let ok = json!([ question, call, { "role": "user", "content": [ result("t1"), { "type": "text", "text": "继续" } ] } ]);
        assert_eq!(validate(&请求(ok)), Ok(()));
        let missing = json!([ question, call, { "role": "user", "content": "继续" } ]);
        assert!(validate(&请求(missing)).is_err_and(|e| e.contains("without `tool_result`")));
        let late = json!([ question, call, { "role": "user", "content": [ { "type": "text", "text": "先说" }, result("t1") ] } ]);
        assert!(validate(&请求(late)).is_err(), "工具结果必须在开头");
        let last = json!([question, call]);
        assert!(validate(&请求(last)).is_err(), "以工具调用结尾也缺少结果");
        let orphan = json!([ { "role": "user", "content": [ result("t9") ] } ]);
        assert!(validate(&请求(orphan)).is_err_and(|e| e.contains("unexpected `tool_use_id`")));
    }

    #[test]
    fn 校验_温度超过_1_或与_top_p_同时出现被拒绝() {
        let with = |extra: Value| {
            let mut request = 请求(json!([ { "role": "user", "content": "你好" } ]));
            request.extend(对象(extra));
            validate(&request)
        };
        assert!(with(json!({ "temperature": 1.5 })).is_err());
        assert!(
            with(json!({ "temperature": 0.5, "top_p": 0.9 })).is_err_and(|e| e.contains("top_p"))
        );
        assert_eq!(with(json!({ "temperature": 1.0 })), Ok(()));
        assert_eq!(with(json!({ "top_p": 0.9 })), Ok(()));
    }

    #[test]
    fn 轮次_工具来自_input_schema_选择_none_时不调用_工具结果之后回复文本() {
        let tools = json!([ { "name": "查天气", "input_schema": { "type": "object", "required": ["城市"] } } ]);
        let mut request = 请求(json!([ { "role": "user", "content": "查" } ]));
        request.insert("tools".into(), tools);
        let turn = turn_of(&request, 100);
        assert_eq!(
            (turn.tools.len(), turn.tools_allowed, turn.after_tool_result),
            (1, true, false)
        );
        assert_eq!(turn.tools[0].schema["required"], json!(["城市"]));
        request.insert("tool_choice".into(), json!({ "type": "none" }));
        assert!(!turn_of(&request, 100).tools_allowed);
        let answered = json!([ { "role": "user", "content": [ { "type": "tool_result", "tool_use_id": "t1" } ] } ]);
        request.insert("messages".into(), answered);
        assert!(turn_of(&request, 100).after_tool_result);
    }
}
