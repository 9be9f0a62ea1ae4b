//! Gemini 上游（generativelanguage v1beta）：把 OpenAI 请求翻译为 Gemini 格式，
//! 把完整响应、SSE 流与错误翻译回 OpenAI。
//!
//! 要点：所有 system/developer 消息进入 `systemInstruction`；连续的 tool 消息合成一个 user 内容里的
//! 多个 `functionResponse`（数量必须与上一轮的 `functionCall` 相同）；同角色相邻内容合并；
//! Gemini 的 `functionCall` 没有 id，网关合成唯一的工具调用 id，并把思维签名嵌进 id，
//! 客户端回传历史时再还原到对应的 `functionCall` 部分旁边。

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use bytes::{Bytes, BytesMut};
use http::HeaderName;
use serde_json::{json, Map, Value};

use super::convert::{self, Completion, ToolCall};
use super::{
    json_content_type, key_header, stream_error, truncate_chars, ProviderFilter, StreamStatus,
    StreamTranslator, TranslateCtx, TranslatedReply, UpstreamErrorInfo, UpstreamRequest,
    MAX_ERROR_TEXT_CHARS,
};
use crate::config::Target;
use crate::dialects::ChatRequest;
use crate::error::{ApiError, ErrorCode};
use crate::streaming::{ChunkWriter, FinishReason, SseEvent, Usage};

/// 模型接口的路径前缀（API 版本 v1beta）。
const MODELS_PATH: &str = "/v1beta/models/";
/// 非流式方法。
const GENERATE_METHOD: &str = ":generateContent";
/// 流式方法：`alt=sse` 让上游返回 SSE，而不是逐步输出的 JSON 数组。
const STREAM_METHOD: &str = ":streamGenerateContent?alt=sse";
/// 认证头名称：密钥只放在头里，绝不放进查询串，以免落入各处的 URL 日志。
const API_KEY_HEADER: &str = "x-goog-api-key";
/// 日志中的上游协议名。
const PROVIDER_LABEL: &str = "gemini";
/// Gemini 没有对应项、直接丢弃（记 DEBUG 日志）的 OpenAI 参数。
const UNSUPPORTED_PARAMS: &[&str] = &[
    "user",
    "logit_bias",
    "metadata",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
];
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
/// 补全 id 的前缀。
const COMPLETION_ID_PREFIX: &str = "chatcmpl-";
/// 没有参数的函数调用在 OpenAI 中的参数字符串。
const EMPTY_ARGUMENTS: &str = "{}";
/// 上游响应无法解析时的错误码。
const CODE_INVALID_RESPONSE: ErrorCode = ErrorCode::InvalidUpstreamResponse;
/// 合成的工具调用 id 的前缀。
const CALL_ID_PREFIX: &str = "call_";
/// 工具调用 id 中思维签名的起始标记，其后一个字符表示编码方式。
const SIGNATURE_MARKER: &str = "_sig";
/// 签名编码方式：URL 安全、无填充的 base64。
const SIGNATURE_BASE64URL: char = 'b';
/// 签名编码方式：UTF-8 字节的十六进制。
const SIGNATURE_HEX: char = 'h';
/// base64 每组的字符数（填充到它的整数倍）。
const BASE64_GROUP: usize = 4;
/// 规范 base64 末尾最多的填充字符数。
const MAX_BASE64_PADDING: usize = 2;
/// 表示正常结束的 Gemini 结束原因（有函数调用时映射为 `tool_calls`）。
const STOP_REASONS: &[&str] = &["STOP", "FINISH_REASON_UNSPECIFIED"];
/// 映射为 `content_filter` 的 Gemini 结束原因（`OTHER` 按 LiteLLM 的做法也归入此类）。
const FILTER_REASONS: &[&str] = &[
    "SAFETY",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "RECITATION",
    "LANGUAGE",
    "OTHER",
    "IMAGE_RECITATION",
    "IMAGE_OTHER",
    "NO_IMAGE",
];
/// 映射为 `length` 的 Gemini 结束原因。
const LENGTH_REASON: &str = "MAX_TOKENS";
/// Gemini 的 token 计数是 int32；超出的值按此封顶，避免求和溢出。
const MAX_TOKEN_COUNT: u64 = i32::MAX as u64;
/// 密钥无效时 `ErrorInfo.reason` 的取值（HTTP 400，语义上是 401）。
const REASON_API_KEY_INVALID: &str = "API_KEY_INVALID";
/// 错误详情 `@type` 的结尾：重试等待时间。
const RETRY_INFO_TYPE: &str = "google.rpc.RetryInfo";
/// 错误详情 `@type` 的结尾：配额违规。
const QUOTA_FAILURE_TYPE: &str = "google.rpc.QuotaFailure";
/// 错误详情 `@type` 的结尾：错误原因。
const ERROR_INFO_TYPE: &str = "google.rpc.ErrorInfo";
/// 配额名归一化（小写、去掉分隔符）后含有它即为按天配额。
const PER_DAY_MARKER: &str = "perday";
/// 限流或配额耗尽时的 gRPC 状态。
const STATUS_EXHAUSTED: &str = "RESOURCE_EXHAUSTED";
/// 资源（通常是模型）不存在时的 gRPC 状态。
const STATUS_NOT_FOUND: &str = "NOT_FOUND";
/// HTTP 429（请求过多）。
const HTTP_TOO_MANY_REQUESTS: u16 = 429;
/// HTTP 404（资源不存在）。
const HTTP_NOT_FOUND: u16 = 404;
/// HTTP 401：密钥无效按它交给通用映射（随后报告为上游认证失败）。
const HTTP_UNAUTHORIZED: u16 = 401;

/// Gemini 协议过滤器。
///
/// 用途：由 [`super::filter_for`] 为 `gemini` 类型的上游返回。
pub(super) struct GeminiFilter;

impl ProviderFilter for GeminiFilter {
    fn build_request(
        &self,
        req: &ChatRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        convert::log_dropped(req, UNSUPPORTED_PARAMS, PROVIDER_LABEL);
        let body = request_body(req, target)?;
        let provider = &target.provider;
        let mut headers = vec![json_content_type()];
        headers.extend(key_header(
            provider,
            HeaderName::from_static(API_KEY_HEADER),
            "",
        )?);
        Ok(UpstreamRequest {
            path: request_path(&provider.base_url.path, &target.model, req.stream),
            headers,
            body: Bytes::from(body.to_string()),
        })
    }

    fn translate_response(
        &self,
        body: Bytes,
        ctx: &TranslateCtx,
    ) -> Result<TranslatedReply, ApiError> {
        let response = parse_object(&body)?;
        Ok(completion(&response, ctx).into())
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo {
        parse_gemini_error(status, body)
    }

    fn stream_translator(&self, ctx: TranslateCtx) -> Box<dyn StreamTranslator> {
        Box::new(GeminiStream {
            ctx,
            writer: None,
            state: StreamState::default(),
        })
    }
}

// ───────────────────────────── 请求：OpenAI → Gemini ─────────────────────────────

/// 拼出接口路径：流式用 `streamGenerateContent?alt=sse`，否则用 `generateContent`。
fn request_path(base_path: &str, model: &str, stream: bool) -> String {
    let method = if stream {
        STREAM_METHOD
    } else {
        GENERATE_METHOD
    };
    format!("{base_path}{MODELS_PATH}{model}{method}")
}

/// 构造 Gemini 请求体（字段名一律 lowerCamelCase）。
fn request_body(req: &ChatRequest, target: &Target) -> Result<Value, ApiError> {
    let conversation = Conversation::from_messages(convert::messages(req))?;
    let mut body = Map::new();
    body.insert("contents".into(), conversation.contents_json());
    if !conversation.system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({ "parts": conversation.system }),
        );
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

