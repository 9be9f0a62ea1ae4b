//! 请求翻译：OpenAI 请求 → Anthropic Messages 请求体。

use log::debug;
use serde_json::{json, Map, Value};

use super::PROVIDER_LABEL;
use crate::config::Target;
use crate::dialects::ChatRequest;
use crate::error::{ApiError, ErrorCode};
use crate::providers::convert;

/// 客户端与目标都没给输出上限时使用的值（与 LiteLLM 的缺省一致）；Anthropic 要求必填。
pub(super) const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Anthropic 接受的最大 temperature（OpenAI 允许到 2）。
pub(super) const MAX_TEMPERATURE: f64 = 1.0;
/// 用户消息角色。
pub(super) const ROLE_USER: &str = "user";
/// 助手消息角色。
const ROLE_ASSISTANT: &str = "assistant";
/// Anthropic 接受的图片 MIME 类型。
pub(super) const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];
/// PDF 文档的 MIME 类型（以 `document` 块发送）。
pub(super) const PDF_MIME: &str = "application/pdf";
/// 可以作为图片 URL 来源的协议前缀。
const URL_SCHEMES: &[&str] = &["https://", "http://"];
/// Anthropic 没有对应参数、因而丢弃的 OpenAI 参数。
const UNSUPPORTED: &[&str] = &[
    "seed",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "response_format",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "service_tier",
    "store",
    "metadata",
    "web_search_options",
];

/// 把客户端请求翻译为 Anthropic 请求体。
///
/// 错误：`n > 1`、没有非系统消息、内容无法表达（音频、不支持的图片类型等）或工具参数非法时返回 400。
pub(super) fn request_body(
    req: &ChatRequest,
    target: &Target,
) -> Result<Map<String, Value>, ApiError> {
    reject_multiple_choices(req)?;
    convert::log_dropped(req, UNSUPPORTED, PROVIDER_LABEL);
    let all = convert::messages(req);
    let messages = conversation(all)?;
    if messages.is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            "Anthropic 上游至少需要一条非系统消息（user、assistant 或 tool）",
        )
        .with_param("messages"));
    }
    let max_tokens = convert::output_limit(req, target).unwrap_or(DEFAULT_MAX_TOKENS);
    let mut body = Map::new();
    body.insert("model".into(), json!(target.model));
    body.insert("max_tokens".into(), json!(max_tokens));
    let system = system_blocks(all);
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    insert_sampling(req, &mut body);
    insert_tools(req, &mut body)?;
    if let Some(user) = req.body.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    if req.body.contains_key("stream") {
        body.insert("stream".into(), json!(req.stream));
    }
    Ok(body)
}

/// Anthropic 一次只生成一个候选回复：`n > 1` 明确拒绝，而不是悄悄只返回一个。
fn reject_multiple_choices(req: &ChatRequest) -> Result<(), ApiError> {
    if req.body.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
        return Err(ApiError::bad_request(
            ErrorCode::UnsupportedParameter,
            "Anthropic 上游每次只能生成一个候选回复，不支持 n 大于 1",
        )
        .with_param("n"));
    }
    Ok(())
}

/// 是否是系统消息（system 或 developer）。
fn is_system(message: &Value) -> bool {
    matches!(message["role"].as_str(), Some("system" | "developer"))
}

/// 按顺序收集全部 system 与 developer 消息，每条一个文本块（数组内容取全部文本部分，跳过空文本）。
///
/// 对话中间的系统消息同样提到 `system`，它原来的位置会丢失，记一条 DEBUG 日志。
fn system_blocks(messages: &[Value]) -> Vec<Value> {
    let mut seen_conversation = false;
    let mut blocks = Vec::new();
    for message in messages {
        if !is_system(message) {
            seen_conversation = true;
            continue;
        }
        if seen_conversation {
            debug!("对话中间的系统消息已移到 Anthropic 的 system 字段，其原有位置丢失");
        }
        if let Some(text) = convert::text_of(&message["content"]).filter(|t| !t.trim().is_empty()) {
            blocks.push(json!({ "type": "text", "text": text }));
        }
    }
    blocks
}

/// 一条待发送的 Anthropic 消息。
///
/// 工具结果与其他内容分开收集，输出时工具结果在前：Anthropic 要求工具调用之后的用户消息以全部
/// `tool_result` 块开头。分开存放让每次追加都是常数时间；过去每追加一个工具结果都要数一遍已有的
/// 工具结果再插到中间，上万条连续的 tool 消息会造成平方级的 CPU 开销。
#[derive(Debug)]
pub(super) struct Turn {
    /// `user` 或 `assistant`。
    role: &'static str,
    /// 按出现顺序排列的 `tool_result` 块。
    tool_results: Vec<Value>,
    /// 按出现顺序排列的其他内容块。
    others: Vec<Value>,
}

