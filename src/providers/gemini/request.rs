//! 请求翻译：OpenAI 请求 → Gemini `generateContent` 请求体与路径。

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::signature::extract_signature;
use crate::config::Target;
use crate::dialects::ChatRequest;
use crate::error::{ApiError, ErrorCode};
use crate::providers::convert;

/// 模型接口的路径前缀（API 版本 v1beta）。
const MODELS_PATH: &str = "/v1beta/models/";
/// 非流式方法。
const GENERATE_METHOD: &str = ":generateContent";
/// 输入 token 计数方法。
const COUNT_METHOD: &str = ":countTokens";
/// 批量向量方法。
const EMBED_METHOD: &str = ":batchEmbedContents";
/// 流式方法：`alt=sse` 让上游返回 SSE，而不是逐步输出的 JSON 数组。
const STREAM_METHOD: &str = ":streamGenerateContent?alt=sse";
/// 原样搬进 `generationConfig` 的采样参数：(OpenAI 字段, Gemini 字段)。
const SAMPLING_FIELDS: &[(&str, &str)] = &[
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
];
/// 用户一方的角色（也承载函数响应）。
const ROLE_USER: &str = "user";
/// 模型一方的角色（对应 OpenAI 的 assistant）。
const ROLE_MODEL: &str = "model";
/// 函数响应里存放工具输出的键（官方约定输出放 `output`、错误放 `error`）。
const OUTPUT_KEY: &str = "output";
/// JSON 输出的 MIME 类型。
const JSON_MIME: &str = "application/json";
/// 图片 MIME 类型的前缀。
const IMAGE_MIME_PREFIX: &str = "image/";
/// 音频 MIME 类型的前缀（OpenAI 只给格式名，如 `wav`）。
const AUDIO_MIME_PREFIX: &str = "audio/";
/// 无法从扩展名推断图片类型时使用的 MIME。
const DEFAULT_IMAGE_MIME: &str = "image/jpeg";
/// 图片地址扩展名到 MIME 类型的映射。
const IMAGE_MIME_BY_EXTENSION: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("webp", "image/webp"),
    ("gif", "image/gif"),
    ("heic", "image/heic"),
    ("heif", "image/heif"),
];
/// 可以作为 `fileData.fileUri` 转发的地址前缀。
const WEB_URL_PREFIXES: &[&str] = &["https://", "http://"];

/// 拼出接口路径：流式用 `streamGenerateContent?alt=sse`，否则用 `generateContent`。
pub(super) fn request_path(base_path: &str, model: &str, stream: bool) -> String {
    let method = if stream {
        STREAM_METHOD
    } else {
        GENERATE_METHOD
    };
    format!("{base_path}{MODELS_PATH}{model}{method}")
}

/// 批量向量接口的路径。
pub(super) fn embed_path(base_path: &str, model: &str) -> String {
    format!("{base_path}{MODELS_PATH}{model}{EMBED_METHOD}")
}

/// 输入 token 计数接口的路径。
pub(super) fn count_path(base_path: &str, model: &str) -> String {
    format!("{base_path}{MODELS_PATH}{model}{COUNT_METHOD}")
}

/// 构造 Gemini 请求体（字段名一律 lowerCamelCase）。
pub(super) fn request_body(req: &ChatRequest, target: &Target) -> Result<Value, ApiError> {
    let Conversation { system, contents } = Conversation::from_messages(convert::messages(req))?;
    let mut body = Map::new();
    body.insert("contents".into(), contents_json(contents));
    if !system.is_empty() {
        let mut instruction = Map::new();
        instruction.insert("parts".into(), Value::Array(system));
        body.insert("systemInstruction".into(), Value::Object(instruction));
    }
    if let Some(tools) = tools(req)? {
        body.insert("tools".into(), tools);
    }
    if let Some(config) = tool_config(req)? {
        body.insert("toolConfig".into(), config);
    }
    let generation = generation_config(req, target)?;
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    Ok(Value::Object(body))
}