    /// 序列化为 `contents` 数组。
    fn contents_json(&self) -> Value {
        self.contents
            .iter()
            .map(|(role, parts)| json!({ "role": role, "parts": parts }))
            .collect()
    }
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
    if let Some(max) = convert::max_tokens(req).or(target.max_tokens) {
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
    response_format(req, &mut config)?;
    Ok(config)
}

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

// ───────────────────────────── 思维签名与工具调用 id ─────────────────────────────
//
// Gemini 要求把模型给出的 `thoughtSignature` 原样放回同一个 `functionCall` 部分旁边，
// 而 OpenAI 格式没有地方存它。网关无状态，于是把签名编码进合成的工具调用 id，客户端回传历史时
// 从 id 中解出签名。id 的格式（可逆，只用 `[A-Za-z0-9_-]`，各家客户端与上游都接受）：
//
//   call_<16 位十六进制>                       —— 没有签名
//   call_<16 位十六进制>_sigb<URL 安全 base64>  —— 签名是规范的标准 base64（常见情况）：
//                                                `+` `/` 换成 `-` `_` 并去掉 `=` 填充，
//                                                还原时换回并按 4 的整数倍补齐 `=`，长度不膨胀
//   call_<16 位十六进制>_sigh<十六进制>          —— 其他任何字符串：按 UTF-8 字节十六进制编码
//
// 十六进制部分不含 `_`，所以第一个 `_sig` 必定是标记。解不出签名的 id（客户端自己生成的、
// 被截断的）按原样处理：不附签名。

/// 合成工具调用 id：由补全 id 与调用序号确定（同一响应重放得到同一 id，不同响应互不相同），再嵌入思维签名。
fn call_id(seed: &str, index: usize, signature: Option<&str>) -> String {
    let mut hasher = DefaultHasher::new();
    (seed, index).hash(&mut hasher);
    embed_signature(
        format!("{CALL_ID_PREFIX}{:016x}", hasher.finish()),
        signature,
    )
}

/// 把思维签名编码后接在 id 之后；没有签名或签名为空时原样返回。
fn embed_signature(base: String, signature: Option<&str>) -> String {
    match signature.filter(|s| !s.is_empty()) {
        None => base,
        Some(sig) if is_canonical_base64(sig) => {
            let encoded: String = sig
                .trim_end_matches('=')
                .chars()
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            format!("{base}{SIGNATURE_MARKER}{SIGNATURE_BASE64URL}{encoded}")
        }
        Some(sig) => format!(
            "{base}{SIGNATURE_MARKER}{SIGNATURE_HEX}{}",
            hex::encode(sig)
        ),
    }
}

/// 从合成的工具调用 id 中解出思维签名；id 不含签名或无法解码时为 `None`。
fn extract_signature(id: &str) -> Option<String> {
    let (_, encoded) = id
        .strip_prefix(CALL_ID_PREFIX)?
        .split_once(SIGNATURE_MARKER)?;
    let mut chars = encoded.chars();
    let scheme = chars.next()?;
    let payload = chars.as_str();
    let signature = match scheme {
        SIGNATURE_BASE64URL => from_base64url(payload)?,
        SIGNATURE_HEX => String::from_utf8(hex::decode(payload).ok()?).ok()?,
        _ => return None,
    };
    (!signature.is_empty()).then_some(signature)
}

/// 是否是规范的标准 base64：字母表 `A-Za-z0-9+/`，长度是 4 的整数倍，末尾至多两个 `=`。
fn is_canonical_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    text.len().is_multiple_of(BASE64_GROUP)
        && text.len() - body.len() <= MAX_BASE64_PADDING
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// URL 安全、无填充的 base64 → 规范的标准 base64；含非法字符或长度不可能时为 `None`。
fn from_base64url(payload: &str) -> Option<String> {
    let valid = payload
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid || payload.len() % BASE64_GROUP == 1 {
        return None;
    }
    let mut text: String = payload
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !text.len().is_multiple_of(BASE64_GROUP) {
        text.push('=');
    }
    Some(text)
}

// ───────────────────────────── 响应：Gemini → OpenAI ─────────────────────────────

/// 候选内容中对 OpenAI 有意义的一个部分。
enum Piece<'a> {
    /// 非思考的非空文本。
    Text(&'a str),
    /// 一个完整的函数调用：函数名、参数 JSON 字符串与可能附带的思维签名。
    Call {
        name: &'a str,
        arguments: String,
        signature: Option<&'a str>,
    },
}

/// 取出候选内容的各部分：丢弃思考摘要（`thought: true`）、空文本和 OpenAI 无法表示的数据（如图片输出）。
fn pieces(candidate: &Value) -> impl Iterator<Item = Piece<'_>> {
    candidate["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(piece)
}

/// 一个部分 → [`Piece`]：函数调用整体取出（参数序列化为字符串，缺省为 `{}`），文本跳过思考与空串。
fn piece(part: &Value) -> Option<Piece<'_>> {
    if let Some(call) = part.get("functionCall").filter(|c| c.is_object()) {
        let arguments = match &call["args"] {
            Value::Null => EMPTY_ARGUMENTS.to_string(),
            args => args.to_string(),
        };
        return Some(Piece::Call {
            name: call["name"].as_str().unwrap_or_default(),
            arguments,
            signature: part["thoughtSignature"].as_str(),
        });
    }
    let text = part["text"].as_str().filter(|t| !t.is_empty())?;
    (part["thought"] != true).then_some(Piece::Text(text))
}

/// 第 0 个候选（`index` 缺省时按位置）；网关只输出一个选项，没有候选时为 Null。
fn primary_candidate(response: &Value) -> &Value {
    response["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .find(|(i, c)| c["index"].as_u64().unwrap_or(*i as u64) == 0)
        .map_or(&Value::Null, |(_, c)| c)
}

/// 提示词被拦截：没有候选且 `promptFeedback.blockReason` 存在。
fn prompt_blocked(response: &Value, candidate: &Value) -> bool {
    candidate.is_null() && response["promptFeedback"]["blockReason"].is_string()
}

/// 补全 id：`chatcmpl-` + `responseId`，没有时随机生成。
fn completion_id(response: &Value) -> String {
    match response["responseId"].as_str().filter(|id| !id.is_empty()) {
        Some(id) => format!("{COMPLETION_ID_PREFIX}{id}"),
        None => convert::random_id(COMPLETION_ID_PREFIX),
    }
}

/// Gemini 结束原因 → OpenAI：函数调用轮也以 STOP 结束，有函数调用时改为 `tool_calls`。
fn map_finish(reason: Option<&str>, saw_call: bool) -> FinishReason {
    match reason {
        Some(LENGTH_REASON) => FinishReason::Length,
        Some(r) if FILTER_REASONS.contains(&r) => FinishReason::ContentFilter,
        Some(r) if saw_call && STOP_REASONS.contains(&r) => FinishReason::ToolCalls,
        None if saw_call => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// `usageMetadata` → OpenAI 用量：输入含工具结果 token，输出含思考 token，总数恒为两者之和。
fn usage_of(meta: &Value) -> Usage {
    let count = |key: &str| meta[key].as_u64().unwrap_or(0).min(MAX_TOKEN_COUNT);
    let thoughts = count("thoughtsTokenCount");
    Usage {
        prompt: count("promptTokenCount") + count("toolUsePromptTokenCount"),
        completion: count("candidatesTokenCount") + thoughts,
        cached: count("cachedContentTokenCount"),
        reasoning: thoughts,
    }
}

/// 完整响应 → OpenAI 补全。
fn completion(response: &Value, ctx: &TranslateCtx) -> Completion {
    let id = completion_id(response);
    let candidate = primary_candidate(response);
    let mut content: Option<String> = None;
    let mut tool_calls = Vec::new();
    for piece in pieces(candidate) {
        match piece {
            Piece::Text(text) => content.get_or_insert_with(String::new).push_str(text),
            Piece::Call {
                name,
                arguments,
                signature,
            } => tool_calls.push(ToolCall {
                id: call_id(&id, tool_calls.len(), signature),
                name: name.to_string(),
                arguments,
            }),
        }
    }
    let finish = if prompt_blocked(response, candidate) {
        FinishReason::ContentFilter
    } else {
        map_finish(candidate["finishReason"].as_str(), !tool_calls.is_empty())
    };
    Completion {
        id,
        created: ctx.created,
        model: ctx.model.clone(),
        content,
        tool_calls,
        finish,
        usage: usage_of(&response["usageMetadata"]),
    }
}

/// 解析上游 JSON，要求是对象；否则返回 502。
fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ApiError::bad_gateway(
            CODE_INVALID_RESPONSE,
            "上游返回的 JSON 不是对象",
        )),
        Err(e) => Err(ApiError::bad_gateway(
            CODE_INVALID_RESPONSE,
            format!("上游返回了无法解析的 JSON：{e}"),
        )),
    }
}

// ───────────────────────────── 错误 ─────────────────────────────

/// 解析 Gemini 错误体（也接受数组包裹的 `[{"error":…}]`）；不是 JSON 时把原文（截断后）当作消息。
fn parse_gemini_error(status: u16, body: &[u8]) -> UpstreamErrorInfo {
    let parsed = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items.into_iter().next(),
        Ok(value) => Some(value),
        Err(_) => None,
    };
    match parsed {
        Some(value) if value["error"].is_object() => error_info(status, &value["error"]),
        _ => UpstreamErrorInfo {
            message: truncate_chars(&String::from_utf8_lossy(body), MAX_ERROR_TEXT_CHARS),
            ..UpstreamErrorInfo::default()
        },
    }
}

