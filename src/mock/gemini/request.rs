//! 解析与校验网关发来的 Gemini 请求：路径里的模型与方法、查询串、认证头，以及请求体的结构。

use pingora::http::RequestHeader;
use serde_json::{json, Value};

use super::{GeminiError, HTTP_BAD_REQUEST, MODELS_SEGMENT, ROLE_MODEL};
use crate::mock::plan::{ToolSpec, Turn};

/// 非流式方法名。
const METHOD_GENERATE: &str = "generateContent";
/// 流式方法名。
const METHOD_STREAM: &str = "streamGenerateContent";
/// 输入 token 计数方法名。
const METHOD_COUNT: &str = "countTokens";
/// 批量向量方法名。
const METHOD_EMBED: &str = "batchEmbedContents";
/// 流式必需的查询参数（否则真实 API 返回 JSON 数组，模拟器未实现）。
const SSE_QUERY: &str = "alt=sse";
/// 查询串中的密钥参数前缀（网关不得使用）。
const KEY_QUERY_PREFIX: &str = "key=";
/// 认证头。
const API_KEY_HEADER: &str = "x-goog-api-key";
/// 模拟器视为无效的密钥（与测试环境的 `INVALID_UPSTREAM_KEY` 一致）。
const INVALID_KEY: &str = "invalid-key";
/// 禁止调用函数的模式。
const MODE_NONE: &str = "NONE";
/// 无效密钥时 `ErrorInfo.reason` 的取值。
const REASON_API_KEY_INVALID: &str = "API_KEY_INVALID";
/// 文本数据字段。
const TEXT_FIELD: &str = "text";
/// HTTP 403：缺少密钥。
const HTTP_FORBIDDEN: u16 = 403;
/// HTTP 404：没有该方法或路径。
const HTTP_NOT_FOUND: u16 = 404;
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
/// 函数响应数量与函数调用数量不符时真实 API 的错误文本。
const MISMATCH_MESSAGE: &str = "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.";
/// 函数响应没有紧跟在函数调用之后时真实 API 的错误文本。
const ORDER_MESSAGE: &str =
    "Please ensure that function response turn comes immediately after a function call turn.";

/// 请求的方法：模型名与是否流式。
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Call {
    pub(super) model: String,
    pub(super) stream: bool,
    /// 是计数请求（`countTokens`）。
    pub(super) count: bool,
    /// 是向量请求（`batchEmbedContents`）。
    pub(super) embed: bool,
}

/// 检查路径、查询串与认证头，得出模型名与是否流式。
pub(super) fn check_call(header: &RequestHeader) -> Result<Call, GeminiError> {
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
    let (stream, count, embed) = match method {
        METHOD_GENERATE => (false, false, false),
        METHOD_STREAM => (true, false, false),
        METHOD_COUNT => (false, true, false),
        METHOD_EMBED => (false, false, true),
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
        count,
        embed,
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

/// 取一个字段，camelCase 与 snake_case 两种写法都接受（proto3 JSON 规则）。
fn field<'a>(object: &'a Value, (camel, snake): (&str, &str)) -> &'a Value {
    object
        .get(camel)
        .or_else(|| object.get(snake))
        .unwrap_or(&Value::Null)
}

/// 像真实 API 一样校验请求；错误返回真实 API 的错误文本（附中文说明）。
pub(super) fn validate(request: &Value) -> Result<(), String> {
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
pub(super) fn turn_of(request: &Value, body_len: usize) -> Turn {
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
                stream: true,
                count: false,
                embed: false,
            }
        );
        let plain = check_call(&请求头(
            "/base/v1beta/models/m:generateContent",
            Some("k"),
        ));
        assert!(plain.is_ok_and(|c| !c.stream && c.model == "m"));
        let count = check_call(&请求头("/v1beta/models/m:countTokens", Some("k")));
        assert!(count.is_ok_and(|c| c.count && !c.stream));
        let embed = check_call(&请求头("/v1beta/models/e:batchEmbedContents", Some("k")));
        assert!(embed.is_ok_and(|c| c.embed && c.model == "e"));
        let statuses: Vec<u16> = [
            "/v1beta/models/m:streamGenerateContent",
            "/v1beta/models/m:embedContent",
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
}