/// 正在构造的 Gemini 对话：系统指令的各部分，以及按角色合并后的内容（角色, 部分）。
#[derive(Default)]
struct Conversation {
    system: Vec<Value>,
    contents: Vec<(&'static str, Vec<Value>)>,
}

impl Conversation {
    /// 逐条翻译 OpenAI 消息。
    ///
    /// 错误：消息无法表示为 Gemini 格式（未知的工具调用 id、非法参数、不支持的内容类型）时返回 400。
    fn from_messages(messages: &[Value]) -> Result<Self, ApiError> {
        let names = convert::tool_names_by_id(messages);
        let mut conversation = Conversation::default();
        for (i, message) in messages.iter().enumerate() {
            match message["role"].as_str().unwrap_or_default() {
                "system" | "developer" => conversation
                    .system
                    .extend(convert::text_of(&message["content"]).and_then(text_part)),
                "user" => conversation.push(ROLE_USER, user_parts(&message["content"], i)?),
                "assistant" => conversation.push(ROLE_MODEL, model_parts(message, i)?),
                "tool" => {
                    let part = function_response(message, i, &names)?;
                    conversation.push(ROLE_USER, vec![part]);
                }
                other => return Err(unsupported_role(other, i)),
            }
        }
        Ok(conversation)
    }

    /// 追加一个内容；与上一个内容角色相同时并入它（Gemini 期望角色交替，连续的 tool 消息也借此合成一个）。
    fn push(&mut self, role: &'static str, parts: Vec<Value>) {
        if parts.is_empty() {
            return;
        }
        match self.contents.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => self.contents.push((role, parts)),
        }
    }
}

/// 把合并后的内容转为 `contents` 数组；各部分直接移入，不再复制一遍（上万条消息时这份复制很可观）。
fn contents_json(contents: Vec<(&'static str, Vec<Value>)>) -> Value {
    contents
        .into_iter()
        .map(|(role, parts)| {
            let mut content = Map::new();
            content.insert("role".into(), Value::from(role));
            content.insert("parts".into(), Value::Array(parts));
            Value::Object(content)
        })
        .collect()
}

/// 不支持的消息角色（如已弃用的 `function`）→ 400。
fn unsupported_role(role: &str, i: usize) -> ApiError {
    ApiError::bad_request(
        ErrorCode::UnsupportedRole,
        format!("Gemini 上游不支持角色为 `{role}` 的消息，请改用 tool 消息回传工具结果"),
    )
    .with_param(format!("messages[{i}].role"))
}

/// 非空文本的 `{text}` 部分；空文本返回 `None`（Gemini 拒绝空文本部分）。
fn text_part(text: impl Into<String>) -> Option<Value> {
    let text: String = text.into();
    (!text.is_empty()).then(|| json!({ "text": text }))
}

/// 用户消息内容 → Gemini 部分：字符串或由文本、图片、音频组成的数组。
fn user_parts(content: &Value, i: usize) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::String(text) => Ok(text_part(text.as_str()).into_iter().collect()),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, part)| {
                user_part(part, &format!("messages[{i}].content[{j}]")).transpose()
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(ApiError::bad_request(
            ErrorCode::InvalidContent,
            "消息内容必须是字符串或内容部分数组",
        )
        .with_param(format!("messages[{i}].content"))),
    }
}

/// 一个用户内容部分；空文本返回 `None`。
fn user_part(part: &Value, param: &str) -> Result<Option<Value>, ApiError> {
    match part["type"].as_str() {
        Some("text") => Ok(text_part(part["text"].as_str().unwrap_or_default())),
        Some("image_url") => image_part(&part["image_url"], param).map(Some),
        Some("input_audio") => audio_part(&part["input_audio"], param).map(Some),
        other => Err(ApiError::bad_request(
            ErrorCode::UnsupportedContentPart,
            format!(
                "Gemini 上游不支持内容部分类型 `{}`",
                other.unwrap_or("（缺失）")
            ),
        )
        .with_param(format!("{param}.type"))),
    }
}

/// 图片：base64 data URL → `inlineData`；http(s) 地址 → `fileData`（MIME 按扩展名推断）。
fn image_part(image: &Value, param: &str) -> Result<Value, ApiError> {
    let url = image["url"].as_str().or(image.as_str()).unwrap_or_default();
    let param = format!("{param}.image_url.url");
    if let Some((mime, data)) = convert::parse_data_url(url) {
        if !mime.starts_with(IMAGE_MIME_PREFIX) {
            return Err(ApiError::bad_request(
                ErrorCode::UnsupportedImageType,
                format!("图片的 MIME 类型 `{mime}` 不是图片类型"),
            )
            .with_param(param));
        }
        return Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }));
    }
    if WEB_URL_PREFIXES.iter().any(|p| url.starts_with(p)) {
        return Ok(json!({ "fileData": { "mimeType": guess_image_mime(url), "fileUri": url } }));
    }
    Err(ApiError::bad_request(
        ErrorCode::InvalidImageUrl,
        "图片地址必须是 base64 data URL 或 http(s) 地址",
    )
    .with_param(param))
}

