//! OpenAI Responses 线上格式中的名字与两种渲染（完整回复、流式）共用的部分：事件类型、输出项类型、状态、
//! 结束原因的映射、用量换算、`response` 对象骨架与各种输出项的 JSON 形状。

use serde_json::{json, Map, Value};

use super::tools::{ToolKind, ToolRef, CUSTOM_INPUT_FIELD};
use crate::streaming::{random_id, Usage};

/// 响应 id 的前缀。
pub(super) const RESPONSE_ID_PREFIX: &str = "resp_";
/// 消息输出项 id 的前缀。
pub(super) const MESSAGE_ID_PREFIX: &str = "msg_";
/// 推理输出项 id 的前缀。
pub(super) const REASONING_ID_PREFIX: &str = "rs_";
/// 函数调用输出项 id 的前缀（与 `call_id` 不同，`call_id` 是上游的工具调用 id）。
pub(super) const FUNCTION_CALL_ID_PREFIX: &str = "fc_";
/// 自由格式工具调用输出项 id 的前缀。
pub(super) const CUSTOM_CALL_ID_PREFIX: &str = "ctc_";
/// 上游没给工具调用 id 时合成 `call_id` 的前缀。
pub(super) const CALL_ID_PREFIX: &str = "call_";

/// `response` 对象的 `object`。
const OBJECT_RESPONSE: &str = "response";
/// 助手角色。
const ROLE_ASSISTANT: &str = "assistant";
/// 函数调用没有参数时的参数文本（`arguments` 必须是 JSON 字符串）。
pub(super) const EMPTY_ARGUMENTS: &str = "{}";

/// 输出项类型：消息。
pub(super) const ITEM_MESSAGE: &str = "message";
/// 输出项类型：推理。
pub(super) const ITEM_REASONING: &str = "reasoning";
/// 输出项类型：函数调用。
pub(super) const ITEM_FUNCTION_CALL: &str = "function_call";
/// 输出项类型：自由格式工具调用。
pub(super) const ITEM_CUSTOM_TOOL_CALL: &str = "custom_tool_call";

/// 内容部分类型：输出文本。
pub(super) const PART_OUTPUT_TEXT: &str = "output_text";
/// 内容部分类型：拒答。
pub(super) const PART_REFUSAL: &str = "refusal";
/// 推理摘要部分类型。
pub(super) const PART_SUMMARY_TEXT: &str = "summary_text";

/// 状态：进行中。
pub(super) const STATUS_IN_PROGRESS: &str = "in_progress";
/// 状态：已完成。
pub(super) const STATUS_COMPLETED: &str = "completed";
/// 状态：未完成（达到输出上限、内容过滤，或流中断时半途的输出项）。
pub(super) const STATUS_INCOMPLETE: &str = "incomplete";
/// 状态：失败。
pub(super) const STATUS_FAILED: &str = "failed";

/// 未完成原因：达到输出上限。
const REASON_MAX_OUTPUT_TOKENS: &str = "max_output_tokens";
/// 未完成原因：内容过滤。
const REASON_CONTENT_FILTER: &str = "content_filter";
/// 枢纽结束原因：达到长度上限。
const FINISH_LENGTH: &str = "length";
/// 枢纽结束原因：内容过滤。
const FINISH_CONTENT_FILTER: &str = "content_filter";

