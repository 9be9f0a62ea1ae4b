//! Messages 请求 → 枢纽请求的翻译测试。

use bytes::Bytes;
use serde_json::{json, Value};

use super::MessagesRequest;

/// 测试用的图片地址。
const IMAGE_URL: &str = "https://example.com/猫.png";

/// 解析并翻译，返回枢纽请求对象与丢弃的功能。
fn 翻译(body: Value) -> (Value, Vec<String>) {
    let req =
        MessagesRequest::parse(Bytes::from(body.to_string()), Vec::new()).expect("校验应通过");
    let hub = req.hub().expect("应能翻译").body.clone();
    let dropped = req.dropped().map(|d| d.0.clone()).unwrap_or_default();
    (Value::Object(hub), dropped)
}

fn 基本(messages: Value) -> Value {
    json!({ "model": "演示", "max_tokens": 100, "messages": messages })
}

#[test]
fn 系统提示_字符串与块都成为开头的系统消息_去掉计费归属块() {
    let mut body = 基本(json!([{ "role": "user", "content": "你好" }]));
    body["system"] = json!([
        { "type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=0;" },
        { "type": "text", "text": "你是 Claude Code。", "cache_control": { "type": "ephemeral" } },
        { "type": "text", "text": "请用中文回答。" }
    ]);
    let (hub, _) = 翻译(body);
    assert_eq!(
        hub["messages"][0],
        json!({ "role": "system", "content": "你是 Claude Code。\n\n请用中文回答。" })
    );
    assert_eq!(
        hub["messages"][1],
        json!({ "role": "user", "content": "你好" })
    );
    let mut body = 基本(json!([{ "role": "user", "content": "你好" }]));
    body["system"] = json!("简短回答");
    assert_eq!(翻译(body).0["messages"][0]["content"], "简短回答");
}

