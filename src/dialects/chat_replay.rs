//! 响应缓存用的 Chat Completions 格式函数：把枢纽流（`chat.completion.chunk`）累加成完整回复
//! （[`CompletionBuilder`]），判断完整回复是否正常结束（[`completed_normally`]），以及把完整回复
//! 重放为 Chat 流的 SSE 字节（[`replay_stream`]）。
//!
//! 这里只做格式转换，不做 I/O：缓存只保存完整回复一种形态，流式客户端命中时再由它重放成块。

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::hub_calls::arguments_text;
use super::hub_stream::{parse_chunk, reasoning_of, HubChoice};
use super::ReplyBuilder;
use crate::clock::unix_now;
use crate::streaming::{random_id, write_data, write_done, DONE_SENTINEL};

/// 完整回复的 `object` 字段。
const COMPLETION_OBJECT: &str = "chat.completion";
/// 流式块的 `object` 字段。
const CHUNK_OBJECT: &str = "chat.completion.chunk";
/// 助手角色。
const ROLE_ASSISTANT: &str = "assistant";
/// 工具调用的类型（Chat Completions 只有函数调用）。
const TOOL_TYPE_FUNCTION: &str = "function";
/// 上游没给工具调用 id 时合成 id 的前缀。
const TOOL_ID_PREFIX: &str = "call_";
/// 表示回复正常结束的结束原因（其余取值或缺失都说明回复不完整，不应缓存）。
const NORMAL_FINISH_REASONS: [&str; 5] = [
    "stop",
    "length",
    "tool_calls",
    "function_call",
    "content_filter",
];

/// 流式块里与回复身份有关的字段（只在第一个块上解析一次）。
#[derive(Debug, Default, Deserialize)]
struct ChunkHeader {
    /// 回复 id。
    #[serde(default)]
    id: Option<String>,
    /// 创建时间（Unix 秒）。
    #[serde(default)]
    created: Option<u64>,
    /// 模型名。
    #[serde(default)]
    model: Option<String>,
}

/// 累加中的一个工具调用（按枢纽 `index` 合并片段）。
#[derive(Debug, Default)]
struct ToolCallAcc {
    /// 工具调用 id（首个片段给出）。
    id: String,
    /// 函数名（首个片段给出）。
    name: String,
    /// 拼接起来的参数文本。
    arguments: String,
}

/// 把 chat.completion.chunk 流累加成完整的 chat.completion（缓存保存流式回复用）。
///
/// 用途：网关转发枢纽流时把每个事件的 data 喂给它；流正常结束后 [`CompletionBuilder::finish`]
/// 交出可缓存的完整回复，流不完整（没有结束原因、没有 `[DONE]`、解析失败或上游报错）时交出 `None`。
///
/// ```
/// use chatnexus::dialects::chat_replay::CompletionBuilder; // 流累加器
/// use chatnexus::dialects::ReplyBuilder; // push 与 finish 来自它
/// let mut b = CompletionBuilder::default(); // 新的累加器
/// b.push(r#"{"id":"c1","created":1,"model":"演示","choices":[{"index":0,"delta":{"content":"你好"},"finish_reason":null}]}"#);
/// b.push(r#"{"id":"c1","created":1,"model":"演示","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#);
/// b.push("[DONE]"); // 流正常结束
/// let reply = b.finish().expect("流完整，应得到完整回复");
/// assert_eq!(reply["choices"][0]["message"]["content"], "你好"); // 文本拼接完整
/// ```
#[derive(Debug, Default)]
pub struct CompletionBuilder {
    /// 第一个块上的 id、created、model。
    header: Option<ChunkHeader>,
    /// 拼接的文本。
    content: String,
    /// 拼接的推理文本。
    reasoning: String,
    /// 枢纽 `index` → 工具调用（按序号排序写出）。
    tool_calls: BTreeMap<u64, ToolCallAcc>,
    /// 最后一次给出的结束原因。
    finish_reason: Option<String>,
    /// 最后一次给出的用量对象（照搬）。
    usage: Option<Value>,
    /// 是否见过 `[DONE]`。
    done: bool,
    /// 是否遇到解析失败或上游错误块。
    failed: bool,
}

