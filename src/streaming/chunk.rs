//! OpenAI 流式块的构造：翻译器用它写出 `chat.completion.chunk` 事件、用量块和结束标记。

use std::fmt;
use std::marker::PhantomData;

use bytes::{BufMut, BytesMut};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use super::{write_data_with, write_done, write_json_str};

/// 流式块的 `object` 字段。
const CHUNK_OBJECT: &str = "chat.completion.chunk";
/// 普通块在共同开头之后、增量之前的部分。
const CHOICE_HEAD: &[u8] = br#""choices":[{"index":0,"delta":"#;
/// 增量之后、结束原因之前的部分。
const CHOICE_MIDDLE: &[u8] = br#","logprobs":null,"finish_reason":"#;
/// 普通块的结尾。
const CHOICE_TAIL: &[u8] = b"}]}";
/// 文本增量的开头（后接 JSON 转义后的文本与对象结尾）。
const CONTENT_HEAD: &[u8] = br#"{"content":"#;
/// JSON 对象的结尾。
const OBJECT_END: &[u8] = b"}";
/// 用量块在共同开头之后的部分（后接用量对象）。
const USAGE_HEAD: &[u8] = br#""choices":[],"usage":"#;
/// JSON 的 null。
const NULL: &[u8] = b"null";
/// 一个块除了共同开头、增量与结束原因之外的固定字节数（预留缓冲用）。
const CHUNK_OVERHEAD: usize = 96;
/// 助手角色。
const ROLE_ASSISTANT: &str = "assistant";

/// OpenAI 的结束原因。
///
/// 用途：各翻译器把上游的停止原因映射到它，再写进 `finish_reason`。
///
/// ```
/// use chatnexus::streaming::FinishReason; // 结束原因
/// assert_eq!(FinishReason::ToolCalls.as_str(), "tool_calls"); // OpenAI 的拼写
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// 正常结束（含命中停止序列）。
    Stop,
    /// 达到长度上限。
    Length,
    /// 模型要求调用工具。
    ToolCalls,
    /// 被内容安全策略拦截。
    ContentFilter,
}

impl FinishReason {
    /// OpenAI 线上格式中的取值。
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

/// 估算 token 时每个 token 对应的字节数（限流预留输入 token、估算被取消的流的输入、模拟器报告用量时使用）。
pub const BYTES_PER_TOKEN: usize = 4;

/// 按字节数估算 token 数（字节数 ÷ [`BYTES_PER_TOKEN`]，向下取整）。
///
/// ```
/// assert_eq!(chatnexus::streaming::estimate_tokens(4001), 1000); // 约四个字节一个 token
/// ```
pub fn estimate_tokens(bytes: usize) -> u64 {
    u64::try_from(bytes / BYTES_PER_TOKEN).unwrap_or(u64::MAX)
}

/// OpenAI 语义下的 token 用量：`prompt` 含缓存命中，`completion` 含推理 token。
///
/// 用途：翻译器把各家的用量字段换算到它；序列化时保证 `total = prompt + completion`。
///
/// ```
/// let u = chatnexus::streaming::Usage { prompt: 10, completion: 5, cached: 4, reasoning: 2 }; // 换算后的用量
/// assert_eq!(u.to_json()["total_tokens"], 15); // 总数恒等于两者之和
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// 输入 token（含缓存命中）。
    pub prompt: u64,
    /// 输出 token（含推理）。
    pub completion: u64,
    /// 输入中命中缓存的部分。
    pub cached: u64,
    /// 输出中推理的部分。
    pub reasoning: u64,
}

impl Usage {
    /// 从 OpenAI 的 `usage` 对象读出用量；不是对象（如 null）时为 `None`。
    pub fn from_openai(usage: &Value) -> Option<Usage> {
        let count = |v: &Value| v.as_u64().unwrap_or(0);
        usage.as_object()?;
        Some(Usage {
            prompt: count(&usage["prompt_tokens"]),
            completion: count(&usage["completion_tokens"]),
            cached: count(&usage["prompt_tokens_details"]["cached_tokens"]),
            reasoning: count(&usage["completion_tokens_details"]["reasoning_tokens"]),
        })
    }

