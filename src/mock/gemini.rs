//! 模拟器的 Gemini generateContent 线上格式（v1beta）。
//!
//! 像真实 API 一样：路径为 `/v1beta/models/{model}:generateContent` 或
//! `:streamGenerateContent?alt=sse`，密钥只认 `x-goog-api-key` 头（查询串里的 `key=` 直接拒绝，
//! 网关绝不能把密钥放进 URL），按真实规则校验请求，错误使用 Google 的错误格式
//! （429 只在响应体的 `RetryInfo` 里给等待时间，没有 `Retry-After` 头）。
//! 流式事件以 `\r\n\r\n` 结束，考验网关的 SSE 解析器；没有结束标记，发完即关闭。

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use super::io::{send_raw, start_stream, write_json_with};
use super::plan::{self, MockUsage, PlannedCall, Reply, ToolSpec, Turn};
use super::STREAM_ERROR_MESSAGE;
use super::{Fault, MockApp};

/// Gemini 模型路径中的片段（`/v1beta/models/{model}:method`）。
pub(super) const MODELS_SEGMENT: &str = "/models/";
/// 非流式方法名。
const METHOD_GENERATE: &str = "generateContent";
/// 流式方法名。
const METHOD_STREAM: &str = "streamGenerateContent";
/// 流式必需的查询参数（否则真实 API 返回 JSON 数组，模拟器未实现）。
const SSE_QUERY: &str = "alt=sse";
/// 查询串中的密钥参数前缀（网关不得使用）。
const KEY_QUERY_PREFIX: &str = "key=";
/// 认证头。
const API_KEY_HEADER: &str = "x-goog-api-key";
/// 模拟器视为无效的密钥（与测试环境的 `INVALID_UPSTREAM_KEY` 一致）。
const INVALID_KEY: &str = "invalid-key";
/// 第一个 functionCall 部分携带的思维签名（base64 的 `sig-0`）。
const THOUGHT_SIGNATURE: &str = "c2lnLTA=";
/// 429 时 `RetryInfo.retryDelay` 给出的等待时长。
const RETRY_DELAY: &str = "2.5s";
/// SSE 事件的前缀。
const EVENT_PREFIX: &str = "data: ";
/// SSE 事件的结束符（故意用 CRLF）。
const EVENT_END: &str = "\r\n\r\n";
/// 响应 id 的前缀。
const RESPONSE_ID_PREFIX: &str = "mock-resp-";
/// 正常结束的结束原因（函数调用轮也用它）。
const FINISH_STOP: &str = "STOP";
/// 禁止调用函数的模式。
const MODE_NONE: &str = "NONE";
/// 无效密钥时 `ErrorInfo.reason` 的取值。
const REASON_API_KEY_INVALID: &str = "API_KEY_INVALID";
/// 文本数据字段。
const TEXT_FIELD: &str = "text";
/// HTTP 200（成功）。
const HTTP_OK: u16 = 200;
/// HTTP 400：请求不合法（含无效密钥）。
const HTTP_BAD_REQUEST: u16 = 400;
/// HTTP 403：缺少密钥。
const HTTP_FORBIDDEN: u16 = 403;
/// HTTP 404：没有该方法或路径。
const HTTP_NOT_FOUND: u16 = 404;
/// HTTP 429：限流（带配额违规与重试时间）。
const HTTP_TOO_MANY_REQUESTS: u16 = 429;
/// 模型一方的角色。
const ROLE_MODEL: &str = "model";
/// 允许的角色。
const ROLES: &[&str] = &["user", ROLE_MODEL];
/// 一个部分中互斥的数据字段：(camelCase, snake_case)。
const DATA_FIELDS: &[(&str, &str)] = &[
    (TEXT_FIELD, TEXT_FIELD),
    ("inlineData", "inline_data"),
    ("fileData", "file_data"),
    ("functionCall", "function_call"),
    ("functionResponse", "function_response"),
    ("executableCode", "executable_code"),
    ("codeExecutionResult", "code_execution_result"),
];
/// 函数调用字段。
const FUNCTION_CALL: (&str, &str) = ("functionCall", "function_call");
/// 函数响应字段。
const FUNCTION_RESPONSE: (&str, &str) = ("functionResponse", "function_response");
/// 错误详情类型：错误原因。
const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";
/// 错误详情类型：重试等待时间。
const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";
/// 错误详情类型：配额违规。
const QUOTA_FAILURE_TYPE: &str = "type.googleapis.com/google.rpc.QuotaFailure";
/// HTTP 状态码到 gRPC 状态名。
const GRPC_STATUS: &[(u16, &str)] = &[
    (400, "INVALID_ARGUMENT"),
    (401, "UNAUTHENTICATED"),
    (403, "PERMISSION_DENIED"),
    (404, "NOT_FOUND"),
    (429, "RESOURCE_EXHAUSTED"),
    (500, "INTERNAL"),
    (503, "UNAVAILABLE"),
    (504, "DEADLINE_EXCEEDED"),
];
/// 流中错误故障报告的状态码（INTERNAL）。
const STREAM_ERROR_STATUS: u16 = 500;
/// 表中没有的状态码对应的 gRPC 状态名。
const GRPC_UNKNOWN: &str = "UNKNOWN";
/// 函数响应数量与函数调用数量不符时真实 API 的错误文本。
const MISMATCH_MESSAGE: &str = "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.";
/// 函数响应没有紧跟在函数调用之后时真实 API 的错误文本。
const ORDER_MESSAGE: &str =
    "Please ensure that function response turn comes immediately after a function call turn.";