#[test]
fn 对话中间的系统消息_原位翻译() {
    let (hub, _) = 翻译(基本(json!([
        { "role": "user", "content": "甲" },
        { "role": "assistant", "content": "乙" },
        { "role": "system", "content": [{ "type": "text", "text": "换个语气" }] },
        { "role": "user", "content": "丙" }
    ])));
    let roles: Vec<&str> = hub["messages"]
        .as_array()
        .expect("数组")
        .iter()
        .map(|m| m["role"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(roles, ["user", "assistant", "system", "user"]);
    assert_eq!(hub["messages"][2]["content"], "换个语气");
}

#[test]
fn 工具结果_排在用户文本之前_同一_id_只取第一个_出错加前缀() {
    let (hub, dropped) = 翻译(基本(json!([
        { "role": "user", "content": "查" },
        { "role": "assistant", "content": [
            { "type": "thinking", "thinking": "想一想", "signature": "签名" },
            { "type": "tool_use", "id": "t1", "name": "读文件", "input": { "路径": "a.rs" } },
            { "type": "tool_use", "id": "t2", "name": "运行", "input": {} } ] },
        { "role": "user", "content": [
            { "type": "text", "text": "继续" },
            { "type": "tool_result", "tool_use_id": "t1", "content": "文件内容" },
            { "type": "tool_result", "tool_use_id": "t1", "content": "重复的结果" },
            { "type": "tool_result", "tool_use_id": "t2", "content": [{ "type": "text", "text": "失败" }], "is_error": true } ] }
    ])));
    let messages = hub["messages"].as_array().expect("数组");
    assert_eq!(
        messages[1]["content"],
        Value::Null,
        "只有工具调用时内容为 null"
    );
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["arguments"],
        r#"{"路径":"a.rs"}"#
    );
    assert_eq!(
        messages[2],
        json!({ "role": "tool", "tool_call_id": "t1", "content": "文件内容" })
    );
    assert_eq!(messages[3]["content"], "[工具执行出错] 失败");
    assert_eq!(messages[4], json!({ "role": "user", "content": "继续" }));
    assert_eq!(messages.len(), 5);
    assert!(
        dropped.contains(&"duplicate_tool_result".to_string()),
        "{dropped:?}"
    );
}

#[test]
fn 图片与空文本_图片成为_data_url_空文本跳过() {
    let (hub, _) = 翻译(基本(json!([{ "role": "user", "content": [
        { "type": "text", "text": "" },
        { "type": "text", "text": "这是什么？" },
        { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
        { "type": "image", "source": { "type": "url", "url": IMAGE_URL } }
    ] }])));
    let parts = hub["messages"][0]["content"]
        .as_array()
        .expect("部分数组")
        .clone();
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert_eq!(
        parts[1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
    assert_eq!(parts[2]["image_url"]["url"], IMAGE_URL);
}

#[test]
fn 工具定义与选择_映射为函数_服务端工具丢弃() {
    let mut body = 基本(json!([{ "role": "user", "content": "搜" }]));
    body["tools"] = json!([
        { "name": "Bash", "description": "运行命令", "input_schema": { "type": "object" }, "cache_control": { "type": "ephemeral" }, "defer_loading": true },
        { "type": "web_search_20250305", "name": "web_search", "max_uses": 3 }
    ]);
    body["tool_choice"] = json!({ "type": "any", "disable_parallel_tool_use": true });
    let (hub, dropped) = 翻译(body);
    assert_eq!(
        hub["tools"],
        json!([{ "type": "function", "function": { "name": "Bash", "parameters": { "type": "object" }, "description": "运行命令" } }])
    );
    assert_eq!(hub["tool_choice"], "required");
    assert_eq!(hub["parallel_tool_calls"], false);
    assert!(
        dropped.contains(&"tools.web_search".to_string()),
        "{dropped:?}"
    );
    for (choice, expected) in [
        (json!({ "type": "auto" }), json!("auto")),
        (json!({ "type": "none" }), json!("none")),
        (
            json!({ "type": "tool", "name": "Bash" }),
            json!({ "type": "function", "function": { "name": "Bash" } }),
        ),
    ] {
        let mut body = 基本(json!([{ "role": "user", "content": "x" }]));
        body["tools"] = json!([{ "name": "Bash", "input_schema": { "type": "object" } }]);
        body["tool_choice"] = choice;
        assert_eq!(翻译(body).0["tool_choice"], expected);
    }
}

#[test]
fn 强制使用被丢弃的服务端工具_返回_400() {
    let mut body = 基本(json!([{ "role": "user", "content": "搜" }]));
    body["tools"] = json!([{ "type": "web_search_20250305", "name": "web_search" }]);
    body["tool_choice"] = json!({ "type": "tool", "name": "web_search" });
    let req =
        MessagesRequest::parse(Bytes::from(body.to_string()), Vec::new()).expect("校验应通过");
    let error = req.hub().expect_err("别家上游无法执行");
    assert_eq!(
        (error.status, error.param.as_deref()),
        (400, Some("tool_choice"))
    );
}

#[test]
fn 采样参数_停止序列总是数组_流式要求用量_用户标识哈希() {
    let mut body = 基本(json!([{ "role": "user", "content": "x" }]));
    body["stream"] = json!(true);
    body["temperature"] = json!(0.3);
    body["top_k"] = json!(5);
    body["stop_sequences"] = json!(["结束"]);
    body["metadata"] = json!({ "user_id": "user_abc_account_秘密_session_1" });
    body["thinking"] = json!({ "type": "enabled", "budget_tokens": 31999 });
    body["context_management"] = json!({ "edits": [] });
    let (hub, dropped) = 翻译(body);
    assert_eq!(hub["stop"], json!(["结束"]));
    assert_eq!(hub["stream_options"], json!({ "include_usage": true }));
    assert_eq!(
        (hub["temperature"].as_f64(), hub["max_tokens"].as_u64()),
        (Some(0.3), Some(100))
    );
    let user = hub["user"].as_str().expect("user");
    assert!(
        user.starts_with("anthropic-user-") && !user.contains("秘密"),
        "{user}"
    );
    for field in ["top_k", "thinking", "context_management"] {
        assert!(
            dropped.contains(&field.to_string()),
            "{field} 应记为丢弃：{dropped:?}"
        );
        assert!(hub.get(field).is_none(), "{field} 不能转给别家上游");
    }
}

#[test]
fn 结构错误_返回_400_并指出参数() {
    for (messages, param) in [
        (
            json!([{ "role": "tool", "content": "x" }]),
            "messages[0].role",
        ),
        (
            json!([{ "role": "user", "content": 5 }]),
            "messages[0].content",
        ),
        (
            json!([{ "role": "user", "content": [{ "type": "tool_result", "content": "x" }] }]),
            "messages[0].content[0].tool_use_id",
        ),
    ] {
        let req = MessagesRequest::parse(Bytes::from(基本(messages).to_string()), Vec::new())
            .expect("校验应通过");
        let error = req.hub().expect_err("应翻译失败");
        assert_eq!((error.status, error.param.as_deref()), (400, Some(param)));
    }
}

#[test]
fn 校验_缺少模型或消息_字段类型错误_返回_400() {
    for (body, param) in [
        (json!({ "messages": [] }), "model"),
        (json!({ "model": "m" }), "messages"),
        (
            json!({ "model": "m", "messages": [{ "role": "user", "content": "x" }], "max_tokens": "多" }),
            "max_tokens",
        ),
        (
            json!({ "model": "m", "messages": [{ "role": "user", "content": "x" }], "stream": "是" }),
            "stream",
        ),
    ] {
        let error = MessagesRequest::parse(Bytes::from(body.to_string()), Vec::new())
            .expect_err("应校验失败");
        assert_eq!(
            (error.status, error.param.as_deref()),
            (400, Some(param)),
            "{body}"
        );
    }
}