    /// 从 OpenAI 的 `usage` 值读出用量：`value` 从值的第一个字节开始，其后可以还有别的内容（只解析这一个值）。
    /// 不是对象（如 `null`）或解析不了时为 `None`；计数与细分字段的宽容规则与 [`Usage::from_openai`] 相同。
    ///
    /// ```
    /// let u = chatnexus::streaming::Usage::from_openai_value(br#"{"prompt_tokens":3,"completion_tokens":2},"choices":[]}"#); // 值之后还有别的字段
    /// assert_eq!(u.map(|u| u.prompt + u.completion), Some(5)); // 只解析用量对象
    /// ```
    pub fn from_openai_value(value: &[u8]) -> Option<Usage> {
        OpenAiUsage::deserialize(&mut serde_json::Deserializer::from_slice(value))
            .ok()
            .map(Usage::from)
    }

    /// 序列化为 OpenAI 的 `usage` 对象；总数用饱和加法，上游给出异常巨大的计数时不会溢出。
    pub fn to_json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt.saturating_add(self.completion),
            "prompt_tokens_details": { "cached_tokens": self.cached },
            "completion_tokens_details": { "reasoning_tokens": self.reasoning },
        })
    }
}

/// OpenAI 的 `usage` 对象，按线上的形状定型解析（不建 JSON 树）；用 `Usage::from` 换算。
#[derive(Deserialize)]
pub(crate) struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: Count,
    #[serde(default)]
    completion_tokens: Count,
    #[serde(default)]
    prompt_tokens_details: Lenient<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Lenient<CompletionDetails>,
}

/// 宽容的细分字段：是对象时按 `T` 读，是别的（数字、字符串、数组、null）时当作没有，而不是让整个用量解析失败
/// （与 [`Usage::from_openai`] 一致：各家兼容服务对细分字段的写法不一，输入与输出总数仍要计量）。
///
/// 手写访问器而不用 `#[serde(untagged)]`：后者先把值缓冲成中间树再逐个试，实测每个请求多约 4k 条指令；
/// 也不直接用 `T`：serde 的结构体还接受按位置写的数组，`[1]` 会被读成 1 个 token。
struct Lenient<T>(Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

/// [`Lenient`] 的访问器：对象交给 `T`，其余值读完后记为没有。
struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON 值")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lenient<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|value| Lenient(Some(value)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Lenient(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }
}

/// 输入用量的细分 `usage.prompt_tokens_details`。
#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Count,
}

/// 输出用量的细分 `usage.completion_tokens_details`。
#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Count,
}

/// 宽容的计数：非负整数照收，null、小数、字符串等一律当作 0（与 [`Usage::from_openai`] 一致）。
#[derive(Default)]
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Count(
            Value::deserialize(deserializer)?.as_u64().unwrap_or(0),
        ))
    }
}

impl From<OpenAiUsage> for Usage {
    fn from(wire: OpenAiUsage) -> Self {
        Usage {
            prompt: wire.prompt_tokens.0,
            completion: wire.completion_tokens.0,
            cached: wire
                .prompt_tokens_details
                .0
                .map_or(0, |d| d.cached_tokens.0),
            reasoning: wire
                .completion_tokens_details
                .0
                .map_or(0, |d| d.reasoning_tokens.0),
        }
    }
}

/// 写 OpenAI 流式块的工具：一个流的全部块共享同一个 `id`、`created` 和 `model`。
///
/// 用途：Anthropic、Gemini 等翻译器的状态机用它产出客户端看到的事件。
///
/// ```
/// use chatnexus::streaming::{ChunkWriter, FinishReason}; // 块构造器
/// let w = ChunkWriter::new("chatcmpl-1".into(), 1, "演示".into(), false); // 不要用量块
/// let mut out = bytes::BytesMut::new(); // 输出缓冲
/// w.content(&mut out, "你好");
/// w.finish(&mut out, FinishReason::Stop); // 正常结束
/// assert!(std::str::from_utf8(&out).unwrap().contains("\"finish_reason\":\"stop\"")); // 结束块
/// ```
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    /// 每个块都一样的开头：`{"id":…,"object":…,"created":…,"model":…,`（创建时序列化一次，之后按字节复制）。
    prefix: Vec<u8>,
    include_usage: bool,
}