/// 一个 Google 格式的错误：HTTP 状态码、消息与 `details`。
struct GeminiError {
    status: u16,
    message: String,
    details: Vec<Value>,
}

impl GeminiError {
    /// 没有 `details` 的错误。
    fn new(status: u16, message: impl Into<String>) -> Self {
        GeminiError {
            status,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// 序列化为 Google 错误体 `{"error":{"code","message","status","details"?}}`。
    fn body(&self) -> Value {
        let status = GRPC_STATUS
            .iter()
            .find(|(code, _)| *code == self.status)
            .map_or(GRPC_UNKNOWN, |(_, name)| name);
        let mut error = json!({ "code": self.status, "message": self.message, "status": status });
        if !self.details.is_empty() {
            error["details"] = json!(self.details);
        }
        json!({ "error": error })
    }
}

/// 请求的方法：模型名与是否流式。
#[derive(Debug, PartialEq, Eq)]
struct Call {
    model: String,
    stream: bool,
}

/// 一次回复的公共信息。
struct Meta {
    id: String,
    model: String,
    usage: MockUsage,
}

/// 处理 `generateContent` 与 `streamGenerateContent`；返回连接是否仍可复用。
pub(super) async fn generate(app: &MockApp, session: &mut ServerSession, body: Bytes) -> bool {
    let call = match check_call(session.req_header()) {
        Ok(call) => call,
        Err(e) => return write_error(session, &e).await,
    };
    let request = match serde_json::from_slice::<Value>(&body) {
        Ok(request @ Value::Object(_)) => request,
        _ => {
            let e = GeminiError::new(
                HTTP_BAD_REQUEST,
                "Invalid JSON payload received.（模拟器：请求体不是 JSON 对象）",
            );
            return write_error(session, &e).await;
        }
    };
    if let Err(message) = validate(&request) {
        return write_error(session, &GeminiError::new(HTTP_BAD_REQUEST, message)).await;
    }
    if let Some(Fault::Status(code)) = app.fault() {
        return write_error(session, &fault_error(code)).await;
    }
    let turn = turn_of(&request, body.len());
    let meta = Meta {
        id: plan::next_id(RESPONSE_ID_PREFIX),
        model: call.model,
        usage: plan::usage(&app.settings, &turn),
    };
    let reply = plan::plan(&app.settings, &turn);
    if call.stream {
        return stream(app, session, &meta, &reply).await;
    }
    write_json_with(session, HTTP_OK, &full_response(&meta, &reply), None).await
}

/// 检查路径、查询串与认证头，得出模型名与是否流式。
fn check_call(header: &RequestHeader) -> Result<Call, GeminiError> {
    let query = header.uri.query().unwrap_or_default();
    if query.split('&').any(|p| p.starts_with(KEY_QUERY_PREFIX)) {
        return Err(GeminiError::new(HTTP_BAD_REQUEST, "模拟器拒绝查询串中的 key= 参数：网关必须用 x-goog-api-key 头传递密钥，密钥不得出现在 URL 中"));
    }
    let (model, method) = header
        .uri
        .path()
        .split_once(MODELS_SEGMENT)
        .and_then(|(_, rest)| rest.split_once(':'))
        .ok_or_else(|| GeminiError::new(HTTP_NOT_FOUND, "模拟器无法从路径中解析模型名与方法"))?;
    let stream = match method {
        METHOD_GENERATE => false,
        METHOD_STREAM => true,
        _ => {
            return Err(GeminiError::new(
                HTTP_NOT_FOUND,
                format!("模拟器没有方法 `{method}`"),
            ))
        }
    };
    if stream && !query.split('&').any(|p| p == SSE_QUERY) {
        return Err(GeminiError::new(
            HTTP_BAD_REQUEST,
            "模拟器只实现了 alt=sse 形式的流",
        ));
    }
    check_key(header)?;
    Ok(Call {
        model: model.to_string(),
        stream,
    })
}

/// 缺少密钥 → 403；无效密钥 → 400 且 `ErrorInfo.reason` 为 `API_KEY_INVALID`（与真实 API 相同，不是 401）。
fn check_key(header: &RequestHeader) -> Result<(), GeminiError> {
    match header.headers.get(API_KEY_HEADER).map(|v| v.as_bytes()) {
        None => Err(GeminiError::new(HTTP_FORBIDDEN, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.（缺少 x-goog-api-key 头）")),
        Some(key) if key == INVALID_KEY.as_bytes() => Err(GeminiError {
            details: vec![json!({ "@type": ERROR_INFO_TYPE, "reason": REASON_API_KEY_INVALID, "domain": "googleapis.com", "metadata": { "service": "generativelanguage.googleapis.com" } })],
            ..GeminiError::new(HTTP_BAD_REQUEST, "API key not valid. Please pass a valid API key.（模拟的无效密钥）")
        }),
        Some(_) => Ok(()),
    }
}

/// 按故障设置返回的错误：429 带配额违规与 `RetryInfo`，其余只有消息。
fn fault_error(code: u16) -> GeminiError {
    let mut error = GeminiError::new(code, format!("模拟的上游故障（{code}）"));
    if code == HTTP_TOO_MANY_REQUESTS {
        error.message = "You exceeded your current quota, please check your plan and billing details.（模拟的限流）".into();
        error.details = vec![
            json!({ "@type": QUOTA_FAILURE_TYPE, "violations": [ { "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10" } ] }),
            json!({ "@type": RETRY_INFO_TYPE, "retryDelay": RETRY_DELAY }),
        ];
    }
    error
}

/// 以 Google 错误体应答（不带 `Retry-After` 头）；返回连接是否仍可复用。
async fn write_error(session: &mut ServerSession, error: &GeminiError) -> bool {
    write_json_with(session, error.status, &error.body(), None).await
}

/// 取一个字段，camelCase 与 snake_case 两种写法都接受（proto3 JSON 规则）。
fn field<'a>(object: &'a Value, (camel, snake): (&str, &str)) -> &'a Value {
    object
        .get(camel)
        .or_else(|| object.get(snake))
        .unwrap_or(&Value::Null)
}

/// 像真实 API 一样校验请求；错误返回真实 API 的错误文本（附中文说明）。
fn validate(request: &Value) -> Result<(), String> {
    let contents = field(request, ("contents", "contents"))
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified（缺少 contents）")?;
    for (k, content) in contents.iter().enumerate() {
        validate_content(content, k)?;
    }
    validate_function_turns(contents)
}

/// 角色只能是 user/model；部分不能为空；每个部分恰好一个数据字段；文本不能为空。
fn validate_content(content: &Value, k: usize) -> Result<(), String> {
    let role = content["role"].as_str().unwrap_or(ROLES[0]);
    if !ROLES.contains(&role) {
        return Err(format!(
            "Please use a valid role: user, model.（contents[{k}].role 为 `{role}`）"
        ));
    }
    let parts = content["parts"]
        .as_array()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("* GenerateContentRequest.contents[{k}].parts: contents.parts must not be empty.（内容没有任何部分）"))?;
    for (j, part) in parts.iter().enumerate() {
        let present: Vec<&str> = DATA_FIELDS
            .iter()
            .filter(|names| !field(part, **names).is_null())
            .map(|(camel, _)| *camel)
            .collect();
        if present.len() != 1 {
            return Err(format!("* GenerateContentRequest.contents[{k}].parts[{j}].data: required oneof field 'data' must have one initialized field（实际有 {} 个数据字段）", present.len()));
        }
        if present[0] == TEXT_FIELD && part["text"].as_str().is_none_or(str::is_empty) {
            return Err("Unable to submit request because it has an empty text parameter. Add a value to the parameter and try again.（文本部分为空）".into());
        }
    }
    Ok(())
}

/// 含函数响应的内容必须紧跟在 model 的函数调用内容之后，且两者部分数量相等。
fn validate_function_turns(contents: &[Value]) -> Result<(), String> {
    for (k, content) in contents.iter().enumerate() {
        let responses = count_parts(content, FUNCTION_RESPONSE);
        if responses == 0 {
            continue;
        }
        let calls = k
            .checked_sub(1)
            .and_then(|p| contents.get(p))
            .filter(|prev| prev["role"] == ROLE_MODEL)
            .map_or(0, |prev| count_parts(prev, FUNCTION_CALL));
        if calls == 0 {
            return Err(format!("{ORDER_MESSAGE}（contents[{k}]）"));
        }
        if calls != responses {
            return Err(format!(
                "{MISMATCH_MESSAGE}（函数调用 {calls} 个，函数响应 {responses} 个）"
            ));
        }
    }
    Ok(())
}

/// 内容中带有给定数据字段的部分数。
fn count_parts(content: &Value, names: (&str, &str)) -> usize {
    content["parts"].as_array().map_or(0, |parts| {
        parts.iter().filter(|p| !field(p, names).is_null()).count()
    })
}

/// 抽取中立的一轮信息：声明的函数、是否允许调用（mode 不是 NONE）、最后一个内容是否是函数响应。
fn turn_of(request: &Value, body_len: usize) -> Turn {
    let tools = field(request, ("tools", "tools"))
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| field(t, ("functionDeclarations", "function_declarations")).as_array())
        .flatten()
        .filter_map(|d| {
            Some(ToolSpec {
                name: d["name"].as_str()?.to_string(),
                schema: [
                    ("parametersJsonSchema", "parameters_json_schema"),
                    ("parameters", "parameters"),
                ]
                .into_iter()
                .map(|names| field(d, names))
                .find(|s| !s.is_null())
                .cloned()
                .unwrap_or(Value::Null),
            })
        })
        .collect();
    let config = field(request, ("toolConfig", "tool_config"));
    let mode = &field(config, ("functionCallingConfig", "function_calling_config"))["mode"];
    let last = field(request, ("contents", "contents"))
        .as_array()
        .and_then(|c| c.last());
    Turn {
        tools,
        tools_allowed: mode != MODE_NONE,
        after_tool_result: last.is_some_and(|c| count_parts(c, FUNCTION_RESPONSE) > 0),
        body_len,
    }
}

