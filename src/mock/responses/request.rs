//! 检查网关发来的 Responses 请求：Bearer 认证、必填字段、输入项类型与角色、工具调用配对，
//! 并抽取与格式无关的一轮信息。未知的顶层字段、内置工具与命名空间工具一律接受（真实 API 也接受）。

use pingora::protocols::http::ServerSession;
use serde_json::{Map, Value};

use super::ApiError;
use crate::mock::plan::{ToolSpec, Turn};

/// 携带密钥的请求头。
const AUTHORIZATION: &str = "authorization";
/// Bearer 认证的前缀。
const BEARER_PREFIX: &str = "Bearer ";
/// 缺少密钥的错误（真实 API 原文）。
const MISSING_KEY: &str = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).（缺少 Authorization: Bearer 密钥）";
/// 已知的输入项类型。
const ITEM_TYPES: &[&str] = &[
    "message",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "reasoning",
    "item_reference",
    "additional_tools",
    "compaction",
    "web_search_call",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "code_interpreter_call",
    "image_generation_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
];
/// 消息允许的角色。
const ROLES: &[&str] = &["assistant", "system", "developer", "user"];
/// 用户、系统与开发者消息允许的内容片段类型。
const INPUT_PARTS: &[&str] = &["input_text", "input_image", "input_file", "input_audio"];
/// 助手消息允许的内容片段类型。
const OUTPUT_PARTS: &[&str] = &["output_text", "refusal"];
/// 工具结果项类型与它必须回应的调用项类型。
const RESULT_OF: &[(&str, &str)] = &[
    ("function_call_output", "function_call"),
    ("custom_tool_call_output", "custom_tool_call"),
];
/// 会被模拟器调用的工具类型：`function` 以 JSON 参数调用，`custom` 以自由格式文本调用。
const CALLABLE_TOOLS: &[&str] = &["function", "custom"];
/// 自由格式工具的类型。
pub(super) const CUSTOM_TOOL: &str = "custom";

/// 检查 `Authorization: Bearer <密钥>`；缺失或为空时为 401。
pub(super) fn check_auth(session: &ServerSession) -> Result<(), ApiError> {
    // 按字节检查：密钥可能含非 ASCII 字节（头值不一定是合法的可见 ASCII）
    let value = session.req_header().headers.get(AUTHORIZATION);
    let key = value
        .map(|v| v.as_bytes())
        .and_then(|v| v.strip_prefix(BEARER_PREFIX.as_bytes()))
        .map(<[u8]>::trim_ascii);
    match key {
        Some(k) if !k.is_empty() => Ok(()),
        _ => Err(ApiError::new(401, MISSING_KEY)),
    }
}

/// 解析并校验请求体；错误为真实 API 风格的 400。
pub(super) fn parse_request(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return Err(ApiError::new(
            400,
            "We could not parse the JSON body of your request.（请求体不是 JSON 对象）",
        ));
    };
    validate(&request)?;
    Ok(request)
}

/// 校验顶层：model 必填、stream 为布尔、tools 与 input 的结构。
fn validate(request: &Map<String, Value>) -> Result<(), ApiError> {
    if !request.get("model").is_some_and(Value::is_string) {
        return Err(ApiError::missing("model"));
    }
    if request
        .get("stream")
        .is_some_and(|s| !s.is_boolean() && !s.is_null())
    {
        return Err(ApiError::invalid_type("stream", "a boolean"));
    }
    if let Some(tools) = request.get("tools").filter(|t| !t.is_null()) {
        let tools = tools
            .as_array()
            .ok_or_else(|| ApiError::invalid_type("tools", "an array"))?;
        validate_tools(tools, "tools")?;
    }
    match request.get("input") {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) => validate_items(items),
        Some(_) => Err(ApiError::invalid_type(
            "input",
            "one of a string or array of input items",
        )),
        None => Err(ApiError::missing("input")),
    }
}

/// 每个工具都要有 `type`；可调用的工具（function、custom）要有扁平的 `name`
/// （Chat 形状的 `{type, function: {name}}` 在这里被拒绝，暴露网关的翻译错误）。
fn validate_tools(tools: &[Value], at: &str) -> Result<(), ApiError> {
    for (i, tool) in tools.iter().enumerate() {
        let Some(kind) = tool["type"].as_str() else {
            return Err(ApiError::missing(&format!("{at}[{i}].type")));
        };
        if CALLABLE_TOOLS.contains(&kind) && !tool["name"].is_string() {
            return Err(ApiError::missing(&format!("{at}[{i}].name")));
        }
    }
    Ok(())
}