/// 按 `status` 与 `details` 细分错误：无效密钥 → 401，限流 → 带重试秒数，按天配额 → 额度耗尽，NOT_FOUND → 模型不存在。
fn error_info(status: u16, error: &Value) -> UpstreamErrorInfo {
    let grpc = error["status"].as_str();
    let details = error["details"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut info = UpstreamErrorInfo {
        message: error["message"].as_str().unwrap_or_default().to_string(),
        kind: grpc.map(str::to_string),
        code: grpc.map(str::to_ascii_lowercase),
        ..UpstreamErrorInfo::default()
    };
    let key_invalid =
        details_of(details, ERROR_INFO_TYPE).any(|d| d["reason"] == REASON_API_KEY_INVALID);
    if key_invalid {
        info.status = Some(HTTP_UNAUTHORIZED);
        info.code = Some("invalid_api_key".into());
    } else if status == HTTP_TOO_MANY_REQUESTS || grpc == Some(STATUS_EXHAUSTED) {
        if per_day_quota(details) {
            info.code = Some("insufficient_quota".into());
        } else {
            info.code = Some("rate_limit_exceeded".into());
            info.retry_after = details_of(details, RETRY_INFO_TYPE)
                .find_map(|d| retry_delay_secs(d["retryDelay"].as_str()?));
        }
    } else if status == HTTP_NOT_FOUND || grpc == Some(STATUS_NOT_FOUND) {
        info.code = Some("model_not_found".into());
    }
    info
}

/// `details[]` 中 `@type` 以给定类型名结尾的条目。
fn details_of<'a>(details: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    details
        .iter()
        .filter(move |d| d["@type"].as_str().is_some_and(|t| t.ends_with(kind)))
}

/// 是否有按天计的配额违规（重试无意义，不建议等待时间）。
fn per_day_quota(details: &[Value]) -> bool {
    details_of(details, QUOTA_FAILURE_TYPE)
        .filter_map(|d| d["violations"].as_array())
        .flatten()
        .flat_map(|v| [v["quotaId"].as_str(), v["quotaMetric"].as_str()])
        .flatten()
        .any(|name| {
            let normalized: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            normalized.to_ascii_lowercase().contains(PER_DAY_MARKER)
        })
}

/// 解析 protobuf 时长（如 `38s`、`45.837906927s`），向上取整到秒；格式不对时为 `None`。
fn retry_delay_secs(text: &str) -> Option<u64> {
    let number = text.trim().strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    let seconds: u64 = whole.parse().ok()?;
    let round_up = fraction.bytes().any(|b| b != b'0');
    seconds.checked_add(u64::from(round_up))
}

// ───────────────────────────── 流：Gemini SSE → OpenAI 块 ─────────────────────────────

/// 流的结束信号：最后一次见到的结束原因，或提示词被拦截（没有候选）。
enum End {
    /// 候选给出的结束原因（Gemini 原文，如 `STOP`）。
    Reason(String),
    /// 提示词被拦截：只有 `promptFeedback.blockReason`，没有候选。
    PromptBlocked,
}

/// 流的累计状态。
#[derive(Default)]
struct StreamState {
    /// 补全 id（首个事件的 `responseId` 或随机），也是合成工具调用 id 的种子。
    id: String,
    /// 下一个工具调用的序号：跨块递增，不用块内位置（分在两个块里的并行调用不会撞号）。
    next_tool_index: usize,
    /// 是否见过函数调用（STOP 因此映射为 `tool_calls`）。
    saw_function_call: bool,
    /// 最后一次见到的结束信号；Gemini 没有结束标记，只在连接关闭时据此输出唯一的结束块。
    end: Option<End>,
    /// 最后一次的用量：上游给的是累计值，以最后一次为准，不相加，没有用量的块不清零。
    usage: Usage,
}

/// Gemini 流式翻译器。
struct GeminiStream {
    /// 请求级信息（模型名、创建时间、是否输出用量块）。
    ctx: TranslateCtx,
    /// 首个事件到达时创建（id 取自它的 `responseId`）。
    writer: Option<ChunkWriter>,
    /// 跨事件的累计状态。
    state: StreamState,
}

impl StreamTranslator for GeminiStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut BytesMut) -> Result<StreamStatus, ApiError> {
        if event.data.trim().is_empty() {
            return Ok(StreamStatus::Continue);
        }
        let response = parse_event(&event.data)?;
        let writer = self.writer.get_or_insert_with(|| {
            self.state.id = completion_id(&response);
            let ctx = &self.ctx;
            let writer = ChunkWriter::new(
                self.state.id.clone(),
                ctx.created,
                ctx.model.clone(),
                ctx.include_usage,
            );
            writer.role(out);
            writer
        });
        self.state.apply(&response, writer, out);
        Ok(StreamStatus::Continue)
    }

    fn on_eof(&mut self, out: &mut BytesMut) -> Result<(), ApiError> {
        let (Some(writer), Some(end)) = (&self.writer, &self.state.end) else {
            return Err(ApiError::bad_gateway(
                ErrorCode::UpstreamStreamTruncated,
                "上游在给出结束原因（finishReason）之前断开了流",
            ));
        };
        let finish = match end {
            End::Reason(reason) => map_finish(Some(reason.as_str()), self.state.saw_function_call),
            End::PromptBlocked => FinishReason::ContentFilter,
        };
        writer.finish(out, finish);
        writer.usage(out, &self.state.usage);
        writer.done(out);
        Ok(())
    }

    /// 最近一次的累计用量；上游一次都没报告时为 `None`。
    fn usage(&self) -> Option<Usage> {
        (self.state.usage != Usage::default()).then_some(self.state.usage)
    }
}

impl StreamState {
    /// 翻译一个事件：文本增量、每个函数调用一个完整的工具调用增量；记下结束原因与最新用量。
    fn apply(&mut self, response: &Value, writer: &ChunkWriter, out: &mut BytesMut) {
        let candidate = primary_candidate(response);
        for piece in pieces(candidate) {
            match piece {
                Piece::Text(text) => writer.content(out, text),
                Piece::Call {
                    name,
                    arguments,
                    signature,
                } => {
                    let index = self.next_tool_index;
                    self.next_tool_index += 1;
                    self.saw_function_call = true;
                    let id = call_id(&self.id, index, signature);
                    writer.tool_call_start(out, index, &id, name, &arguments);
                }
            }
        }
        if let Some(reason) = candidate["finishReason"].as_str() {
            self.end = Some(End::Reason(reason.to_string()));
        } else if prompt_blocked(response, candidate) {
            self.end = Some(End::PromptBlocked);
        }
        if response["usageMetadata"].is_object() {
            self.usage = usage_of(&response["usageMetadata"]);
        }
    }
}