/// `usageMetadata`：`candidatesTokenCount` 不含思考 token；为零的字段省略（与 proto3 JSON 相同）。
fn usage_metadata(usage: &MockUsage) -> Value {
    let mut meta = json!({
        "promptTokenCount": usage.prompt,
        "candidatesTokenCount": usage.completion.saturating_sub(usage.reasoning),
        "totalTokenCount": usage.prompt + usage.completion,
    });
    if usage.cached > 0 {
        meta["cachedContentTokenCount"] = json!(usage.cached);
    }
    if usage.reasoning > 0 {
        meta["thoughtsTokenCount"] = json!(usage.reasoning);
    }
    meta
}

/// 第 `index` 个函数调用部分；只有第一个带思维签名（与真实 API 相同）。
fn call_part(index: usize, call: &PlannedCall) -> Value {
    let mut part = json!({ "functionCall": { "name": call.name, "args": call.arguments } });
    if index == 0 {
        part["thoughtSignature"] = json!(THOUGHT_SIGNATURE);
    }
    part
}

/// 一个 `GenerateContentResponse`：一个候选、用量、模型版本与响应 id。
fn envelope(meta: &Meta, candidate: Value, usage: Value) -> Value {
    json!({ "candidates": [candidate], "usageMetadata": usage, "modelVersion": meta.model, "responseId": meta.id })
}

