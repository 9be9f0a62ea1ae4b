//! Responses 请求 → 枢纽请求的翻译测试。

use bytes::Bytes;
use serde_json::{json, Value};

use super::tools::ToolKind;
use super::ResponsesRequest;

/// 解析并翻译，返回枢纽请求对象与丢弃的功能。
fn 翻译(body: Value) -> (Value, Vec<String>, ResponsesRequest) {
    let req = ResponsesRequest::parse(Bytes::from(body.to_string())).expect("校验应通过");
    let translation = req.translation().expect("应能翻译");
    let hub = Value::Object(translation.hub.body.clone());
    let dropped = translation.dropped.0.clone();
    (hub, dropped, req)
}

#[test]
fn 字符串输入与说明_成为系统消息与用户消息_缺省输出上限很宽() {
    let (hub, _, _) = 翻译(
        json!({ "model": "演示", "instructions": "简短回答", "input": "你好", "stream": true }),
    );
    assert_eq!(
        hub["messages"],
        json!([
            { "role": "system", "content": "简短回答" },
            { "role": "user", "content": "你好" }
        ])
    );
    assert_eq!(hub["max_tokens"], super::DEFAULT_MAX_OUTPUT);
    assert_eq!(hub["stream_options"], json!({ "include_usage": true }));
}

#[test]
fn 条目_开发者消息_图片_助手历史_连续调用并进一条助手消息() {
    let (hub, _, _) = 翻译(
        json!({ "model": "演示", "max_output_tokens": 500, "input": [
        { "type": "message", "role": "developer", "content": [{ "type": "input_text", "text": "沙箱规则" }] },
        { "role": "user", "content": [
            { "type": "input_text", "text": "这是什么？" },
            { "type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=" } ] },
        { "type": "reasoning", "summary": [], "encrypted_content": "gAAAA加密" },
        { "type": "message", "role": "assistant", "content": [{ "type": "output_text", "text": "我来查。", "annotations": [] }] },
        { "type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": "{\"city\":\"巴黎\"}" },
        { "type": "function_call", "call_id": "call_b", "name": "get_time", "arguments": "{}" },
        { "type": "function_call_output", "call_id": "call_a", "output": "晴" },
        { "type": "function_call_output", "call_id": "call_b", "output": [{ "type": "input_text", "text": "15:00" }] }
    ] }),
    );
    let messages = hub["messages"].as_array().expect("数组");
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(roles, ["developer", "user", "assistant", "tool", "tool"]);
    assert_eq!(messages[0]["content"], "沙箱规则");
    assert_eq!(
        messages[1]["content"][1]["image_url"],
        json!({ "url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto" })
    );
    assert_eq!(messages[2]["content"], "我来查。");
    assert_eq!(messages[2]["tool_calls"][1]["id"], "call_b");
    assert_eq!(
        messages[4],
        json!({ "role": "tool", "tool_call_id": "call_b", "content": "15:00" })
    );
    assert_eq!(hub["max_tokens"], 500);
}

#[test]
fn 工具_自由格式与命名空间展平并记下对应_内置工具丢弃() {
    let (hub, dropped, req) = 翻译(json!({ "model": "演示", "input": "改代码",
        "tools": [
            { "type": "function", "name": "shell", "parameters": null, "strict": false },
            { "type": "custom", "name": "apply_patch", "description": "打补丁", "format": { "type": "grammar", "syntax": "lark", "definition": "start: begin_patch" } },
            { "type": "namespace", "name": "浏览器", "tools": [{ "type": "function", "name": "打开", "parameters": { "type": "object" } }] },
            { "type": "web_search", "external_web_access": false }
        ],
        "tool_choice": "auto", "include": ["reasoning.encrypted_content"], "prompt_cache_key": "线程", "client_metadata": {} }));
    let names: Vec<&str> = hub["tools"]
        .as_array()
        .expect("工具")
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["shell", "apply_patch", "浏览器__打开"]);
    assert_eq!(
        hub["tools"][0]["function"]["parameters"],
        json!({ "type": "object", "properties": {} })
    );
    assert!(hub["tools"][0]["function"].get("strict").is_none());
    assert_eq!(
        hub["tools"][1]["function"]["parameters"]["required"],
        json!(["input"])
    );
    assert!(hub["tools"][1]["function"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("start: begin_patch")));
    let tools = &req.translation().expect("翻译").tools;
    assert_eq!(tools.resolve("apply_patch").kind, ToolKind::Custom);
    assert_eq!(tools.resolve("浏览器__打开").namespace, Some("浏览器"));
    for field in ["tools.web_search", "prompt_cache_key", "client_metadata"] {
        assert!(dropped.contains(&field.to_string()), "{field}：{dropped:?}");
    }
}