impl Turn {
    /// 创建一条没有内容的消息。
    fn new(role: &'static str) -> Self {
        Turn {
            role,
            tool_results: Vec::new(),
            others: Vec::new(),
        }
    }

    /// 把其他内容块接在末尾；这是第一批内容时直接接管这个 Vec，不再逐块搬动。
    fn push_content(&mut self, blocks: Vec<Value>) {
        if self.others.is_empty() {
            self.others = blocks;
        } else {
            self.others.extend(blocks);
        }
    }

    /// 输出为 Anthropic 消息（块直接移入，不复制）：工具结果在前，其他内容在后。
    pub(super) fn into_json(self) -> Value {
        let blocks = if self.tool_results.is_empty() {
            self.others
        } else {
            let mut blocks = self.tool_results;
            blocks.extend(self.others);
            blocks
        };
        let mut message = Map::new();
        message.insert("role".into(), Value::from(self.role));
        message.insert("content".into(), Value::Array(blocks));
        Value::Object(message)
    }
}

/// 把非系统消息翻译为 Anthropic 的 `messages`：tool 消息变为用户消息中的 `tool_result` 块，
/// 相邻同角色消息合并，以助手消息结尾时去掉预填充文本末尾的空白。
///
/// 每条消息只处理一次，耗时与消息数成线性关系。
fn conversation(messages: &[Value]) -> Result<Vec<Value>, ApiError> {
    let mut turns: Vec<Turn> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        match message["role"].as_str() {
            Some("user") => append(&mut turns, ROLE_USER, user_blocks(&message["content"], i)?),
            Some("assistant") => append(&mut turns, ROLE_ASSISTANT, assistant_blocks(message, i)?),
            Some("tool") => append_tool_result(&mut turns, tool_result(message, i)?),
            Some("function") => {
                return Err(ApiError::bad_request(
                    ErrorCode::UnsupportedValue,
                    "Anthropic 上游不支持已弃用的 function 角色消息，请改用 tool 消息",
                )
                .with_param(format!("messages[{i}].role")))
            }
            // system 与 developer 已由 system_blocks 收集。
            _ => {}
        }
    }
    trim_prefill(&mut turns);
    Ok(turns.into_iter().map(Turn::into_json).collect())
}

/// 取得对话的最后一条消息；它的角色不是 `role`（或还没有消息）时先新建一条。
///
/// 相邻同角色的消息因此合并成一条，连续的 tool 消息与其后的用户消息也落在同一条用户消息里。
fn last_turn<'a>(turns: &'a mut Vec<Turn>, role: &'static str) -> &'a mut Turn {
    if turns.last().is_none_or(|t| t.role != role) {
        turns.push(Turn::new(role));
    }
    // 上面保证至少有一条消息
    let last = turns.len() - 1;
    &mut turns[last]
}

/// 把一条 user 或 assistant 消息的内容块追加到对话末尾；没有块的消息（如空内容）直接跳过。
pub(super) fn append(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<Value>) {
    if !blocks.is_empty() {
        last_turn(turns, role).push_content(blocks);
    }
}

/// 把一条 tool 消息的 `tool_result` 块追加到最后一条用户消息，排在其中的其他内容之前（见 [`Turn`]）。
pub(super) fn append_tool_result(turns: &mut Vec<Turn>, block: Value) {
    last_turn(turns, ROLE_USER).tool_results.push(block);
}

/// 以助手消息结尾时 Anthropic 会续写它（预填充），而末尾带空白的预填充会被拒绝，所以去掉末尾空白。
fn trim_prefill(turns: &mut [Turn]) {
    let Some(last) = turns.last_mut().filter(|t| t.role == ROLE_ASSISTANT) else {
        return;
    };
    // 助手消息没有工具结果，最后一块总在其他内容里
    if let Some(block) = last.others.last_mut().filter(|b| b["type"] == "text") {
        let trimmed = block["text"]
            .as_str()
            .unwrap_or_default()
            .trim_end()
            .to_string();
        block["text"] = json!(trimmed);
    }
}

/// 非空文本的文本块；空文本为 `None`（Anthropic 拒绝空文本块）。
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "type": "text", "text": text }))
}

/// 用户消息（或工具结果）内容的块：字符串为一个文本块，数组逐个翻译并跳过空文本。
fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::String(text) => Ok(text_block(text).into_iter().collect()),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, part)| {
                part_block(part, &format!("messages[{i}].content[{j}]")).transpose()
            })
            .collect(),
        _ => Ok(Vec::new()),
    }
}