/// 模型一方的 `Content`。
fn content(parts: Vec<Value>) -> Value {
    json!({ "role": ROLE_MODEL, "parts": parts })
}

/// 非流式回复：文本或并行的函数调用，结束原因 STOP。
fn full_response(meta: &Meta, reply: &Reply) -> Value {
    let parts = match reply {
        Reply::Text(pieces) => vec![json!({ "text": pieces.concat() })],
        Reply::Tools(calls) => calls
            .iter()
            .enumerate()
            .map(|(i, c)| call_part(i, c))
            .collect(),
    };
    let candidate = json!({ "content": content(parts), "finishReason": FINISH_STOP, "index": 0 });
    envelope(meta, candidate, usage_metadata(&meta.usage))
}

/// 流中的内容事件：每段文本一个事件（带累计用量），每个函数调用单独一个事件。
fn stream_events(meta: &Meta, reply: &Reply) -> Vec<Value> {
    let u = meta.usage;
    let visible = u.completion.saturating_sub(u.reasoning);
    let running = |done: u64| json!({ "promptTokenCount": u.prompt, "candidatesTokenCount": done, "totalTokenCount": u.prompt + done });
    match reply {
        Reply::Text(pieces) => {
            let n = pieces.len().max(1) as u64;
            pieces
                .iter()
                .zip(1u64..)
                .map(|(text, i)| {
                    let candidate =
                        json!({ "content": content(vec![json!({ "text": text })]), "index": 0 });
                    envelope(meta, candidate, running(visible * i / n))
                })
                .collect()
        }
        Reply::Tools(calls) => calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let candidate = json!({ "content": content(vec![call_part(i, c)]), "index": 0 });
                envelope(meta, candidate, running(0))
            })
            .collect(),
    }
}