/// 流事件：响应已创建（第一个事件）。
pub(super) const EVENT_CREATED: &str = "response.created";
/// 流事件：响应进行中。
pub(super) const EVENT_IN_PROGRESS: &str = "response.in_progress";
/// 终止事件：正常完成。
pub(super) const EVENT_COMPLETED: &str = "response.completed";
/// 终止事件：未完成。
pub(super) const EVENT_INCOMPLETE: &str = "response.incomplete";
/// 终止事件：失败。
pub(super) const EVENT_FAILED: &str = "response.failed";
/// 流事件：输出项开始。
pub(super) const EVENT_ITEM_ADDED: &str = "response.output_item.added";
/// 流事件：输出项结束（Codex 只从这个事件收集输出项）。
pub(super) const EVENT_ITEM_DONE: &str = "response.output_item.done";
/// 流事件：内容部分开始。
pub(super) const EVENT_PART_ADDED: &str = "response.content_part.added";
/// 流事件：内容部分结束。
pub(super) const EVENT_PART_DONE: &str = "response.content_part.done";
/// 流事件：输出文本增量。
pub(super) const EVENT_TEXT_DELTA: &str = "response.output_text.delta";
/// 流事件：输出文本结束。
pub(super) const EVENT_TEXT_DONE: &str = "response.output_text.done";
/// 流事件：拒答增量。
pub(super) const EVENT_REFUSAL_DELTA: &str = "response.refusal.delta";
/// 流事件：拒答结束。
pub(super) const EVENT_REFUSAL_DONE: &str = "response.refusal.done";
/// 流事件：推理摘要部分开始。
pub(super) const EVENT_SUMMARY_PART_ADDED: &str = "response.reasoning_summary_part.added";
/// 流事件：推理摘要部分结束。
pub(super) const EVENT_SUMMARY_PART_DONE: &str = "response.reasoning_summary_part.done";
/// 流事件：推理摘要文本增量。
pub(super) const EVENT_SUMMARY_TEXT_DELTA: &str = "response.reasoning_summary_text.delta";
/// 流事件：推理摘要文本结束。
pub(super) const EVENT_SUMMARY_TEXT_DONE: &str = "response.reasoning_summary_text.done";
/// 流事件：函数调用参数增量。
pub(super) const EVENT_ARGUMENTS_DELTA: &str = "response.function_call_arguments.delta";
/// 流事件：函数调用参数结束。
pub(super) const EVENT_ARGUMENTS_DONE: &str = "response.function_call_arguments.done";
/// 流事件：自由格式工具输入增量。
pub(super) const EVENT_CUSTOM_INPUT_DELTA: &str = "response.custom_tool_call_input.delta";
/// 流事件：自由格式工具输入结束。
pub(super) const EVENT_CUSTOM_INPUT_DONE: &str = "response.custom_tool_call_input.done";

/// 枢纽回复的结局：正常完成，或未完成（带 `incomplete_details.reason`）。
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// 正常完成：`completed`。
    Completed,
    /// 未完成：`incomplete`，值为未完成原因。
    Incomplete(&'static str),
}

impl Ending {
    /// 按枢纽的 `finish_reason` 判定结局（参考文档 §R7 的结束原因表）：`length` 与 `content_filter` 为未完成，
    /// 其余（`stop`、`tool_calls`、`function_call`、未知取值与没有结束原因）为完成。
    pub(super) fn of(finish: Option<&str>) -> Ending {
        match finish {
            Some(FINISH_LENGTH) => Ending::Incomplete(REASON_MAX_OUTPUT_TOKENS),
            Some(FINISH_CONTENT_FILTER) => Ending::Incomplete(REASON_CONTENT_FILTER),
            _ => Ending::Completed,
        }
    }

    /// 结局对应的响应状态，也是结局时仍打开的输出项的状态。
    pub(super) fn status(self) -> &'static str {
        match self {
            Ending::Completed => STATUS_COMPLETED,
            Ending::Incomplete(_) => STATUS_INCOMPLETE,
        }
    }

    /// 结局对应的终止事件类型。
    pub(super) fn event(self) -> &'static str {
        match self {
            Ending::Completed => EVENT_COMPLETED,
            Ending::Incomplete(_) => EVENT_INCOMPLETE,
        }
    }

    /// `incomplete_details`：完成时为 null，未完成时为 `{"reason": …}`。
    pub(super) fn details(self) -> Value {
        match self {
            Ending::Completed => Value::Null,
            Ending::Incomplete(reason) => json!({ "reason": reason }),
        }
    }
}