/// 解析一个流事件；上游在流中报告的错误（`{"error":…}`）转为 502 错误事件。
fn parse_event(data: &str) -> Result<Value, ApiError> {
    let value = parse_object(data.as_bytes())?;
    if value["error"].is_object() {
        return Err(stream_error(error_info(0, &value["error"])));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::streaming::SseParser;

    /// 测试配置：一个带路径前缀的 Gemini 上游与两个模型，其中一个在目标上配置了输出上限。
    const 测试配置: &str = "auth: { disabled: true }\nproviders: [ { name: gem, kind: gemini, base_url: 'http://127.0.0.1:9/proxy', api_key: 'sk-gemini-测试' } ]\nmodels: [ { name: 演示, targets: [ { provider: gem, model: gemini-2.5-flash } ] }, { name: 有上限, targets: [ { provider: gem, model: gemini-2.5-pro, max_tokens: 512 } ] } ]";

    /// 黄金样例的 OpenAI 请求：系统与开发者消息、图片、带签名的工具调用历史、工具结果与各种参数。
    const 黄金请求: &str = r#"{
      "model": "演示", "stream": false,
      "messages": [
        { "role": "system", "content": "你是助手" },
        { "role": "user", "content": [ { "type": "text", "text": "巴黎天气如何？" }, { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } } ] },
        { "role": "assistant", "content": "", "tool_calls": [ { "id": "call_0123456789abcdef_sigbc2lnLTA", "type": "function", "function": { "name": "查天气", "arguments": "{\"城市\":\"巴黎\"}" } } ] },
        { "role": "tool", "tool_call_id": "call_0123456789abcdef_sigbc2lnLTA", "content": "{\"温度\":18}" },
        { "role": "developer", "content": [ { "type": "text", "text": "回答要简短" } ] },
        { "role": "user", "content": "谢谢" }
      ],
      "max_tokens": 256, "temperature": 0.2, "top_p": 0.9, "stop": "结束", "seed": 7,
      "presence_penalty": 0.5, "frequency_penalty": 0.25, "user": "用户甲", "parallel_tool_calls": true,
      "tools": [ { "type": "function", "function": { "name": "查天气", "description": "查询天气", "strict": true,
                   "parameters": { "type": "object", "properties": { "城市": { "type": "string" } }, "required": ["城市"] } } } ],
      "tool_choice": { "type": "function", "function": { "name": "查天气" } },
      "response_format": { "type": "json_schema", "json_schema": { "name": "天气", "schema": { "type": "object" } } }
    }"#;

    /// 黄金样例期望的 Gemini 请求体。
    const 黄金上游请求: &str = r#"{
      "contents": [
        { "role": "user", "parts": [ { "text": "巴黎天气如何？" }, { "inlineData": { "mimeType": "image/png", "data": "iVBORw0KGgo=" } } ] },
        { "role": "model", "parts": [ { "functionCall": { "name": "查天气", "args": { "城市": "巴黎" } }, "thoughtSignature": "c2lnLTA=" } ] },
        { "role": "user", "parts": [ { "functionResponse": { "name": "查天气", "response": { "output": { "温度": 18 } } } }, { "text": "谢谢" } ] }
      ],
      "systemInstruction": { "parts": [ { "text": "你是助手" }, { "text": "回答要简短" } ] },
      "tools": [ { "functionDeclarations": [ { "name": "查天气", "description": "查询天气",
                   "parametersJsonSchema": { "type": "object", "properties": { "城市": { "type": "string" } }, "required": ["城市"] } } ] } ],
      "toolConfig": { "functionCallingConfig": { "mode": "ANY", "allowedFunctionNames": ["查天气"] } },
      "generationConfig": { "maxOutputTokens": 256, "temperature": 0.2, "topP": 0.9, "seed": 7,
                            "presencePenalty": 0.5, "frequencyPenalty": 0.25, "stopSequences": ["结束"],
                            "responseMimeType": "application/json", "responseJsonSchema": { "type": "object" } }
    }"#;

    /// 黄金样例的 Gemini 文本响应：含一个思考摘要部分（不得进入内容）。
    const 黄金文本响应: &str = r#"{
      "candidates": [ { "content": { "role": "model", "parts": [ { "text": "先想一想", "thought": true }, { "text": "巴黎今天" }, { "text": "晴，18 度。" } ] },
                        "finishReason": "STOP", "index": 0 } ],
      "usageMetadata": { "promptTokenCount": 20, "candidatesTokenCount": 9, "thoughtsTokenCount": 4, "cachedContentTokenCount": 8, "totalTokenCount": 33 },
      "modelVersion": "gemini-2.5-flash", "responseId": "resp-甲"
    }"#;

    /// 黄金样例期望的 OpenAI 响应。
    const 黄金文本补全: &str = r#"{
      "id": "chatcmpl-resp-甲", "object": "chat.completion", "created": 7, "model": "演示",
      "choices": [ { "index": 0, "message": { "role": "assistant", "content": "巴黎今天晴，18 度。", "refusal": null }, "logprobs": null, "finish_reason": "stop" } ],
      "usage": { "prompt_tokens": 20, "completion_tokens": 13, "total_tokens": 33,
                 "prompt_tokens_details": { "cached_tokens": 8 }, "completion_tokens_details": { "reasoning_tokens": 4 } }
    }"#;

    /// 一段录下的 Gemini 流：CRLF 行尾、注释行、跨两行的 data、思考部分、两个分在不同块里的函数调用、
    /// 累计用量与只有结束原因和用量的末块。
    const 录制的流: &str = concat!(
        ": 保活注释\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"想\",\"thought\":true}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"totalTokenCount\":8},\"responseId\":\"流甲\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"好的，\"}],\"role\":\"model\"},\"index\":0}],\r\ndata: \"responseId\":\"流甲\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"查天气\",\"args\":{\"城市\":\"巴黎\"}},\"thoughtSignature\":\"c2lnLTA=\"}],\"role\":\"model\"},\"index\":0}],\"responseId\":\"流甲\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"查时间\",\"args\":{}}}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":3,\"totalTokenCount\":11},\"responseId\":\"流甲\"}\r\n\r\n",
        "data: {\"candidates\":[{\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":6,\"thoughtsTokenCount\":2,\"totalTokenCount\":16},\"responseId\":\"流甲\"}\r\n\r\n",
    );

    fn 目标(model: &str) -> Target {
        let parsed = config::parse(测试配置).expect("测试配置必须能解析");
        let cfg = config::build(parsed, |_| None).expect("测试配置必须通过校验");
        cfg.model(model).expect("模型必须存在").targets[0].clone()
    }

    fn 请求(body: &Value) -> ChatRequest {
        ChatRequest::parse(Bytes::from(body.to_string())).expect("测试请求必须通过校验")
    }

    fn 构造(body: &Value) -> Result<UpstreamRequest, ApiError> {
        GeminiFilter.build_request(&请求(body), &目标("演示"))
    }

    /// 翻译成功后的上游请求体。
    fn 翻译(body: &Value) -> Value {
        let upstream = 构造(body).expect("请求应能翻译");
        serde_json::from_slice(&upstream.body).expect("上游请求体必须是 JSON")
    }

    fn 翻译错误(body: &Value) -> ApiError {
        构造(body).expect_err("请求应被拒绝")
    }

    /// 只含给定消息的请求。
    fn 消息(messages: Value) -> Value {
        json!({ "model": "演示", "messages": messages })
    }

    fn 上下文(include_usage: bool) -> TranslateCtx {
        TranslateCtx {
            model: "演示".into(),
            include_usage,
            created: 7,
        }
    }

    /// 把 Gemini 完整响应翻译为 OpenAI 响应。
    fn 完整响应(gemini: &Value) -> Value {
        let body = GeminiFilter
            .translate_response(Bytes::from(gemini.to_string()), &上下文(false))
            .expect("响应应能翻译");
        serde_json::from_slice(&body.body).expect("翻译结果必须是 JSON")
    }

    /// 逐个喂入流事件（每个元素是一个事件的 data），返回输出文本与 `on_eof` 的结果。
    fn 运行流(events: &[Value], include_usage: bool) -> (String, Result<(), ApiError>) {
        let mut translator = GeminiFilter.stream_translator(上下文(include_usage));
        let mut out = BytesMut::new();
        for data in events {
            let event = SseEvent {
                event: None,
                data: data.to_string(),
            };
            let status = translator.on_event(&event, &mut out).expect("事件应能翻译");
            assert_eq!(
                status,
                StreamStatus::Continue,
                "Gemini 没有结束标记，事件不能结束流"
            );
        }
        let end = translator.on_eof(&mut out);
        (
            String::from_utf8(out.to_vec()).expect("输出必须是 UTF-8"),
            end,
        )
    }

    /// 输出中的全部 JSON 块（不含 `[DONE]`）。
    fn 块(out: &str) -> Vec<Value> {
        out.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).expect("每个块都是 JSON"))
            .collect()
    }

    /// 全部工具调用增量。
    fn 工具增量(chunks: &[Value]) -> Vec<Value> {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .cloned()
            .collect()
    }

    /// 全部非空的结束原因。
    fn 结束原因(chunks: &[Value]) -> Vec<String> {
        chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["finish_reason"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    /// 一个只含给定部分与结束原因的流事件。
    fn 事件(parts: Value, finish: Option<&str>) -> Value {
        let mut candidate = json!({ "content": { "role": "model", "parts": parts }, "index": 0 });
        if let Some(reason) = finish {
            candidate["finishReason"] = json!(reason);
        }
        json!({ "candidates": [candidate], "responseId": "事件甲" })
    }

    fn 函数调用(name: &str) -> Value {
        json!({ "functionCall": { "name": name, "args": { "城市": "巴黎" } } })
    }

    // ───────────── 请求 ─────────────

    #[test]
    fn 请求_黄金样例_完整映射() {
        let input: Value = serde_json::from_str(黄金请求).expect("黄金请求是 JSON");
        let expected: Value = serde_json::from_str(黄金上游请求).expect("黄金上游请求是 JSON");
        assert_eq!(翻译(&input), expected);
    }

    #[test]
    fn 请求_路径按是否流式选择方法_密钥只放在请求头() {
        let mut body = 消息(json!([ { "role": "user", "content": "你好" } ]));
        let upstream = 构造(&body).expect("应能翻译");
        assert_eq!(
            upstream.path,
            "/proxy/v1beta/models/gemini-2.5-flash:generateContent"
        );
        body["stream"] = json!(true);
        let upstream = 构造(&body).expect("应能翻译");
        assert_eq!(
            upstream.path,
            "/proxy/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert!(!upstream.path.contains("key="), "密钥不得进入查询串");
        let key = upstream
            .headers
            .iter()
            .find(|(name, _)| name == API_KEY_HEADER)
            .map(|(_, value)| value)
            .expect("必须有 x-goog-api-key 头");
        assert_eq!(key.as_bytes(), "sk-gemini-测试".as_bytes());
        assert!(key.is_sensitive(), "密钥头必须标记为敏感");
        assert!(upstream
            .headers
            .iter()
            .any(|(name, _)| name == "content-type"));
    }

    #[test]
    fn 三条连续工具消息后接用户消息_合成一个用户内容() {
        let calls: Vec<Value> = ["甲", "乙", "丙"]
            .iter()
            .map(|n| json!({ "id": format!("call_{n}"), "type": "function", "function": { "name": format!("工具{n}"), "arguments": "{}" } }))
            .collect();
        let mut messages = vec![
            json!({ "role": "user", "content": "并行调用三个工具" }),
            json!({ "role": "assistant", "content": null, "tool_calls": calls }),
        ];
        for n in ["甲", "乙", "丙"] {
            messages.push(json!({ "role": "tool", "tool_call_id": format!("call_{n}"), "content": format!("结果{n}") }));
        }
        messages.push(json!({ "role": "user", "content": "总结一下" }));
        let contents = 翻译(&消息(json!(messages)))["contents"].clone();
        assert_eq!(
            contents.as_array().map(Vec::len),
            Some(3),
            "应为 user、model、user 三个内容"
        );
        let parts = &contents[2]["parts"];
        for (k, n) in ["甲", "乙", "丙"].iter().enumerate() {
            assert_eq!(parts[k]["functionResponse"]["name"], format!("工具{n}"));
            assert_eq!(
                parts[k]["functionResponse"]["response"]["output"],
                format!("结果{n}")
            );
        }
        assert_eq!(parts[3], json!({ "text": "总结一下" }));
        assert_eq!(contents[1]["parts"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn 助手空内容加工具调用_不发送空文本部分() {
        for content in [
            json!(""),
            Value::Null,
            json!([ { "type": "text", "text": "" } ]),
        ] {
            let messages = json!([
                { "role": "user", "content": "查天气" },
                { "role": "assistant", "content": content, "tool_calls": [ { "id": "call_1", "type": "function", "function": { "name": "查天气", "arguments": "" } } ] },
                { "role": "tool", "tool_call_id": "call_1", "content": "晴" },
            ]);
            let contents = 翻译(&消息(messages))["contents"].clone();
            assert_eq!(
                contents[1]["parts"],
                json!([ { "functionCall": { "name": "查天气", "args": {} } } ]),
                "空内容 {content} 不应产生文本部分，空参数应为空对象"
            );
        }
        let empty_user = 翻译(&消息(
            json!([ { "role": "user", "content": [ { "type": "text", "text": "" }, { "type": "text", "text": "你好" } ] } ]),
        ));
        assert_eq!(
            empty_user["contents"][0]["parts"],
            json!([ { "text": "你好" } ])
        );
    }

    #[test]
    fn 函数响应名称_按工具调用_id_找回_未知_id_返回_400() {
        let messages = json!([
            { "role": "user", "content": "查天气" },
            { "role": "assistant", "tool_calls": [ { "id": "call_天气", "type": "function", "function": { "name": "查天气", "arguments": "{}" } } ] },
            { "role": "tool", "tool_call_id": "call_天气", "content": [ { "type": "text", "text": "晴" } ] },
        ]);
        let contents = 翻译(&消息(messages.clone()))["contents"].clone();
        assert_eq!(
            contents[2]["parts"][0]["functionResponse"]["name"],
            "查天气"
        );
        assert_eq!(
            contents[2]["parts"][0]["functionResponse"]["response"],
            json!({ "output": "晴" })
        );
        let mut unknown = messages;
        unknown[2]["tool_call_id"] = json!("call_不存在");
        let e = 翻译错误(&消息(unknown));
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("messages[2].tool_call_id"))
        );
        assert!(
            e.message.contains("call_不存在"),
            "错误信息应指出 id：{}",
            e.message
        );
    }

    #[test]
    fn 两条系统消息_开发者消息与对话中途的系统消息_全部按顺序进入系统指令() {
        let messages = json!([
            { "role": "system", "content": "第一条系统" },
            { "role": "system", "content": [ { "type": "text", "text": "第二条" }, { "type": "text", "text": "系统" } ] },
            { "role": "developer", "content": "开发者" },
            { "role": "user", "content": "你好" },
            { "role": "system", "content": "中途的系统" },
            { "role": "assistant", "content": "你好！" },
        ]);
        let body = 翻译(&消息(messages));
        assert_eq!(
            body["systemInstruction"],
            json!({ "parts": [ { "text": "第一条系统" }, { "text": "第二条系统" }, { "text": "开发者" }, { "text": "中途的系统" } ] })
        );
        assert_eq!(body["contents"][0]["role"], "user");
        assert_eq!(
            body["contents"][1],
            json!({ "role": "model", "parts": [ { "text": "你好！" } ] })
        );
    }

    #[test]
    fn 历史中格式错误的参数_返回_400_并指明字段() {
        for bad in ["{\"a\":", "[1]", "\"字符串\""] {
            let messages = json!([
                { "role": "user", "content": "你好" },
                { "role": "assistant", "tool_calls": [ { "id": "call_1", "type": "function", "function": { "name": "甲", "arguments": bad } } ] },
            ]);
            let e = 翻译错误(&消息(messages));
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("messages[1].tool_calls[0].function.arguments")),
                "参数 {bad} 应被拒绝"
            );
        }
        let no_name = json!([ { "role": "assistant", "tool_calls": [ { "id": "call_1", "type": "function", "function": { "arguments": "{}" } } ] } ]);
        let e = 翻译错误(&消息(no_name));
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].tool_calls[0].function.name")
        );
    }

    #[test]
    fn 图片输入_data_url_与网址_不支持的类型返回_400() {
        let image = |url: &str| {
            消息(
                json!([ { "role": "user", "content": [ { "type": "image_url", "image_url": { "url": url } } ] } ]),
            )
        };
        for mime in ["image/png", "image/jpeg", "image/webp", "image/gif"] {
            let part = 翻译(&image(&format!("data:{mime};base64,AAAA")))["contents"][0]["parts"][0]
                .clone();
            assert_eq!(
                part,
                json!({ "inlineData": { "mimeType": mime, "data": "AAAA" } })
            );
        }
        let cases = [
            ("https://例子.com/猫.PNG?大小=1#片段", "image/png"),
            ("https://example.com/a.webp", "image/webp"),
            ("http://example.com/photo", "image/jpeg"),
        ];
        for (url, mime) in cases {
            let part = 翻译(&image(url))["contents"][0]["parts"][0].clone();
            assert_eq!(
                part,
                json!({ "fileData": { "mimeType": mime, "fileUri": url } }),
                "地址 {url}"
            );
        }
        for bad in [
            "data:text/plain;base64,AAAA",
            "ftp://example.com/a.png",
            "data:image/png,未编码",
        ] {
            let e = 翻译错误(&image(bad));
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("messages[0].content[0].image_url.url")),
                "地址 {bad}"
            );
        }
    }

    #[test]
    fn 音频输入_转为_inline_data_缺字段返回_400() {
        let audio = |input: Value| {
            消息(
                json!([ { "role": "user", "content": [ { "type": "input_audio", "input_audio": input } ] } ]),
            )
        };
        let part = 翻译(&audio(json!({ "data": "UklGRg==", "format": "wav" })))["contents"][0]
            ["parts"][0]
            .clone();
        assert_eq!(
            part,
            json!({ "inlineData": { "mimeType": "audio/wav", "data": "UklGRg==" } })
        );
        let e = 翻译错误(&audio(json!({ "data": "UklGRg==" })));
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[0].input_audio")
        );
        let unknown =
            消息(json!([ { "role": "user", "content": [ { "type": "file", "file": {} } ] } ]));
        assert_eq!(
            翻译错误(&unknown).param.as_deref(),
            Some("messages[0].content[0].type")
        );
        let function = 消息(json!([ { "role": "function", "name": "甲", "content": "旧格式" } ]));
        assert_eq!(
            翻译错误(&function).param.as_deref(),
            Some("messages[0].role")
        );
    }

    #[test]
    fn 工具选择_四种写法与非法值() {
        let cases = [
            (json!("auto"), json!({ "mode": "AUTO" })),
            (json!("none"), json!({ "mode": "NONE" })),
            (json!("required"), json!({ "mode": "ANY" })),
            (
                json!({ "type": "function", "function": { "name": "查天气" } }),
                json!({ "mode": "ANY", "allowedFunctionNames": ["查天气"] }),
            ),
        ];
        for (choice, expected) in cases {
            let mut body = 消息(json!([ { "role": "user", "content": "你好" } ]));
            body["tool_choice"] = choice;
            assert_eq!(
                翻译(&body)["toolConfig"],
                json!({ "functionCallingConfig": expected })
            );
        }
        let mut bad = 消息(json!([ { "role": "user", "content": "你好" } ]));
        bad["tool_choice"] = json!("随便");
        assert_eq!(翻译错误(&bad).param.as_deref(), Some("tool_choice"));
        bad["tool_choice"] = Value::Null;
        bad["tools"] = json!([ { "type": "code_interpreter" } ]);
        assert_eq!(翻译错误(&bad).param.as_deref(), Some("tools[0].type"));
    }

    #[test]
    fn 生成参数_json_object_目标上限与丢弃的参数() {
        let mut body = 消息(json!([ { "role": "user", "content": "你好" } ]));
        body["response_format"] = json!({ "type": "json_object" });
        body["n"] = json!(2);
        body["stop"] = json!(["甲", "乙"]);
        for dropped in ["user", "logit_bias", "metadata", "parallel_tool_calls"] {
            body[dropped] = json!({});
        }
        body["user"] = json!("用户甲");
        let upstream = GeminiFilter
            .build_request(&请求(&body), &目标("有上限"))
            .expect("应能翻译");
        let sent: Value = serde_json::from_slice(&upstream.body).expect("JSON");
        assert_eq!(
            sent["generationConfig"],
            json!({ "maxOutputTokens": 512, "candidateCount": 2, "stopSequences": ["甲", "乙"], "responseMimeType": "application/json" })
        );
        let keys: Vec<&String> = sent.as_object().expect("对象").keys().collect();
        assert_eq!(
            keys,
            ["contents", "generationConfig"],
            "不支持的参数不得出现"
        );
        body["max_completion_tokens"] = json!(64);
        body["max_tokens"] = json!(128);
        assert_eq!(翻译(&body)["generationConfig"]["maxOutputTokens"], 64);
        body["response_format"] = json!({ "type": "xml" });
        assert_eq!(
            翻译错误(&body).param.as_deref(),
            Some("response_format.type")
        );
    }

    #[test]
    fn 相同角色的相邻消息合并为一个内容() {
        let messages = json!([
            { "role": "user", "content": "第一句" },
            { "role": "user", "content": "第二句" },
            { "role": "assistant", "content": "回答" },
            { "role": "assistant", "content": "补充" },
        ]);
        assert_eq!(
            翻译(&消息(messages))["contents"],
            json!([
                { "role": "user", "parts": [ { "text": "第一句" }, { "text": "第二句" } ] },
                { "role": "model", "parts": [ { "text": "回答" }, { "text": "补充" } ] },
            ])
        );
    }

    // ───────────── 思维签名 ─────────────

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

    // ───────────── 响应 ─────────────

    #[test]
    fn 响应_黄金样例_文本与用量_思考部分不进入内容() {
        let gemini: Value = serde_json::from_str(黄金文本响应).expect("黄金响应是 JSON");
        let expected: Value = serde_json::from_str(黄金文本补全).expect("黄金补全是 JSON");
        assert_eq!(完整响应(&gemini), expected);
    }

    #[test]
    fn 函数调用轮_非流式_结束原因为_tool_calls_参数总是字符串() {
        let gemini = json!({ "candidates": [ { "content": { "role": "model", "parts": [
            { "text": "我来查一下。" }, 函数调用("查天气"), { "functionCall": { "name": "查时间" } } ] },
            "finishReason": "STOP", "index": 0 } ], "responseId": "调用轮" });
        let reply = 完整响应(&gemini);
        let message = &reply["choices"][0]["message"];
        let calls = message["tool_calls"].as_array().expect("必须有工具调用");
        let expected_ids = [
            call_id("chatcmpl-调用轮", 0, None),
            call_id("chatcmpl-调用轮", 1, None),
        ];
        assert_eq!(
            calls[0],
            json!({ "id": expected_ids[0], "type": "function", "function": { "name": "查天气", "arguments": "{\"城市\":\"巴黎\"}" } })
        );
        assert_eq!(calls[1]["id"], expected_ids[1]);
        assert_eq!(
            calls[1]["function"]["arguments"], "{}",
            "缺少 args 时参数为空对象字符串"
        );
        assert_eq!(message["content"], "我来查一下。");
        assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            完整响应(&gemini)["choices"][0]["message"]["tool_calls"],
            json!(calls),
            "同一响应的 id 必须稳定"
        );
    }

    #[test]
    fn 提示词被拦截_没有候选_返回空内容与_content_filter() {
        for candidates in [None, Some(json!([]))] {
            let mut gemini = json!({ "promptFeedback": { "blockReason": "SAFETY" }, "usageMetadata": { "promptTokenCount": 5, "totalTokenCount": 5 } });
            if let Some(list) = candidates {
                gemini["candidates"] = list;
            }
            let reply = 完整响应(&gemini);
            assert!(reply["choices"][0]["message"]["content"].is_null());
            assert_eq!(reply["choices"][0]["finish_reason"], "content_filter");
            assert_eq!(reply["usage"]["prompt_tokens"], 5);
        }
        let empty = 完整响应(&json!({}));
        assert_eq!(empty["choices"][0]["finish_reason"], "stop", "空响应不崩溃");
        assert!(empty["id"]
            .as_str()
            .is_some_and(|id| id.starts_with(COMPLETION_ID_PREFIX)));
    }

    #[test]
    fn 候选没有内容_返回空消息与映射后的结束原因() {
        let gemini = json!({ "candidates": [ { "finishReason": "MALFORMED_FUNCTION_CALL", "index": 0 } ], "responseId": "坏调用" });
        let reply = 完整响应(&gemini);
        assert!(reply["choices"][0]["message"]["content"].is_null());
        assert!(reply["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn 思考模型用量_输出含思考_输入含工具结果_总数等于两者之和() {
        let meta = json!({ "promptTokenCount": 100, "toolUsePromptTokenCount": 20, "candidatesTokenCount": 30,
            "thoughtsTokenCount": 50, "cachedContentTokenCount": 60, "totalTokenCount": 200 });
        let usage = usage_of(&meta);
        assert_eq!(
            usage,
            Usage {
                prompt: 120,
                completion: 80,
                cached: 60,
                reasoning: 50
            }
        );
        assert_eq!(usage.to_json()["total_tokens"], 200);
        assert_eq!(usage_of(&Value::Null), Usage::default());
        let huge =
            usage_of(&json!({ "promptTokenCount": u64::MAX, "toolUsePromptTokenCount": u64::MAX }));
        assert_eq!(huge.prompt, 2 * MAX_TOKEN_COUNT, "超大计数封顶，求和不溢出");
    }

    #[test]
    fn 结束原因_按推荐列映射() {
        let cases = [
            (Some("STOP"), false, FinishReason::Stop),
            (Some("STOP"), true, FinishReason::ToolCalls),
            (
                Some("FINISH_REASON_UNSPECIFIED"),
                true,
                FinishReason::ToolCalls,
            ),
            (None, false, FinishReason::Stop),
            (Some("MAX_TOKENS"), true, FinishReason::Length),
            (Some("SAFETY"), false, FinishReason::ContentFilter),
            (Some("RECITATION"), false, FinishReason::ContentFilter),
            (Some("OTHER"), false, FinishReason::ContentFilter),
            (Some("IMAGE_OTHER"), false, FinishReason::ContentFilter),
            (Some("MALFORMED_FUNCTION_CALL"), false, FinishReason::Stop),
            (Some("UNEXPECTED_TOOL_CALL"), true, FinishReason::Stop),
            (Some("未来的新原因"), false, FinishReason::Stop),
        ];
        for (reason, saw_call, expected) in cases {
            assert_eq!(
                map_finish(reason, saw_call),
                expected,
                "{reason:?}，有调用：{saw_call}"
            );
        }
    }

    #[test]
    fn 多个候选时只取第_0_个() {
        let gemini = json!({ "candidates": [
            { "content": { "parts": [ { "text": "第二个" } ] }, "finishReason": "MAX_TOKENS", "index": 1 },
            { "content": { "parts": [ { "text": "第一个" } ] }, "finishReason": "STOP", "index": 0 } ] });
        let reply = 完整响应(&gemini);
        assert_eq!(reply["choices"][0]["message"]["content"], "第一个");
        assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn 响应无法解析_返回_502() {
        for body in [&b"<html>502</html>"[..], b"[1,2]", b""] {
            let e = GeminiFilter
                .translate_response(Bytes::copy_from_slice(body), &上下文(false))
                .expect_err("应失败");
            assert_eq!(
                (e.status, Some(e.envelope_code())),
                (502, Some("invalid_upstream_response"))
            );
        }
    }

    // ───────────── 错误 ─────────────

    #[test]
    fn 无效密钥_400_映射为_401_再报告为上游认证失败() {
        let body = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
            "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        let info = GeminiFilter.parse_error(400, body);
        assert_eq!(info.status, Some(401));
        assert_eq!(
            info.message,
            "API key not valid. Please pass a valid API key."
        );
        let e = super::super::map_upstream_error(400, info, "gem");
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (502, Some("upstream_auth_failed"))
        );
        let plain = GeminiFilter.parse_error(
            400,
            r#"{"error":{"code":400,"message":"坏参数","status":"INVALID_ARGUMENT"}}"#.as_bytes(),
        );
        assert_eq!(
            (plain.status, plain.code.as_deref()),
            (None, Some("invalid_argument"))
        );
    }

    #[test]
    fn 限流_429_按_retry_info_向上取整且没有响应头也能给出等待秒数() {
        for (delay, seconds) in [
            ("38s", 38),
            ("45.837906927s", 46),
            ("2.5s", 3),
            ("1.000s", 1),
            ("0s", 0),
        ] {
            let body = json!({ "error": { "code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED",
                "details": [ { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay } ] } });
            let info = GeminiFilter.parse_error(429, body.to_string().as_bytes());
            assert_eq!(info.code.as_deref(), Some("rate_limit_exceeded"));
            assert_eq!(info.retry_after, Some(seconds), "retryDelay {delay}");
        }
        for bad in [
            "",
            "s",
            "38",
            "-1s",
            "1.5.2s",
            ".5s",
            "三秒s",
            "99999999999999999999999s",
        ] {
            assert_eq!(retry_delay_secs(bad), None, "`{bad}` 不是合法的时长");
        }
        let e = super::super::map_upstream_error(429, GeminiFilter.parse_error(429, br#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"2.5s"}]}}"#), "gem");
        assert_eq!((e.status, e.retry_after), (429, Some(3)));
    }

    #[test]
    fn 按天配额耗尽_报告_insufficient_quota_且不建议等待() {
        let body = json!({ "error": { "code": 429, "message": "You exceeded your current quota", "status": "RESOURCE_EXHAUSTED", "details": [
            { "@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [ { "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier" } ] },
            { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s" } ] } });
        let info = GeminiFilter.parse_error(429, body.to_string().as_bytes());
        assert_eq!(
            (info.code.as_deref(), info.retry_after),
            (Some("insufficient_quota"), None)
        );
        let per_minute = body.to_string().replace("PerDay", "PerMinute");
        let info = GeminiFilter.parse_error(429, per_minute.as_bytes());
        assert_eq!(
            (info.code.as_deref(), info.retry_after),
            (Some("rate_limit_exceeded"), Some(38))
        );
    }

    #[test]
    fn 模型不存在_数组包裹与非_json_错误() {
        let not_found = r#"[{"error":{"code":404,"message":"models/不存在 is not found","status":"NOT_FOUND"}}]"#.as_bytes();
        let info = GeminiFilter.parse_error(404, not_found);
        assert_eq!(info.code.as_deref(), Some("model_not_found"));
        assert_eq!(info.message, "models/不存在 is not found");
        let html = GeminiFilter.parse_error(502, b"<html>Bad Gateway</html>");
        assert_eq!(
            (html.message.as_str(), html.code),
            ("<html>Bad Gateway</html>", None)
        );
        let unavailable = GeminiFilter.parse_error(503, br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#);
        assert_eq!(
            super::super::map_upstream_error(503, unavailable, "gem").status,
            503
        );
    }

    // ───────────── 流 ─────────────

    /// 期望的一个 OpenAI 流式块（id、时间与模型固定为录制流的值）。
    fn 期望块(delta: Value, finish: Value) -> Value {
        json!({ "id": "chatcmpl-流甲", "object": "chat.completion.chunk", "created": 7, "model": "演示",
                "choices": [ { "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish } ] })
    }

    /// 把字节按给定切分逐段交给 SSE 解析器与翻译器（与 exchange 的驱动方式相同），返回输出与结束结果。
    fn 解析并翻译(pieces: &[&[u8]], include_usage: bool) -> (Vec<u8>, Result<(), ApiError>) {
        let mut parser = SseParser::default();
        let mut translator = GeminiFilter.stream_translator(上下文(include_usage));
        let (mut events, mut out) = (Vec::new(), BytesMut::new());
        let mut feed = |events: &mut Vec<SseEvent>, out: &mut BytesMut| -> Result<(), ApiError> {
            events
                .drain(..)
                .try_for_each(|e| translator.on_event(&e, out).map(|_| ()))
        };
        for piece in pieces {
            parser.push(piece, &mut events);
            if let Err(e) = feed(&mut events, &mut out) {
                return (out.to_vec(), Err(e));
            }
        }
        parser.finish(&mut events);
        let fed = feed(&mut events, &mut out);
        let end = fed.and_then(|_| translator.on_eof(&mut out));
        (out.to_vec(), end)
    }

    #[test]
    fn 流_黄金样例_录制的流逐块翻译() {
        let (out, end) = 解析并翻译(&[录制的流.as_bytes()], true);
        assert!(end.is_ok(), "正常结束的流不应报错：{end:?}");
        let text = String::from_utf8(out).expect("UTF-8");
        assert!(text.ends_with("data: [DONE]\n\n"), "必须以 [DONE] 结束");
        let first = call_id("chatcmpl-流甲", 0, Some("c2lnLTA="));
        let second = call_id("chatcmpl-流甲", 1, None);
        let usage = json!({ "prompt_tokens": 8, "completion_tokens": 8, "total_tokens": 16,
            "prompt_tokens_details": { "cached_tokens": 0 }, "completion_tokens_details": { "reasoning_tokens": 2 } });
        let expected = vec![
            期望块(json!({ "role": "assistant", "content": "" }), Value::Null),
            期望块(json!({ "content": "好的，" }), Value::Null),
            期望块(
                json!({ "tool_calls": [ { "index": 0, "id": first, "type": "function", "function": { "name": "查天气", "arguments": "{\"城市\":\"巴黎\"}" } } ] }),
                Value::Null,
            ),
            期望块(
                json!({ "tool_calls": [ { "index": 1, "id": second, "type": "function", "function": { "name": "查时间", "arguments": "{}" } } ] }),
                Value::Null,
            ),
            期望块(json!({}), json!("tool_calls")),
            json!({ "id": "chatcmpl-流甲", "object": "chat.completion.chunk", "created": 7, "model": "演示", "choices": [], "usage": usage }),
        ];
        assert_eq!(块(&text), expected);
        assert_eq!(extract_signature(&first).as_deref(), Some("c2lnLTA="));
    }

    #[test]
    fn 任意字节位置切分_输出逐字节相同() {
        let bytes = 录制的流.as_bytes();
        let (reference, end) = 解析并翻译(&[bytes], true);
        assert!(end.is_ok());
        for cut in 0..=bytes.len() {
            let (split, end) = 解析并翻译(&[&bytes[..cut], &bytes[cut..]], true);
            assert!(end.is_ok(), "在第 {cut} 字节切开后不应报错");
            assert_eq!(split, reference, "在第 {cut} 字节切开后输出不同");
        }
        let single: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            解析并翻译(&single, true).0,
            reference,
            "逐字节喂入后输出不同"
        );
    }

    #[test]
    fn 并行函数调用_同一块里_索引为0和1() {
        let events = [事件(
            json!([函数调用("查天气"), 函数调用("查天气")]),
            Some("STOP"),
        )];
        let (out, end) = 运行流(&events, false);
        assert!(end.is_ok());
        let calls = 工具增量(&块(&out));
        let indices: Vec<&Value> = calls.iter().map(|c| &c["index"]).collect();
        assert_eq!(indices, [&json!(0), &json!(1)]);
        assert_ne!(
            calls[0]["id"], calls[1]["id"],
            "同名工具调用两次也必须有不同的 id"
        );
        assert!(
            calls
                .iter()
                .all(|c| c["function"]["arguments"] == "{\"城市\":\"巴黎\"}"),
            "参数不得拼接"
        );
    }

    #[test]
    fn 并行函数调用_分在两个块里_索引为0和1() {
        let events = [
            事件(json!([函数调用("查天气")]), None),
            事件(json!([函数调用("查时间")]), None),
            json!({ "candidates": [ { "finishReason": "STOP", "index": 0 } ] }),
        ];
        let (out, end) = 运行流(&events, false);
        assert!(end.is_ok());
        let chunks = 块(&out);
        let calls = 工具增量(&chunks);
        let summary: Vec<(Value, Value)> = calls
            .iter()
            .map(|c| (c["index"].clone(), c["function"]["name"].clone()))
            .collect();
        assert_eq!(
            summary,
            [(json!(0), json!("查天气")), (json!(1), json!("查时间"))]
        );
        assert_ne!(calls[0]["id"], calls[1]["id"]);
        assert!(
            chunks.iter().all(|c| c["id"] == "chatcmpl-事件甲"),
            "流 id 必须始终相同"
        );
    }

    #[test]
    fn 函数调用轮_结束原因在无内容的末块里_映射为_tool_calls() {
        let events = [
            事件(json!([函数调用("查天气")]), None),
            json!({ "candidates": [ { "content": { "role": "model", "parts": [ { "text": "" } ] }, "finishReason": "STOP", "index": 0 } ] }),
        ];
        let (out, end) = 运行流(&events, false);
        assert!(end.is_ok());
        assert_eq!(结束原因(&块(&out)), ["tool_calls"]);
        assert!(out.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn 每块都带_stop_只输出一个结束块_开头的空_stop_也容忍() {
        let events = [
            json!({ "candidates": [ { "content": { "role": "model", "parts": [] }, "finishReason": "STOP", "index": 0 } ] }),
            事件(json!([ { "text": "第一段" } ]), Some("STOP")),
            事件(json!([ { "text": "第二段" } ]), Some("STOP")),
            事件(json!([ { "text": "第三段" } ]), Some("MAX_TOKENS")),
        ];
        let (out, end) = 运行流(&events, false);
        assert!(end.is_ok());
        let chunks = 块(&out);
        assert_eq!(结束原因(&chunks), ["length"], "只输出最后的结束原因");
        assert_eq!(
            chunks.last().map(|c| &c["choices"][0]["finish_reason"]),
            Some(&json!("length")),
            "结束块在最后"
        );
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "第一段第二段第三段");
    }

    #[test]
    fn 要求用量时恰好一个用量块在结束块之后_不要求时没有() {
        let mut last = 事件(json!([ { "text": "你好" } ]), Some("STOP"));
        last["usageMetadata"] =
            json!({ "promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5 });
        let (with_usage, _) = 运行流(std::slice::from_ref(&last), true);
        let chunks = 块(&with_usage);
        let usage: Vec<&Value> = chunks.iter().filter(|c| c.get("usage").is_some()).collect();
        assert_eq!(usage.len(), 1, "恰好一个用量块");
        assert_eq!(chunks.last(), Some(usage[0]), "用量块在最后（[DONE] 之前）");
        assert_eq!(usage[0]["choices"], json!([]));
        assert_eq!(usage[0]["usage"]["total_tokens"], 5);
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "stop"
        );
        let (without, _) = 运行流(&[last], false);
        assert!(
            块(&without).iter().all(|c| c.get("usage").is_none()),
            "未要求时没有用量块"
        );
        assert!(with_usage.ends_with("data: [DONE]\n\n") && without.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn 累计用量_最后一次为准_不相加_没有用量的块不清零() {
        let with_usage = |text: &str, candidates: u64, finish: Option<&str>| {
            let mut event = 事件(json!([ { "text": text } ]), finish);
            event["usageMetadata"] = json!({ "promptTokenCount": 10, "candidatesTokenCount": candidates, "thoughtsTokenCount": 4, "totalTokenCount": 14 + candidates });
            event
        };
        let events = [
            with_usage("一", 1, None),
            with_usage("二", 2, None),
            json!({ "candidates": [ { "finishReason": "STOP", "index": 0 } ], "usageMetadata": { "promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 4, "totalTokenCount": 19 } }),
            json!({ "responseId": "事件甲" }),
        ];
        let (out, end) = 运行流(&events, true);
        assert!(end.is_ok());
        let chunks = 块(&out);
        let usage = &chunks.last().expect("必须有用量块")["usage"];
        assert_eq!(
            (
                &usage["prompt_tokens"],
                &usage["completion_tokens"],
                &usage["total_tokens"]
            ),
            (&json!(10), &json!(9), &json!(19)),
            "用量以最后一次为准且不相加：{usage}"
        );
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 4);
    }

    #[test]
    fn 没有结束原因就断开_返回截断错误() {
        let (out, end) = 运行流(&[事件(json!([ { "text": "说到一半" } ]), None)], true);
        let e = end.expect_err("没有结束原因的流必须报错");
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (502, Some("upstream_stream_truncated"))
        );
        assert!(
            !out.contains("[DONE]") && 结束原因(&块(&out)).is_empty(),
            "截断的流不能有结束块与 [DONE]"
        );
        let (_, empty) = 运行流(&[], true);
        assert_eq!(
            Some(empty.expect_err("空流必须报错").envelope_code()),
            Some("upstream_stream_truncated")
        );
    }

    #[test]
    fn 流中的错误对象与非_json_事件_返回错误() {
        let cases = [
            (
                r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
                "upstream_stream_error",
            ),
            ("不是 JSON", "invalid_upstream_response"),
            ("[1,2]", "invalid_upstream_response"),
        ];
        for (data, code) in cases {
            let mut translator = GeminiFilter.stream_translator(上下文(false));
            let event = SseEvent {
                event: None,
                data: data.into(),
            };
            let e = translator
                .on_event(&event, &mut BytesMut::new())
                .expect_err("应返回错误");
            assert_eq!((e.status, e.code.as_str()), (502, code), "事件 {data}");
        }
        let mut translator = GeminiFilter.stream_translator(上下文(false));
        let blank = SseEvent {
            event: None,
            data: " ".into(),
        };
        assert_eq!(
            translator.on_event(&blank, &mut BytesMut::new()),
            Ok(StreamStatus::Continue)
        );
    }

    #[test]
    fn 流中提示词被拦截_输出_content_filter() {
        let events = [
            json!({ "promptFeedback": { "blockReason": "PROHIBITED_CONTENT" }, "usageMetadata": { "promptTokenCount": 6, "totalTokenCount": 6 } }),
        ];
        let (out, end) = 运行流(&events, true);
        assert!(end.is_ok(), "被拦截的流是正常结束");
        let chunks = 块(&out);
        assert_eq!(结束原因(&chunks), ["content_filter"]);
        assert_eq!(
            chunks.last().map(|c| &c["usage"]["prompt_tokens"]),
            Some(&json!(6))
        );
    }

    // ───────────── 健壮性 ─────────────

    /// 测试用的确定性伪随机数（xorshift64），保证失败可复现。
    struct 随机数(u64);

    impl 随机数 {
        fn 下一个(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound.max(1) as u64) as usize
        }
    }

    /// 随机 JSON 的键：多数是 Gemini 的真实字段名，容易走进各个分支。
    const 随机键: &[&str] = &[
        "candidates",
        "content",
        "parts",
        "text",
        "thought",
        "functionCall",
        "name",
        "args",
        "thoughtSignature",
        "finishReason",
        "index",
        "usageMetadata",
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "toolUsePromptTokenCount",
        "responseId",
        "promptFeedback",
        "blockReason",
        "error",
        "message",
        "status",
        "details",
        "@type",
        "retryDelay",
        "reason",
        "violations",
        "quotaId",
        "中文键",
    ];

    /// 随机 JSON 的字符串值。
    const 随机串: &[&str] = &[
        "STOP",
        "MAX_TOKENS",
        "SAFETY",
        "38s",
        "9.9s",
        "1.5.2s",
        "API_KEY_INVALID",
        "type.googleapis.com/google.rpc.RetryInfo",
        "google.rpc.QuotaFailure",
        "PerDay",
        "RESOURCE_EXHAUSTED",
        "",
        "你好",
        "c2lnLTA=",
    ];

    fn 随机_json(rng: &mut 随机数, depth: usize) -> Value {
        let kind = if depth == 0 {
            rng.下一个(5)
        } else {
            rng.下一个(7)
        };
        match kind {
            0 => Value::Null,
            1 => json!(rng.下一个(2) == 0),
            2 => [json!(u64::MAX), json!(-1), json!(1e308), json!(0), json!(7)][rng.下一个(5)]
                .clone(),
            3 | 4 => json!(随机串[rng.下一个(随机串.len())]),
            5 => (0..rng.下一个(4))
                .map(|_| 随机_json(rng, depth - 1))
                .collect(),
            _ => {
                let fields = (0..rng.下一个(5)).map(|_| {
                    (
                        随机键[rng.下一个(随机键.len())].to_string(),
                        随机_json(rng, depth - 1),
                    )
                });
                Value::Object(fields.collect())
            }
        }
    }

    #[test]
    fn 随机_json_不会让翻译器崩溃_输出总是合法_json() {
        let mut rng = 随机数(0x9E37_79B9_7F4A_7C15);
        for _ in 0..300 {
            let documents: Vec<Value> =
                (0..rng.下一个(6)).map(|_| 随机_json(&mut rng, 5)).collect();
            let mut translator = GeminiFilter.stream_translator(上下文(true));
            let mut out = BytesMut::new();
            for document in &documents {
                let event = SseEvent {
                    event: None,
                    data: document.to_string(),
                };
                let _ = translator.on_event(&event, &mut out);
            }
            let _ = translator.on_eof(&mut out);
            let text = String::from_utf8(out.to_vec()).expect("输出必须是 UTF-8");
            assert!(text
                .split("\n\n")
                .filter_map(|e| e.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .all(|d| serde_json::from_str::<Value>(d).is_ok()));
            for document in &documents {
                let bytes = Bytes::from(document.to_string());
                if let Ok(reply) = GeminiFilter.translate_response(bytes.clone(), &上下文(false))
                {
                    serde_json::from_slice::<Value>(&reply.body).expect("完整响应必须是 JSON");
                }
                let _ = GeminiFilter.parse_error(429, &bytes);
            }
        }
    }

    #[test]
    fn 乱码字节不会让解析器与翻译器崩溃() {
        let mut rng = 随机数(0xDEAD_BEEF_CAFE_F00D);
        let alphabet: &[u8] =
            b"data: {}[]\":,\r\n\r\n0123456789candidatesfinishReason\xff\xfe\xe4\xbd";
        for _ in 0..300 {
            let bytes: Vec<u8> = (0..rng.下一个(400))
                .map(|_| alphabet[rng.下一个(alphabet.len())])
                .collect();
            let cut = rng.下一个(bytes.len() + 1);
            let _ = 解析并翻译(&[&bytes[..cut], &bytes[cut..]], rng.下一个(2) == 0);
            let _ = GeminiFilter.parse_error(400, &bytes);
            let _ = GeminiFilter.translate_response(Bytes::from(bytes), &上下文(false));
        }
    }
}