impl ReplyBuilder for CompletionBuilder {
    /// 喂一个 SSE 事件的 data（chunk JSON 或 `[DONE]`）。
    ///
    /// 失败或已见过 `[DONE]` 之后再来的事件一律忽略；解析失败或错误块让累加器记为失败。
    fn push(&mut self, data: &str) {
        if self.failed || self.done {
            return;
        }
        if data.trim() == DONE_SENTINEL {
            self.done = true;
            return;
        }
        let chunk = match parse_chunk(data) {
            Ok(chunk) => chunk,
            Err(error) => {
                log::debug!("流式回复不完整，不缓存：{}", error.message);
                self.failed = true;
                return;
            }
        };
        if self.header.is_none() {
            // 身份字段只在第一个块上取，之后的块不再为它们多解析一遍
            self.header = Some(serde_json::from_str(data).unwrap_or_default());
        }
        if let Some(usage) = chunk.usage.filter(Value::is_object) {
            self.usage = Some(usage);
        }
        // 枢纽流只有一个候选（n = 1）；用量块的 choices 为空数组
        if let Some(choice) = chunk.choices.as_ref().and_then(|c| c.first()) {
            self.absorb_choice(choice);
        }
    }

    /// 流正常结束（见过 finish_reason 且见过 `[DONE]`，且没有解析失败或 error 块）时返回完整回复：
    /// 形如 `{"id","object":"chat.completion","created","model","choices":[{"index":0,"message":{…},
    /// "logprobs":null,"finish_reason"}],"usage"?}` 的对象；消息的 `content` 为拼接的文本（没有文本时为 null），
    /// 有推理时带 `reasoning_content`，有工具调用时带 `tool_calls`。
    ///
    /// 返回：流不完整时为 `None`。
    fn finish(&mut self) -> Option<Value> {
        std::mem::take(self).build()
    }
}