/// 按地址路径的扩展名推断图片 MIME 类型（忽略查询串与片段），推断不出时用 `image/jpeg`。
fn guess_image_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let extension = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    IMAGE_MIME_BY_EXTENSION
        .iter()
        .find(|(ext, _)| ext.eq_ignore_ascii_case(extension))
        .map_or(DEFAULT_IMAGE_MIME, |(_, mime)| mime)
}

/// 音频：`{data, format}` → `inlineData`，MIME 为 `audio/<format>`。
fn audio_part(audio: &Value, param: &str) -> Result<Value, ApiError> {
    match (audio["data"].as_str(), audio["format"].as_str()) {
        (Some(data), Some(format)) if !format.is_empty() => Ok(
            json!({ "inlineData": { "mimeType": format!("{AUDIO_MIME_PREFIX}{format}"), "data": data } }),
        ),
        _ => Err(ApiError::bad_request(
            ErrorCode::InvalidInputAudio,
            "input_audio 必须包含 data 与 format",
        )
        .with_param(format!("{param}.input_audio"))),
    }
}

/// 助手消息 → model 部分：非空文本在前，每个工具调用一个 `functionCall`（附还原出的思维签名）。
fn model_parts(message: &Value, i: usize) -> Result<Vec<Value>, ApiError> {
    let mut parts: Vec<Value> = convert::text_of(&message["content"])
        .and_then(text_part)
        .into_iter()
        .collect();
    for (k, call) in message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        parts.push(function_call_part(
            call,
            &format!("messages[{i}].tool_calls[{k}]"),
        )?);
    }
    Ok(parts)
}

/// 一个助手工具调用 → `functionCall` 部分：参数字符串解析为对象（非法时 400），id 中嵌有签名时附上 `thoughtSignature`。
fn function_call_part(call: &Value, param: &str) -> Result<Value, ApiError> {
    let function = &call["function"];
    let name = function["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(ErrorCode::MissingToolName, "工具调用缺少函数名")
                .with_param(format!("{param}.function.name"))
        })?;
    let args = convert::tool_arguments(
        &function["arguments"],
        &format!("{param}.function.arguments"),
    )?;
    let mut part = json!({ "functionCall": { "name": name, "args": args } });
    if let Some(signature) = call["id"].as_str().and_then(extract_signature) {
        part["thoughtSignature"] = Value::String(signature);
    }
    Ok(part)
}

/// tool 消息 → `functionResponse`：函数名按 `tool_call_id` 从历史中的助手工具调用找回。
fn function_response(
    message: &Value,
    i: usize,
    names: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let id = message["tool_call_id"].as_str().unwrap_or_default();
    let name = names.get(id).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::UnknownToolCallId,
            format!("tool 消息的 tool_call_id `{id}` 找不到对应的助手工具调用，无法得知 Gemini 需要的函数名"),
        )
        .with_param(format!("messages[{i}].tool_call_id"))
    })?;
    let output = tool_output(&message["content"]);
    Ok(json!({ "functionResponse": { "name": name, "response": { OUTPUT_KEY: output } } }))
}

/// 工具输出：文本是 JSON 对象或数组时按结构化数据传递，否则按原文字符串传递。
fn tool_output(content: &Value) -> Value {
    let text = convert::text_of(content).unwrap_or_default();
    match serde_json::from_str::<Value>(&text) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => value,
        _ => Value::String(text),
    }
}