/// 最后一个事件：只有结束原因与最终用量，没有任何部分。
fn final_event(meta: &Meta) -> Value {
    envelope(
        meta,
        json!({ "finishReason": FINISH_STOP, "index": 0 }),
        usage_metadata(&meta.usage),
    )
}

/// 流式回复：内容事件逐个发出（按故障设置可在中途断开），最后一个事件发完即结束响应。
async fn stream(app: &MockApp, session: &mut ServerSession, meta: &Meta, reply: &Reply) -> bool {
    if !start_stream(session).await {
        return false;
    }
    for (i, event) in stream_events(meta, reply).iter().enumerate() {
        if !app.before_piece(i).await {
            if app.error_due(i) {
                let error = GeminiError::new(STREAM_ERROR_STATUS, STREAM_ERROR_MESSAGE);
                send_event(session, &error.body(), false).await;
            }
            return false;
        }
        if !send_event(session, event, false).await {
            app.count_stream(false);
            return false;
        }
    }
    let ok = send_event(session, &final_event(meta), true).await;
    app.count_stream(ok);
    ok
}

/// 写一个以 CRLF 空行结束的 `data:` 事件，`end` 为真时同时结束响应体；返回是否成功。
async fn send_event(session: &mut ServerSession, event: &Value, end: bool) -> bool {
    let data = format!("{EVENT_PREFIX}{event}{EVENT_END}");
    send_raw(session, Bytes::from(data), end).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 构造请求头：路径与可选的密钥头。
    fn 请求头(path: &str, key: Option<&str>) -> RequestHeader {
        let mut header = RequestHeader::build("POST", path.as_bytes(), None).expect("合法的请求行");
        if let Some(key) = key {
            header
                .insert_header(API_KEY_HEADER, key)
                .expect("合法的请求头");
        }
        header
    }

    fn 用户(text: &str) -> Value {
        json!({ "role": "user", "parts": [ { "text": text } ] })
    }

    fn 调用轮(n: usize) -> Value {
        let parts: Vec<Value> = (0..n)
            .map(|i| json!({ "functionCall": { "name": format!("工具{i}"), "args": {} } }))
            .collect();
        json!({ "role": "model", "parts": parts })
    }

    fn 响应轮(n: usize) -> Value {
        let parts: Vec<Value> = (0..n)
            .map(|i| json!({ "functionResponse": { "name": format!("工具{i}"), "response": { "output": "好" } } }))
            .collect();
        json!({ "role": "user", "parts": parts })
    }

    fn 用量() -> MockUsage {
        MockUsage {
            prompt: 30,
            completion: 12,
            cached: 10,
            reasoning: 5,
        }
    }

    fn 元信息() -> Meta {
        Meta {
            id: "resp-1".into(),
            model: "gemini-2.5-flash".into(),
            usage: 用量(),
        }
    }

    #[test]
    fn 路径_解析模型与方法_流式必须带_alt_sse() {
        let ok = check_call(&请求头(
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            Some("k"),
        ));
        let call = ok.unwrap_or_else(|e| panic!("应当通过：{}", e.message));
        assert_eq!(
            call,
            Call {
                model: "gemini-2.5-flash".into(),
                stream: true
            }
        );
        let plain = check_call(&请求头(
            "/base/v1beta/models/m:generateContent",
            Some("k"),
        ));
        assert!(plain.is_ok_and(|c| !c.stream && c.model == "m"));
        let statuses: Vec<u16> = [
            "/v1beta/models/m:streamGenerateContent",
            "/v1beta/models/m:countTokens",
            "/v1beta/models/m",
        ]
        .iter()
        .map(|p| check_call(&请求头(p, Some("k"))).map_or_else(|e| e.status, |_| 200))
        .collect();
        assert_eq!(statuses, [400, 404, 404]);
    }

    #[test]
    fn 密钥_查询串里的_key_拒绝_缺失_403_无效_400() {
        let in_query = check_call(&请求头(
            "/v1beta/models/m:generateContent?key=abc",
            Some("k"),
        ));
        assert!(in_query.is_err_and(|e| e.status == 400 && e.message.contains("key=")));
        let sse_and_key = check_call(&请求头(
            "/v1beta/models/m:streamGenerateContent?alt=sse&key=abc",
            Some("k"),
        ));
        assert!(sse_and_key.is_err_and(|e| e.status == 400));
        let missing = check_call(&请求头("/v1beta/models/m:generateContent", None));
        assert!(missing.is_err_and(|e| e.status == 403));
        let invalid = check_call(&请求头(
            "/v1beta/models/m:generateContent",
            Some(INVALID_KEY),
        ))
        .expect_err("无效密钥必须被拒绝");
        let body = invalid.body();
        assert_eq!(
            (
                body["error"]["code"].clone(),
                body["error"]["status"].clone()
            ),
            (json!(400), json!("INVALID_ARGUMENT"))
        );
        assert_eq!(body["error"]["details"][0]["reason"], "API_KEY_INVALID");
    }

    #[test]
    fn 校验_角色只能是_user_或_model_部分不能为空() {
        assert!(validate(&json!({ "contents": [用户("你好")] })).is_ok());
        assert!(validate(
            &json!({ "contents": [ { "parts": [ { "text": "缺省角色为 user" } ] } ] })
        )
        .is_ok());
        for bad in [
            json!({ "contents": [] }),
            json!({}),
            json!({ "contents": [ { "role": "assistant", "parts": [ { "text": "你好" } ] } ] }),
            json!({ "contents": [ { "role": "function", "parts": [ { "text": "你好" } ] } ] }),
            json!({ "contents": [ { "role": "user", "parts": [] } ] }),
        ] {
            assert!(validate(&bad).is_err(), "应拒绝：{bad}");
        }
    }

    #[test]
    fn 校验_每个部分恰好一个数据字段_文本不能为空() {
        let two = json!({ "contents": [ { "role": "user", "parts": [ { "text": "甲", "inlineData": { "mimeType": "image/png", "data": "AA==" } } ] } ] });
        assert!(validate(&two).is_err_and(|m| m.contains("oneof")));
        let none = json!({ "contents": [ { "role": "user", "parts": [ { "thought": true } ] } ] });
        assert!(validate(&none).is_err());
        let empty = json!({ "contents": [用户("")] });
        assert!(validate(&empty).is_err_and(|m| m.contains("empty text")));
        let signature_is_metadata = json!({ "contents": [用户("你好"), { "role": "model", "parts": [ { "functionCall": { "name": "甲", "args": {} }, "thoughtSignature": "c2ln" } ] }] });
        assert!(
            validate(&signature_is_metadata).is_ok(),
            "思维签名是元数据，不算数据字段"
        );
    }

    #[test]
    fn 校验_函数响应数量必须等于函数调用数量且紧跟其后() {
        assert!(validate(&json!({ "contents": [用户("查"), 调用轮(2), 响应轮(2)] })).is_ok());
        let fewer = validate(&json!({ "contents": [用户("查"), 调用轮(2), 响应轮(1)] }));
        assert!(fewer.is_err_and(|m| m.starts_with(MISMATCH_MESSAGE)));
        let orphan = validate(&json!({ "contents": [用户("查"), 响应轮(1)] }));
        assert!(orphan.is_err_and(|m| m.starts_with(ORDER_MESSAGE)));
        let late =
            validate(&json!({ "contents": [用户("查"), 调用轮(1), 用户("插话"), 响应轮(1)] }));
        assert!(late.is_err(), "函数响应必须紧跟在函数调用之后");
    }

    #[test]
    fn 校验与一轮信息_接受_snake_case_写法() {
        let request = json!({
            "contents": [ { "role": "user", "parts": [ { "inline_data": { "mime_type": "image/png", "data": "AA==" } } ] },
                          { "role": "model", "parts": [ { "function_call": { "name": "查天气", "args": {} } } ] },
                          { "role": "user", "parts": [ { "function_response": { "name": "查天气", "response": {} } } ] } ],
            "tools": [ { "function_declarations": [ { "name": "查天气", "parameters": { "type": "object" } } ] } ],
            "tool_config": { "function_calling_config": { "mode": "ANY" } },
        });
        assert!(validate(&request).is_ok());
        let turn = turn_of(&request, 100);
        assert_eq!(turn.tools.len(), 1);
        assert_eq!(turn.tools[0].schema, json!({ "type": "object" }));
        assert!(turn.tools_allowed && turn.after_tool_result);
    }

    #[test]
    fn 一轮信息_从函数声明取工具_mode_none_时不调用() {
        let schema = json!({ "type": "object", "properties": { "城市": { "type": "string" } } });
        let mut request = json!({
            "contents": [用户("查天气")],
            "tools": [ { "functionDeclarations": [ { "name": "甲", "parametersJsonSchema": schema }, { "name": "乙" } ] } ],
        });
        let turn = turn_of(&request, 10);
        assert_eq!(
            turn.tools
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["甲", "乙"]
        );
        assert_eq!(turn.tools[0].schema, schema);
        assert!(turn.tools_allowed && !turn.after_tool_result);
        request["toolConfig"] = json!({ "functionCallingConfig": { "mode": "NONE" } });
        assert!(!turn_of(&request, 10).tools_allowed);
    }

    #[test]
    fn 用量_候选数不含思考_零值字段省略() {
        assert_eq!(
            usage_metadata(&用量()),
            json!({ "promptTokenCount": 30, "candidatesTokenCount": 7, "totalTokenCount": 42, "cachedContentTokenCount": 10, "thoughtsTokenCount": 5 })
        );
        let plain = MockUsage {
            prompt: 3,
            completion: 2,
            cached: 0,
            reasoning: 0,
        };
        assert_eq!(
            usage_metadata(&plain),
            json!({ "promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5 })
        );
    }

    #[test]
    fn 回复_并行调用分开发送_只有第一个带签名_末事件没有部分() {
        let calls = ["甲", "乙"].map(|name| PlannedCall {
            name: name.into(),
            arguments: serde_json::Map::new(),
        });
        let reply = Reply::Tools(calls.into());
        let events = stream_events(&元信息(), &reply);
        assert_eq!(events.len(), 2, "每个函数调用单独一个事件");
        let part = |i: usize| events[i]["candidates"][0]["content"]["parts"].clone();
        assert_eq!(part(0)[0]["thoughtSignature"], THOUGHT_SIGNATURE);
        assert!(part(1)[0].get("thoughtSignature").is_none());
        assert!(events
            .iter()
            .all(|e| e["candidates"][0].get("finishReason").is_none()));
        let last = final_event(&元信息());
        assert_eq!(
            last["candidates"][0],
            json!({ "finishReason": FINISH_STOP, "index": 0 })
        );
        assert_eq!(last["usageMetadata"]["totalTokenCount"], 42);
        let full = full_response(&元信息(), &reply);
        assert_eq!(
            full["candidates"][0]["content"]["parts"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        assert_eq!(full["responseId"], "resp-1");
    }

    #[test]
    fn 回复_文本分块带累计用量() {
        let reply = Reply::Text(vec!["你好".into(), "世界".into()]);
        let events = stream_events(&元信息(), &reply);
        let running: Vec<&Value> = events
            .iter()
            .map(|e| &e["usageMetadata"]["candidatesTokenCount"])
            .collect();
        assert_eq!(
            running,
            [&json!(3), &json!(7)],
            "累计值递增，最后等于不含思考的输出数"
        );
        assert_eq!(
            events[1]["candidates"][0]["content"]["parts"][0]["text"],
            "世界"
        );
        let full = full_response(&元信息(), &reply);
        assert_eq!(
            full["candidates"][0]["content"]["parts"],
            json!([ { "text": "你好世界" } ])
        );
    }

    #[test]
    fn 故障_429_只在响应体里给重试时间_其余状态映射_grpc_名称() {
        let body = fault_error(429).body();
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        let retry = body["error"]["details"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["@type"] == RETRY_INFO_TYPE))
            .cloned();
        assert_eq!(
            retry.map(|r| r["retryDelay"].clone()),
            Some(json!(RETRY_DELAY))
        );
        let statuses: Vec<Value> = [503, 500, 404, 418]
            .iter()
            .map(|c| fault_error(*c).body()["error"]["status"].clone())
            .collect();
        assert_eq!(
            statuses,
            [
                json!("UNAVAILABLE"),
                json!("INTERNAL"),
                json!("NOT_FOUND"),
                json!(GRPC_UNKNOWN)
            ]
        );
        assert!(fault_error(503).body()["error"].get("details").is_none());
    }
}