/// 逐项检查类型、消息角色与内容、调用项的必填字段，以及工具结果是否回应前面的调用。
fn validate_items(items: &[Value]) -> Result<(), ApiError> {
    let mut calls: Vec<(&str, &str)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item_type(item).ok_or_else(|| ApiError::missing(&format!("input[{i}].type")))?;
        if !ITEM_TYPES.contains(&kind) {
            return Err(ApiError::invalid_value(
                &format!("input[{i}].type"),
                kind,
                ITEM_TYPES,
            ));
        }
        match kind {
            "message" => validate_message(item, i)?,
            "function_call" | "custom_tool_call" => {
                let field = if kind == "function_call" {
                    "arguments"
                } else {
                    "input"
                };
                require_strings(item, i, &["call_id", "name", field])?;
                calls.push((kind, item["call_id"].as_str().unwrap_or_default()));
            }
            "function_call_output" | "custom_tool_call_output" => {
                check_result(item, i, kind, &calls)?
            }
            "reasoning" if !item["summary"].is_array() => {
                return Err(ApiError::missing(&format!("input[{i}].summary")));
            }
            "additional_tools" => {
                let tools = item["tools"].as_array().map(Vec::as_slice);
                validate_tools(tools.unwrap_or_default(), &format!("input[{i}].tools"))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// 输入项的类型：没写 `type` 但有 `role` 的是简写的消息。
fn item_type(item: &Value) -> Option<&str> {
    match item["type"].as_str() {
        Some(kind) => Some(kind),
        None => item.get("role").map(|_| "message"),
    }
}

/// 这些字段必须是字符串。
fn require_strings(item: &Value, i: usize, fields: &[&str]) -> Result<(), ApiError> {
    match fields.iter().find(|f| !item[**f].is_string()) {
        Some(field) => Err(ApiError::missing(&format!("input[{i}].{field}"))),
        None => Ok(()),
    }
}

/// 工具结果必须带 `call_id` 与 `output`，且回应前面同类的调用项（真实 API 原文）。
fn check_result(
    item: &Value,
    i: usize,
    kind: &str,
    calls: &[(&str, &str)],
) -> Result<(), ApiError> {
    let call_kind = RESULT_OF
        .iter()
        .find(|(result, _)| *result == kind)
        .map_or("", |(_, call)| call);
    let Some(call_id) = item["call_id"].as_str() else {
        return Err(ApiError::missing(&format!("input[{i}].call_id")));
    };
    if item.get("output").is_none_or(Value::is_null) {
        return Err(ApiError::missing(&format!("input[{i}].output")));
    }
    if !calls.contains(&(call_kind, call_id)) {
        let what = call_kind.replace('_', " ");
        let message = format!("No tool call found for {what} output with call_id {call_id}.（工具结果没有对应的工具调用）");
        return Err(ApiError::new(400, &message).param("input"));
    }
    Ok(())
}

/// 消息：角色合法；内容为字符串或片段数组，片段类型与角色相符（助手用 output_text，其余用 input_text 等）。
fn validate_message(item: &Value, i: usize) -> Result<(), ApiError> {
    let role = item["role"].as_str().unwrap_or_default();
    if !ROLES.contains(&role) {
        return Err(ApiError::invalid_value(
            &format!("input[{i}].role"),
            role,
            ROLES,
        ));
    }
    let parts = match &item["content"] {
        Value::String(_) => return Ok(()),
        Value::Array(parts) => parts,
        _ => return Err(ApiError::missing(&format!("input[{i}].content"))),
    };
    let allowed = if role == "assistant" {
        OUTPUT_PARTS
    } else {
        INPUT_PARTS
    };
    for (j, part) in parts.iter().enumerate() {
        let kind = part["type"].as_str().unwrap_or_default();
        if !allowed.contains(&kind) {
            let at = format!("input[{i}].content[{j}].type");
            return Err(ApiError::invalid_value(&at, kind, allowed));
        }
    }
    Ok(())
}

/// 请求里可调用的工具（`tools` 与输入中 `additional_tools` 项里的 function、custom），
/// 按 `tool_choice` 指名的工具过滤；返回（类型, 名称, 参数 Schema）。
fn callable_tools(request: &Map<String, Value>) -> Vec<(String, ToolSpec)> {
    let declared = request.get("tools").and_then(Value::as_array);
    let additional = request
        .get("input")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "additional_tools")
        .filter_map(|item| item["tools"].as_array());
    let chosen = request.get("tool_choice").and_then(|c| c["name"].as_str());
    declared
        .into_iter()
        .chain(additional)
        .flatten()
        .filter(|t| {
            t["type"]
                .as_str()
                .is_some_and(|k| CALLABLE_TOOLS.contains(&k))
        })
        .filter(|t| chosen.is_none_or(|name| t["name"] == name))
        .filter_map(|t| {
            let spec = ToolSpec {
                name: t["name"].as_str()?.to_string(),
                schema: t["parameters"].clone(),
            };
            Some((t["type"].as_str()?.to_string(), spec))
        })
        .collect()
}

/// 从请求中抽取一轮信息与自由格式工具的名称：tool_choice 为 none 时不调用，
/// 最后一个输入项是工具结果时回复文本。
pub(super) fn turn_of(request: &Map<String, Value>, body_len: usize) -> (Turn, Vec<String>) {
    // 保持请求里的声明顺序：自由格式工具与函数工具交错时，先声明的先被调用
    let tools = callable_tools(request);
    let custom_names = tools
        .iter()
        .filter(|(kind, _)| kind == CUSTOM_TOOL)
        .map(|(_, t)| t.name.clone())
        .collect();
    let last = request
        .get("input")
        .and_then(Value::as_array)
        .and_then(|items| items.last());
    let after_tool_result =
        last.is_some_and(|item| RESULT_OF.iter().any(|(result, _)| item["type"] == *result));
    let turn = Turn {
        tools: tools.into_iter().map(|(_, t)| t).collect(),
        tools_allowed: request.get("tool_choice").is_none_or(|c| c != "none"),
        after_tool_result,
        body_len,
    };
    (turn, custom_names)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// 以给定输入项组成的请求。
    fn 请求(input: Value) -> Map<String, Value> {
        json!({ "model": "gpt-5.3-codex", "input": input })
            .as_object()
            .cloned()
            .expect("测试数据必须是对象")
    }

    /// 校验失败时的消息（校验通过时测试失败）。
    fn 错误(request: &Map<String, Value>) -> ApiError {
        validate(request).expect_err("这个请求应被拒绝")
    }

    #[test]
    fn 校验_缺少_model_或_input_类型不对被拒绝() {
        let mut request = 请求(json!("你好"));
        assert!(validate(&request).is_ok(), "字符串输入合法");
        request.remove("model");
        assert_eq!(
            错误(&request).message,
            "Missing required parameter: 'model'.（缺少必填参数）"
        );
        let object_input = 请求(json!({ "role": "user", "content": "你好" }));
        assert_eq!(错误(&object_input).param.as_deref(), Some("input"));
    }

    #[test]
    fn 校验_未知的输入项类型被拒绝_消息引用真实_api_原文() {
        let request = 请求(
            json!([ { "role": "user", "content": "你好" }, { "type": "tool_result", "content": "晴" } ]),
        );
        let error = 错误(&request);
        assert_eq!(error.param.as_deref(), Some("input[1].type"));
        assert!(
            error
                .message
                .starts_with("Invalid value: 'tool_result'. Supported values are: 'message',"),
            "消息：{}",
            error.message
        );
        assert!(
            error.message.contains("（"),
            "附中文说明：{}",
            error.message
        );
    }

    #[test]
    fn 校验_角色与内容片段类型必须合法() {
        let tool_role = 请求(json!([ { "role": "tool", "content": "晴" } ]));
        assert_eq!(错误(&tool_role).param.as_deref(), Some("input[0].role"));
        let chat_part = 请求(
            json!([ { "role": "user", "content": [ { "type": "text", "text": "你好" } ] } ]),
        );
        assert_eq!(
            错误(&chat_part).param.as_deref(),
            Some("input[0].content[0].type")
        );
        let assistant_input = 请求(
            json!([ { "type": "message", "role": "assistant", "content": [ { "type": "input_text", "text": "答" } ] } ]),
        );
        assert!(错误(&assistant_input)
            .message
            .contains("'output_text' and 'refusal'"));
        let ok = 请求(
            json!([ { "type": "message", "role": "developer", "content": [ { "type": "input_text", "text": "规则" } ] }, { "type": "message", "role": "assistant", "content": [ { "type": "output_text", "text": "好" } ] } ]),
        );
        assert!(validate(&ok).is_ok());
    }

    #[test]
    fn 校验_工具结果必须回应前面同类的调用() {
        let call = json!({ "type": "function_call", "call_id": "call_甲", "name": "查天气", "arguments": "{}" });
        let output =
            |id: &str| json!({ "type": "function_call_output", "call_id": id, "output": "晴" });
        assert!(validate(&请求(json!([call, output("call_甲")]))).is_ok());
        let orphan = 错误(&请求(json!([call, output("call_乙")])));
        assert_eq!(
            orphan.message,
            "No tool call found for function call output with call_id call_乙.（工具结果没有对应的工具调用）"
        );
        let before = 请求(json!([output("call_甲"), call]));
        assert!(validate(&before).is_err(), "结果在调用之前也不行");
        let custom_output =
            json!({ "type": "custom_tool_call_output", "call_id": "call_甲", "output": "完成" });
        assert!(
            错误(&请求(json!([call, custom_output])))
                .message
                .contains("custom tool call output"),
            "自由格式工具的结果不能回应函数调用"
        );
    }

    #[test]
    fn 校验_接受_codex_的请求_推理项_内置与命名空间工具_未知字段() {
        let mut request = 请求(json!([
            { "type": "message", "role": "user", "content": [ { "type": "input_text", "text": "修好测试" } ] },
            { "type": "reasoning", "summary": [ { "type": "summary_text", "text": "想" } ], "encrypted_content": "gAAAA密文" },
            { "type": "custom_tool_call", "call_id": "call_补丁", "name": "apply_patch", "input": "*** Begin Patch" },
            { "type": "custom_tool_call_output", "call_id": "call_补丁", "output": "Success." },
        ]));
        request.insert("tools".into(), json!([ { "type": "web_search", "external_web_access": false }, { "type": "namespace", "name": "mcp", "tools": [] }, { "type": "custom", "name": "apply_patch" } ]));
        request.insert("client_metadata".into(), json!({ "新字段": true }));
        request.insert("reasoning".into(), Value::Null);
        assert!(validate(&request).is_ok());
        let no_summary = 请求(json!([ { "type": "reasoning", "encrypted_content": "gAAAA" } ]));
        assert_eq!(错误(&no_summary).param.as_deref(), Some("input[0].summary"));
    }

    #[test]
    fn 校验_chat_形状的函数工具缺少扁平名称被拒绝() {
        let mut request = 请求(json!("你好"));
        request.insert(
            "tools".into(),
            json!([ { "type": "function", "function": { "name": "查天气" } } ]),
        );
        assert_eq!(错误(&request).param.as_deref(), Some("tools[0].name"));
    }

    #[test]
    fn 轮次_只调用函数与自由格式工具_选择_none_时不调用_工具结果之后回复文本() {
        let mut request = 请求(json!([ { "role": "user", "content": "查" } ]));
        request.insert("tools".into(), json!([
            { "type": "web_search" },
            { "type": "namespace", "name": "mcp", "tools": [ { "type": "function", "name": "内部" } ] },
            { "type": "custom", "name": "apply_patch" },
            { "type": "function", "name": "查天气", "parameters": { "type": "object", "required": ["城市"] } },
        ]));
        let (turn, custom) = turn_of(&request, 100);
        let names: Vec<&str> = turn.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["apply_patch", "查天气"]);
        assert_eq!(custom, ["apply_patch"]);
        assert_eq!(turn.tools[1].schema["required"], json!(["城市"]));
        assert!(turn.tools_allowed && !turn.after_tool_result);
        request.insert(
            "tool_choice".into(),
            json!({ "type": "function", "name": "查天气" }),
        );
        assert_eq!(
            turn_of(&request, 100).0.tools.len(),
            1,
            "指名的工具只调用它"
        );
        request.insert("tool_choice".into(), json!("none"));
        assert!(!turn_of(&request, 100).0.tools_allowed);
        let answered = json!([ { "type": "function_call", "call_id": "c", "name": "查天气", "arguments": "{}" }, { "type": "function_call_output", "call_id": "c", "output": "晴" } ]);
        request.insert("input".into(), answered);
        assert!(turn_of(&request, 100).0.after_tool_result);
    }
}