impl ChunkWriter {
    /// 创建构造器；`include_usage` 为客户端的 `stream_options.include_usage`。
    pub fn new(id: String, created: u64, model: String, include_usage: bool) -> Self {
        let head = json!({ "id": id, "object": CHUNK_OBJECT, "created": created, "model": model });
        let mut prefix = head.to_string().into_bytes();
        // 去掉结尾的 `}`、换成逗号，后面接各块自己的字段
        prefix.pop();
        prefix.push(b',');
        ChunkWriter {
            prefix,
            include_usage,
        }
    }

    /// 首块：`delta: {role: "assistant", content: ""}`。
    pub fn role(&self, out: &mut BytesMut) {
        self.delta(out, json!({ "role": ROLE_ASSISTANT, "content": "" }));
    }

    /// 文本增量（空文本不写）。
    pub fn content(&self, out: &mut BytesMut, text: &str) {
        if text.is_empty() {
            return;
        }
        // 流里最多的块：固定部分按字节写，只有文本经 JSON 转义，不建 JSON 值
        self.write_with(out, text.len(), None, |buf| {
            buf.put_slice(CONTENT_HEAD);
            write_json_str(buf, text);
            buf.put_slice(OBJECT_END);
        });
    }

    /// 一个工具调用的首个增量：带 `index`、`id`、`type`、`name` 与初始参数。
    pub fn tool_call_start(
        &self,
        out: &mut BytesMut,
        index: usize,
        id: &str,
        name: &str,
        arguments: &str,
    ) {
        let call = json!({ "index": index, "id": id, "type": "function", "function": { "name": name, "arguments": arguments } });
        self.delta(out, json!({ "tool_calls": [call] }));
    }

    /// 工具调用参数的后续片段（空片段不写）。
    pub fn tool_arguments(&self, out: &mut BytesMut, index: usize, fragment: &str) {
        if !fragment.is_empty() {
            let call = json!({ "index": index, "function": { "arguments": fragment } });
            self.delta(out, json!({ "tool_calls": [call] }));
        }
    }

    /// 结束块：`delta: {}` 与结束原因。
    pub fn finish(&self, out: &mut BytesMut, reason: FinishReason) {
        self.write(out, json!({}), Some(reason.as_str()));
    }

    /// 用量块（`choices: []`）；客户端没要求时什么也不写。
    pub fn usage(&self, out: &mut BytesMut, usage: &Usage) {
        if !self.include_usage {
            return;
        }
        let usage = usage.to_json().to_string();
        write_data_with(
            out,
            self.prefix.len() + usage.len() + CHUNK_OVERHEAD,
            |buf| {
                buf.put_slice(&self.prefix);
                buf.put_slice(USAGE_HEAD);
                buf.put_slice(usage.as_bytes());
                buf.put_slice(OBJECT_END);
            },
        );
    }

    /// 结束标记 `data: [DONE]`。
    pub fn done(&self, out: &mut BytesMut) {
        write_done(out);
    }

    fn delta(&self, out: &mut BytesMut, delta: Value) {
        self.write(out, delta, None);
    }

    fn write(&self, out: &mut BytesMut, delta: Value, finish: Option<&str>) {
        let delta = delta.to_string();
        self.write_with(out, delta.len(), finish, |buf| {
            buf.put_slice(delta.as_bytes())
        });
    }