/// 按 Responses 语义写出 `usage` 对象：输入含缓存命中、输出含推理（与枢纽的语义相同，直接对应）；
/// 两个明细对象总是写出且都是整数（Codex 的解析要求它们出现时字段齐全），枢纽不区分缓存写入，
/// `cache_write_tokens` 恒为 0。
pub(super) fn usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.prompt,
        "input_tokens_details": { "cached_tokens": usage.cached, "cache_write_tokens": 0 },
        "output_tokens": usage.completion,
        "output_tokens_details": { "reasoning_tokens": usage.reasoning },
        "total_tokens": usage.prompt.saturating_add(usage.completion),
    })
}

/// `response` 对象中由渲染器决定、不取自请求回显的字段。
const OWNED_FIELDS: &[&str] = &[
    "id",
    "object",
    "created_at",
    "status",
    "error",
    "incomplete_details",
    "output",
    "usage",
];

/// 请求回显中缺少时补上的字段与取值（与 OpenAI 线上回复的默认值一致）：严格的客户端在缺字段时直接报错，
/// 所以参考文档 §R4 的全部字段都要出现。
fn echo_defaults() -> [(&'static str, Value); 18] {
    [
        ("background", json!(false)),
        ("instructions", Value::Null),
        ("max_output_tokens", Value::Null),
        ("max_tool_calls", Value::Null),
        ("parallel_tool_calls", json!(true)),
        ("previous_response_id", Value::Null),
        ("prompt_cache_key", Value::Null),
        ("reasoning", json!({ "effort": null, "summary": null })),
        ("safety_identifier", Value::Null),
        ("service_tier", json!("default")),
        ("store", json!(false)),
        ("temperature", json!(1.0)),
        ("tool_choice", json!("auto")),
        ("tools", json!([])),
        ("top_logprobs", json!(0)),
        ("top_p", json!(1.0)),
        ("truncation", json!("disabled")),
        ("user", Value::Null),
    ]
}

/// 由请求回显构造 `response` 对象的骨架：新的 `resp_…` id、`object`、`created_at`，状态为进行中，
/// `output: []`、`usage: null`、`error: null`、`incomplete_details: null`，缺少的回显字段补默认值，
/// `text` 缺少 `format` 时补 `{"type":"text"}`（Codex 只发 `verbosity`），`metadata` 缺省为 `{}`。
///
/// 参数：`template` 为调用方填好的请求回显（含客户端的 `model`）；`created_at` 为创建时间（Unix 秒）。
pub(super) fn response_skeleton(
    template: &Map<String, Value>,
    created_at: u64,
) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("id".into(), json!(random_id(RESPONSE_ID_PREFIX)));
    body.insert("object".into(), json!(OBJECT_RESPONSE));
    body.insert("created_at".into(), json!(created_at));
    body.insert("status".into(), json!(STATUS_IN_PROGRESS));
    body.insert("error".into(), Value::Null);
    body.insert("incomplete_details".into(), Value::Null);
    for (key, value) in template {
        if !OWNED_FIELDS.contains(&key.as_str()) {
            body.insert(key.clone(), value.clone());
        }
    }
    for (key, value) in echo_defaults() {
        body.entry(key).or_insert(value);
    }
    fill_text_format(&mut body);
    if !body.get("metadata").is_some_and(Value::is_object) {
        body.insert("metadata".into(), json!({}));
    }
    body.insert("output".into(), json!([]));
    body.insert("usage".into(), Value::Null);
    body
}

/// 保证 `text` 是带 `format` 的对象：不是对象时换成默认值 `{"format":{"type":"text"},"verbosity":"medium"}`。
fn fill_text_format(body: &mut Map<String, Value>) {
    let text = body
        .entry("text")
        .or_insert_with(|| json!({ "verbosity": "medium" }));
    if !text.is_object() {
        *text = json!({ "verbosity": "medium" });
    }
    if let Value::Object(text) = text {
        let format = text.entry("format").or_insert(Value::Null);
        if !format.is_object() {
            *format = json!({ "type": "text" });
        }
    }
}

/// 消息输出项。
pub(super) fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({ "id": id, "type": ITEM_MESSAGE, "status": status, "content": content, "role": ROLE_ASSISTANT })
}

/// 输出文本部分（`annotations` 与 `logprobs` 都是空数组）。
pub(super) fn output_text_part(text: &str) -> Value {
    json!({ "type": PART_OUTPUT_TEXT, "annotations": [], "logprobs": [], "text": text })
}