/// 翻译一个内容部分；`param` 为它在请求中的位置。
///
/// 未知类型（包括混进 OpenAI 消息的 Anthropic 格式块 `tool_use`、`tool_result`）明确返回 400，
/// 不悄悄丢弃。
fn part_block(part: &Value, param: &str) -> Result<Option<Value>, ApiError> {
    match part["type"].as_str() {
        Some("text") => Ok(part["text"].as_str().and_then(text_block)),
        Some("image_url") => {
            image_block(&part["image_url"], &format!("{param}.image_url.url")).map(Some)
        }
        Some("file") => file_block(&part["file"], &format!("{param}.file.file_data")).map(Some),
        Some("input_audio") => Err(unsupported_content(param, "音频输入（input_audio）")),
        other => Err(unsupported_content(
            param,
            &format!("内容类型 `{}`", other.unwrap_or("（缺失）")),
        )),
    }
}

/// 内容无法翻译为 Anthropic 格式的 400 错误。
fn unsupported_content(param: &str, what: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::UnsupportedContent,
        format!("Anthropic 上游不支持 `{param}` 中的{what}"),
    )
    .with_param(param)
}

/// `image_url` 部分：base64 data URL → base64 来源，http(s) 地址 → url 来源（`detail` 无对应字段，丢弃）。
fn image_block(image_url: &Value, param: &str) -> Result<Value, ApiError> {
    let url = image_url["url"]
        .as_str()
        .or(image_url.as_str())
        .unwrap_or_default();
    if let Some((mime, data)) = convert::parse_data_url(url) {
        return base64_block(mime, data, param);
    }
    if URL_SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(ApiError::bad_request(
        ErrorCode::InvalidImageUrl,
        format!("`{param}` 必须是 http(s) 地址或 base64 编码的 data URL"),
    )
    .with_param(param))
}

/// base64 数据按 MIME 类型成为图片块或 PDF 文档块；其他类型返回 400。
fn base64_block(mime: &str, data: &str, param: &str) -> Result<Value, ApiError> {
    if IMAGE_TYPES.contains(&mime) {
        return Ok(
            json!({ "type": "image", "source": { "type": "base64", "media_type": mime, "data": data } }),
        );
    }
    if mime == PDF_MIME {
        return Ok(
            json!({ "type": "document", "source": { "type": "base64", "media_type": PDF_MIME, "data": data } }),
        );
    }
    Err(ApiError::bad_request(
        ErrorCode::UnsupportedMediaType,
        format!(
            "`{param}` 的类型 `{mime}` 不受 Anthropic 支持，图片只能是 {}，文档只能是 PDF",
            IMAGE_TYPES.join("、")
        ),
    )
    .with_param(param))
}

/// `file` 部分：只支持 PDF 的 base64 data URL（Anthropic 无法引用 OpenAI 的 `file_id`）。
fn file_block(file: &Value, param: &str) -> Result<Value, ApiError> {
    match file["file_data"].as_str().and_then(convert::parse_data_url) {
        Some((mime, data)) if mime == PDF_MIME => base64_block(mime, data, param),
        _ => Err(ApiError::bad_request(
            ErrorCode::UnsupportedContent,
            format!("`{param}` 只支持 PDF 的 base64 data URL（不支持 file_id 与其他文件类型）"),
        )
        .with_param(param)),
    }
}

/// tool 消息 → `tool_result` 块；内容为空时省略 `content`（空文本块会被拒绝）。
fn tool_result(message: &Value, i: usize) -> Result<Value, ApiError> {
    let id = required_str(
        &message["tool_call_id"],
        &format!("messages[{i}].tool_call_id"),
    )?;
    let mut block = json!({ "type": "tool_result", "tool_use_id": id });
    let content = &message["content"];
    let output = match content.as_str() {
        Some(text) => (!text.is_empty()).then(|| json!(text)),
        None => {
            let blocks = user_blocks(content, i)?;
            (!blocks.is_empty()).then_some(Value::Array(blocks))
        }
    };
    if let Some(output) = output {
        block["content"] = output;
    }
    Ok(block)
}

/// 助手消息 → 文本块（空、null 或纯空白时省略）加 `tool_use` 块。
///
/// 数组内容只允许文本（与拒绝）部分；其他部分明确拒绝，而不是悄悄丢弃。
fn assistant_blocks(message: &Value, i: usize) -> Result<Vec<Value>, ApiError> {
    let parts = message["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if let Some(j) = parts
        .iter()
        .position(|p| !matches!(p["type"].as_str(), Some("text" | "refusal")))
    {
        let param = format!("messages[{i}].content[{j}]");
        return Err(unsupported_content(&param, "助手消息里的非文本内容"));
    }
    let mut blocks: Vec<Value> = convert::text_of(&message["content"])
        .filter(|t| !t.trim().is_empty())
        .and_then(|t| text_block(&t))
        .into_iter()
        .collect();
    let calls = message["tool_calls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (j, call) in calls.iter().enumerate() {
        blocks.push(tool_use_block(
            call,
            &format!("messages[{i}].tool_calls[{j}]"),
        )?);
    }
    Ok(blocks)
}

/// 历史中的一个工具调用 → `tool_use` 块；参数解析失败时返回 400，`param` 指向该参数。
fn tool_use_block(call: &Value, param: &str) -> Result<Value, ApiError> {
    let id = required_str(&call["id"], &format!("{param}.id"))?;
    let function = &call["function"];
    let name = required_str(&function["name"], &format!("{param}.function.name"))?;
    let input = convert::tool_arguments(
        &function["arguments"],
        &format!("{param}.function.arguments"),
    )?;
    Ok(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
}

/// 取必填的非空字符串字段，缺失时返回指向它的 400。
fn required_str<'a>(value: &'a Value, param: &str) -> Result<&'a str, ApiError> {
    value.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::MissingRequiredParameter,
            format!("缺少必填字段 `{param}`"),
        )
        .with_param(param)
    })
}