/// `tools[].function` → 一组 `functionDeclarations`（`parameters` 作为 `parametersJsonSchema`，丢弃 `strict`）。
fn tools(req: &ChatRequest) -> Result<Option<Value>, ApiError> {
    let Some(list) = req
        .body
        .get("tools")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return Ok(None);
    };
    let declarations = list
        .iter()
        .enumerate()
        .map(|(k, tool)| declaration(tool, &format!("tools[{k}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(json!([ { "functionDeclarations": declarations } ])))
}

/// 一个 OpenAI 工具定义 → `FunctionDeclaration`；只接受 function 类型，函数名必填。
fn declaration(tool: &Value, param: &str) -> Result<Value, ApiError> {
    if tool["type"] != "function" {
        return Err(ApiError::bad_request(
            ErrorCode::UnsupportedToolType,
            "Gemini 上游只支持 function 类型的工具",
        )
        .with_param(format!("{param}.type")));
    }
    let function = &tool["function"];
    let name = function["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(ErrorCode::MissingToolName, "工具定义缺少函数名")
                .with_param(format!("{param}.function.name"))
        })?;
    let mut declaration = Map::new();
    declaration.insert("name".into(), name.into());
    if let Some(description) = function["description"].as_str() {
        declaration.insert("description".into(), description.into());
    }
    if !function["parameters"].is_null() {
        declaration.insert(
            "parametersJsonSchema".into(),
            function["parameters"].clone(),
        );
    }
    Ok(Value::Object(declaration))
}

/// `tool_choice` → `toolConfig.functionCallingConfig`：auto/none/required/指定函数 → AUTO/NONE/ANY/ANY+允许列表。
fn tool_config(req: &ChatRequest) -> Result<Option<Value>, ApiError> {
    let Some(choice) = req.body.get("tool_choice").filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    let named = choice["function"]["name"]
        .as_str()
        .filter(|_| choice["type"] == "function");
    let config = match (choice.as_str(), named) {
        (Some("auto"), _) => json!({ "mode": "AUTO" }),
        (Some("none"), _) => json!({ "mode": "NONE" }),
        (Some("required"), _) => json!({ "mode": "ANY" }),
        (None, Some(name)) => json!({ "mode": "ANY", "allowedFunctionNames": [name] }),
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidToolChoice,
                "tool_choice 只能是 auto、none、required 或指定一个函数",
            )
            .with_param("tool_choice"))
        }
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

/// `generationConfig`：输出上限、采样参数、停止序列与 JSON 输出格式。
fn generation_config(req: &ChatRequest, target: &Target) -> Result<Map<String, Value>, ApiError> {
    let mut config = Map::new();
    if let Some(max) = convert::output_limit(req, target) {
        config.insert("maxOutputTokens".into(), max.into());
    }
    for (openai, gemini) in SAMPLING_FIELDS {
        if let Some(value) = req.body.get(*openai).filter(|v| !v.is_null()) {
            config.insert((*gemini).into(), value.clone());
        }
    }
    if let Some(stop) = convert::stop_sequences(req).filter(|s| !s.is_empty()) {
        config.insert("stopSequences".into(), json!(stop));
    }
    if let Some(budget) = thinking_budget(req) {
        config.insert("thinkingConfig".into(), json!({ "thinkingBudget": budget }));
    }
    response_format(req, &mut config)?;
    Ok(config)
}

/// `reasoning_effort` → Gemini 的思考预算（token）：low、medium、high 各一档；其他取值（如 minimal）不设，
/// 用模型的缺省值（有的 Gemini 模型不能关闭思考，设 0 会被拒绝）。
fn thinking_budget(req: &ChatRequest) -> Option<u64> {
    let effort = req.body.get("reasoning_effort")?.as_str()?;
    THINKING_BUDGETS
        .iter()
        .find(|(name, _)| *name == effort)
        .map(|(_, budget)| *budget)
}

/// 推理力度与 Gemini 思考预算的对应。
const THINKING_BUDGETS: &[(&str, u64)] = &[("low", 1024), ("medium", 8192), ("high", 24_576)];

/// `response_format`：json_object → `responseMimeType`；json_schema 另加 `responseJsonSchema`。
fn response_format(req: &ChatRequest, config: &mut Map<String, Value>) -> Result<(), ApiError> {
    let Some(format) = req.body.get("response_format").filter(|f| !f.is_null()) else {
        return Ok(());
    };
    match format["type"].as_str() {
        Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), JSON_MIME.into());
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), JSON_MIME.into());
            let schema = &format["json_schema"]["schema"];
            if !schema.is_null() {
                config.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::UnsupportedResponseFormat,
                "response_format.type 只能是 text、json_object 或 json_schema",
            )
            .with_param("response_format.type"))
        }
    }
    Ok(())
}