#[test]
fn 自由格式调用历史_包成_input_参数() {
    let (hub, _, _) = 翻译(json!({ "model": "演示", "input": [
        { "role": "user", "content": "打补丁" },
        { "type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "*** Begin Patch\n+新行\n*** End Patch" },
        { "type": "custom_tool_call_output", "call_id": "call_p", "output": "Success." }
    ] }));
    let arguments = hub["messages"][1]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .expect("参数");
    let parsed: Value = serde_json::from_str(arguments).expect("JSON");
    assert_eq!(parsed["input"], "*** Begin Patch\n+新行\n*** End Patch");
    assert_eq!(hub["messages"][2]["tool_call_id"], "call_p");
}

#[test]
fn 工具选择与结构化输出() {
    let (hub, _, _) = 翻译(json!({ "model": "演示", "input": "x",
        "tools": [{ "type": "function", "name": "查", "parameters": { "type": "object" } }],
        "tool_choice": { "type": "function", "name": "查" },
        "text": { "format": { "type": "json_schema", "name": "天气", "schema": { "type": "object" }, "strict": true }, "verbosity": "low" } }));
    assert_eq!(
        hub["tool_choice"],
        json!({ "type": "function", "function": { "name": "查" } })
    );
    assert_eq!(
        hub["response_format"],
        json!({ "type": "json_schema", "json_schema": { "name": "天气", "schema": { "type": "object" }, "strict": true } })
    );
}

#[test]
fn 需要服务端状态或无法执行的请求_返回_400() {
    for (body, param, code) in [
        (
            json!({ "model": "m", "input": "x", "previous_response_id": "resp_1" }),
            "previous_response_id",
            "previous_response_not_found",
        ),
        (
            json!({ "model": "m", "input": "x", "background": true }),
            "background",
            "unsupported_parameter",
        ),
        (
            json!({ "model": "m", "input": "x", "truncation": "auto" }),
            "truncation",
            "unsupported_parameter",
        ),
        (
            json!({ "model": "m", "input": [{ "type": "item_reference", "id": "msg_1" }] }),
            "input[0]",
            "unsupported_parameter",
        ),
        (
            json!({ "model": "m", "input": [{ "role": "user", "content": [{ "type": "input_image", "file_id": "file_1" }] }] }),
            "input[0].content[0]",
            "unsupported_content_part",
        ),
        (
            json!({ "model": "m", "input": [{ "type": "function_call_output", "output": "x" }] }),
            "input[0].call_id",
            "missing_required_parameter",
        ),
        (
            json!({ "model": "m", "input": "x", "tools": [{ "type": "web_search" }], "tool_choice": { "type": "web_search" } }),
            "tool_choice",
            "invalid_tool_choice",
        ),
    ] {
        let req = ResponsesRequest::parse(Bytes::from(body.to_string())).expect("校验应通过");
        let error = req.translation().expect_err("应翻译失败");
        assert_eq!(
            (error.status, error.param.as_deref(), error.code.as_str()),
            (400, Some(param), code),
            "{body}"
        );
    }
}

#[test]
fn 回显骨架_缺省值按_openai() {
    let req = ResponsesRequest::parse(Bytes::from(
        json!({ "model": "演示", "input": "x", "store": false }).to_string(),
    ))
    .expect("校验应通过");
    let template = req.template();
    assert_eq!(template["model"], "演示");
    assert_eq!(template["store"], false);
    assert_eq!(template["tool_choice"], "auto");
    assert_eq!(template["parallel_tool_calls"], true);
    assert_eq!(template["text"], json!({ "format": { "type": "text" } }));
    assert_eq!(template["truncation"], "disabled");
}

#[test]
fn 推理力度_映射为枢纽的_reasoning_effort() {
    for (effort, expected) in [
        ("low", Some("low")),
        ("high", Some("high")),
        ("xhigh", Some("high")),
        ("minimal", None),
    ] {
        let (hub, dropped, _) = 翻译(
            json!({ "model": "演示", "input": "x", "reasoning": { "effort": effort, "summary": "auto" } }),
        );
        assert_eq!(hub["reasoning_effort"].as_str(), expected, "{effort}");
        assert_eq!(
            dropped.contains(&"reasoning.effort".to_string()),
            expected.is_none(),
            "{effort}：{dropped:?}"
        );
    }
    let (hub, dropped, _) =
        翻译(json!({ "model": "演示", "input": "x", "reasoning": { "summary": "auto" } }));
    assert!(hub.get("reasoning_effort").is_none());
    assert!(dropped.contains(&"reasoning".to_string()));
}
