//! 请求体：各测试二进制共用的聊天请求。

use serde_json::{json, Value};

/// 缺省的用户消息（网关测试据它确认上游收到的内容）。
pub const PROMPT: &str = "你好，请介绍一下你自己";

/// 用缺省消息向 `model` 提问的聊天请求体。
pub fn chat_body(model: &str, stream: bool) -> Value {
    chat_body_saying(model, stream, PROMPT)
}

/// 用户消息为 `content` 的聊天请求体（测试用唯一的文本在模拟器的记录里找到这次请求）。
pub fn chat_body_saying(model: &str, stream: bool, content: &str) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [ { "role": "user", "content": content } ],
    })
}

/// 序列化好的聊天请求体（签名要对确切的字节计算）。
pub fn chat_bytes(model: &str, stream: bool) -> Vec<u8> {
    serde_json::to_vec(&chat_body(model, stream)).expect("请求体必须能序列化")
}