    /// 写出一个普通块：共同开头、`choices` 的开头、由 `delta` 写出的增量对象、结束原因与结尾。
    fn write_with(
        &self,
        out: &mut BytesMut,
        delta_len: usize,
        finish: Option<&str>,
        delta: impl FnOnce(&mut BytesMut),
    ) {
        let len = self.prefix.len() + delta_len + CHUNK_OVERHEAD;
        write_data_with(out, len, |buf| {
            buf.put_slice(&self.prefix);
            buf.put_slice(CHOICE_HEAD);
            delta(buf);
            buf.put_slice(CHOICE_MIDDLE);
            match finish {
                Some(reason) => write_json_str(buf, reason),
                None => buf.put_slice(NULL),
            }
            buf.put_slice(CHOICE_TAIL);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 事件(out: &BytesMut) -> Vec<Value> {
        std::str::from_utf8(out)
            .expect("UTF-8")
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).expect("每个事件都是 JSON"))
            .collect()
    }

    #[test]
    fn 块_按字节拼出的与整块序列化的完全相同_文本里的引号与换行照常转义() {
        let w = ChunkWriter::new("chatcmpl-\"乙\"".into(), 9, "模型\n名".into(), true);
        let mut out = BytesMut::new();
        w.content(&mut out, "第一行\n\"引号\"与\\反斜杠");
        w.content(&mut out, "普通文本");
        w.finish(&mut out, FinishReason::Stop);
        w.usage(&mut out, &Usage::default());
        let head = json!({ "id": "chatcmpl-\"乙\"", "object": CHUNK_OBJECT, "created": 9, "model": "模型\n名" });
        let chunk = |delta: Value, finish: Value| {
            let mut c = head.clone();
            c["choices"] =
                json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]);
            format!("data: {c}\n\n")
        };
        let mut usage = head.clone();
        usage["choices"] = json!([]);
        usage["usage"] = Usage::default().to_json();
        let expected = [
            chunk(
                json!({ "content": "第一行\n\"引号\"与\\反斜杠" }),
                Value::Null,
            ),
            chunk(json!({ "content": "普通文本" }), Value::Null),
            chunk(json!({}), json!("stop")),
            format!("data: {usage}\n\n"),
        ]
        .concat();
        assert_eq!(std::str::from_utf8(&out).expect("UTF-8"), expected);
    }

    #[test]
    fn 块_共享_id_并按_openai_形状写出() {
        let w = ChunkWriter::new("chatcmpl-甲".into(), 7, "演示".into(), true);
        let mut out = BytesMut::new();
        w.role(&mut out);
        w.tool_call_start(&mut out, 0, "call_1", "查天气", "");
        w.tool_arguments(&mut out, 0, "{\"城市\":\"巴黎\"}");
        w.tool_arguments(&mut out, 0, "");
        w.finish(&mut out, FinishReason::ToolCalls);
        w.usage(
            &mut out,
            &Usage {
                prompt: 3,
                completion: 2,
                cached: 0,
                reasoning: 0,
            },
        );
        w.done(&mut out);
        let events = 事件(&out);
        assert_eq!(events.len(), 5, "空参数片段不应产生事件");
        assert!(events
            .iter()
            .all(|e| e["id"] == "chatcmpl-甲" && e["created"] == 7));
        assert_eq!(
            events[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "查天气"
        );
        assert_eq!(events[3]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(events[4]["choices"], json!([]));
        assert_eq!(events[4]["usage"]["total_tokens"], 5);
        assert!(out.ends_with(b"data: [DONE]\n\n"));
    }

    #[test]
    fn 用量_定型解析与按_json_值读出的结果相同_细分字段形状不一() {
        let cases = [
            r#"{"prompt_tokens":9,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}"#,
            r#"{"prompt_tokens":9,"prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":1}}"#,
            r#"{"prompt_tokens":9,"prompt_tokens_details":5,"completion_tokens_details":[1]}"#,
            r#"{"prompt_tokens":"九","completion_tokens":2.5,"prompt_tokens_details":{"cached_tokens":"四"}}"#,
            r#"{}"#,
        ];
        for text in cases {
            let value: Value = serde_json::from_str(text).expect("测试数据是合法 JSON");
            let typed = Usage::from_openai_value(text.as_bytes());
            assert!(typed.is_some(), "对象形式的用量都要计量：{text}");
            assert_eq!(
                typed,
                Usage::from_openai(&value),
                "两种读法必须一致：{text}"
            );
        }
        assert_eq!(Usage::from_openai_value(b"null"), None);
    }

    #[test]
    fn 块_客户端未要求用量时不写用量块() {
        let w = ChunkWriter::new("c".into(), 1, "m".into(), false);
        let mut out = BytesMut::new();
        w.usage(&mut out, &Usage::default());
        assert!(out.is_empty());
    }
}
