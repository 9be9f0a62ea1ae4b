//! 客户端请求：解析并校验 OpenAI Chat Completions 请求体。
//!
//! 只校验网关依赖的字段和常见字段的类型；未知字段原样保留并透传给上游，
//! 这样客户端用到的新参数不会被网关吞掉。

use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::map::Entry;
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};

/// 允许的消息角色。
const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// 模型名的最大长度（字节）：与配置中模型名的上限一致，更长的名字不可能匹配任何模型。
const MAX_MODEL_LEN: usize = 256;

/// 错误消息里最多显示的重复键名字符数。
const MAX_KEY_SHOWN: usize = 64;

/// 一个请求最多允许的消息条数。
///
/// 翻译与校验的耗时都随消息数线性增长；一万条已远超任何模型的上下文窗口，更多的消息只会白白占用
/// 工作线程的 CPU 与内存，所以在解析时直接拒绝。
pub const MAX_MESSAGES: usize = 10_000;

/// 期望的 JSON 类型，用于可选字段的类型表。
#[derive(Clone, Copy)]
enum Expect {
    Bool,
    Number,
    PositiveInt,
    Object,
    Array,
    String,
}

/// 常见可选字段及其类型：出现且不为 null 时必须符合。
const FIELD_TYPES: &[(&str, Expect)] = &[
    ("stream", Expect::Bool),
    ("stream_options", Expect::Object),
    ("temperature", Expect::Number),
    ("top_p", Expect::Number),
    ("n", Expect::PositiveInt),
    ("max_tokens", Expect::PositiveInt),
    ("max_completion_tokens", Expect::PositiveInt),
    ("presence_penalty", Expect::Number),
    ("frequency_penalty", Expect::Number),
    ("tools", Expect::Array),
    ("response_format", Expect::Object),
    ("user", Expect::String),
];

/// 一个已校验的聊天请求。
///
/// 用途：`proxy` 解析后交给 `providers` 翻译；`body` 保留客户端的全部字段与顺序，
/// `raw` 保留原始字节（无需改写时原样转发，零拷贝）。
///
/// ```
/// let raw = r#"{"model":"演示","messages":[{"role":"user","content":"你好"}],"stream":true}"#;
/// let req = chatnexus::dialects::ChatRequest::parse(raw.into()).unwrap(); // 校验通过
/// assert_eq!((req.model.as_str(), req.stream), ("演示", true)); // 取出路由需要的字段
/// ```
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// 客户端请求的模型名。
    pub model: String,
    /// 是否流式。
    pub stream: bool,
    /// 完整请求对象。
    pub body: Map<String, Value>,
    /// 原始请求体。
    pub raw: Bytes,
}

impl ChatRequest {
    /// 解析并校验请求体。
    ///
    /// 错误：非 JSON、不是对象、缺少 `model`/`messages` 或字段类型不对时返回 400，
    /// `param` 指向出错字段。
    pub fn parse(raw: Bytes) -> Result<Self, ApiError> {
        let top: TopLevel = serde_json::from_slice(&raw).map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidJson,
                format!("请求体不是合法的 JSON：{e}"),
            )
        })?;
        let body = match top {
            TopLevel::Object(body) => body,
            TopLevel::Duplicate(key) => return Err(duplicate_key(&key)),
            TopLevel::Other => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidType,
                    "请求体必须是 JSON 对象",
                ))
            }
        };
        let model = match body.get("model") {
            Some(Value::String(m)) => validate_model(m)?,
            Some(_) => return Err(wrong_type("model", "字符串")),
            None => return Err(missing_field("model")),
        };
        validate_messages(body.get("messages"))?;
        validate_field_types(&body)?;
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        Ok(ChatRequest {
            model,
            stream,
            body,
            raw,
        })
    }
}

/// 请求体顶层：对象（没有重复键）、第一个重复的键，或不是对象。
///
/// 校验只看到 serde 保留的最后一个同名值，而模型名不变时原样转发的原始字节里两个值都在；取第一个值的
/// 上游会用到允许列表从未批准的模型。所以解析时一遍就查出重复的顶层键，整个请求拒绝。
enum TopLevel {
    Object(Map<String, Value>),
    Duplicate(String),
    Other,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

/// 逐个读顶层键值对并检查重复；非对象的顶层值读完后记为 [`TopLevel::Other`]。
struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON 对象")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<TopLevel, A::Error> {
        let mut body = Map::new();
        let mut duplicate = None;
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            // 后面的值照常读完（JSON 语法错误仍按语法错误报），只记下第一个重复的键名
            match body.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    duplicate = duplicate.or_else(|| Some(slot.key().clone()));
                }
            }
        }
        Ok(duplicate.map_or(TopLevel::Object(body), TopLevel::Duplicate))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<TopLevel, A::Error> {
        while access.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }
}