/// 采样参数与停止序列。
///
/// temperature 超过 Anthropic 上限时截断为 1.0；temperature 与 top_p 同时给出时丢弃 top_p，
/// 因为较新的 Claude 模型拒绝两者同时出现。没有截断的数值原样转发。
fn insert_sampling(req: &ChatRequest, body: &mut Map<String, Value>) {
    let temperature = req.body.get("temperature").filter(|v| v.is_number());
    if let Some(value) = temperature {
        let clamped = value.as_f64().is_some_and(|t| t > MAX_TEMPERATURE);
        if clamped {
            debug!("temperature {value} 超过 Anthropic 的上限，已截断为 {MAX_TEMPERATURE}");
        }
        let value = if clamped {
            json!(MAX_TEMPERATURE)
        } else {
            value.clone()
        };
        body.insert("temperature".into(), value);
    }
    if let Some(top_p) = req.body.get("top_p").filter(|v| v.is_number()) {
        if temperature.is_some() {
            debug!("同时给出了 temperature 与 top_p，Anthropic 只接受其一，已丢弃 top_p");
        } else {
            body.insert("top_p".into(), top_p.clone());
        }
    }
    if let Some(stop) = convert::stop_sequences(req).filter(|s| !s.is_empty()) {
        body.insert("stop_sequences".into(), json!(stop));
    }
}

/// 工具定义与工具选择；没有工具时两者都不发送（Anthropic 的 tool_choice 离开 tools 没有意义）。
fn insert_tools(req: &ChatRequest, body: &mut Map<String, Value>) -> Result<(), ApiError> {
    let Some(list) = req
        .body
        .get("tools")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return Ok(());
    };
    let tools = list
        .iter()
        .enumerate()
        .map(|(k, tool)| tool_definition(tool, k))
        .collect::<Result<Vec<_>, _>>()?;
    body.insert("tools".into(), Value::Array(tools));
    if let Some(choice) = tool_choice(req)? {
        body.insert("tool_choice".into(), choice);
    }
    Ok(())
}

/// 一个 OpenAI 函数工具 → `{name, description, input_schema}`（没有参数 Schema 时给空对象 Schema）。
fn tool_definition(tool: &Value, k: usize) -> Result<Value, ApiError> {
    let function = &tool["function"];
    let name = required_str(&function["name"], &format!("tools[{k}].function.name"))?;
    let mut definition = json!({ "name": name });
    if let Some(description) = function["description"].as_str() {
        definition["description"] = json!(description);
    }
    definition["input_schema"] = match &function["parameters"] {
        Value::Object(schema) => Value::Object(schema.clone()),
        _ => json!({ "type": "object", "properties": {} }),
    };
    Ok(definition)
}

/// `tool_choice` 与 `parallel_tool_calls` → Anthropic 的 `tool_choice`。
///
/// auto/none/required/指定函数分别对应 auto/none/any/tool；`parallel_tool_calls: false` 变为
/// `disable_parallel_tool_use: true`（客户端没给 tool_choice 时补一个 auto；none 不接受该字段）。
fn tool_choice(req: &ChatRequest) -> Result<Option<Value>, ApiError> {
    let mut choice = match req.body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => Some(match mode.as_str() {
            "auto" => json!({ "type": "auto" }),
            "none" => json!({ "type": "none" }),
            "required" => json!({ "type": "any" }),
            _ => return Err(bad_tool_choice()),
        }),
        Some(named) => match named["function"]["name"].as_str() {
            Some(name) => Some(json!({ "type": "tool", "name": name })),
            None => return Err(bad_tool_choice()),
        },
    };
    if req.body.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let choice = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    Ok(choice)
}

/// 无法翻译的 `tool_choice`。
fn bad_tool_choice() -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidValue,
        "`tool_choice` 应为 auto、none、required 或 {\"type\":\"function\",\"function\":{\"name\":…}}",
    )
    .with_param("tool_choice")
}