/// 拒答部分。
pub(super) fn refusal_part(refusal: &str) -> Value {
    json!({ "type": PART_REFUSAL, "refusal": refusal })
}

/// 推理摘要部分。
pub(super) fn summary_part(text: &str) -> Value {
    json!({ "type": PART_SUMMARY_TEXT, "text": text })
}

/// 推理输出项：`summary` 为零个或一个摘要部分（`None` 表示刚开始、还没有摘要）。
pub(super) fn reasoning_item(id: &str, status: &str, summary: Option<&str>) -> Value {
    let summary: Vec<Value> = summary.map(summary_part).into_iter().collect();
    json!({ "id": id, "type": ITEM_REASONING, "summary": summary, "status": status })
}

/// 工具调用输出项的身份：输出项 id、`call_id` 与客户端那边的工具。
#[derive(Debug, Clone, Copy)]
pub(super) struct CallIdentity<'a> {
    /// 输出项 id（`fc_…` 或 `ctc_…`）。
    pub item_id: &'a str,
    /// 上游的工具调用 id（客户端回传结果时引用它）。
    pub call_id: &'a str,
    /// 客户端定义的工具。
    pub tool: ToolRef<'a>,
}

/// 工具调用输出项：函数工具为 `function_call`（`payload` 是参数 JSON 文本），自由格式工具为
/// `custom_tool_call`（`payload` 是原样输入）；有命名空间时带 `namespace`。
pub(super) fn call_item(call: &CallIdentity<'_>, status: &str, payload: &str) -> Value {
    let mut item = match call.tool.kind {
        ToolKind::Function => {
            json!({ "id": call.item_id, "type": ITEM_FUNCTION_CALL, "status": status,
            "arguments": payload, "call_id": call.call_id, "name": call.tool.name })
        }
        ToolKind::Custom => {
            json!({ "id": call.item_id, "type": ITEM_CUSTOM_TOOL_CALL, "status": status,
            "call_id": call.call_id, "name": call.tool.name, "input": payload })
        }
    };
    if let Some(namespace) = call.tool.namespace {
        item["namespace"] = json!(namespace);
    }
    item
}

/// 工具调用输出项 id 的前缀（按工具种类）。
pub(super) fn call_item_prefix(kind: ToolKind) -> &'static str {
    match kind {
        ToolKind::Function => FUNCTION_CALL_ID_PREFIX,
        ToolKind::Custom => CUSTOM_CALL_ID_PREFIX,
    }
}

/// 函数调用的最终参数文本：空（或全是空白）时为 `{}`，否则原样。
pub(super) fn function_arguments(arguments: &str) -> &str {
    if arguments.trim().is_empty() {
        EMPTY_ARGUMENTS
    } else {
        arguments
    }
}

/// 把枢纽函数调用的参数 `{"input": "…"}` 还原为自由格式工具的原样输入。
///
/// 参数不是带字符串 `input` 的 JSON 对象（上游没按包装的形状回答）时原样使用参数文本并记警告：
/// 宁可让工具收到多余的 JSON 外壳，也不能把模型的输出丢掉。
pub(super) fn custom_input(arguments: &str, call_id: &str) -> String {
    let parsed = serde_json::from_str::<Value>(arguments).ok();
    match parsed.as_ref().and_then(|v| v[CUSTOM_INPUT_FIELD].as_str()) {
        Some(input) => input.to_owned(),
        None => {
            log::warn!(
                "自由格式工具调用 {call_id} 的参数不是包装好的 {{\"input\": …}}，按原样作为输入"
            );
            arguments.to_owned()
        }
    }
}
/// 推理文本：优先 `reasoning_content`（DeepSeek 等），否则 `reasoning`（OpenRouter、新版 vLLM）；
/// 两者都给时只取前者，避免同一段推理出现两遍。空文本视为没有。
pub(super) fn reasoning_of(value: &Value) -> Option<&str> {
    ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|key| value[*key].as_str().filter(|text| !text.is_empty()))
}