/// 模型名不能为空、不超过 [`MAX_MODEL_LEN`] 字节、不含控制字符：它会进访问日志与错误消息，
/// 含换行的模型名能在日志里伪造一整行。
fn validate_model(model: &str) -> Result<String, ApiError> {
    if model.is_empty() {
        return Err(empty_field("model"));
    }
    if model.len() > MAX_MODEL_LEN || model.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            format!("字段 `model` 不能超过 {MAX_MODEL_LEN} 字节，也不能含控制字符（如换行）"),
        )
        .with_param("model"));
    }
    Ok(model.to_string())
}

/// 重复键的错误：键名去掉控制字符、最多保留 [`MAX_KEY_SHOWN`] 个字符（键名来自客户端，可能很长）。
fn duplicate_key(key: &str) -> ApiError {
    let shown: String = key
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_KEY_SHOWN)
        .collect();
    ApiError::bad_request(
        ErrorCode::DuplicateKey,
        format!("请求体的顶层字段 `{shown}` 出现了不止一次，请只保留一个"),
    )
    .with_param(shown)
}

fn validate_messages(messages: Option<&Value>) -> Result<(), ApiError> {
    let list = match messages {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(wrong_type("messages", "数组")),
        None => return Err(missing_field("messages")),
    };
    if list.is_empty() {
        return Err(empty_field("messages"));
    }
    if list.len() > MAX_MESSAGES {
        return Err(ApiError::bad_request(
            ErrorCode::TooManyMessages,
            format!(
                "`messages` 共有 {} 条消息，超过上限 {MAX_MESSAGES} 条，请删减对话历史后重试",
                list.len()
            ),
        )
        .with_param("messages"));
    }
    for (i, message) in list.iter().enumerate() {
        let Value::Object(fields) = message else {
            return Err(wrong_type(&format!("messages[{i}]"), "对象"));
        };
        // 出错时才拼参数名：合法的消息不为错误信息付出分配
        let param = || format!("messages[{i}].role");
        match fields.get("role") {
            Some(Value::String(role)) if ROLES.contains(&role.as_str()) => {}
            Some(Value::String(role)) => {
                let param = param();
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidValue,
                    format!("`{param}` 的值 `{role}` 无效，应为 {}", ROLES.join("、")),
                )
                .with_param(param));
            }
            Some(_) => return Err(wrong_type(&param(), "字符串")),
            None => return Err(missing_field(&param())),
        }
    }
    Ok(())
}

/// 逐个检查请求里出现的字段：只遍历客户端实际给出的几个字段，而不是对类型表里的每个名字都查一次
/// 哈希表（剖析显示那十几次查找曾是解析请求的一半开销）。
fn validate_field_types(body: &Map<String, Value>) -> Result<(), ApiError> {
    for (name, value) in body {
        if value.is_null() {
            continue;
        }
        let Some((_, expect)) = FIELD_TYPES.iter().find(|(known, _)| known == name) else {
            continue;
        };
        let (ok, label) = match expect {
            Expect::Bool => (value.is_boolean(), "布尔值"),
            Expect::Number => (value.is_number(), "数字"),
            Expect::PositiveInt => (value.as_u64().is_some_and(|n| n > 0), "正整数"),
            Expect::Object => (value.is_object(), "对象"),
            Expect::Array => (value.is_array(), "数组"),
            Expect::String => (value.is_string(), "字符串"),
        };
        if !ok {
            return Err(wrong_type(name, label));
        }
    }
    Ok(())
}

fn missing_field(param: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::MissingRequiredParameter,
        format!("缺少必填字段 `{param}`"),
    )
    .with_param(param)
}

fn empty_field(param: &str) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidValue, format!("字段 `{param}` 不能为空"))
        .with_param(param)
}

