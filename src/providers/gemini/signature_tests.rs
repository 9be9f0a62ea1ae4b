//! 思维签名与工具调用 id 的测试。

use serde_json::json;

use super::signature::*;
use super::test_support::*;

#[test]
fn 思维签名_嵌入工具调用_id_可逆() {
    let signatures = [
        "c2lnLTA=",
        "c2ln",
        "c2lnLQ==",
        "a+b/cw==",
        "非 base64 的签名",
        "a-b_c",
        "abc=",
        "====",
    ];
    for signature in signatures {
        let id = call_id("种子", 0, Some(signature));
        assert!(id.starts_with(CALL_ID_PREFIX));
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "id 只能含 URL 安全字符：{id}"
        );
        assert_eq!(
            extract_signature(&id).as_deref(),
            Some(signature),
            "签名 {signature} 必须能还原"
        );
    }
    assert_eq!(
        call_id("种子", 0, Some("c2lnLTA=")),
        format!("{}_sigbc2lnLTA", call_id("种子", 0, None)),
        "规范 base64 签名去掉填充后直接接在标记之后"
    );
    assert_eq!(
        extract_signature(&call_id("种子", 0, Some(""))),
        None,
        "空签名不嵌入"
    );
    for id in [
        "call_abc",
        "toolu_1_sigbAAAA",
        "call_1_sigx",
        "call_1_sigb*",
        "call_1_sighzz",
        "call_1_sigbA",
        "",
    ] {
        assert_eq!(extract_signature(id), None, "{id} 不含可解码的签名");
    }
}

#[test]
fn 工具调用_id_同一输入稳定_不同调用与不同响应各不相同() {
    assert_eq!(
        call_id("chatcmpl-甲", 0, None),
        call_id("chatcmpl-甲", 0, None)
    );
    assert_ne!(
        call_id("chatcmpl-甲", 0, None),
        call_id("chatcmpl-甲", 1, None)
    );
    assert_ne!(
        call_id("chatcmpl-甲", 0, None),
        call_id("chatcmpl-乙", 0, None)
    );
}

#[test]
fn 思维签名_从响应捕获_历史回传时还原到同一个函数调用旁() {
    let gemini = json!({ "candidates": [ { "content": { "role": "model", "parts": [
        { "functionCall": { "name": "查天气", "args": { "城市": "巴黎" } }, "thoughtSignature": "CiQB+/签名==" },
        { "functionCall": { "name": "查天气", "args": { "城市": "罗马" } } } ] }, "finishReason": "STOP" } ], "responseId": "签名轮" });
    let reply = 完整响应(&gemini);
    let assistant = reply["choices"][0]["message"].clone();
    let messages = json!([ { "role": "user", "content": "巴黎和罗马的天气" }, assistant,
        { "role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": "晴" },
        { "role": "tool", "tool_call_id": assistant["tool_calls"][1]["id"], "content": "雨" } ]);
    let contents = 翻译(&消息(messages))["contents"].clone();
    let parts = &contents[1]["parts"];
    assert_eq!(
        parts[0]["thoughtSignature"], "CiQB+/签名==",
        "签名必须原样回到第一个调用旁"
    );
    assert_eq!(parts[0]["functionCall"]["args"], json!({ "城市": "巴黎" }));
    assert!(
        parts[1].get("thoughtSignature").is_none(),
        "没有签名的调用不附签名"
    );
    assert_eq!(contents[2]["parts"].as_array().map(Vec::len), Some(2));
}

#[test]
fn 思维签名_历史没有签名时原样发送() {
    let messages = json!([
        { "role": "user", "content": "查天气" },
        { "role": "assistant", "tool_calls": [ { "id": "call_客户端自己的", "type": "function", "function": { "name": "查天气", "arguments": "{}" } } ] },
        { "role": "tool", "tool_call_id": "call_客户端自己的", "content": "晴" },
    ]);
    let contents = 翻译(&消息(messages))["contents"].clone();
    assert_eq!(
        contents[1]["parts"],
        json!([ { "functionCall": { "name": "查天气", "args": {} } } ])
    );
}