impl CompletionBuilder {
    /// 组装完整回复（见 [`ReplyBuilder::finish`]）。
    fn build(self) -> Option<Value> {
        if self.failed || !self.done {
            return None;
        }
        let message = self.message();
        let finish_reason = self.finish_reason?;
        let header = self.header.unwrap_or_default();
        let mut completion = json!({
            "id": header.id.unwrap_or_default(),
            "object": COMPLETION_OBJECT,
            "created": header.created.unwrap_or_else(unix_now),
            "model": header.model.unwrap_or_default(),
            "choices": [ { "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason } ],
        });
        if let Some(usage) = self.usage {
            completion["usage"] = usage;
        }
        Some(completion)
    }

    /// 处理一个候选：追加文本、推理与工具调用片段，记下结束原因。
    fn absorb_choice(&mut self, choice: &HubChoice) {
        if let Some(delta) = &choice.delta {
            if let Some(text) = &delta.content {
                self.content.push_str(text);
            }
            if let Some(text) = reasoning_of(delta) {
                self.reasoning.push_str(text);
            }
            for call in delta.tool_calls.iter().flatten() {
                self.absorb_tool_call(call);
            }
        }
        if let Some(reason) = choice.finish_reason.as_deref().filter(|r| !r.is_empty()) {
            self.finish_reason = Some(reason.to_owned());
        }
    }

    /// 按 `index` 合并一个工具调用片段：首个片段给出 id 与函数名，之后的片段追加参数。
    fn absorb_tool_call(&mut self, call: &Value) {
        let index = call["index"].as_u64().unwrap_or(0);
        let entry = self.tool_calls.entry(index).or_default();
        if entry.id.is_empty() {
            entry.id = call["id"].as_str().unwrap_or_default().to_owned();
        }
        let function = &call["function"];
        if entry.name.is_empty() {
            entry.name = function["name"].as_str().unwrap_or_default().to_owned();
        }
        entry
            .arguments
            .push_str(&arguments_text(&function["arguments"]));
    }

    /// 组装完整回复里的助手消息。
    fn message(&self) -> Value {
        let mut message = Map::new();
        message.insert("role".into(), json!(ROLE_ASSISTANT));
        let content = Some(&self.content).filter(|c| !c.is_empty());
        message.insert("content".into(), json!(content));
        if !self.reasoning.is_empty() {
            message.insert("reasoning_content".into(), json!(self.reasoning));
        }
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self.tool_calls.values().map(tool_call_json).collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        Value::Object(message)
    }
}

/// 一个累加完的工具调用在完整回复里的形状；上游始终没给 id 时合成一个。
fn tool_call_json(call: &ToolCallAcc) -> Value {
    let id = if call.id.is_empty() {
        random_id(TOOL_ID_PREFIX)
    } else {
        call.id.clone()
    };
    json!({
        "id": id,
        "type": TOOL_TYPE_FUNCTION,
        "function": { "name": call.name, "arguments": call.arguments },
    })
}

/// 完整回复是否正常结束（finish_reason 为 stop、length、tool_calls、function_call、content_filter 之一）。
///
/// 参数：`completion` 为 `chat.completion` 对象。
pub fn completed_normally(completion: &Value) -> bool {
    completion["choices"][0]["finish_reason"]
        .as_str()
        .is_some_and(|reason| NORMAL_FINISH_REASONS.contains(&reason))
}

/// 重放时每个块共用的身份字段（取自完整回复）。
struct ReplayWriter<'a> {
    /// 回复 id。
    id: &'a Value,
    /// 创建时间。
    created: &'a Value,
    /// 模型名。
    model: &'a Value,
}

impl ReplayWriter<'_> {
    /// 写一个候选块：`delta` 与结束原因（非结束块为 null）。
    fn choice(&self, out: &mut BytesMut, delta: Value, finish_reason: &Value) {
        let chunk = json!({
            "id": self.id, "object": CHUNK_OBJECT, "created": self.created, "model": self.model,
            "choices": [ { "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason } ],
        });
        write_data(out, chunk.to_string().as_bytes());
    }

    /// 写用量块（`choices: []`，用量对象照搬）。
    fn usage(&self, out: &mut BytesMut, usage: &Value) {
        let chunk = json!({
            "id": self.id, "object": CHUNK_OBJECT, "created": self.created, "model": self.model,
            "choices": [], "usage": usage,
        });
        write_data(out, chunk.to_string().as_bytes());
    }
}

/// 把完整回复重放为 Chat 流的 SSE 字节：首块 role（content ""）、一个推理块（有推理时）、
/// 一个文本块（有文本时）、每个工具调用一个块（index, id, type, function{name, arguments 完整}）、
/// 结束块（delta {}、finish_reason）、include_usage 时一个用量块（choices []，usage 照搬），
/// 最后 `data: [DONE]`。id/created/model 取自完整回复。
///
/// 参数：`completion` 为 `chat.completion` 对象；`include_usage` 为客户端的 `stream_options.include_usage`
/// （完整回复没有用量对象时不写用量块）。
pub fn replay_stream(completion: &Value, include_usage: bool) -> Bytes {
    let writer = ReplayWriter {
        id: &completion["id"],
        created: &completion["created"],
        model: &completion["model"],
    };
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    let mut out = BytesMut::new();
    writer.choice(
        &mut out,
        json!({ "role": ROLE_ASSISTANT, "content": "" }),
        &Value::Null,
    );
    write_message_deltas(&writer, &mut out, message);
    writer.choice(&mut out, json!({}), &choice["finish_reason"]);
    if include_usage && completion["usage"].is_object() {
        writer.usage(&mut out, &completion["usage"]);
    }
    write_done(&mut out);
    out.freeze()
}

/// 写出消息内容的增量块：推理、文本各一块（非空时），每个工具调用一块（参数完整）。
fn write_message_deltas(writer: &ReplayWriter, out: &mut BytesMut, message: &Value) {
    let non_empty = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    if let Some(reasoning) = non_empty(&message["reasoning_content"]) {
        writer.choice(out, json!({ "reasoning_content": reasoning }), &Value::Null);
    }
    if let Some(text) = non_empty(&message["content"]) {
        writer.choice(out, json!({ "content": text }), &Value::Null);
    }
    let calls = message["tool_calls"].as_array().into_iter().flatten();
    for (index, call) in calls.enumerate() {
        let function = &call["function"];
        let delta = json!({ "tool_calls": [ {
            "index": index,
            "id": call["id"],
            "type": TOOL_TYPE_FUNCTION,
            "function": { "name": function["name"], "arguments": arguments_text(&function["arguments"]) },
        } ] });
        writer.choice(out, delta, &Value::Null);
    }
}