fn wrong_type(param: &str, expected: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidType,
        format!("字段 `{param}` 的类型应为{expected}"),
    )
    .with_param(param)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 解析(text: &str) -> Result<ChatRequest, ApiError> {
        ChatRequest::parse(Bytes::from(text.to_string()))
    }

    fn 错误参数(text: &str) -> (u16, Option<String>) {
        let e = 解析(text).expect_err("应当校验失败");
        (e.status, e.param)
    }

    #[test]
    fn 请求_合法请求保留未知字段() {
        let req = 解析(r#"{"model":"m","messages":[{"role":"user","content":"你好"}],"seed":7}"#)
            .expect("应当通过");
        assert!(!req.stream);
        assert_eq!(req.body["seed"], 7, "未知字段必须保留");
    }

    #[test]
    fn 请求_重复的顶层键_拒绝并点名() {
        for body in [
            r#"{"model":"允许的","messages":[{"role":"user","content":"x"}],"model":"未批准的"}"#,
            r#"{"model":"允许的","messages":[{"role":"user","content":"x"}],"mo\u0064el":"未批准的"}"#,
        ] {
            let e = 解析(body).expect_err("重复的键必须被拒绝");
            assert_eq!(
                (e.status, Some(e.envelope_code())),
                (400, Some("duplicate_key"))
            );
            assert!(
                e.message.contains("`model`"),
                "消息应点名重复的键：{}",
                e.message
            );
        }
        let nested =
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":{"a":1,"b":2}}"#;
        assert!(解析(nested).is_ok(), "不同的键不算重复");
    }

    #[test]
    fn 请求_顶层不是对象_返回类型错误() {
        for body in ["[1,2]", "\"文本\"", "7", "null", "true"] {
            let e = 解析(body).expect_err("非对象必须被拒绝");
            assert_eq!(
                (e.status, Some(e.envelope_code())),
                (400, Some("invalid_type")),
                "{body}"
            );
        }
    }

    #[test]
    fn 请求_模型名含控制字符或过长_拒绝() {
        let forged = "m\\n访问 请求ID=伪造 POST /v1/chat/completions 状态=200";
        let long = "m".repeat(MAX_MODEL_LEN + 1);
        for model in [forged, "m\\u0000", long.as_str()] {
            let body =
                format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"x"}}]}}"#);
            let e = 解析(&body).expect_err("非法模型名必须被拒绝");
            assert_eq!(
                (e.status, Some(e.envelope_code()), e.param.as_deref()),
                (400, Some("invalid_value"), Some("model"))
            );
        }
        let ok = format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"x"}}]}}"#,
            "m".repeat(MAX_MODEL_LEN)
        );
        assert!(解析(&ok).is_ok(), "恰好到上限的模型名可以通过");
    }

    #[test]
    fn 请求_非法_json_返回_400() {
        let e = 解析("{不是 json").expect_err("应当失败");
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (400, Some("invalid_json"))
        );
    }

    #[test]
    fn 请求_缺少或错误的必填字段_指出参数() {
        assert_eq!(错误参数(r#"{"messages":[]}"#), (400, Some("model".into())));
        assert_eq!(
            错误参数(r#"{"model":1,"messages":[]}"#),
            (400, Some("model".into()))
        );
        assert_eq!(错误参数(r#"{"model":"m"}"#), (400, Some("messages".into())));
        assert_eq!(
            错误参数(r#"{"model":"m","messages":[]}"#),
            (400, Some("messages".into()))
        );
        assert_eq!(
            错误参数(r#"{"model":"m","messages":[{"content":"x"}]}"#),
            (400, Some("messages[0].role".into()))
        );
        assert_eq!(
            错误参数(r#"{"model":"m","messages":[{"role":"机器人"}]}"#),
            (400, Some("messages[0].role".into()))
        );
    }

    #[test]
    fn 请求_可选字段类型错误_返回_400() {
        let base = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"#;
        assert_eq!(
            错误参数(&format!(r#"{base}"stream":"yes"}}"#)),
            (400, Some("stream".into()))
        );
        assert_eq!(
            错误参数(&format!(r#"{base}"max_tokens":-1}}"#)),
            (400, Some("max_tokens".into()))
        );
        assert!(
            解析(&format!(r#"{base}"temperature":null}}"#)).is_ok(),
            "null 视为未设置"
        );
    }

    /// 由 `count` 条相同的用户消息组成的请求体。
    fn 多条消息(count: usize) -> String {
        let message = r#"{"role":"user","content":"你好"}"#;
        format!(
            r#"{{"model":"m","messages":[{}]}}"#,
            vec![message; count].join(",")
        )
    }

    #[test]
    fn 请求_消息数上限_一万条接受_一万零一条返回_400() {
        let req = 解析(&多条消息(MAX_MESSAGES)).expect("恰好达到上限的请求应当通过");
        assert_eq!(
            req.body["messages"].as_array().map(Vec::len),
            Some(MAX_MESSAGES)
        );
        let e = 解析(&多条消息(MAX_MESSAGES + 1)).expect_err("超过上限必须拒绝");
        assert_eq!(
            (e.status, Some(e.envelope_code()), e.param.as_deref()),
            (400, Some("too_many_messages"), Some("messages"))
        );
        assert!(
            e.message.contains("10000"),
            "错误消息应说明上限：{}",
            e.message
        );
    }

    #[test]
    fn 请求_顶层不是对象_返回_400() {
        assert_eq!(错误参数("[1,2]"), (400, None));
    }
}
